package server

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// researchStudy is the study the research export tests build: three
// navigators, four waves of which some have navigators' own dates, tags,
// unicode, a phone number, an e-mail address and names on the redaction
// list.
type researchStudy struct {
	ts         *testServer
	admin, res *clients
	nav        map[string]*writer
	navc       map[string]*clients
	ids        map[string]syncengine.EntryID
}

// secrets are what must never reach the research team.
var secrets = []string{"07700 900123", "07700900123", "jane.doe@example.org", "Jane Doe", "jane doe", "Kofi", "SW1A 1AA"}

func newResearchStudy(t *testing.T) *researchStudy {
	t.Helper()
	ts := newTestServer(t, Config{})
	ctx := context.Background()
	s := &researchStudy{ts: ts, nav: map[string]*writer{}, navc: map[string]*clients{}, ids: map[string]syncengine.EntryID{}}
	for _, code := range []string{"PN-A", "PN-B", "PN-C"} {
		if _, err := ts.DB.CreateUser(ctx, code, study.RoleNavigator, "Real Name of "+code); err != nil {
			t.Fatal(err)
		}
		dev := MustEnrollDevice(t, ts.DB, study.RoleNavigator, code)
		s.nav[code], s.navc[code] = newWriter(dev), ts.clients(bearer(dev.Token))
	}
	if _, err := ts.DB.CreateUser(ctx, "RES-1", study.RoleResearcher, "Rita"); err != nil {
		t.Fatal(err)
	}
	s.res = ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleResearcher, "RES-1").Token))
	s.admin = ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleAdmin, "ADMIN-1").Token))
	for _, w := range []*diaryv1.Wave{
		{Number: 1, Label: "Baseline", StartDate: "2026-01-01", EndDate: "2026-01-31"},
		{Number: 2, Label: "Early", StartDate: "2026-02-01", EndDate: "2026-02-28"},
		{Number: 3, Label: "Late", StartDate: "2026-03-01", EndDate: "2026-03-31"},
		{Number: 4, Label: "End", StartDate: "2026-04-01", EndDate: "2026-04-30"},
		// PN-B's wave 3 first: their wave 2 would overlap the study-wide
		// wave 3.
		{Number: 3, NavigatorCode: "PN-B", StartDate: "2026-03-11", EndDate: "2026-03-31"},
		{Number: 2, NavigatorCode: "PN-B", StartDate: "2026-02-10", EndDate: "2026-03-10"},
		{Number: 1, NavigatorCode: "PN-C", StartDate: "2025-12-15", EndDate: "2026-01-31"},
	} {
		if _, err := s.admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: w}); err != nil {
			t.Fatalf("wave %v: %v", w, err)
		}
	}
	for _, term := range []string{"Jane Doe", "Kofi"} {
		if _, err := s.admin.admin.AddRedactionTerm(ctx, &diaryv1.AddRedactionTermRequest{Term: &diaryv1.RedactionTerm{Term: term}}); err != nil {
			t.Fatal(err)
		}
	}
	s.write(t, "a1", "PN-A", "2026-01-10", "Met Jane Doe", "Jane Doe called from 07700 900123 about the hostel near SW1A 1AA.\nWrite to jane.doe@example.org.", true, "housing", "naloxone")
	s.write(t, "a2", "PN-A", "2026-02-05", "Café ☕", "Café with Kofi — قهوة 😀, then 2026-01-15 at 10:30.", true, "harm reduction")
	s.write(t, "b-nowave", "PN-B", "2026-02-05", "before B's wave 2", "dated before PN-B's own wave 2 begins", true, "housing")
	s.write(t, "b2", "PN-B", "2026-03-05", "B in wave 2", "PN-B's own dates put this in wave 2", true, "court")
	s.write(t, "b3", "PN-B", "2026-03-20", "B in wave 3", "own wave 3", true, "court", "housing")
	s.write(t, "c1", "PN-C", "2025-12-20", "C early", "PN-C's own wave 1 starts in December", true, "naloxone")
	s.write(t, "c-private", "PN-C", "2026-04-10", "private", "not shared", false, "housing")
	s.write(t, "c-deleted", "PN-C", "2026-04-12", "deleted", "deleted later", true)
	mustPush(t, s.navc["PN-C"], s.nav["PN-C"].change(s.ids["c-deleted"], syncengine.Change{Field: syncengine.FieldDeleted, Flag: true}))
	return s
}

// write pushes an entry as one save: every change names the save by its
// first change's clock.
func (s *researchStudy) write(t *testing.T, name, code, date, title, body string, shareRes bool, tags ...string) {
	t.Helper()
	w := s.nav[code]
	id, changes := w.newEntry(title, body, false, shareRes)
	changes = append(changes, w.change(id, syncengine.Change{Field: syncengine.FieldDate, Text: date}))
	for _, tag := range tags {
		changes = append(changes, w.change(id, syncengine.Change{Field: syncengine.FieldTag, Tag: tag, Flag: true}))
	}
	for _, c := range changes {
		c.Write = changes[0].GetClock()
	}
	mustPush(t, s.navc[code], changes...)
	s.ids[name] = id
}

// exported is everything one ExportWave call sent.
type exported struct {
	manifest   *diaryv1.ExportManifest
	file       []byte
	manifestFn []byte
	dictionary []byte
}

func (s *researchStudy) export(t *testing.T, req *diaryv1.ExportWaveRequest) *exported {
	t.Helper()
	stream, err := s.res.research.ExportWave(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	out := &exported{}
	for stream.Receive() {
		switch p := stream.Msg().GetPart().(type) {
		case *diaryv1.ExportWaveResponse_Manifest:
			out.manifest = p.Manifest
		case *diaryv1.ExportWaveResponse_Chunk:
			out.file = append(out.file, p.Chunk...)
		case *diaryv1.ExportWaveResponse_ManifestFile:
			out.manifestFn = append(out.manifestFn, p.ManifestFile...)
		case *diaryv1.ExportWaveResponse_DataDictionary:
			out.dictionary = append(out.dictionary, p.DataDictionary...)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if out.manifest == nil || len(out.manifestFn) == 0 {
		t.Fatal("the export sent no manifest")
	}
	return out
}

// manifestFile is the part of a manifest file the tests read.
type manifestFile struct {
	ExportID uint64 `json:"export_id"`
	Empty    bool   `json:"empty"`
	Counts   struct {
		Entries  uint64            `json:"entries"`
		Excluded map[string]uint64 `json:"excluded"`
	} `json:"counts"`
	NavigatorWaves []struct {
		Number    uint32 `json:"number"`
		Navigator string `json:"navigator"`
	} `json:"navigator_waves"`
	Redaction struct {
		Enabled      bool `json:"enabled"`
		Replacements int  `json:"replacements"`
		Terms        int  `json:"terms"`
	} `json:"redaction"`
	CSV *struct {
		BOM          bool `json:"bom"`
		FormulaGuard bool `json:"formula_guard"`
	} `json:"csv"`
	Since *struct {
		ExportID  uint64   `json:"export_id"`
		Added     []string `json:"added"`
		Changed   []string `json:"changed"`
		Withdrawn []string `json:"withdrawn"`
		Erased    []string `json:"erased"`
		Outside   []string `json:"outside"`
	} `json:"since"`
	Entries []struct {
		EntryID        string         `json:"entry_id"`
		SourceGUID     string         `json:"source_guid"`
		StudyCode      string         `json:"study_code"`
		Wave           uint32         `json:"wave"`
		WaveDefinition string         `json:"wave_definition"`
		TextSHA256     string         `json:"text_sha256"`
		Redactions     map[string]int `json:"redactions"`
	} `json:"entries"`
}

func parseManifest(t *testing.T, b []byte) *manifestFile {
	t.Helper()
	var m manifestFile
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest is not JSON: %v\n%s", err, b)
	}
	return &m
}

func (s *researchStudy) names(ids ...string) []string {
	out := []string{}
	for _, n := range ids {
		out = append(out, s.ids[n].String())
	}
	slices.Sort(out)
	return out
}

// noSecrets fails if any secret survives in b.
func noSecrets(t *testing.T, what string, b []byte) {
	t.Helper()
	for _, secret := range secrets {
		if bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(secret))) {
			t.Errorf("%s holds %q", what, secret)
		}
	}
}

// xmlValid validates doc against the schema in env (or the shared file)
// with xmllint, skipping with a plain message when either is absent.
func xmlValid(t *testing.T, doc []byte, env, file string) {
	t.Helper()
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		t.Skip("xmllint is not installed (apt-get install libxml2-utils); .ci/run installs it")
	}
	schema := os.Getenv(env)
	if schema == "" {
		schema = filepath.Join("..", "..", "shared", "refi-qda", file)
	}
	if _, err := os.Stat(schema); err != nil {
		t.Skipf("the REFI-QDA schema is not at %s (set %s)", schema, env)
	}
	path := filepath.Join(t.TempDir(), "doc.xml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(xmllint, "--noout", "--schema", schema, path).CombinedOutput(); err != nil {
		t.Fatalf("%s does not validate against %s: %v\n%s", filepath.Base(path), file, err, out)
	}
}

func unzip(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name] = data
	}
	return files
}

// importedProject is project.qde read as a REFI-QDA importer reads it:
// codebook, variables, cases, sources with their selections and codings,
// and sets.
type importedProject struct {
	Codes []struct {
		GUID      string `xml:"guid,attr"`
		Name      string `xml:"name,attr"`
		IsCodable bool   `xml:"isCodable,attr"`
	} `xml:"CodeBook>Codes>Code"`
	Variables []struct {
		GUID string `xml:"guid,attr"`
		Name string `xml:"name,attr"`
	} `xml:"Variables>Variable"`
	Cases []struct {
		Name    string `xml:"name,attr"`
		Sources []struct {
			Target string `xml:"targetGUID,attr"`
		} `xml:"SourceRef"`
	} `xml:"Cases>Case"`
	Sources []struct {
		GUID       string `xml:"guid,attr"`
		Name       string `xml:"name,attr"`
		Path       string `xml:"plainTextPath,attr"`
		Selections []struct {
			Start   int `xml:"startPosition,attr"`
			End     int `xml:"endPosition,attr"`
			Codings []struct {
				Code struct {
					Target string `xml:"targetGUID,attr"`
				} `xml:"CodeRef"`
			} `xml:"Coding"`
		} `xml:"PlainTextSelection"`
		Values []struct {
			Variable struct {
				Target string `xml:"targetGUID,attr"`
			} `xml:"VariableRef"`
			Text string `xml:",any"`
		} `xml:"VariableValue"`
	} `xml:"Sources>TextSource"`
	Sets []struct {
		Name    string `xml:"name,attr"`
		Members []struct {
			Target string `xml:"targetGUID,attr"`
		} `xml:"MemberSource"`
	} `xml:"Sets>Set"`
}

// TestResearchExports builds the study and checks every format, the
// manifests, the de-identification of exports and of the research
// team's pulls, and what --since reports between two exports.
func TestResearchExports(t *testing.T) {
	s := newResearchStudy(t)
	ctx := context.Background()
	all := &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_CSV}
	exportedIDs := s.names("a1", "a2", "b2", "b3", "c1")

	t.Run("WaveDefinitionsRefuseOverlaps", func(t *testing.T) {
		_, err := s.admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: &diaryv1.Wave{Number: 4, NavigatorCode: "PN-B", StartDate: "2026-03-25", EndDate: "2026-04-30"}})
		wantCode(t, err, connect.CodeFailedPrecondition)
		if !strings.Contains(err.Error(), "for PN-B, wave 4") {
			t.Errorf("overlap error %q does not say whose waves overlap", err)
		}
		resp, err := s.admin.admin.ListWaves(ctx, &diaryv1.ListWavesRequest{IncludeNavigatorDates: true, PageSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for tok := ""; ; {
			resp, err = s.admin.admin.ListWaves(ctx, &diaryv1.ListWavesRequest{IncludeNavigatorDates: true, PageSize: 2, PageToken: tok})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range resp.GetWaves() {
				got = append(got, strconv.Itoa(int(w.GetNumber()))+w.GetNavigatorCode())
			}
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		if want := []string{"1", "1PN-C", "2", "2PN-B", "3", "3PN-B", "4"}; !slices.Equal(got, want) {
			t.Fatalf("definitions %v, want %v", got, want)
		}
	})

	csvExport := s.export(t, all)
	t.Run("CSV", func(t *testing.T) {
		noSecrets(t, "CSV", csvExport.file)
		noSecrets(t, "CSV manifest", csvExport.manifestFn)
		rows, err := csv.NewReader(bytes.NewReader(csvExport.file)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		col := map[string]int{}
		for i, c := range rows[0] {
			col[c] = i
		}
		if _, ok := col["edits"]; ok {
			t.Fatal("the CSV still has an edits column")
		}
		var ids []string
		byID := map[string][]string{}
		for _, r := range rows[1:] {
			ids = append(ids, r[col["entry_id"]])
			byID[r[col["entry_id"]]] = r
		}
		slices.Sort(ids)
		if !slices.Equal(ids, exportedIDs) {
			t.Fatalf("exported %v, want %v", ids, exportedIDs)
		}
		for name, want := range map[string][2]string{"a1": {"1", "default"}, "a2": {"2", "default"}, "b2": {"2", "navigator"}, "b3": {"3", "navigator"}, "c1": {"1", "navigator"}} {
			r := byID[s.ids[name].String()]
			if r[col["wave"]] != want[0] || r[col["wave_definition"]] != want[1] {
				t.Errorf("%s: wave %s by %s, want %s by %s", name, r[col["wave"]], r[col["wave_definition"]], want[0], want[1])
			}
		}
		a1 := byID[s.ids["a1"].String()]
		if got, want := a1[col["body"]], "[name] called from [phone] about the hostel near [postcode].\n"+"Write to [email]."; got != want {
			t.Errorf("a1 body %q, want %q", got, want)
		}
		if got := a1[col["redactions"]]; got != "[email]=1; [name]=2; [phone]=1; [postcode]=1" {
			t.Errorf("a1 redactions %q", got)
		}
		if a1[col["revisions"]] != "1" {
			t.Errorf("a1 has %s revisions, want 1 (one save)", a1[col["revisions"]])
		}
		a2 := byID[s.ids["a2"].String()]
		if !strings.Contains(a2[col["body"]], "قهوة 😀, then 2026-01-15 at 10:30") || !strings.Contains(a2[col["title"]], "Café ☕") {
			t.Errorf("unicode, dates or times changed: %q", a2[col["body"]])
		}
		sum := sha256.Sum256([]byte(a1[col["body"]]))
		if a1[col["text_sha256"]] != hex.EncodeToString(sum[:]) {
			t.Error("text_sha256 is not the SHA-256 of the exported body")
		}
		m := parseManifest(t, csvExport.manifestFn)
		if m.ExportID == 0 || m.ExportID != csvExport.manifest.GetExportId() || m.Counts.Entries != 5 || m.Counts.Excluded["no_wave"] != 1 ||
			m.Counts.Excluded["not_shared"] != 1 || m.Counts.Excluded["deleted"] != 1 || !m.Redaction.Enabled || m.Redaction.Terms != 2 {
			t.Fatalf("manifest %+v", m)
		}
		if m.CSV == nil || m.CSV.BOM || !m.CSV.FormulaGuard {
			t.Errorf("manifest's CSV settings %+v", m.CSV)
		}
		if len(m.NavigatorWaves) != 3 {
			t.Errorf("manifest lists %d navigator wave definitions, want 3", len(m.NavigatorWaves))
		}
		total := 0
		for _, e := range m.Entries {
			for _, n := range e.Redactions {
				total += n
			}
			if r := byID[e.EntryID]; r == nil || r[col["text_sha256"]] != e.TextSHA256 || r[col["wave_definition"]] != e.WaveDefinition {
				t.Errorf("manifest entry %+v does not match its row", e)
			}
		}
		if total != m.Redaction.Replacements || total != 6 { // a1: title 1, body 4; a2: 1
			t.Errorf("per-entry redactions add up to %d, manifest says %d, want 6", total, m.Redaction.Replacements)
		}
		if !bytes.Contains(csvExport.dictionary, []byte("| revisions |")) || !bytes.Contains(csvExport.dictionary, []byte("| wave_definition |")) {
			t.Errorf("data dictionary:\n%s", csvExport.dictionary)
		}
	})

	t.Run("CSVOptions", func(t *testing.T) {
		e := s.export(t, &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_CSV, Bom: true, NoFormulaGuard: true, NavigatorCode: "pn-b", FromDate: "2026-03-01", ToDate: "2026-03-15"})
		if !bytes.HasPrefix(e.file, []byte("\uFEFFentry_id,")) {
			t.Errorf("--bom export starts %q", e.file[:12])
		}
		m := parseManifest(t, e.manifestFn)
		if m.CSV == nil || !m.CSV.BOM || m.CSV.FormulaGuard || len(m.Entries) != 1 || m.Entries[0].EntryID != s.ids["b2"].String() {
			t.Errorf("filtered manifest %+v", m)
		}
	})

	t.Run("JSONL", func(t *testing.T) {
		e := s.export(t, &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_JSONL})
		noSecrets(t, "JSON Lines", e.file)
		if got := jsonlIDs(t, e.file); !slices.Equal(got, exportedIDs) {
			t.Fatalf("exported %v", got)
		}
		if !bytes.Contains(e.dictionary, []byte("JSON Lines")) {
			t.Error("no JSON Lines data dictionary")
		}
	})

	var qdpx []byte
	t.Run("QDPX", func(t *testing.T) {
		e := s.export(t, &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_QDPX})
		qdpx = e.file
		files := unzip(t, e.file)
		for name, b := range files {
			noSecrets(t, name, b)
		}
		var p importedProject
		if err := xml.Unmarshal(files["project.qde"], &p); err != nil {
			t.Fatal(err)
		}
		// Codes: one per tag of the exported entries.
		codes := map[string]string{}
		for _, c := range p.Codes {
			codes[c.GUID] = c.Name
			if !c.IsCodable {
				t.Errorf("code %s is not codable", c.Name)
			}
		}
		names := slices.Sorted(func(yield func(string) bool) {
			for _, n := range codes {
				if !yield(n) {
					return
				}
			}
		})
		if want := []string{"court", "harm reduction", "housing", "naloxone"}; !slices.Equal(names, want) {
			t.Errorf("codes %v, want %v", names, want)
		}
		// Sources: one per entry; each text coded whole with each tag.
		if len(p.Sources) != 5 {
			t.Fatalf("%d sources, want 5", len(p.Sources))
		}
		codings := 0
		for _, src := range p.Sources {
			text := files["sources/"+strings.TrimPrefix(src.Path, "internal://")]
			if text == nil {
				t.Fatalf("source %s has no text file", src.Name)
			}
			if strings.ContainsAny(src.Name, `<>:"/\|?*`) {
				t.Errorf("source name %q is not a safe file name", src.Name)
			}
			if len(src.Selections) != 1 || src.Selections[0].Start != 0 || src.Selections[0].End != utf8.RuneCount(text) {
				t.Errorf("source %s: selections %+v do not cover its %d characters", src.Name, src.Selections, utf8.RuneCount(text))
				continue
			}
			for _, c := range src.Selections[0].Codings {
				codings++
				if _, ok := codes[c.Code.Target]; !ok {
					t.Errorf("source %s is coded with %s, which is no code", src.Name, c.Code.Target)
				}
			}
		}
		if codings != 7 { // a1: 2, a2: 1, b2: 1, b3: 2, c1: 1
			t.Errorf("%d codings, want 7", codings)
		}
		// Cases: the three navigators, their sources adding up.
		refs := 0
		for _, c := range p.Cases {
			refs += len(c.Sources)
		}
		if len(p.Cases) != 3 || refs != 5 {
			t.Errorf("%d cases referring to %d sources, want 3 and 5", len(p.Cases), refs)
		}
		// Variables: every source has a value for the wave definition.
		defs := map[string]int{}
		var defGUID string
		for _, v := range p.Variables {
			if v.Name == "Wave definition" {
				defGUID = v.GUID
			}
		}
		for _, src := range p.Sources {
			for _, v := range src.Values {
				if v.Variable.Target == defGUID {
					defs[strings.TrimSpace(v.Text)]++
				}
			}
		}
		if defs["default"] != 2 || defs["navigator"] != 3 {
			t.Errorf("wave definitions %v, want 2 default and 3 navigator", defs)
		}
		// Sets: one per wave, every entry in one.
		members := 0
		for _, set := range p.Sets {
			members += len(set.Members)
		}
		if len(p.Sets) != 4 || members != 5 {
			t.Errorf("%d sets with %d members, want 4 and 5", len(p.Sets), members)
		}
		if m := parseManifest(t, files["manifest.json"]); m.ExportID != 0 || len(m.Entries) != 5 {
			t.Errorf("the manifest inside the archive: export id %d, %d entries", m.ExportID, len(m.Entries))
		}
		xmlValid(t, files["project.qde"], "DIARYSYNC_REFIQDA_XSD", "Project.xsd")
	})

	t.Run("QDPXSameSnapshotSameBytes", func(t *testing.T) {
		again := s.export(t, &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_QDPX})
		if qdpx == nil || !bytes.Equal(again.file, qdpx) {
			t.Fatal("two exports of the same snapshot with the same settings differ")
		}
	})

	t.Run("QDC", func(t *testing.T) {
		e := s.export(t, &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_QDC})
		noSecrets(t, "codebook", e.file)
		if n := bytes.Count(e.file, []byte("<Code ")); n != 4 {
			t.Errorf("codebook has %d codes, want 4:\n%s", n, e.file)
		}
		xmlValid(t, e.file, "DIARYSYNC_REFIQDA_CODEBOOK_XSD", "Codebook.xsd")
	})

	t.Run("EmptyExportSaysSo", func(t *testing.T) {
		e := s.export(t, &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_JSONL, NavigatorCode: "PN-C", Wave: 4})
		m := parseManifest(t, e.manifestFn)
		if !m.Empty || len(e.file) != 0 || e.manifest.GetEntries() != 0 || e.manifest.GetExcludedNotShared() != 1 {
			t.Errorf("empty export: manifest %+v, file %q", m, e.file)
		}
	})

	t.Run("ResearchPullIsDeidentified", func(t *testing.T) {
		p := pullAll(t, s.res, 0)
		if len(p.entries) != 6 { // b-nowave is shared too: pulls are not by wave
			t.Fatalf("pulled %d entries, want 6", len(p.entries))
		}
		for id, e := range p.entries {
			b, _ := json.Marshal(e)
			noSecrets(t, "pulled entry "+id, b)
		}
		// Navigators see what they wrote.
		own := pullAll(t, s.navc["PN-A"], 0)
		if e := own.entries[s.ids["a1"].String()]; e == nil || !strings.Contains(e.GetBody().GetValue(), "07700 900123") {
			t.Error("redaction changed what the navigator pulls")
		}
		// A new term reaches the research replica on its next pull.
		if _, err := s.admin.admin.AddRedactionTerm(ctx, &diaryv1.AddRedactionTermRequest{Term: &diaryv1.RedactionTerm{Term: "hostel", Marker: "[place]"}}); err != nil {
			t.Fatal(err)
		}
		next := pullAll(t, s.res, p.cursor)
		if len(next.entries) != 6 || len(next.removals) != 0 {
			t.Fatalf("after the term list changed, pulled %d entries and %d removals, want every entry again", len(next.entries), len(next.removals))
		}
		if body := next.entries[s.ids["a1"].String()].GetBody().GetValue(); !strings.Contains(body, "about the [place] near") {
			t.Errorf("a1 after the new term: %q", body)
		}
		events, err := s.admin.admin.ListAuditEvents(ctx, &diaryv1.ListAuditEventsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events.GetEvents() {
			if strings.Contains(e.String(), "hostel") {
				t.Errorf("the audit log names the term: %v", e)
			}
		}
	})

	t.Run("TurningRedactionOff", func(t *testing.T) {
		if _, err := s.admin.admin.UpdateRedaction(ctx, &diaryv1.UpdateRedactionRequest{Enabled: false}); err != nil {
			t.Fatal(err)
		}
		e := s.export(t, &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_JSONL, Wave: 1, NavigatorCode: "PN-A"})
		m := parseManifest(t, e.manifestFn)
		if m.Redaction.Enabled || e.manifest.GetRedactionEnabled() || !bytes.Contains(e.file, []byte("07700 900123")) {
			t.Errorf("with redaction off: manifest %+v", m.Redaction)
		}
		events, err := s.admin.admin.ListAuditEvents(ctx, &diaryv1.ListAuditEventsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, ev := range events.GetEvents() {
			found = found || (ev.GetAction() == "redaction.update" && ev.GetDetails()["enabled"] == "false" && ev.GetActor() == "ADMIN-1")
		}
		if !found {
			t.Error("turning redaction off is not in the audit log")
		}
		if _, err := s.admin.admin.UpdateRedaction(ctx, &diaryv1.UpdateRedactionRequest{Enabled: true}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Since", func(t *testing.T) {
		first := csvExport.manifest.GetExportId()
		// Between the two exports: a2's text changes, b2 is unshared, b3
		// is erased, c1's title alone changes (its text, and so its hash,
		// does not), and a new entry is added.
		mustPush(t, s.navc["PN-A"], s.nav["PN-A"].change(s.ids["a2"], syncengine.Change{Field: syncengine.FieldBody, Text: "rewritten"}))
		mustPush(t, s.navc["PN-B"], s.nav["PN-B"].change(s.ids["b2"], syncengine.Change{Field: syncengine.FieldShareResearch, Flag: false}))
		if _, err := s.admin.admin.EraseEntry(ctx, &diaryv1.EraseEntryRequest{EntryId: s.ids["b3"].String()}); err != nil {
			t.Fatal(err)
		}
		mustPush(t, s.navc["PN-C"], s.nav["PN-C"].change(s.ids["c1"], syncengine.Change{Field: syncengine.FieldTitle, Text: "retitled"}))
		s.write(t, "a-new", "PN-A", "2026-04-15", "new", "new entry", true)
		e := s.export(t, &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_JSONL, SinceExportId: first})
		m := parseManifest(t, e.manifestFn)
		if m.Since == nil || m.Since.ExportID != first {
			t.Fatalf("manifest since %+v", m.Since)
		}
		for _, tc := range []struct {
			kind      string
			got, want []string
		}{
			{"added", m.Since.Added, s.names("a-new")},
			// a1's text changed for researchers too: "hostel" joined the
			// redaction list after the first export.
			{"changed", m.Since.Changed, s.names("a1", "a2")},
			{"withdrawn", m.Since.Withdrawn, s.names("b2")},
			{"erased", m.Since.Erased, s.names("b3")},
			{"outside", m.Since.Outside, s.names()},
		} {
			if !slices.Equal(tc.got, tc.want) {
				t.Errorf("%s: %v, want %v", tc.kind, tc.got, tc.want)
			}
		}
		sc := e.manifest.GetSince()
		if sc.GetAdded() != 1 || sc.GetChanged() != 2 || sc.GetWithdrawn() != 1 || sc.GetErased() != 1 || sc.GetOutside() != 0 {
			t.Errorf("since counts %v", sc)
		}
		// The earlier export, kept, keeps the erased entry's id but not
		// the hash of its text.
		var hashes int
		b3 := s.ids["b3"]
		if err := rawDB(s.ts.DB).QueryRow(`SELECT count(*) FROM export_entries WHERE entry_id = ? AND text_sha256 IS NOT NULL`, b3[:]).Scan(&hashes); err != nil {
			t.Fatal(err)
		}
		if hashes != 0 {
			t.Errorf("%d export hashes of the erased entry remain", hashes)
		}
	})

	t.Run("ListExportsAndPreview", func(t *testing.T) {
		var ids []uint64
		for tok := ""; ; {
			resp, err := s.res.research.ListExports(ctx, &diaryv1.ListExportsRequest{PageSize: 3, PageToken: tok})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range resp.GetExports() {
				ids = append(ids, m.GetExportId())
			}
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		if len(ids) < 8 || !slices.IsSortedFunc(ids, func(a, b uint64) int { return int(b) - int(a) }) {
			t.Errorf("listed exports %v, want every export, newest first", ids)
		}
		resp, err := s.res.research.PreviewExport(ctx, &diaryv1.PreviewExportRequest{Export: &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_CSV}})
		if err != nil {
			t.Fatal(err)
		}
		if m := resp.GetManifest(); m.GetExportId() != 0 || m.GetEntries() != 4 || !m.GetRedactionEnabled() {
			t.Errorf("preview %v", m)
		}
		_, err = s.res.research.PreviewExport(ctx, &diaryv1.PreviewExportRequest{Export: &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_JSONL, Bom: true}})
		wantCode(t, err, connect.CodeInvalidArgument)
	})
}
