package server

import (
	"bytes"
	"context"
	"maps"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
)

// echoDevice is a textDevice that asks to have its own changes left out
// of its pulls, as the client does: it sends its cursor with each push,
// counts its acknowledged changes, sends the count with each pull and
// takes the server's from a last page.
type echoDevice struct {
	*textDevice
	own *uint64 // nil: not known
}

// push pushes the changes with the device's cursor and counts those the
// server acknowledged; it returns the results.
func (d *echoDevice) push(t *testing.T, changes ...*diaryv1.Change) []*diaryv1.ChangeResult {
	t.Helper()
	resp, err := d.c.sync.Push(context.Background(), &diaryv1.PushRequest{Changes: changes, Cursor: d.cursor})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.GetResults() {
		switch r.GetOutcome() {
		case diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED, diaryv1.ChangeOutcome_CHANGE_OUTCOME_DUPLICATE:
			if d.own != nil {
				*d.own++
			}
		}
	}
	return resp.GetResults()
}

// sync pulls everything after the device's cursor, leaving out its
// echoes, and checks that it then holds exactly what the server says it
// should (the state hash of every entry it may see). It returns the
// entries the pull carried, by id.
func (d *echoDevice) sync(t *testing.T) map[syncengine.EntryID]bool {
	t.Helper()
	got := map[syncengine.EntryID]bool{}
	for {
		resp, err := d.c.sync.Pull(context.Background(), &diaryv1.PullRequest{Cursor: d.cursor, MergedText: true, OwnChanges: d.own})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range resp.GetEntries() {
			e, err := wire.EntryFromProto(p)
			if err != nil {
				t.Fatal(err)
			}
			d.entries[e.ID] = e
			got[e.ID] = true
		}
		for _, r := range resp.GetRemovals() {
			id, _ := syncengine.ParseEntryID(r.GetEntryId())
			delete(d.entries, id)
			got[id] = true
		}
		d.cursor = resp.GetNextCursor()
		if !resp.GetMore() {
			if resp.OwnChanges == nil {
				t.Fatal("a navigator's last page carries no own_changes")
			}
			d.own = proto.Uint64(resp.GetOwnChanges())
			break
		}
	}
	sh, err := d.c.sync.GetStateHash(context.Background(), &diaryv1.GetStateHashRequest{MergedText: true})
	if err != nil {
		t.Fatal(err)
	}
	if mine := d.hash(); !bytes.Equal(sh.GetStateHash(), mine[:]) || sh.GetEntries() != uint64(len(d.entries)) || sh.GetCursor() != d.cursor {
		t.Fatalf("after the pull the device holds %d entries (hash %x) at %d; the server says %d (hash %x) at %d",
			len(d.entries), mine[:4], d.cursor, sh.GetEntries(), sh.GetStateHash()[:4], sh.GetCursor())
	}
	return got
}

// snapshot returns a copy of what the device holds, as a backup of its
// replica would.
func (d *echoDevice) snapshot() *echoDevice {
	c := *d.textDevice
	c.entries = map[syncengine.EntryID]*syncengine.Entry{}
	for id, e := range d.entries {
		c.entries[id] = e.Clone()
	}
	out := &echoDevice{textDevice: &c}
	if d.own != nil {
		out.own = proto.Uint64(*d.own)
	}
	return out
}

func wantCarried(t *testing.T, what string, got map[syncengine.EntryID]bool, want ...syncengine.EntryID) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: the pull carried %d entries, want %d", what, len(got), len(want))
	}
	for _, id := range want {
		if !got[id] {
			t.Fatalf("%s: the pull did not carry entry %s", what, id)
		}
	}
}

// TestPullLeavesOutEchoes: a navigator's device that pushes and then
// pulls does not get back what it pushed, and still ends every sync
// holding exactly the server's state (the state hash): after another
// device's edit, a supervisor's feedback, a whole text the server made
// an edit of, an erasure, a push made before the device had pulled the
// version it changed, a retry whose answer was lost, and a replica
// restored from a backup. A pull without the count gets everything.
func TestPullLeavesOutEchoes(t *testing.T) {
	s := newStudy(t)
	ctx := context.Background()
	phone := &echoDevice{textDevice: newTextDevice(s.ts, s.navADev)}
	tablet := &echoDevice{textDevice: newTextDevice(s.ts, MustEnrollDevice(t, s.ts.DB, study.RoleNavigator, "PN-A"))}
	supW := newWriter(MustEnrollDevice(t, s.ts.DB, study.RoleSupervisor, "SUP-1"))
	sup := s.ts.clients(bearer(supW.Token))

	wantCarried(t, "a first sync of nothing", phone.sync(t))
	if *phone.own != 0 {
		t.Fatalf("a new device has %d changes on the server", *phone.own)
	}
	tablet.sync(t)

	// A new entry comes back to nobody but the other device.
	e1 := syncengine.NewEntryID()
	// Refused, as stamped an hour ahead: counted by neither side, and
	// never applied on the device.
	ahead := wire.ChangeToProto(&syncengine.Change{Entry: e1, Field: syncengine.FieldMood, Number: 3,
		Stamp: syncengine.Stamp{Clock: syncengine.TimestampAt(time.Now().Add(time.Hour)), Replica: phone.Replica}})
	r := phone.push(t,
		phone.write(e1, syncengine.Change{Field: syncengine.FieldTitle, Text: "Tuesday"}),
		phone.write(e1, syncengine.Change{Field: syncengine.FieldDate, Text: "2026-01-13"}),
		phone.setText(t, e1, syncengine.FeedbackID{}, "Went to the hostel with J.\n"),
		phone.write(e1, syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: true}),
		ahead)
	if r[4].GetReason() != diaryv1.RefusalReason_REFUSAL_REASON_CLOCK_AHEAD {
		t.Fatalf("the change stamped ahead was %v", r[4])
	}
	wantCarried(t, "the pusher's own entry", phone.sync(t))
	wantCarried(t, "another device's", tablet.sync(t), e1)

	// Without the count, or with another count, everything comes.
	for _, own := range []*uint64{nil, proto.Uint64(*phone.own + 1)} {
		resp, err := phone.c.sync.Pull(ctx, &diaryv1.PullRequest{Cursor: 0, MergedText: true, OwnChanges: own})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetEntries()) != 1 {
			t.Fatalf("a pull with own_changes %v carried %d entries, want the echo", own, len(resp.GetEntries()))
		}
	}

	// The other device's edit reaches the phone; the tablet's own does
	// not come back to it.
	tablet.push(t, tablet.write(e1, syncengine.Change{Field: syncengine.FieldTitle, Text: "Tuesday morning"}))
	wantCarried(t, "the tablet's own edit", tablet.sync(t))
	wantCarried(t, "the tablet's edit, on the phone", phone.sync(t), e1)

	// The phone edits the entry before it has pulled the tablet's next
	// edit: its push builds on a version it does not hold, so its pull
	// brings the entry back.
	tablet.push(t, tablet.write(e1, syncengine.Change{Field: syncengine.FieldDate, Text: "2026-01-14"}))
	phone.push(t, phone.setText(t, e1, syncengine.FeedbackID{}, "Went to the hostel with J. and K.\n"))
	wantCarried(t, "an edit made before pulling the version it changes", phone.sync(t), e1)
	phone.push(t, phone.write(e1, syncengine.Change{Field: syncengine.FieldTag, Tag: "housing", Flag: true}))
	wantCarried(t, "an edit made after", phone.sync(t))

	// A supervisor's feedback reaches the navigator.
	mustPush(t, sup, supW.change(e1, syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: syncengine.NewFeedbackID(), Text: "Good plan."}))
	wantCarried(t, "the supervisor's feedback", phone.sync(t), e1)

	// A whole text the server makes an edit of its merged text: the
	// device gets the server's text back.
	phone.push(t, phone.write(e1, syncengine.Change{Field: syncengine.FieldBody, Text: "Went to the day centre with J. and K.\n"}))
	wantCarried(t, "a whole text made an edit", phone.sync(t), e1)

	// A retry whose first answer was lost: the device counts it once,
	// when it hears of it, as the server did.
	e2 := syncengine.NewEntryID()
	lost := []*diaryv1.Change{phone.write(e2, syncengine.Change{Field: syncengine.FieldTitle, Text: "Wednesday"})}
	mustPush(t, phone.c, lost...) // the answer never arrives
	if r := phone.push(t, lost...); r[0].GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_DUPLICATE {
		t.Fatalf("the retry was %v", r[0])
	}
	wantCarried(t, "a retried entry", phone.sync(t))

	// The phone's replica is restored from a backup taken now; the phone
	// then writes an entry that the backup does not hold.
	backup := phone.snapshot()
	e3 := syncengine.NewEntryID()
	phone.push(t, phone.write(e3, syncengine.Change{Field: syncengine.FieldTitle, Text: "Thursday"}))
	wantCarried(t, "the entry the backup misses", phone.sync(t))
	phone = backup
	e4 := syncengine.NewEntryID()
	phone.push(t, phone.write(e4, syncengine.Change{Field: syncengine.FieldTitle, Text: "Friday"}))
	wantCarried(t, "a restored replica", phone.sync(t), e3, e4)
	e5 := syncengine.NewEntryID()
	phone.push(t, phone.write(e5, syncengine.Change{Field: syncengine.FieldTitle, Text: "Saturday"}))
	wantCarried(t, "after the restored replica caught up", phone.sync(t))

	// An erasure reaches the device that wrote the entry.
	if _, _, err := s.ts.DB.EraseEntry(ctx, e5); err != nil {
		t.Fatal(err)
	}
	wantCarried(t, "an erasure", phone.sync(t), e5)
	if _, ok := phone.entries[e5]; ok {
		t.Fatal("the erased entry is still on the device")
	}

	// The tablet, which pulled none of this, gets all of it.
	got := tablet.sync(t)
	want := map[syncengine.EntryID]bool{e1: true, e2: true, e3: true, e4: true, e5: true}
	if !maps.Equal(got, want) {
		t.Fatalf("the tablet's pull carried %v, want %v", got, want)
	}
}

// TestEchoInputsOutOfRange: a cursor with a push, or a count with a pull,
// that no server could have given is refused with a sentence.
func TestEchoInputsOutOfRange(t *testing.T) {
	s := newStudy(t)
	ctx := context.Background()
	id := syncengine.NewEntryID()
	_, err := s.navAc.sync.Push(ctx, &diaryv1.PushRequest{Cursor: 1 << 63, Changes: []*diaryv1.Change{s.navA.change(id, syncengine.Change{Field: syncengine.FieldTitle, Text: "x"})}})
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = s.navAc.sync.Pull(ctx, &diaryv1.PullRequest{OwnChanges: proto.Uint64(1 << 63)})
	wantCode(t, err, connect.CodeInvalidArgument)
	if resp, err := s.navAc.sync.Pull(ctx, &diaryv1.PullRequest{}); err != nil || len(resp.GetEntries()) != 0 {
		t.Fatalf("after the refused push the navigator pulls %v, %v; want nothing", resp.GetEntries(), err)
	}
}
