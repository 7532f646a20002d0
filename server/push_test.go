package server

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/storetest"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

const (
	applied   = diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED
	duplicate = diaryv1.ChangeOutcome_CHANGE_OUTCOME_DUPLICATE
	refused   = diaryv1.ChangeOutcome_CHANGE_OUTCOME_REFUSED
)

// pushCase is one change of a push and what the server must answer.
type pushCase struct {
	name    string
	change  *diaryv1.Change
	outcome diaryv1.ChangeOutcome
	reason  diaryv1.RefusalReason
	message string // part of the refusal's message
}

// checkResults compares a push's results with the cases, index by index.
func checkResults(tb testing.TB, cases []pushCase, resp *diaryv1.PushResponse) {
	tb.Helper()
	if len(resp.GetResults()) != len(cases) {
		tb.Fatalf("%d results for %d changes", len(resp.GetResults()), len(cases))
	}
	for i, c := range cases {
		r := resp.GetResults()[i]
		if r.GetOutcome() != c.outcome || r.GetReason() != c.reason || !strings.Contains(r.GetMessage(), c.message) {
			tb.Errorf("%d %s: got %v %v %q, want %v %v %q", i, c.name, r.GetOutcome(), r.GetReason(), r.GetMessage(), c.outcome, c.reason, c.message)
		}
		if c.outcome != refused && r.GetMessage() != "" {
			tb.Errorf("%d %s: message %q on a change that was not refused", i, c.name, r.GetMessage())
		}
	}
}

func changesOf(cases []pushCase) []*diaryv1.Change {
	out := make([]*diaryv1.Change, len(cases))
	for i, c := range cases {
		out[i] = c.change
	}
	return out
}

// replayed is what the same cases must answer when pushed again: what
// was applied is now a duplicate, what was refused is refused again.
func replayed(cases []pushCase) []pushCase {
	out := make([]pushCase, len(cases))
	for i, c := range cases {
		out[i] = c
		if c.outcome == applied {
			out[i].outcome = duplicate
		}
	}
	return out
}

// storeState returns every entry's stored state and the number of
// history rows: what a replayed push must leave unchanged.
func storeState(tb testing.TB, db *storetest.Store) (map[string][]byte, int) {
	tb.Helper()
	rows, err := rawDB(db).Query(`SELECT id, seq, state FROM entries`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var id, state []byte
		var seq int64
		if err := rows.Scan(&id, &seq, &state); err != nil {
			tb.Fatal(err)
		}
		out[fmt.Sprintf("%x", id)] = append(state, fmt.Sprintf("@%d", seq)...)
	}
	var n, dups int
	if err := rawDB(db).QueryRow(`SELECT count(*) FROM history`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	if err := rawDB(db).QueryRow(`SELECT count(*) FROM (SELECT 1 FROM history GROUP BY device_id, clock HAVING count(*) > 1) AS dups`).Scan(&dups); err != nil {
		tb.Fatal(err)
	}
	if dups != 0 {
		tb.Fatalf("%d changes are in the history more than once", dups)
	}
	return out, n
}

// TestPush checks each outcome a pushed change can have, that refused
// changes never hold back valid ones in the same push, and that pushing
// the same changes again gives the same answers and changes nothing.
func TestPush(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, Config{})
	a := newWriter(MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A"))
	b := newWriter(MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-B"))
	s1 := newWriter(MustEnrollDevice(t, ts.DB, study.RoleSupervisor, "SUP-1"))
	s2 := newWriter(MustEnrollDevice(t, ts.DB, study.RoleSupervisor, "SUP-2"))
	for _, s := range []string{"SUP-1", "SUP-2"} {
		MustAssign(t, ts.DB, s, "PN-A")
	}
	ac, bc := ts.clients(bearer(a.Token)), ts.clients(bearer(b.Token))
	s1c, s2c := ts.clients(bearer(s1.Token)), ts.clients(bearer(s2.Token))

	shared, changes := a.newEntry("Shared", "shared with supervisors", true, false)
	mustPush(t, ac, changes...)
	private, changes := a.newEntry("Private", "not shared", false, false)
	mustPush(t, ac, changes...)
	ofB, changes := b.newEntry("B's", "shared by B, who has no supervisor", true, false)
	mustPush(t, bc, changes...)

	// One push from the navigator, valid and refused changes interleaved.
	fresh := syncengine.NewEntryID()
	set := func(w *writer, entry syncengine.EntryID, c syncengine.Change) *diaryv1.Change {
		return w.change(entry, c)
	}
	withProto := func(p *diaryv1.Change, edit func(*diaryv1.Change)) *diaryv1.Change { edit(p); return p }
	navCases := []pushCase{
		{name: "title", change: set(a, fresh, syncengine.Change{Field: syncengine.FieldTitle, Text: "Night shelter"}), outcome: applied},
		{name: "mood out of range", change: set(a, fresh, syncengine.Change{Field: syncengine.FieldMood, Number: 11}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_INVALID, message: "mood 11 is out of range"},
		{name: "malformed entry id", change: withProto(set(a, fresh, syncengine.Change{Field: syncengine.FieldTitle, Text: "x"}), func(p *diaryv1.Change) { p.EntryId = "not-an-id" }), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_INVALID, message: "entry id"},
		{name: "text for a flag", change: withProto(set(a, fresh, syncengine.Change{Field: syncengine.FieldShareResearch, Flag: true}), func(p *diaryv1.Change) { p.Value = &diaryv1.Change_Text{Text: "yes"} }), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_INVALID, message: "cannot hold text"},
		{name: "bad date", change: set(a, fresh, syncengine.Change{Field: syncengine.FieldDate, Text: "2026-13-45"}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_INVALID, message: "calendar date"},
		{name: "unknown field", change: withProto(set(a, fresh, syncengine.Change{Field: syncengine.FieldTitle, Text: "x"}), func(p *diaryv1.Change) { p.Field = 99 }), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_INVALID, message: "unknown field"},
		{name: "body too large", change: set(a, fresh, syncengine.Change{Field: syncengine.FieldBody, Text: strings.Repeat("a", syncengine.MaxBodyBytes+1)}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_TOO_LARGE, message: "the limit is 262144 bytes"},
		{name: "another navigator's entry", change: set(a, ofB, syncengine.Change{Field: syncengine.FieldTitle, Text: "mine now"}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_NOT_AUTHOR, message: "belongs to another navigator"},
		{name: "clock ahead", change: withProto(set(a, fresh, syncengine.Change{Field: syncengine.FieldDate, Text: "2026-01-02"}), func(p *diaryv1.Change) {
			p.Clock = uint64(syncengine.TimestampAt(time.Now().Add(study.MaxClockAhead + time.Minute)))
		}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_CLOCK_AHEAD, message: "correct the device clock"},
		{name: "clock before 2020", change: withProto(set(a, fresh, syncengine.Change{Field: syncengine.FieldDate, Text: "2026-01-02"}), func(p *diaryv1.Change) {
			p.Clock = uint64(syncengine.NewTimestamp(1e12, 0))
		}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_INVALID, message: "clock"},
		{name: "another device's replica", change: withProto(set(a, fresh, syncengine.Change{Field: syncengine.FieldMood, Number: 3}), func(p *diaryv1.Change) { p.ReplicaId = b.Replica.String() }), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_WRONG_REPLICA, message: "not by this device"},
		{name: "navigator writing feedback", change: set(a, shared, syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: syncengine.NewFeedbackID(), Text: "well done me"}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_NOT_PERMITTED, message: "navigators cannot write feedback"},
		{name: "body after the refusals", change: set(a, fresh, syncengine.Change{Field: syncengine.FieldBody, Text: "Quiet night."}), outcome: applied},
		{name: "unshare the private one again", change: set(a, private, syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: false}), outcome: applied},
	}
	for i := range syncengine.MaxTags {
		navCases = append(navCases, pushCase{name: fmt.Sprint("tag ", i), change: set(a, fresh, syncengine.Change{Field: syncengine.FieldTag, Tag: fmt.Sprint("tag-", i), Flag: true}), outcome: applied})
	}
	navCases = append(navCases,
		pushCase{name: "one tag too many", change: set(a, fresh, syncengine.Change{Field: syncengine.FieldTag, Tag: "one-too-many", Flag: true}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_TOO_LARGE, message: "the limit is 50"},
		pushCase{name: "mood last", change: set(a, fresh, syncengine.Change{Field: syncengine.FieldMood, Number: 7}), outcome: applied},
	)
	// The same change twice in one push: the second is a retry.
	again := set(a, fresh, syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: true})
	navCases = append(navCases,
		pushCase{name: "share", change: again, outcome: applied},
		pushCase{name: "share, retried in the same push", change: again, outcome: duplicate},
	)

	// One push from a supervisor.
	fb := syncengine.NewFeedbackID()
	supCases := []pushCase{
		{name: "feedback on a shared entry", change: set(s1, shared, syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: fb, Text: "Good boundary."}), outcome: applied},
		{name: "supervisor writing an entry field", change: set(s1, shared, syncengine.Change{Field: syncengine.FieldTitle, Text: "Better title"}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_NOT_PERMITTED, message: "not entries"},
		{name: "feedback on an unshared entry", change: set(s1, private, syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: syncengine.NewFeedbackID(), Text: "?"}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_NOT_PERMITTED, message: "not shared with you"},
		{name: "feedback for an unassigned navigator", change: set(s1, ofB, syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: syncengine.NewFeedbackID(), Text: "?"}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_NOT_PERMITTED, message: "not shared with you"},
		{name: "feedback on an entry that does not exist", change: set(s1, syncengine.NewEntryID(), syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: syncengine.NewFeedbackID(), Text: "?"}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_NOT_PERMITTED, message: "not shared with you"},
		{name: "feedback too large", change: set(s1, shared, syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: syncengine.NewFeedbackID(), Text: strings.Repeat("f", syncengine.MaxFeedbackBodyBytes+1)}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_TOO_LARGE, message: "the limit is 8192 bytes"},
	}
	otherSupCases := []pushCase{
		{name: "editing another supervisor's feedback", change: set(s2, shared, syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: fb, Text: "Not mine."}), outcome: refused, reason: diaryv1.RefusalReason_REFUSAL_REASON_NOT_AUTHOR, message: "another supervisor"},
		{name: "own feedback", change: set(s2, shared, syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: syncengine.NewFeedbackID(), Text: "Agreed."}), outcome: applied},
	}

	pushes := []struct {
		name  string
		c     *clients
		cases []pushCase
	}{
		{"navigator", ac, navCases},
		{"supervisor", s1c, supCases},
		{"other supervisor", s2c, otherSupCases},
	}
	t.Run("OK", func(t *testing.T) {
		for _, p := range pushes {
			resp, err := p.c.sync.Push(ctx, &diaryv1.PushRequest{Changes: changesOf(p.cases)})
			wantCode(t, err, 0)
			checkResults(t, p.cases, resp)
		}
		// Every change applied, and only those, is in the entries.
		got := pullAll(t, ac, 0).entries[fresh.String()]
		if got.GetTitle().GetValue() != "Night shelter" || got.GetBody().GetValue() != "Quiet night." || got.GetMood().GetValue() != 7 ||
			got.GetDate().GetValue() != "" || len(got.GetTags()) != syncengine.MaxTags || !got.GetShareSupervisor().GetValue() || got.GetShareResearch().GetValue() {
			t.Fatalf("entry after the push: %v", got)
		}
		for _, tag := range got.GetTags() {
			if tag.GetName() == "one-too-many" {
				t.Fatal("the refused tag was applied")
			}
		}
		sharedNow := pullAll(t, ac, 0).entries[shared.String()]
		if len(sharedNow.GetFeedback()) != 2 || sharedNow.GetTitle().GetValue() != "Shared" {
			t.Fatalf("shared entry after the supervisors' pushes: %v", sharedNow)
		}
		for _, f := range sharedNow.GetFeedback() {
			if f.GetId() == fb.String() && (f.GetAuthor() != "SUP-1" || f.GetBody().GetValue() != "Good boundary.") {
				t.Fatalf("feedback %v, want SUP-1's words", f)
			}
		}
	})

	t.Run("OKReplayed", func(t *testing.T) {
		before, history := storeState(t, ts.DB)
		for round := range 2 {
			for _, p := range pushes {
				resp, err := p.c.sync.Push(ctx, &diaryv1.PushRequest{Changes: changesOf(p.cases)})
				wantCode(t, err, 0)
				checkResults(t, replayed(p.cases), resp)
			}
			after, historyAfter := storeState(t, ts.DB)
			if historyAfter != history {
				t.Fatalf("round %d: history has %d rows, had %d", round, historyAfter, history)
			}
			for id, s := range before {
				if !bytes.Equal(after[id], s) {
					t.Fatalf("round %d: entry %s changed on replay", round, id)
				}
			}
		}
		// Replayed one at a time and in reverse: still only duplicates.
		for i := len(navCases) - 1; i >= 0; i-- {
			c := navCases[i]
			resp, err := ac.sync.Push(ctx, &diaryv1.PushRequest{Changes: []*diaryv1.Change{c.change}})
			wantCode(t, err, 0)
			checkResults(t, replayed([]pushCase{c}), resp)
		}
		if _, n := storeState(t, ts.DB); n != history {
			t.Fatalf("history has %d rows after replaying one by one, had %d", n, history)
		}
	})

	t.Run("ErrTooManyChanges", func(t *testing.T) {
		changes := make([]*diaryv1.Change, study.MaxPushChanges+1)
		id := syncengine.NewEntryID()
		for i := range changes {
			changes[i] = set(a, id, syncengine.Change{Field: syncengine.FieldTitle, Text: "t"})
		}
		_, err := ac.sync.Push(ctx, &diaryv1.PushRequest{Changes: changes})
		wantCode(t, err, connect.CodeResourceExhausted)
		if !strings.Contains(err.Error(), "at most 1000 changes") {
			t.Fatalf("message %q does not name the limit", err)
		}
	})

	t.Run("ErrRequestTooLarge", func(t *testing.T) {
		// Bodies at their limit, but more of them than a request may hold.
		var changes []*diaryv1.Change
		for range MaxRequestBytes/syncengine.MaxBodyBytes + 1 {
			changes = append(changes, set(a, syncengine.NewEntryID(), syncengine.Change{Field: syncengine.FieldBody, Text: strings.Repeat("b", syncengine.MaxBodyBytes)}))
		}
		_, before := storeState(t, ts.DB)
		_, err := ac.sync.Push(ctx, &diaryv1.PushRequest{Changes: changes})
		wantCode(t, err, connect.CodeResourceExhausted)
		if !strings.Contains(err.Error(), fmt.Sprint(MaxRequestBytes)) {
			t.Fatalf("message %q does not name the limit", err)
		}
		if _, after := storeState(t, ts.DB); after != before {
			t.Fatal("a push over the size limit left changes behind")
		}
	})
}

// TestPush_ConcurrentDevices pushes from several devices of one navigator
// at once, with retries, and checks that the result is what merging the
// changes in any order gives.
func TestPush_ConcurrentDevices(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, Config{})
	const devices, rounds = 4, 10
	entry := syncengine.NewEntryID()
	want := &syncengine.Entry{ID: entry}
	var all [devices][]*diaryv1.Change
	var clients [devices]*clients
	for d := range devices {
		w := newWriter(MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A"))
		clients[d] = ts.clients(bearer(w.Token))
		for r := range rounds {
			c := syncengine.Change{Field: syncengine.FieldTitle, Text: fmt.Sprintf("device %d round %d", d, r)}
			p := w.change(entry, c)
			all[d] = append(all[d], p)
			c.Entry, c.Replica, c.Clock, c.Author = entry, w.Replica, syncengine.Timestamp(p.GetClock()), "PN-A"
			want.Apply(&c)
			tag := syncengine.Change{Field: syncengine.FieldTag, Tag: fmt.Sprint("d", d), Flag: r%2 == 0}
			p = w.change(entry, tag)
			all[d] = append(all[d], p)
			tag.Entry, tag.Replica, tag.Clock, tag.Author = entry, w.Replica, syncengine.Timestamp(p.GetClock()), "PN-A"
			want.Apply(&tag)
		}
	}
	errs := make(chan error, devices)
	for d := range devices {
		go func() {
			for i := range all[d] {
				// Each change is sent with the one before it: every push
				// but the first carries a retry.
				batch := all[d][max(0, i-1) : i+1]
				if _, err := clients[d].sync.Push(ctx, &diaryv1.PushRequest{Changes: batch}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range devices {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var state []byte
	if err := rawDB(ts.DB).QueryRow(`SELECT state FROM entries WHERE id = ?`, entry[:]).Scan(&state); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(state, syncengine.EncodeEntry(want)) {
		got, _ := syncengine.DecodeEntry(state)
		t.Fatalf("stored entry %+v, want %+v", got, want)
	}
	if _, n := storeState(t, ts.DB); n != devices*rounds*2 {
		t.Fatalf("history has %d rows, want %d", n, devices*rounds*2)
	}
}

// TestPush_RefusalsStand: a change refused for a reason that could pass
// (a clock ahead of the server's, an entry not shared, a full entry) is
// refused again when the same change arrives later, after the reason has
// passed: the device has stamped it again by then, and accepting the late
// copy would store one write twice.
func TestPush_RefusalsStand(t *testing.T) {
	clock := newTestClock()
	db := MustOpenDBWith(t, storetest.Options{Now: clock.Now})
	nav := MustEnroll(t, db, study.RoleNavigator, "PN-A")
	ctx := context.Background()
	hlc := syncengine.NewClock(func() time.Time { return clock.Now().Add(time.Hour) })
	ahead := entryChanges(nav.Replica, hlc, false, false)
	results, _, err := db.Push(ctx, nav, ahead)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Reason != study.RefusedClockAhead {
			t.Fatalf("first push: %+v", r)
		}
	}
	clock.Advance(2 * time.Hour) // the server's time passes the clocks
	again, _, err := db.Push(ctx, nav, ahead)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range again {
		if r != results[i] {
			t.Fatalf("change %d: %+v, then %+v once the clock had passed", i, results[i], r)
		}
	}
	var history int
	if err := rawDB(db).QueryRow(`SELECT count(*) FROM history`).Scan(&history); err != nil || history != 0 {
		t.Fatalf("history rows: %d (%v)", history, err)
	}
}
