package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/storetest"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/emptypb"
)

// hostileStrings are the SQL metacharacters and path separators every
// string field of every RPC is tried with. The store binds every value as
// a parameter and never builds a path from one, so each is either
// refused by the field's own rules or stored and read back byte for byte.
var hostileStrings = []struct{ name, s string }{
	{"SQLDrop", "'; DROP TABLE users;--"},
	{"SQLOr", `" OR 1=1`},
	{"SQLPercent", "%"},
	{"SQLUnderscore", "_"},
	{"PathParent", "../../etc/passwd"},
	{"PathBackslash", `\\`},
	{"NUL", "a\x00b"},
}

// snapshot holds every row of every table of the store, as text: what a
// refused call must leave exactly as it was. The enrolment attempts are
// left out: spending one is what every Enroll call, refused or not, is
// meant to do.
func snapshot(tb testing.TB, db *storetest.Store) map[string][]string {
	tb.Helper()
	tablesQuery := `SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'enroll_attempts' ORDER BY name`
	if onPostgres(db) {
		tablesQuery = `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'enroll_attempts' ORDER BY tablename`
	}
	rows, err := rawDB(db).Query(tablesQuery)
	if err != nil {
		tb.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			tb.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) < 10 {
		tb.Fatalf("the store has only the tables %v", tables)
	}
	out := map[string][]string{}
	for _, table := range tables {
		rows, err := rawDB(db).Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			tb.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		lines := []string{}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				tb.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("%q", vals))
		}
		rows.Close()
		slices.Sort(lines)
		out[table] = lines
	}
	return out
}

// changedTables returns the tables whose rows differ between two
// snapshots.
func changedTables(before, after map[string][]string) []string {
	var out []string
	for table, rows := range after {
		if !slices.Equal(before[table], rows) {
			out = append(out, table)
		}
	}
	slices.Sort(out)
	return out
}

// rawMessage is a request sent as the bytes given: what a broken or
// hostile client sends, and proto.Marshal refuses to write (invalid
// UTF-8 in a string field).
type rawMessage []byte

// rawCodec sends a rawMessage as is and decodes answers as protobuf.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	if r, ok := v.(*rawMessage); ok {
		return *r, nil
	}
	return proto.Marshal(v.(proto.Message))
}

func (rawCodec) Unmarshal(b []byte, v any) error { return proto.Unmarshal(b, v.(proto.Message)) }

// rawCall calls a unary procedure with the given request bytes.
func (ts *testServer) rawCall(ctx context.Context, auth, procedure string, body []byte) error {
	c := connect.NewClient[rawMessage, emptypb.Empty](ts.http.Client(), ts.URL+procedure,
		connect.WithCodec(rawCodec{}), connect.WithInterceptors(authHeader(auth)))
	m := rawMessage(body)
	_, err := c.CallUnary(ctx, connect.NewRequest(&m))
	return err
}

// rawServerStream calls a server-streaming procedure with the given
// request bytes and reads the stream to its end.
func (ts *testServer) rawServerStream(ctx context.Context, auth, procedure string, body []byte) error {
	c := connect.NewClient[rawMessage, emptypb.Empty](ts.http.Client(), ts.URL+procedure,
		connect.WithCodec(rawCodec{}), connect.WithInterceptors(authHeader(auth)))
	m := rawMessage(body)
	s, err := c.CallServerStream(ctx, connect.NewRequest(&m))
	if err != nil {
		return err
	}
	defer s.Close()
	for s.Receive() {
	}
	return s.Err()
}

// jsonCall calls a unary procedure in the Connect protocol with a JSON
// body as given, as a browser or curl would, and returns the error the
// server answered (nil for 200 OK).
func (ts *testServer) jsonCall(ctx context.Context, auth, procedure string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+procedure, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := ts.http.Client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var wire struct{ Code, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&wire); err != nil {
		return fmt.Errorf("HTTP %s with a body that is not a Connect error: %w", resp.Status, err)
	}
	var code connect.Code
	if err := code.UnmarshalText([]byte(wire.Code)); err != nil {
		return fmt.Errorf("HTTP %s with code %q: %w", resp.Status, wire.Code, err)
	}
	return connect.NewError(code, errors.New(wire.Message))
}

// rawGoError lists what only a raw Go error says: a message that holds one
// was not written for a person.
// (connect itself puts "unmarshal message: " before a decode error, which
// is why that alone is let through.)
var rawGoError = []string{"*v1.", "*diaryv1.", "proto:", "unmarshal into", "sql:", "SQL logic", "sqlite", "%!", "goroutine", "runtime error", "internal error"}

// outcome is what a call answered.
type outcome struct {
	err     error
	results []*diaryv1.ChangeResult // a push's, when the call was accepted
}

// hostileCase is one hostile input to one RPC and what the server must
// answer. A call refused as a whole has code and phrase. A push accepted as
// a whole has its first applied changes applied and the rest refused for
// reason, each message holding phrase. Either way, only the tables in
// stores may change, and readBack checks that what was stored reads back
// byte for byte.
type hostileCase struct {
	rpc, input string
	prepare    func(t *testing.T) // runs before the snapshot
	do         func(ctx context.Context) outcome
	code       connect.Code // 0: the call is accepted
	reason     diaryv1.RefusalReason
	applied    int
	phrase     string
	stores     []string
	readBack   func(t *testing.T)
}

func pushOutcome(resp *diaryv1.PushResponse, err error) outcome {
	return outcome{err: err, results: resp.GetResults()}
}

func errOutcome[T any](_ T, err error) outcome { return outcome{err: err} }

// TestHostileInput sends what a hostile or broken client might to every
// RPC through a real server: oversized requests and fields, more changes
// than a push may hold, invalid UTF-8 in every string field, thousands of
// tags, another navigator's entry, revoked and malformed tokens, replayed
// and brute-forced enrolment codes, and SQL metacharacters and path
// separators in every string field. Each gets the right code and a
// message a person understands, and leaves nothing stored; a value that
// is merely odd (a title holding SQL) is stored and reads back byte for
// byte.
func TestHostileInput(t *testing.T) {
	ctx := context.Background()
	// Wrong enrolment codes are sent on purpose below: the limit is high
	// enough for them, and the brute-force case comes from another
	// address.
	const enrollFailures = 100
	ts := newTestServer(t, Config{Heartbeat: time.Hour, Store: MustOpenDBWith(t, storetest.Options{EnrollLimit: study.AttemptLimit{Burst: enrollFailures, Refill: time.Hour}})})
	db := ts.DB
	adminDev := MustEnrollDevice(t, db, study.RoleAdmin, "ADMIN")
	navDev := MustEnrollDevice(t, db, study.RoleNavigator, "PN-A")
	otherDev := MustEnrollDevice(t, db, study.RoleNavigator, "PN-B")
	supDev := MustEnrollDevice(t, db, study.RoleSupervisor, "SUP-1")
	resDev := MustEnrollDevice(t, db, study.RoleResearcher, "RES-1")
	MustAssign(t, db, "SUP-1", "PN-A")
	revokedDev := MustEnrollDevice(t, db, study.RoleNavigator, "PN-A")
	if _, err := db.RevokeDevice(ctx, revokedDev.Device); err != nil {
		t.Fatal(err)
	}
	goneDev := MustEnrollDevice(t, db, study.RoleNavigator, "PN-GONE")
	if _, _, err := db.DeactivateUser(ctx, "PN-GONE"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateWave(ctx, study.Wave{Number: 1, Label: "Baseline", Start: "2026-01-01", End: "2026-03-31"}); err != nil {
		t.Fatal(err)
	}
	usedCode, _, err := db.IssueEnrollmentCode(ctx, "PN-A", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Enroll(ctx, study.EnrollRequest{Code: usedCode, DeviceName: "enrolled once"}); err != nil {
		t.Fatal(err)
	}

	admin, nav, sup, res, anon := ts.clients(bearer(adminDev.Token)), ts.clients(bearer(navDev.Token)), ts.clients(bearer(supDev.Token)), ts.clients(bearer(resDev.Token)), ts.clients("")
	navW, otherW, supW := newWriter(navDev), newWriter(otherDev), newWriter(supDev)
	shared, changes := navW.newEntry("Shared", "shared with SUP-1", true, false)
	mustPush(t, nav, changes...)
	othersEntry, changes := otherW.newEntry("B's", "PN-B's own", false, false)
	mustPush(t, ts.clients(bearer(otherDev.Token)), changes...)
	full := syncengine.NewEntryID()
	changes = []*diaryv1.Change{navW.change(full, syncengine.Change{Field: syncengine.FieldTitle, Text: "full of tags"})}
	for i := range syncengine.MaxTags {
		changes = append(changes, navW.change(full, syncengine.Change{Field: syncengine.FieldTag, Tag: fmt.Sprint("tag-", i), Flag: true}))
	}
	mustPush(t, nav, changes...)

	// Calls the cases are made of.
	push := func(c *clients, changes ...*diaryv1.Change) func(context.Context) outcome {
		return func(ctx context.Context) outcome {
			return pushOutcome(c.sync.Push(ctx, &diaryv1.PushRequest{Changes: changes}))
		}
	}
	edit := func(p *diaryv1.Change, f func(*diaryv1.Change)) *diaryv1.Change { f(p); return p }
	pulled := func(t *testing.T, c *clients, id syncengine.EntryID) *diaryv1.Entry {
		t.Helper()
		e := pullAll(t, c, 0).entries[id.String()]
		if e == nil {
			t.Fatalf("entry %s is not pulled back", id)
		}
		return e
	}
	userNamed := func(t *testing.T, code string) *diaryv1.User {
		t.Helper()
		resp, err := admin.admin.ListUsers(ctx, &diaryv1.ListUsersRequest{PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range resp.GetUsers() {
			if u.GetStudyCode() == code {
				return u
			}
		}
		t.Fatalf("no user %q is listed", code)
		return nil
	}
	waveNumbered := func(t *testing.T, n uint32) *diaryv1.Wave {
		t.Helper()
		a, err := admin.admin.ListWaves(ctx, &diaryv1.ListWavesRequest{PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		r, err := res.research.ListWaves(ctx, &diaryv1.ResearchServiceListWavesRequest{PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range a.GetWaves() {
			if w.GetNumber() == n {
				if !proto.Equal(w, r.GetWaves()[i]) {
					t.Fatalf("wave %d: admin sees %v, research %v", n, w, r.GetWaves()[i])
				}
				return w
			}
		}
		t.Fatalf("no wave %d is listed", n)
		return nil
	}
	freshCode := func(t *testing.T) string {
		t.Helper()
		c, _, err := db.IssueEnrollmentCode(ctx, "PN-A", 0)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var cases []hostileCase

	// Tokens: every way a bearer token can be wrong, on a sync call, an
	// admin call and a stream.
	device, secret, _ := study.ParseToken(navDev.Token)
	tokens := []struct{ name, auth, phrase string }{
		{"NoHeader", "", `missing "Authorization: Bearer`},
		{"BasicAuth", "Basic dXNlcjpwYXNzd29yZA==", `missing "Authorization: Bearer`},
		{"Empty", "Bearer ", "the device token is not valid"},
		{"Garbage", "Bearer garbage", "the device token is not valid"},
		{"WrongPrefix", "Bearer ds2." + device + "." + secret, "the device token is not valid"},
		{"NoSecret", "Bearer ds1." + device, "the device token is not valid"},
		{"WrongSecret", "Bearer ds1." + device + "." + strings.Repeat("A", len(secret)), "the device token is not valid"},
		{"OtherDevicesSecret", "Bearer ds1." + otherDev.Device + "." + secret, "the device token is not valid"},
		{"SQLDevice", "Bearer ds1." + fmt.Sprintf("%-36s", "' OR '1'='1' --") + "." + secret, "the device token is not valid"},
		{"ExtremelyLong", "Bearer ds1." + device + "." + strings.Repeat("s", 256<<10), "the device token is not valid"},
		{"Revoked", bearer(revokedDev.Token), "this device was revoked"},
		{"DeactivatedUser", bearer(goneDev.Token), "this account was deactivated"},
	}
	for _, tok := range tokens {
		c := ts.clients(tok.auth)
		for _, call := range []struct {
			rpc string
			do  func(context.Context) outcome
		}{
			{"Pull", func(ctx context.Context) outcome { return errOutcome(c.sync.Pull(ctx, &diaryv1.PullRequest{})) }},
			{"ListUsers", func(ctx context.Context) outcome {
				return errOutcome(c.admin.ListUsers(ctx, &diaryv1.ListUsersRequest{}))
			}},
			{"Subscribe", func(ctx context.Context) outcome {
				ctx, cancel := context.WithCancel(ctx)
				defer cancel()
				s, err := c.sync.Subscribe(ctx, &diaryv1.SubscribeRequest{})
				if err != nil {
					return outcome{err: err}
				}
				defer s.Close()
				if s.Receive() {
					return outcome{err: errors.New("a stream opened")}
				}
				return outcome{err: s.Err()}
			}},
		} {
			cases = append(cases, hostileCase{rpc: call.rpc, input: "Token" + tok.name, do: call.do, code: connect.CodeUnauthenticated, phrase: tok.phrase})
		}
	}
	cases = append(cases, hostileCase{rpc: "ListUsers", input: "NavigatorToken",
		do: func(ctx context.Context) outcome {
			return errOutcome(nav.admin.ListUsers(ctx, &diaryv1.ListUsersRequest{}))
		},
		code: connect.CodePermissionDenied, phrase: "a navigator may not call"})

	// Enrolment codes: replayed, wrong, and guessed until the limit.
	cases = append(cases,
		hostileCase{rpc: "Enroll", input: "ReplayedCode",
			do: func(ctx context.Context) outcome {
				return errOutcome(anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: usedCode}))
			},
			code: connect.CodeUnauthenticated, phrase: "already used"},
		hostileCase{rpc: "Enroll", input: "CodeTooLong",
			do: func(ctx context.Context) outcome {
				return errOutcome(anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: strings.Repeat("A", 1<<10)}))
			},
			code: connect.CodeUnauthenticated, phrase: "this enrolment code is not valid"},
	)
	var goodCode string
	cases = append(cases, hostileCase{rpc: "Enroll", input: "BruteForce",
		// From an address of its own, every wrong guess spends one attempt;
		// then even the right code is refused, with when to try again.
		prepare: func(t *testing.T) { goodCode = freshCode(t) },
		do: func(ctx context.Context) outcome {
			tr := ts.http.Client().Transport.(*http.Transport).Clone()
			tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext
			guesser := ts.clientsOver(&http.Client{Transport: tr}, "")
			for i := range enrollFailures {
				// Well-formed guesses, so that each is looked up.
				guess := []byte("AAAAA-AAAAA")
				for k, n := len(guess)-1, i; n > 0; k, n = k-1, n/len(study.CodeAlphabet) {
					guess[k] = study.CodeAlphabet[n%len(study.CodeAlphabet)]
				}
				_, err := guesser.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: string(guess)})
				if connect.CodeOf(err) != connect.CodeUnauthenticated {
					return outcome{err: fmt.Errorf("guess %d: %w", i, err)}
				}
			}
			return errOutcome(guesser.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: goodCode}))
		},
		code: connect.CodeResourceExhausted, phrase: "too many wrong enrolment codes from this address: try again in"})

	// Writing what is not one's own, and thousands of tags.
	cases = append(cases,
		hostileCase{rpc: "Push", input: "AnotherNavigatorsEntry", do: push(nav, navW.change(othersEntry, syncengine.Change{Field: syncengine.FieldTitle, Text: "mine now"})),
			reason: diaryv1.RefusalReason_REFUSAL_REASON_NOT_AUTHOR, phrase: "belongs to another navigator"},
		hostileCase{rpc: "Push", input: "SupervisorWritingTitle", do: push(sup, supW.change(shared, syncengine.Change{Field: syncengine.FieldTitle, Text: "better"})),
			reason: diaryv1.RefusalReason_REFUSAL_REASON_NOT_PERMITTED, phrase: "supervisors can write feedback, not entries"},
		hostileCase{rpc: "Push", input: "FeedbackOnUnsharedEntry", do: push(sup, supW.change(othersEntry, syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: syncengine.NewFeedbackID(), Text: "?"})),
			// The refusal is kept so the same change sent again gets it again.
			reason: diaryv1.RefusalReason_REFUSAL_REASON_NOT_PERMITTED, phrase: "not shared with you", stores: []string{"refusals"}},
		hostileCase{rpc: "Push", input: "ThousandsOfTagsOnAFullEntry", do: func(ctx context.Context) outcome {
			var all []*diaryv1.ChangeResult
			for p := range 3 {
				var changes []*diaryv1.Change
				for i := range study.MaxPushChanges {
					changes = append(changes, navW.change(full, syncengine.Change{Field: syncengine.FieldTag, Tag: fmt.Sprintf("more-%d-%d", p, i), Flag: true}))
				}
				resp, err := nav.sync.Push(ctx, &diaryv1.PushRequest{Changes: changes})
				if err != nil {
					return outcome{err: err}
				}
				all = append(all, resp.GetResults()...)
			}
			return outcome{results: all}
		}, reason: diaryv1.RefusalReason_REFUSAL_REASON_TOO_LARGE, phrase: "entry has 50 tags; the limit is 50", stores: []string{"refusals"}},
	)
	manyTags := syncengine.NewEntryID()
	cases = append(cases, hostileCase{rpc: "Push", input: "AThousandTagsOnANewEntry",
		do: func(ctx context.Context) outcome {
			changes := []*diaryv1.Change{navW.change(manyTags, syncengine.Change{Field: syncengine.FieldTitle, Text: "many tags"})}
			for i := range study.MaxPushChanges - 1 {
				changes = append(changes, navW.change(manyTags, syncengine.Change{Field: syncengine.FieldTag, Tag: fmt.Sprint("t", i), Flag: true}))
			}
			return pushOutcome(nav.sync.Push(ctx, &diaryv1.PushRequest{Changes: changes}))
		},
		applied: 1 + syncengine.MaxTags, reason: diaryv1.RefusalReason_REFUSAL_REASON_TOO_LARGE, phrase: "the limit is 50",
		stores: []string{"devices", "entries", "history", "sequence", "refusals"},
		readBack: func(t *testing.T) {
			if n := len(pulled(t, nav, manyTags).GetTags()); n != syncengine.MaxTags {
				t.Fatalf("the entry holds %d tags, want the first %d", n, syncengine.MaxTags)
			}
		}})

	// Oversized requests and fields.
	big := strings.Repeat("b", MaxRequestBytes+1)
	cases = append(cases,
		hostileCase{rpc: "Push", input: "MoreThan1000Changes", do: func(ctx context.Context) outcome {
			changes := make([]*diaryv1.Change, study.MaxPushChanges+1)
			id := syncengine.NewEntryID()
			for i := range changes {
				changes[i] = navW.change(id, syncengine.Change{Field: syncengine.FieldMood, Number: 1})
			}
			return pushOutcome(nav.sync.Push(ctx, &diaryv1.PushRequest{Changes: changes}))
		}, code: connect.CodeResourceExhausted, phrase: "a push may carry at most 1000 changes; this one has 1001"},
		hostileCase{rpc: "Push", input: "RequestOver4MiB", do: push(nav, navW.change(syncengine.NewEntryID(), syncengine.Change{Field: syncengine.FieldBody, Text: big})),
			code: connect.CodeResourceExhausted, phrase: "larger than configured max 4194304"},
		hostileCase{rpc: "Push", input: "CompressedRequestOver4MiB", do: func(ctx context.Context) outcome {
			// 20 MiB that gzip makes tiny: the limit holds after decompression.
			c := ts.clients(bearer(navDev.Token), connect.WithSendGzip())
			p := navW.change(syncengine.NewEntryID(), syncengine.Change{Field: syncengine.FieldBody, Text: strings.Repeat("z", 20<<20)})
			return pushOutcome(c.sync.Push(ctx, &diaryv1.PushRequest{Changes: []*diaryv1.Change{p}}))
		}, code: connect.CodeResourceExhausted, phrase: "larger than configured max 4194304"},
		hostileCase{rpc: "CreateUser", input: "RequestOver4MiB", do: func(ctx context.Context) outcome {
			return errOutcome(admin.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: "PN-BIG", Role: diaryv1.Role_ROLE_NAVIGATOR, DisplayName: big}))
		}, code: connect.CodeResourceExhausted, phrase: "larger than configured max 4194304"},
		hostileCase{rpc: "Enroll", input: "RequestOver4MiB", prepare: func(t *testing.T) { goodCode = freshCode(t) }, do: func(ctx context.Context) outcome {
			return errOutcome(anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: goodCode, DeviceName: big}))
		}, code: connect.CodeResourceExhausted, phrase: "larger than configured max 4194304"},
		hostileCase{rpc: "Push", input: "Title1025Bytes", do: push(nav, navW.change(syncengine.NewEntryID(), syncengine.Change{Field: syncengine.FieldTitle, Text: strings.Repeat("t", syncengine.MaxTitleBytes+1)})),
			reason: diaryv1.RefusalReason_REFUSAL_REASON_TOO_LARGE, phrase: "title is 1025 bytes; the limit is 1024 bytes"},
		hostileCase{rpc: "Push", input: "BodyOver256KiB", do: push(nav, navW.change(syncengine.NewEntryID(), syncengine.Change{Field: syncengine.FieldBody, Text: strings.Repeat("b", syncengine.MaxBodyBytes+1)})),
			reason: diaryv1.RefusalReason_REFUSAL_REASON_TOO_LARGE, phrase: "the limit is 262144 bytes"},
		hostileCase{rpc: "Push", input: "Tag65Bytes", do: push(nav, navW.change(syncengine.NewEntryID(), syncengine.Change{Field: syncengine.FieldTag, Tag: strings.Repeat("t", syncengine.MaxTagBytes+1), Flag: true})),
			reason: diaryv1.RefusalReason_REFUSAL_REASON_TOO_LARGE, phrase: "tag is 65 bytes; the limit is 64 bytes"},
		hostileCase{rpc: "Push", input: "FeedbackOver8KiB", do: push(sup, supW.change(shared, syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: syncengine.NewFeedbackID(), Text: strings.Repeat("f", syncengine.MaxFeedbackBodyBytes+1)})),
			reason: diaryv1.RefusalReason_REFUSAL_REASON_TOO_LARGE, phrase: "the limit is 8192 bytes"},
		hostileCase{rpc: "Enroll", input: "DeviceName65Bytes", prepare: func(t *testing.T) { goodCode = freshCode(t) }, do: func(ctx context.Context) outcome {
			return errOutcome(anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: goodCode, DeviceName: strings.Repeat("d", study.MaxDeviceNameBytes+1)}))
		}, code: connect.CodeResourceExhausted, phrase: "device name is 65 bytes; the limit is 64 bytes"},
		hostileCase{rpc: "CreateUser", input: "DisplayName129Bytes", do: func(ctx context.Context) outcome {
			return errOutcome(admin.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: "PN-LONG", Role: diaryv1.Role_ROLE_NAVIGATOR, DisplayName: strings.Repeat("n", study.MaxDisplayNameBytes+1)}))
		}, code: connect.CodeResourceExhausted, phrase: "display name is 129 bytes; the limit is 128 bytes"},
		hostileCase{rpc: "CreateUser", input: "StudyCode33Bytes", do: func(ctx context.Context) outcome {
			return errOutcome(admin.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: strings.Repeat("P", syncengine.MaxAuthorBytes+1), Role: diaryv1.Role_ROLE_NAVIGATOR}))
		}, code: connect.CodeInvalidArgument, phrase: "study code must be 1 to 32 characters"},
		hostileCase{rpc: "CreateWave", input: "Label129Bytes", do: func(ctx context.Context) outcome {
			return errOutcome(admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: &diaryv1.Wave{Number: 2, Label: strings.Repeat("l", study.MaxWaveLabelBytes+1), StartDate: "2027-01-01", EndDate: "2027-02-01"}}))
		}, code: connect.CodeResourceExhausted, phrase: "wave label is 129 bytes; the limit is 128 bytes"},
		hostileCase{rpc: "ListUsers", input: "PageTokenTooLong", do: func(ctx context.Context) outcome {
			return errOutcome(admin.admin.ListUsers(ctx, &diaryv1.ListUsersRequest{PageToken: base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte("u"), 300))}))
		}, code: connect.CodeInvalidArgument, phrase: "page token is not one this server issued"},
	)

	// Invalid UTF-8 in every string field of every unary RPC, found by
	// walking the request messages, so that a field added later is
	// covered too. proto.Marshal refuses to write such a request; a
	// hostile client writes it anyway.
	auths := map[string]string{
		diaryv1connect.SyncServiceName:     bearer(navDev.Token),
		diaryv1connect.AdminServiceName:    bearer(adminDev.Token),
		diaryv1connect.ResearchServiceName: bearer(resDev.Token),
		diaryv1connect.DeviceServiceName:   "",
	}
	for _, proc := range apiProcedures(t) {
		m := methodOf(t, proc)
		if m.IsStreamingClient() {
			if stringFields(m.Input(), "") != nil {
				t.Fatalf("%s streams requests and has string fields: cover it here", proc)
			}
			continue
		}
		call := ts.rawCall
		if m.IsStreamingServer() {
			call = ts.rawServerStream
		}
		for _, path := range stringFields(m.Input(), "") {
			const placeholder = "bad?utf8" // as long as its invalid twin
			req := dynamicRequest(m.Input(), path, placeholder)
			b, err := proto.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			b = bytes.Replace(b, []byte(placeholder), []byte("bad\xffutf8"), 1)
			auth := auths[string(m.Parent().FullName())]
			cases = append(cases, hostileCase{rpc: string(m.Parent().Name()) + "." + string(m.Name()), input: "InvalidUTF8In_" + path,
				do:   func(ctx context.Context) outcome { return outcome{err: call(ctx, auth, proc, b)} },
				code: connect.CodeInvalidArgument, phrase: "the request's " + path + " field is not valid UTF-8 text"})
		}
	}

	// The same over Connect's JSON encoding, which browsers and curl use.
	cases = append(cases,
		hostileCase{rpc: "Push", input: "JSONSyntaxError", do: func(ctx context.Context) outcome {
			return outcome{err: ts.jsonCall(ctx, bearer(navDev.Token), diaryv1connect.SyncServicePushProcedure, []byte(`{"changes": [{"entryId": `))}
		}, code: connect.CodeInvalidArgument, phrase: "the request is not valid JSON for diary.v1.PushRequest"},
		hostileCase{rpc: "Push", input: "JSONWrongType", do: func(ctx context.Context) outcome {
			return outcome{err: ts.jsonCall(ctx, bearer(navDev.Token), diaryv1connect.SyncServicePushProcedure, []byte(`{"changes": [{"text": 5}]}`))}
		}, code: connect.CodeInvalidArgument, phrase: "the request is not valid JSON for diary.v1.PushRequest"},
		hostileCase{rpc: "CreateUser", input: "JSONInvalidUTF8", do: func(ctx context.Context) outcome {
			return outcome{err: ts.jsonCall(ctx, bearer(adminDev.Token), diaryv1connect.AdminServiceCreateUserProcedure, []byte("{\"studyCode\": \"PN-J\", \"role\": \"ROLE_NAVIGATOR\", \"displayName\": \"bad \xff\"}"))}
		}, code: connect.CodeInvalidArgument, phrase: "invalid UTF-8"},
		hostileCase{rpc: "Enroll", input: "JSONEmptyBody", do: func(ctx context.Context) outcome {
			return outcome{err: ts.jsonCall(ctx, "", diaryv1connect.DeviceServiceEnrollProcedure, nil)}
		}, code: connect.CodeInvalidArgument, phrase: "the request is empty"},
	)

	// SQL metacharacters and path separators in every string field of
	// every RPC that takes strings.
	studyLookup := func(s string) (connect.Code, string) {
		if s == "_" { // a valid study code that nobody has
			return connect.CodeNotFound, `no user has the study code "_"`
		}
		return connect.CodeInvalidArgument, "may hold only letters, digits"
	}
	n := 0
	for _, h := range hostileStrings {
		s := h.s
		isNUL := strings.ContainsRune(s, 0)
		n++
		code, phrase := studyLookup(s)
		lookups := []struct {
			rpc string
			do  func(context.Context) outcome
		}{
			{"DeactivateUser", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.DeactivateUser(ctx, &diaryv1.DeactivateUserRequest{StudyCode: s}))
			}},
			{"AssignNavigator.supervisor_code", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.AssignNavigator(ctx, &diaryv1.AssignNavigatorRequest{SupervisorCode: s, NavigatorCode: "PN-A"}))
			}},
			{"AssignNavigator.navigator_code", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.AssignNavigator(ctx, &diaryv1.AssignNavigatorRequest{SupervisorCode: "SUP-1", NavigatorCode: s}))
			}},
			{"UnassignNavigator.supervisor_code", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.UnassignNavigator(ctx, &diaryv1.UnassignNavigatorRequest{SupervisorCode: s, NavigatorCode: "PN-A"}))
			}},
			{"UnassignNavigator.navigator_code", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.UnassignNavigator(ctx, &diaryv1.UnassignNavigatorRequest{SupervisorCode: "SUP-1", NavigatorCode: s}))
			}},
			{"ListAssignments.supervisor_code", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.ListAssignments(ctx, &diaryv1.ListAssignmentsRequest{SupervisorCode: s}))
			}},
			{"IssueEnrollmentCode", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: s}))
			}},
			{"ListDevices.study_code", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.ListDevices(ctx, &diaryv1.ListDevicesRequest{StudyCode: s}))
			}},
			{"EraseNavigator", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.EraseNavigator(ctx, &diaryv1.EraseNavigatorRequest{StudyCode: s}))
			}},
		}
		for _, l := range lookups {
			cases = append(cases, hostileCase{rpc: l.rpc, input: h.name, do: l.do, code: code, phrase: phrase})
		}
		pageTokens := []struct {
			rpc string
			do  func(context.Context) outcome
		}{
			{"ListUsers", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.ListUsers(ctx, &diaryv1.ListUsersRequest{PageToken: s}))
			}},
			{"ListAssignments", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.ListAssignments(ctx, &diaryv1.ListAssignmentsRequest{PageToken: s}))
			}},
			{"ListDevices", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.ListDevices(ctx, &diaryv1.ListDevicesRequest{PageToken: s}))
			}},
			{"ListWaves", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.ListWaves(ctx, &diaryv1.ListWavesRequest{PageToken: s}))
			}},
			{"ListAuditEvents", func(ctx context.Context) outcome {
				return errOutcome(admin.admin.ListAuditEvents(ctx, &diaryv1.ListAuditEventsRequest{PageToken: s}))
			}},
			{"ResearchService.ListWaves", func(ctx context.Context) outcome {
				return errOutcome(res.research.ListWaves(ctx, &diaryv1.ResearchServiceListWavesRequest{PageToken: s}))
			}},
		}
		for _, p := range pageTokens {
			cases = append(cases, hostileCase{rpc: p.rpc + ".page_token", input: h.name, do: p.do,
				code: connect.CodeInvalidArgument, phrase: "page token is not one this server issued"})
		}
		// The same text, well encoded as a page token: paging from an
		// odd position is harmless, or refused where positions are
		// numbers.
		encoded := base64.RawURLEncoding.EncodeToString([]byte(s))
		cases = append(cases,
			hostileCase{rpc: "ListUsers.page_token", input: h.name + "Base64", do: func(ctx context.Context) outcome {
				return errOutcome(admin.admin.ListUsers(ctx, &diaryv1.ListUsersRequest{PageToken: encoded}))
			}},
			hostileCase{rpc: "ListDevices.page_token", input: h.name + "Base64", do: func(ctx context.Context) outcome {
				return errOutcome(admin.admin.ListDevices(ctx, &diaryv1.ListDevicesRequest{PageToken: encoded}))
			}, code: connect.CodeInvalidArgument, phrase: "page token is not one this server issued"},
			hostileCase{rpc: "ListAssignments.page_token", input: h.name + "Base64", do: func(ctx context.Context) outcome {
				return errOutcome(admin.admin.ListAssignments(ctx, &diaryv1.ListAssignmentsRequest{PageToken: encoded}))
			}, code: connect.CodeInvalidArgument, phrase: "page token is not one this server issued"},
		)
		cases = append(cases,
			hostileCase{rpc: "RevokeDevice", input: h.name, do: func(ctx context.Context) outcome {
				return errOutcome(admin.admin.RevokeDevice(ctx, &diaryv1.RevokeDeviceRequest{DeviceId: s}))
			}, code: connect.CodeInvalidArgument, phrase: "is not a device id"},
			hostileCase{rpc: "EraseEntry", input: h.name, do: func(ctx context.Context) outcome {
				return errOutcome(admin.admin.EraseEntry(ctx, &diaryv1.EraseEntryRequest{EntryId: s}))
			}, code: connect.CodeInvalidArgument, phrase: "is not a UUID in its 36-character form"},
			hostileCase{rpc: "Enroll.code", input: h.name, do: func(ctx context.Context) outcome {
				return errOutcome(anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: s, DeviceName: "phone"}))
			}, code: connect.CodeUnauthenticated, phrase: "this enrolment code is not valid"},
			hostileCase{rpc: "CreateWave.start_date", input: h.name, do: func(ctx context.Context) outcome {
				return errOutcome(admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: &diaryv1.Wave{Number: 50, Label: "x", StartDate: s, EndDate: "2030-01-01"}}))
			}, code: connect.CodeInvalidArgument, phrase: "wave start"},
			hostileCase{rpc: "CreateWave.end_date", input: h.name, do: func(ctx context.Context) outcome {
				return errOutcome(admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: &diaryv1.Wave{Number: 50, Label: "x", StartDate: "2030-01-01", EndDate: s}}))
			}, code: connect.CodeInvalidArgument, phrase: "wave end"},
			hostileCase{rpc: "UpdateWave.start_date", input: h.name, do: func(ctx context.Context) outcome {
				return errOutcome(admin.admin.UpdateWave(ctx, &diaryv1.UpdateWaveRequest{Wave: &diaryv1.Wave{Number: 1, Label: "x", StartDate: s, EndDate: "2026-03-31"}}))
			}, code: connect.CodeInvalidArgument, phrase: "wave start"},
			hostileCase{rpc: "UpdateWave.end_date", input: h.name, do: func(ctx context.Context) outcome {
				return errOutcome(admin.admin.UpdateWave(ctx, &diaryv1.UpdateWaveRequest{Wave: &diaryv1.Wave{Number: 1, Label: "x", StartDate: "2026-01-01", EndDate: s}}))
			}, code: connect.CodeInvalidArgument, phrase: "wave end"},
		)

		// Push: fields that must parse are refused; text is stored as
		// written unless it holds a control character.
		refused := func(field, phrase string, c *clients, p *diaryv1.Change) hostileCase {
			return hostileCase{rpc: "Push." + field, input: h.name, do: push(c, p), reason: diaryv1.RefusalReason_REFUSAL_REASON_INVALID, phrase: phrase}
		}
		cases = append(cases,
			refused("date", "is not written YYYY-MM-DD", nav, navW.change(syncengine.NewEntryID(), syncengine.Change{Field: syncengine.FieldDate, Text: s})),
			refused("entry_id", "is not a UUID in its 36-character form", nav, edit(navW.change(syncengine.NewEntryID(), syncengine.Change{Field: syncengine.FieldTitle, Text: "t"}), func(p *diaryv1.Change) { p.EntryId = s })),
			refused("replica_id", "is not a UUID in its 36-character form", nav, edit(navW.change(syncengine.NewEntryID(), syncengine.Change{Field: syncengine.FieldTitle, Text: "t"}), func(p *diaryv1.Change) { p.ReplicaId = s })),
			refused("feedback_id", "is not a UUID in its 36-character form", sup, edit(supW.change(shared, syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: syncengine.NewFeedbackID(), Text: "t"}), func(p *diaryv1.Change) { p.FeedbackId = s })),
		)
		textField := func(field string, f syncengine.Field, read func(*diaryv1.Entry) string) {
			id := syncengine.NewEntryID()
			c := syncengine.Change{Field: f, Text: s}
			if f == syncengine.FieldTag {
				c = syncengine.Change{Field: f, Tag: s, Flag: true}
			}
			tc := hostileCase{rpc: "Push." + field, input: h.name, do: push(nav, navW.change(id, c))}
			if isNUL {
				tc.reason, tc.phrase = diaryv1.RefusalReason_REFUSAL_REASON_INVALID, "contains the control character U+0000"
			} else {
				tc.applied, tc.stores = 1, []string{"devices", "entries", "history", "sequence"}
				tc.readBack = func(t *testing.T) {
					if got := read(pulled(t, nav, id)); got != s {
						t.Fatalf("%s reads back as %q, want %q", field, got, s)
					}
				}
			}
			cases = append(cases, tc)
		}
		textField("title", syncengine.FieldTitle, func(e *diaryv1.Entry) string { return e.GetTitle().GetValue() })
		textField("body", syncengine.FieldBody, func(e *diaryv1.Entry) string { return e.GetBody().GetValue() })
		textField("tag", syncengine.FieldTag, func(e *diaryv1.Entry) string { return e.GetTags()[0].GetName() })
		fb := syncengine.NewFeedbackID()
		tc := hostileCase{rpc: "Push.feedback", input: h.name, do: push(sup, supW.change(shared, syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: fb, Text: s}))}
		if isNUL {
			tc.reason, tc.phrase = diaryv1.RefusalReason_REFUSAL_REASON_INVALID, "contains the control character U+0000"
		} else {
			tc.applied, tc.stores = 1, []string{"entries", "feed", "history", "sequence"}
			tc.readBack = func(t *testing.T) {
				for _, f := range pulled(t, nav, shared).GetFeedback() {
					if f.GetId() == fb.String() {
						if f.GetBody().GetValue() != s {
							t.Fatalf("feedback reads back as %q, want %q", f.GetBody().GetValue(), s)
						}
						return
					}
				}
				t.Fatal("the feedback is not pulled back")
			}
		}
		cases = append(cases, tc)

		// Names and labels: stored as written unless they hold a
		// control character.
		stored := func(rpc string, do func(context.Context) outcome, stores []string, readBack func(t *testing.T)) {
			tc := hostileCase{rpc: rpc, input: h.name, do: do}
			if isNUL {
				tc.code, tc.phrase = connect.CodeInvalidArgument, "contains the control character U+0000"
			} else {
				tc.stores, tc.readBack = stores, readBack
			}
			cases = append(cases, tc)
		}
		userCode := fmt.Sprint("HX-", n)
		stored("CreateUser.display_name", func(ctx context.Context) outcome {
			return errOutcome(admin.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: userCode, Role: diaryv1.Role_ROLE_NAVIGATOR, DisplayName: s}))
		}, []string{"audit", "audit_subjects", "users"}, func(t *testing.T) {
			if got := userNamed(t, userCode).GetDisplayName(); got != s {
				t.Fatalf("display name reads back as %q, want %q", got, s)
			}
		})
		var enrolCode string
		deviceCase := hostileCase{}
		stored("Enroll.device_name", func(ctx context.Context) outcome {
			enr, err := anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: enrolCode, DeviceName: s})
			deviceCase.input = enr.GetDeviceId()
			return outcome{err: err}
		}, []string{"audit", "audit_subjects", "devices", "enrollment_codes"}, func(t *testing.T) {
			list, err := admin.admin.ListDevices(ctx, &diaryv1.ListDevicesRequest{StudyCode: "PN-A", PageSize: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range list.GetDevices() {
				if d.GetDeviceId() == deviceCase.input {
					if d.GetName() != s {
						t.Fatalf("device name reads back as %q, want %q", d.GetName(), s)
					}
					return
				}
			}
			t.Fatal("the new device is not listed")
		})
		cases[len(cases)-1].prepare = func(t *testing.T) { enrolCode = freshCode(t) }
		waveNumber, year := uint32(100+n), 2100+n
		stored("CreateWave.label", func(ctx context.Context) outcome {
			return errOutcome(admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: &diaryv1.Wave{Number: waveNumber, Label: s,
				StartDate: fmt.Sprintf("%d-01-01", year), EndDate: fmt.Sprintf("%d-12-31", year)}}))
		}, []string{"audit", "waves"}, func(t *testing.T) {
			if got := waveNumbered(t, waveNumber).GetLabel(); got != s {
				t.Fatalf("wave label reads back as %q, want %q", got, s)
			}
		})
		stored("UpdateWave.label", func(ctx context.Context) outcome {
			return errOutcome(admin.admin.UpdateWave(ctx, &diaryv1.UpdateWaveRequest{Wave: &diaryv1.Wave{Number: 1, Label: s, StartDate: "2026-01-01", EndDate: "2026-03-31"}}))
		}, []string{"audit", "waves"}, func(t *testing.T) {
			if got := waveNumbered(t, 1).GetLabel(); got != s {
				t.Fatalf("wave label reads back as %q, want %q", got, s)
			}
		})
	}
	// Study codes last: "_" is a valid one, and once it exists the
	// lookups above would find it.
	for _, h := range hostileStrings {
		s := h.s
		tc := hostileCase{rpc: "CreateUser.study_code", input: h.name, do: func(ctx context.Context) outcome {
			return errOutcome(admin.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: s, Role: diaryv1.Role_ROLE_NAVIGATOR}))
		}, code: connect.CodeInvalidArgument, phrase: "may hold only letters, digits"}
		if s == "_" {
			tc.code, tc.phrase, tc.stores = 0, "", []string{"audit", "audit_subjects", "users"}
			tc.readBack = func(t *testing.T) {
				if u, err := db.UserByCode(ctx, "_"); err != nil || u.StudyCode != "_" {
					t.Fatalf("user %q: %v, %v", s, u, err)
				}
			}
		}
		cases = append(cases, tc)
	}

	// Every case snapshots every table before and after; the cases that
	// leave thousands of rows behind (refusals of thousands of tags) go
	// last, so the snapshots of the others stay small.
	slices.SortStableFunc(cases, func(a, b hostileCase) int {
		last := func(c hostileCase) int {
			if strings.Contains(c.input, "Tags") {
				return 1
			}
			return 0
		}
		return cmp.Compare(last(a), last(b))
	})
	for _, tc := range cases {
		t.Run(tc.rpc+"/"+tc.input, func(t *testing.T) {
			if tc.prepare != nil {
				tc.prepare(t)
			}
			before := snapshot(t, db)
			out := tc.do(ctx)
			switch {
			case tc.code != 0:
				wantCode(t, out.err, tc.code)
				var ce *connect.Error
				if !errors.As(out.err, &ce) || !strings.Contains(ce.Message(), tc.phrase) {
					t.Fatalf("message %q does not say %q", out.err, tc.phrase)
				}
				for _, raw := range rawGoError {
					if strings.Contains(ce.Message(), raw) {
						t.Fatalf("message %q is a raw Go error (%q), not a sentence for a person", ce.Message(), raw)
					}
				}
			case out.err != nil:
				t.Fatalf("got %v, want the call accepted", out.err)
			default:
				for i, r := range out.results {
					if i < tc.applied {
						if r.GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED {
							t.Fatalf("change %d: %v %v %q, want applied", i, r.GetOutcome(), r.GetReason(), r.GetMessage())
						}
						continue
					}
					if r.GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_REFUSED || r.GetReason() != tc.reason || !strings.Contains(r.GetMessage(), tc.phrase) {
						t.Fatalf("change %d: %v %v %q, want refused: %v %q", i, r.GetOutcome(), r.GetReason(), r.GetMessage(), tc.reason, tc.phrase)
					}
				}
			}
			after := snapshot(t, db)
			for _, table := range changedTables(before, after) {
				if !slices.Contains(tc.stores, table) {
					t.Errorf("table %s changed: %d rows before, %d after", table, len(before[table]), len(after[table]))
				}
			}
			if tc.readBack != nil {
				tc.readBack(t)
			}
		})
	}
}

// methodOf returns the descriptor of a procedure ("/pkg.Service/Method").
func methodOf(tb testing.TB, procedure string) protoreflect.MethodDescriptor {
	tb.Helper()
	service, method, _ := strings.Cut(strings.TrimPrefix(procedure, "/"), "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		tb.Fatalf("%s: %v", procedure, err)
	}
	m := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(method))
	if m == nil {
		tb.Fatalf("no method for %s", procedure)
	}
	return m
}

// stringFields returns the paths ("wave.label", "changes.text") of the
// string fields of a message and of the messages it holds.
func stringFields(md protoreflect.MessageDescriptor, prefix string) []string {
	var out []string
	fields := md.Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		path := prefix + string(f.Name())
		switch {
		case f.Kind() == protoreflect.StringKind && !f.IsMap():
			out = append(out, path)
		case f.Kind() == protoreflect.MessageKind && !f.IsMap() && f.Message().ParentFile().Package() == "diary.v1":
			out = append(out, stringFields(f.Message(), path+".")...)
		}
	}
	return out
}

// dynamicRequest returns a message of type md whose field at path holds
// value, creating the messages on the way (one element of a list).
func dynamicRequest(md protoreflect.MessageDescriptor, path, value string) proto.Message {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil {
		panic(err) // every request type of the API is registered
	}
	msg := mt.New().Interface()
	m := msg.ProtoReflect()
	parts := strings.Split(path, ".")
	for i, name := range parts {
		f := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if i == len(parts)-1 {
			if f.IsList() {
				m.Mutable(f).List().Append(protoreflect.ValueOfString(value))
			} else {
				m.Set(f, protoreflect.ValueOfString(value))
			}
			break
		}
		if f.IsList() {
			l := m.Mutable(f).List()
			e := l.NewElement()
			l.Append(e)
			m = e.Message()
		} else {
			m = m.Mutable(f).Message()
		}
	}
	return msg
}
