package study

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

var (
	navReplica = syncengine.ReplicaID{1}
	supReplica = syncengine.ReplicaID{2}
	navigator  = &Identity{UserID: 10, StudyCode: "PN-A", Role: RoleNavigator, DeviceID: 100, Replica: navReplica}
	supervisor = &Identity{UserID: 20, StudyCode: "SUP-1", Role: RoleSupervisor, DeviceID: 200, Replica: supReplica}
	researcher = &Identity{UserID: 30, StudyCode: "RES-1", Role: RoleResearcher, DeviceID: 300, Replica: syncengine.ReplicaID{3}}
)

var (
	now        = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	entryID    = syncengine.NewEntryID()
	feedbackID = syncengine.NewFeedbackID()
)

func change(who *Identity, f syncengine.Field, at time.Time) syncengine.Change {
	c := syncengine.Change{Entry: entryID, Field: f, Stamp: syncengine.Stamp{Clock: syncengine.TimestampAt(at), Replica: who.Replica}}
	switch f.Kind() {
	case syncengine.KindText:
		c.Text = "text"
	case syncengine.KindFlag:
		c.Flag = true
	}
	if f.IsFeedback() {
		c.Feedback = feedbackID
	}
	return c
}

func TestCheckIncoming(t *testing.T) {
	for _, tc := range []struct {
		name   string
		who    *Identity
		in     Incoming
		reason Refusal
	}{
		{"OKNavigatorEntry", navigator, Incoming{Change: change(navigator, syncengine.FieldTitle, now)}, 0},
		{"OKSupervisorFeedback", supervisor, Incoming{Change: change(supervisor, syncengine.FieldFeedbackBody, now)}, 0},
		{"ErrUndecodable", navigator, Incoming{Invalid: &syncengine.ValidationError{Subject: "entry id", Err: syncengine.ErrInvalidID, Detail: "entry id is not a UUID"}}, RefusedInvalid},
		{"ErrTooLarge", navigator, Incoming{Change: func() syncengine.Change {
			c := change(navigator, syncengine.FieldTitle, now)
			c.Text = strings.Repeat("x", 100<<10)
			return c
		}()}, RefusedTooLarge},
		{"ErrOtherReplica", navigator, Incoming{Change: change(supervisor, syncengine.FieldTitle, now)}, RefusedWrongReplica},
		{"ErrNavigatorFeedback", navigator, Incoming{Change: change(navigator, syncengine.FieldFeedbackBody, now)}, RefusedNotPermitted},
		{"ErrSupervisorEntry", supervisor, Incoming{Change: change(supervisor, syncengine.FieldBody, now)}, RefusedNotPermitted},
		{"ErrResearcher", researcher, Incoming{Change: change(researcher, syncengine.FieldTitle, now)}, RefusedNotPermitted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := CheckIncoming(tc.who, &tc.in)
			if tc.reason == 0 {
				if !ok {
					t.Fatalf("refused (%d: %s), want accepted", r.Reason, r.Message)
				}
				if tc.in.Change.Author != tc.who.StudyCode {
					t.Fatalf("author %q, want %q", tc.in.Change.Author, tc.who.StudyCode)
				}
				return
			}
			if ok || r.Outcome != OutcomeRefused || r.Reason != tc.reason || r.Message == "" {
				t.Fatalf("got %v %+v, want refused with reason %d and a message", ok, r, tc.reason)
			}
		})
	}
}

// sharedEntry returns an entry of the navigator's, shared with
// supervisors, with one note of feedback by author.
func sharedEntry(feedbackAuthor string) *syncengine.Entry {
	e := &syncengine.Entry{ID: entryID}
	for _, c := range []syncengine.Change{
		change(navigator, syncengine.FieldTitle, now.Add(-time.Hour)),
		change(navigator, syncengine.FieldShareSupervisor, now.Add(-time.Hour)),
	} {
		c.Author = navigator.StudyCode
		e.Apply(&c)
	}
	if feedbackAuthor != "" {
		c := change(supervisor, syncengine.FieldFeedbackBody, now.Add(-time.Minute))
		c.Author = feedbackAuthor
		e.Apply(&c)
	}
	return e
}

func TestDecide(t *testing.T) {
	refusedBefore := &ChangeResult{Outcome: OutcomeRefused, Reason: RefusedNotPermitted, Message: "not shared then"}
	for _, tc := range []struct {
		name     string
		who      *Identity
		c        syncengine.Change
		t        Target
		want     Outcome
		reason   Refusal
		remember bool
	}{
		{"OKNewEntry", navigator, change(navigator, syncengine.FieldTitle, now), Target{Owner: navigator.UserID, Entry: &syncengine.Entry{}}, OutcomeApplied, 0, false},
		{"OKClockAtLimit", navigator, change(navigator, syncengine.FieldTitle, now.Add(MaxClockAhead)), Target{Owner: navigator.UserID, Entry: &syncengine.Entry{}}, OutcomeApplied, 0, false},
		{"OKFeedback", supervisor, change(supervisor, syncengine.FieldFeedbackBody, now), Target{Exists: true, Owner: navigator.UserID, Entry: sharedEntry(""), Supervisors: []int64{supervisor.UserID}}, OutcomeApplied, 0, false},
		{"OKOwnFeedback", supervisor, change(supervisor, syncengine.FieldFeedbackBody, now), Target{Exists: true, Owner: navigator.UserID, Entry: sharedEntry("SUP-1"), Supervisors: []int64{supervisor.UserID}}, OutcomeApplied, 0, false},
		// A retry gets the answer it got, whatever changed since.
		{"OKRetryAfterUnsharing", supervisor, change(supervisor, syncengine.FieldFeedbackBody, now), Target{Exists: true, Owner: navigator.UserID, Entry: &syncengine.Entry{}, Known: true}, OutcomeDuplicate, 0, false},
		{"OKRetryOfErased", navigator, change(navigator, syncengine.FieldTitle, now), Target{Exists: true, Erased: true, Known: true}, OutcomeDuplicate, 0, false},
		{"ErrRemembered", supervisor, change(supervisor, syncengine.FieldFeedbackBody, now), Target{Exists: true, Owner: navigator.UserID, Entry: sharedEntry(""), Supervisors: []int64{supervisor.UserID}, Remembered: refusedBefore}, OutcomeRefused, RefusedNotPermitted, false},
		{"ErrClockAhead", navigator, change(navigator, syncengine.FieldTitle, now.Add(MaxClockAhead+time.Second)), Target{Owner: navigator.UserID, Entry: &syncengine.Entry{}}, OutcomeRefused, RefusedClockAhead, true},
		{"ErrErased", navigator, change(navigator, syncengine.FieldTitle, now), Target{Exists: true, Erased: true, Owner: navigator.UserID}, OutcomeRefused, RefusedErased, false},
		{"ErrWithdrawn", navigator, change(navigator, syncengine.FieldTitle, now), Target{Owner: navigator.UserID, Entry: &syncengine.Entry{}, Withdrawn: true}, OutcomeRefused, RefusedErased, false},
		{"ErrOtherNavigatorsEntry", navigator, change(navigator, syncengine.FieldTitle, now), Target{Exists: true, Owner: 11, Entry: sharedEntry("")}, OutcomeRefused, RefusedNotAuthor, false},
		{"ErrNotAssigned", supervisor, change(supervisor, syncengine.FieldFeedbackBody, now), Target{Exists: true, Owner: navigator.UserID, Entry: sharedEntry(""), Supervisors: []int64{21}}, OutcomeRefused, RefusedNotPermitted, true},
		{"ErrNotShared", supervisor, change(supervisor, syncengine.FieldFeedbackBody, now), Target{Exists: true, Owner: navigator.UserID, Entry: &syncengine.Entry{ID: entryID, Created: 1}, Supervisors: []int64{supervisor.UserID}}, OutcomeRefused, RefusedNotPermitted, true},
		{"ErrNoSuchEntry", supervisor, change(supervisor, syncengine.FieldFeedbackBody, now), Target{Owner: supervisor.UserID, Entry: &syncengine.Entry{}, Supervisors: []int64{supervisor.UserID}}, OutcomeRefused, RefusedNotPermitted, true},
		{"ErrOthersFeedback", supervisor, change(supervisor, syncengine.FieldFeedbackBody, now), Target{Exists: true, Owner: navigator.UserID, Entry: sharedEntry("SUP-2"), Supervisors: []int64{supervisor.UserID}}, OutcomeRefused, RefusedNotAuthor, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.Author = tc.who.StudyCode
			d := Decide(tc.who, &c, &tc.t, now)
			if d.Result.Outcome != tc.want || d.Result.Reason != tc.reason {
				t.Fatalf("got %+v, want outcome %d reason %d", d.Result, tc.want, tc.reason)
			}
			if d.Apply != (tc.want == OutcomeApplied) {
				t.Fatalf("apply %v for outcome %d", d.Apply, d.Result.Outcome)
			}
			if d.Remember != tc.remember {
				t.Fatalf("remember %v, want %v", d.Remember, tc.remember)
			}
			if tc.want == OutcomeRefused && d.Result.Message == "" {
				t.Fatal("a refusal without a message")
			}
		})
	}
}

func TestCheckPushSize(t *testing.T) {
	if err := CheckPushSize(MaxPushChanges); err != nil {
		t.Fatal(err)
	}
	err := CheckPushSize(MaxPushChanges + 1)
	if syncengine.ErrorCode(err) != syncengine.ETOOLARGE {
		t.Fatalf("got %v, want %s", err, syncengine.ETOOLARGE)
	}
	var ae *syncengine.Error
	if !errors.As(err, &ae) || !strings.Contains(ae.Message, "1001") {
		t.Fatalf("message %q does not say how many changes the push had", err)
	}
}
