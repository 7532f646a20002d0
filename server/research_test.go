package server

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/server/export"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
)

// testStudy is a small study on a real server: two waves, two navigators with
// display names, a supervisor, a researcher and an administrator.
type testStudy struct {
	ts               *testServer
	admin, sup, res  *clients
	navA, navB       *writer
	navAc, navBc     *clients
	navADev, navBDev TestDevice
}

func newStudy(t *testing.T) *testStudy {
	t.Helper()
	ts := newTestServer(t, Config{})
	ctx := context.Background()
	s := &testStudy{ts: ts}
	for _, u := range []struct {
		code string
		role study.Role
		name string
	}{{"PN-A", study.RoleNavigator, "Alice Realname"}, {"PN-B", study.RoleNavigator, "Bob Realname"}, {"SUP-1", study.RoleSupervisor, "Sam Supervisor"}, {"RES-1", study.RoleResearcher, "Rita Researcher"}} {
		if _, err := ts.DB.CreateUser(ctx, u.code, u.role, u.name); err != nil {
			t.Fatal(err)
		}
	}
	MustAssign(t, ts.DB, "SUP-1", "PN-A")
	for _, w := range []study.Wave{{Number: 1, Label: "Baseline", Start: "2026-01-01", End: "2026-01-31"}, {Number: 2, Label: "Follow-up", Start: "2026-02-01", End: "2026-02-28"}} {
		if _, err := ts.DB.CreateWave(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	s.navADev = MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A")
	s.navBDev = MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-B")
	s.navA, s.navB = newWriter(s.navADev), newWriter(s.navBDev)
	s.navAc, s.navBc = ts.clients(bearer(s.navADev.Token)), ts.clients(bearer(s.navBDev.Token))
	s.sup = ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleSupervisor, "SUP-1").Token))
	s.res = ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleResearcher, "RES-1").Token))
	s.admin = ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleAdmin, "ADMIN-1").Token))
	return s
}

// entry pushes an entry of w dated date.
func (s *testStudy) entry(t *testing.T, w *writer, c *clients, title, date, body string, shareRes bool) syncengine.EntryID {
	t.Helper()
	id, changes := w.newEntry(title, body, true, shareRes)
	changes = append(changes, w.change(id, syncengine.Change{Field: syncengine.FieldDate, Text: date}))
	changes = append(changes, w.change(id, syncengine.Change{Field: syncengine.FieldTag, Tag: "housing", Flag: true}))
	mustPush(t, c, changes...)
	return id
}

// exportFile runs ExportWave and returns the manifest and the file.
func exportFile(t *testing.T, c *clients, wave uint32, format diaryv1.ExportFormat) (*diaryv1.ExportManifest, []byte) {
	t.Helper()
	stream, err := c.research.ExportWave(context.Background(), &diaryv1.ExportWaveRequest{Wave: wave, Format: format})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var m *diaryv1.ExportManifest
	var file []byte
	for stream.Receive() {
		if mm := stream.Msg().GetManifest(); mm != nil {
			m = mm
		}
		file = append(file, stream.Msg().GetChunk()...)
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if m == nil {
		t.Fatal("no manifest")
	}
	return m, file
}

func jsonlIDs(t *testing.T, file []byte) []string {
	t.Helper()
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(string(file)), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		ids = append(ids, r["entry_id"].(string))
	}
	slices.Sort(ids)
	return ids
}

func sortedIDs(ids ...syncengine.EntryID) []string {
	var out []string
	for _, id := range ids {
		out = append(out, id.String())
	}
	slices.Sort(out)
	return out
}

// TestExport_Selection: an export over entries spread across waves and
// consent states holds exactly the shared, live entries of the wave, and
// the manifest's counts add up.
func TestExport_Selection(t *testing.T) {
	s := newStudy(t)
	ctx := context.Background()
	a1 := s.entry(t, s.navA, s.navAc, "a1", "2026-01-05", "x", true)
	a2 := s.entry(t, s.navA, s.navAc, "a2", "2026-01-20", "x", true)
	b1 := s.entry(t, s.navB, s.navBc, "b1", "2026-01-10", "x", true)
	private1 := s.entry(t, s.navA, s.navAc, "private", "2026-01-07", "x", false)
	a3 := s.entry(t, s.navA, s.navAc, "a3", "2026-02-03", "x", true)
	b2 := s.entry(t, s.navB, s.navBc, "b2", "2026-02-14", "x", true)
	deleted := s.entry(t, s.navB, s.navBc, "deleted", "2026-02-20", "x", true)
	mustPush(t, s.navBc, s.navB.change(deleted, syncengine.Change{Field: syncengine.FieldDeleted, Flag: true}))
	outside := s.entry(t, s.navA, s.navAc, "outside", "2025-12-24", "x", true)
	erased := s.entry(t, s.navA, s.navAc, "erased", "2026-01-15", "x", true)
	if _, err := s.admin.admin.EraseEntry(ctx, &diaryv1.EraseEntryRequest{EntryId: erased.String()}); err != nil {
		t.Fatal(err)
	}
	_ = private1
	_ = outside

	for _, tc := range []struct {
		name                               string
		wave                               uint32
		want                               []string
		notShared, deleted, erased, noWave uint64
		inWaves                            uint64 // live entries dated in the selected waves
	}{
		{"Wave1", 1, sortedIDs(a1, a2, b1), 1, 0, 1, 0, 4},
		{"Wave2", 2, sortedIDs(a3, b2), 0, 1, 1, 0, 3},
		{"All", 0, sortedIDs(a1, a2, b1, a3, b2), 1, 1, 1, 1, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, file := exportFile(t, s.res, tc.wave, diaryv1.ExportFormat_EXPORT_FORMAT_JSONL)
			if got := jsonlIDs(t, file); !slices.Equal(got, tc.want) {
				t.Fatalf("exported %v, want %v", got, tc.want)
			}
			if m.GetEntries() != uint64(len(tc.want)) || m.GetExcludedNotShared() != tc.notShared || m.GetExcludedDeleted() != tc.deleted ||
				m.GetExcludedErased() != tc.erased || m.GetExcludedNoWave() != tc.noWave || len(m.GetWaves()) != 2 || m.GetWave() != tc.wave {
				t.Fatalf("manifest %v", m)
			}
			if sum := m.GetEntries() + m.GetExcludedNotShared() + m.GetExcludedDeleted(); sum != tc.inWaves {
				t.Fatalf("manifest counts add up to %d, want the %d live entries dated in the wave(s)", sum, tc.inWaves)
			}
		})
	}

	t.Run("ConsentWithdrawn", func(t *testing.T) {
		mustPush(t, s.navAc, s.navA.change(a1, syncengine.Change{Field: syncengine.FieldShareResearch, Flag: false}))
		m, file := exportFile(t, s.res, 1, diaryv1.ExportFormat_EXPORT_FORMAT_JSONL)
		if got := jsonlIDs(t, file); !slices.Equal(got, sortedIDs(a2, b1)) || m.GetExcludedNotShared() != 2 {
			t.Fatalf("after withdrawing consent: %v, manifest %v", got, m)
		}
	})

	t.Run("ErrUnknownWave", func(t *testing.T) {
		stream, err := s.res.research.ExportWave(ctx, &diaryv1.ExportWaveRequest{Wave: 7, Format: diaryv1.ExportFormat_EXPORT_FORMAT_CSV})
		if err == nil {
			for stream.Receive() {
			}
			err = stream.Err()
		}
		wantCode(t, err, connect.CodeNotFound)
	})
	t.Run("ErrFormat", func(t *testing.T) {
		stream, err := s.res.research.ExportWave(ctx, &diaryv1.ExportWaveRequest{Wave: 1})
		if err == nil {
			for stream.Receive() {
			}
			err = stream.Err()
		}
		wantCode(t, err, connect.CodeInvalidArgument)
	})
}

// TestExport_Pseudonymised: no display name, device id or replica id
// appears in any export format.
func TestExport_Pseudonymised(t *testing.T) {
	s := newStudy(t)
	s.entry(t, s.navA, s.navAc, "one", "2026-01-05", "body", true)
	s.entry(t, s.navB, s.navBc, "two", "2026-02-05", "body", true)
	forbidden := []string{"Alice Realname", "Bob Realname", "Sam Supervisor", "Rita Researcher", s.navADev.Device, s.navBDev.Device, s.navADev.Replica.String(), s.navBDev.Replica.String()}
	for _, f := range []diaryv1.ExportFormat{diaryv1.ExportFormat_EXPORT_FORMAT_CSV, diaryv1.ExportFormat_EXPORT_FORMAT_JSONL, diaryv1.ExportFormat_EXPORT_FORMAT_QDPX} {
		_, file := exportFile(t, s.res, 0, f)
		texts := [][]byte{file}
		if f == diaryv1.ExportFormat_EXPORT_FORMAT_QDPX {
			texts = unzipAll(t, file)
		}
		for _, text := range texts {
			for _, bad := range forbidden {
				if bytes.Contains(text, []byte(bad)) {
					t.Fatalf("%v export contains %q", f, bad)
				}
			}
			if f != diaryv1.ExportFormat_EXPORT_FORMAT_QDPX && !bytes.Contains(text, []byte("PN-A")) {
				t.Fatalf("%v export lacks the testStudy code", f)
			}
		}
	}
}

func unzipAll(t *testing.T, file []byte) [][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestExport_CSVHostileBodies: bodies with commas, quotes, newlines and
// emoji come back from a CSV reader as written (line breaks as LF).
func TestExport_CSVHostileBodies(t *testing.T) {
	s := newStudy(t)
	bodies := map[string]string{
		"commas":   "one, two, three",
		"quotes":   `She said "no", then "yes"`,
		"newlines": "line one\nline two\r\nline three",
		"emoji":    "tired 😮‍💨 but ok 🙂",
		"formula":  "=HYPERLINK(\"http://x\")",
		"mixed":    "\"quoted,\ncomma\" and 'single'",
	}
	ids := map[string]string{}
	for title, body := range bodies {
		ids[s.entry(t, s.navA, s.navAc, title, "2026-01-05", body, true).String()] = title
	}
	_, file := exportFile(t, s.res, 1, diaryv1.ExportFormat_EXPORT_FORMAT_CSV)
	rows, err := csv.NewReader(bytes.NewReader(file)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(bodies)+1 || !slices.Equal(rows[0], export.CSVHeader) {
		t.Fatalf("%d rows, header %v", len(rows), rows[0])
	}
	col := slices.Index(rows[0], "body")
	for _, r := range rows[1:] {
		title := ids[r[0]]
		want := strings.ReplaceAll(bodies[title], "\r\n", "\n")
		if got := export.RestoreCSVField(r[col]); got != want {
			t.Fatalf("%s: body %q, want %q", title, got, want)
		}
	}
}

// TestExport_QDPX: the project validates against the REFI-QDA schema (when
// xmllint is installed) and exporting again gives the same GUIDs.
func TestExport_QDPX(t *testing.T) {
	s := newStudy(t)
	s.entry(t, s.navA, s.navAc, "one <&>", "2026-01-05", "body & <b>", true)
	s.entry(t, s.navB, s.navBc, "two", "2026-01-09", "another", true)
	project := func() []byte {
		_, file := exportFile(t, s.res, 1, diaryv1.ExportFormat_EXPORT_FORMAT_QDPX)
		zr, err := zip.NewReader(bytes.NewReader(file), int64(len(file)))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := zr.Open("project.qde")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return b
	}
	first, second := project(), project()
	guid := regexp.MustCompile(`guid="([0-9a-fA-F-]{36})"`)
	all := func(b []byte) []string {
		var out []string
		for _, m := range guid.FindAllSubmatch(b, -1) {
			out = append(out, string(m[1]))
		}
		return out
	}
	if g1, g2 := all(first), all(second); len(g1) < 5 || !slices.Equal(g1, g2) {
		t.Fatalf("GUIDs differ between exports:\n%v\n%v", g1, g2)
	}
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		t.Skip("xmllint is not installed (apt-get install libxml2-utils); .ci/run installs it")
	}
	path := filepath.Join(t.TempDir(), "project.qde")
	if err := os.WriteFile(path, first, 0o600); err != nil {
		t.Fatal(err)
	}
	schema := os.Getenv("DIARYSYNC_REFIQDA_XSD")
	if schema == "" {
		schema = filepath.Join("..", "..", "shared", "refi-qda", "Project.xsd")
	}
	if _, err := os.Stat(schema); err != nil {
		t.Skipf("the REFI-QDA schema is not at %s (set DIARYSYNC_REFIQDA_XSD)", schema)
	}
	if out, err := exec.Command(xmllint, "--noout", "--schema", schema, path).CombinedOutput(); err != nil {
		t.Fatalf("project.qde does not validate: %v\n%s", err, out)
	}
}

// TestErasure: an erased entry leaves the server's state and history,
// every reader is told to drop it, later pushes for it are refused, and
// the audit log records it without content.
func TestErasure(t *testing.T) {
	s := newStudy(t)
	ctx := context.Background()
	id := s.entry(t, s.navA, s.navAc, "to erase", "2026-01-05", "ERASE-ME-BODY", true)
	keep := s.entry(t, s.navA, s.navAc, "to keep", "2026-01-06", "keep", true)
	before := map[string]uint64{}
	for name, c := range map[string]*clients{"owner": s.navAc, "sup": s.sup, "res": s.res} {
		p := pullAll(t, c, 0)
		if _, ok := p.entries[id.String()]; !ok {
			t.Fatalf("%s does not see the entry before erasure", name)
		}
		before[name] = p.cursor
	}
	resp, err := s.admin.admin.EraseEntry(ctx, &diaryv1.EraseEntryRequest{EntryId: id.String()})
	if err != nil || !resp.GetErased() {
		t.Fatalf("EraseEntry: %v %v", resp, err)
	}
	for name, c := range map[string]*clients{"owner": s.navAc, "sup": s.sup, "res": s.res} {
		p := pullAll(t, c, before[name])
		if p.removals[id.String()] != diaryv1.RemovalReason_REMOVAL_REASON_ERASED || len(p.entries) != 0 {
			t.Fatalf("%s after erasure: %v %v", name, p.entries, p.removals)
		}
	}
	// Nothing of the content is left in the database file.
	var history, withState int
	rawDB(s.ts.DB).QueryRow(`SELECT count(*) FROM history h JOIN entries e ON e.rid = h.entry WHERE e.id = ?`, id[:]).Scan(&history)
	rawDB(s.ts.DB).QueryRow(`SELECT count(*) FROM entries WHERE id = ? AND state IS NOT NULL`, id[:]).Scan(&withState)
	if history != 0 || withState != 0 {
		t.Fatalf("after erasure: %d history rows, %d states", history, withState)
	}
	assertNotInFiles(t, s.ts.DB, "ERASE-ME-BODY")
	// A device that still holds it cannot bring it back.
	r, err := s.navAc.sync.Push(ctx, &diaryv1.PushRequest{Changes: []*diaryv1.Change{s.navA.change(id, syncengine.Change{Field: syncengine.FieldTitle, Text: "back from the dead"})}})
	if err != nil || r.GetResults()[0].GetReason() != diaryv1.RefusalReason_REFUSAL_REASON_ERASED {
		t.Fatalf("push after erasure: %v %v", r, err)
	}
	if again, err := s.admin.admin.EraseEntry(ctx, &diaryv1.EraseEntryRequest{EntryId: id.String()}); err != nil || again.GetErased() {
		t.Fatalf("erasing again: %v %v", again, err)
	}

	t.Run("Navigator", func(t *testing.T) {
		resp, err := s.admin.admin.EraseNavigator(ctx, &diaryv1.EraseNavigatorRequest{StudyCode: "PN-A"})
		if err != nil || resp.GetEntriesErased() != 1 {
			t.Fatalf("EraseNavigator: %v %v", resp, err)
		}
		p := pullAll(t, s.navAc, 0)
		if len(p.entries) != 0 || p.removals[keep.String()] != diaryv1.RemovalReason_REMOVAL_REASON_ERASED {
			t.Fatalf("owner after withdrawal: %v %v", p.entries, p.removals)
		}
		// An offline device's new entry is refused too.
		_, changes := s.navA.newEntry("written offline", "x", false, false)
		r, err := s.navAc.sync.Push(ctx, &diaryv1.PushRequest{Changes: changes})
		if err != nil || r.GetResults()[0].GetReason() != diaryv1.RefusalReason_REFUSAL_REASON_ERASED || !strings.Contains(r.GetResults()[0].GetMessage(), "withdrew") {
			t.Fatalf("push after withdrawal: %v %v", r, err)
		}
		_, err = s.admin.admin.EraseNavigator(ctx, &diaryv1.EraseNavigatorRequest{StudyCode: "SUP-1"})
		wantCode(t, err, connect.CodeInvalidArgument)
	})

	t.Run("Audit", func(t *testing.T) {
		resp, err := s.admin.admin.ListAuditEvents(ctx, &diaryv1.ListAuditEventsRequest{PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		actions := map[string]int{}
		for _, e := range resp.GetEvents() {
			actions[e.GetAction()]++
			b, _ := proto.Marshal(e)
			if bytes.Contains(b, []byte("ERASE-ME-BODY")) || bytes.Contains(b, []byte("to erase")) {
				t.Fatalf("audit event %v holds diary content", e)
			}
		}
		for _, want := range []string{"user.create", "assign", "wave.create", "code.issue", "device.enrol", "entry.erase", "navigator.erase"} {
			if actions[want] == 0 {
				t.Errorf("no %q in the audit log: %v", want, actions)
			}
		}
		if _, err := rawDB(s.ts.DB).Exec(`UPDATE audit SET actor = 'someone else'`); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Fatalf("changing the audit log: %v", err)
		}
		if _, err := rawDB(s.ts.DB).Exec(`DELETE FROM audit`); err == nil {
			t.Fatal("the audit log could be deleted")
		}
	})
}

// TestNoPrivateLeak: no RPC a supervisor, researcher or administrator may
// call ever carries a private entry: not its text, not its id.
func TestNoPrivateLeak(t *testing.T) {
	s := newStudy(t)
	ctx := context.Background()
	private, changes := s.navA.newEntry("PRIVATE-TITLE-MARK", "PRIVATE-BODY-MARK", false, false)
	changes = append(changes, s.navA.change(private, syncengine.Change{Field: syncengine.FieldDate, Text: "2026-01-05"}))
	mustPush(t, s.navAc, changes...)
	// Shared once, then withdrawn: a reader who saw it may get its id in a
	// removal notice, but never its content again.
	was := s.entry(t, s.navA, s.navAc, "WAS-SHARED-MARK", "2026-01-06", "WAS-SHARED-BODY", true)
	mustPush(t, s.navAc, s.navA.change(was, syncengine.Change{Field: syncengine.FieldBody, Text: "NOW-PRIVATE-BODY"}),
		s.navA.change(was, syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: false}),
		s.navA.change(was, syncengine.Change{Field: syncengine.FieldShareResearch, Flag: false}))
	s.entry(t, s.navA, s.navAc, "shared", "2026-01-07", "fine", true)

	forbidden := [][]byte{[]byte("PRIVATE-TITLE-MARK"), []byte("PRIVATE-BODY-MARK"), []byte(private.String()), []byte("NOW-PRIVATE-BODY")}
	check := func(who string, m proto.Message) {
		t.Helper()
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range forbidden {
			if bytes.Contains(b, bad) {
				t.Fatalf("%s received %q in %T", who, bad, m)
			}
		}
	}
	for who, c := range map[string]*clients{"supervisor": s.sup, "researcher": s.res, "admin": s.admin} {
		if resp, err := c.sync.Pull(ctx, &diaryv1.PullRequest{}); err == nil {
			check(who, resp)
		} else if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatal(err)
		}
		if resp, err := c.sync.GetStateHash(ctx, &diaryv1.GetStateHashRequest{}); err == nil {
			check(who, resp)
		}
		sctx, cancel := context.WithCancel(ctx)
		if stream, err := c.sync.Subscribe(sctx, &diaryv1.SubscribeRequest{}); err == nil {
			for i := 0; i < 2 && stream.Receive(); i++ {
				check(who, stream.Msg())
			}
			stream.Close()
		}
		cancel()
		for _, f := range []diaryv1.ExportFormat{diaryv1.ExportFormat_EXPORT_FORMAT_CSV, diaryv1.ExportFormat_EXPORT_FORMAT_JSONL, diaryv1.ExportFormat_EXPORT_FORMAT_QDPX} {
			stream, err := c.research.ExportWave(ctx, &diaryv1.ExportWaveRequest{Format: f})
			if err != nil {
				continue
			}
			var file []byte
			for stream.Receive() {
				check(who, stream.Msg())
				file = append(file, stream.Msg().GetChunk()...)
			}
			if err := stream.Err(); err != nil && connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatal(err)
			}
			if f == diaryv1.ExportFormat_EXPORT_FORMAT_QDPX && len(file) > 0 {
				for _, part := range unzipAll(t, file) {
					for _, bad := range forbidden {
						if bytes.Contains(part, bad) {
							t.Fatalf("%s's qdpx export holds %q", who, bad)
						}
					}
				}
			}
		}
		if resp, err := c.admin.ListAuditEvents(ctx, &diaryv1.ListAuditEventsRequest{PageSize: 1000}); err == nil {
			check(who, resp)
		}
		if resp, err := c.admin.ListUsers(ctx, &diaryv1.ListUsersRequest{}); err == nil {
			check(who, resp)
		}
	}
	if _, err := s.sup.sync.Pull(ctx, &diaryv1.PullRequest{}); errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
