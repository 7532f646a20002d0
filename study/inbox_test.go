package study

import (
	"strings"
	"testing"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

func TestReadMarkNewer(t *testing.T) {
	at := syncengine.TimestampAt(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		name string
		m, o ReadMark
		want bool
	}{
		{"LaterWins", ReadMark{Clock: at + 1}, ReadMark{Clock: at, Read: true}, true},
		{"EarlierLoses", ReadMark{Clock: at, Read: true}, ReadMark{Clock: at + 1}, false},
		{"TieReadWins", ReadMark{Clock: at, Read: true}, ReadMark{Clock: at}, true},
		{"TieUnreadLoses", ReadMark{Clock: at}, ReadMark{Clock: at, Read: true}, false},
		{"SameIsNotNewer", ReadMark{Clock: at, Read: true}, ReadMark{Clock: at, Read: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.Newer(tc.o); got != tc.want {
				t.Fatalf("Newer = %v, want %v", got, tc.want)
			}
		})
	}
	// Whatever order two marks arrive in, the same one is kept.
	a, b := ReadMark{Clock: at, Read: false}, ReadMark{Clock: at, Read: true}
	keep := func(first, second ReadMark) ReadMark {
		if second.Newer(first) {
			return second
		}
		return first
	}
	if keep(a, b) != keep(b, a) {
		t.Fatal("the mark kept depends on the order")
	}
}

func TestDecideReadMark(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sup := &Identity{Role: RoleSupervisor, UserID: 4}
	at := syncengine.TimestampAt(now)
	for _, tc := range []struct {
		name    string
		who     *Identity
		m       ReadMark
		t       ReadTarget
		outcome Outcome
		reason  Refusal
	}{
		{"OK", sup, ReadMark{Read: true, Clock: at}, ReadTarget{Visible: true}, OutcomeApplied, 0},
		{"OKNewerThanStored", sup, ReadMark{Clock: at}, ReadTarget{Visible: true, Stored: &ReadMark{Read: true, Clock: at - 1}}, OutcomeApplied, 0},
		{"DuplicateOlder", sup, ReadMark{Read: true, Clock: at - 1}, ReadTarget{Visible: true, Stored: &ReadMark{Clock: at}}, OutcomeDuplicate, 0},
		{"DuplicateSame", sup, ReadMark{Read: true, Clock: at}, ReadTarget{Visible: true, Stored: &ReadMark{Read: true, Clock: at}}, OutcomeDuplicate, 0},
		{"ErrNotVisible", sup, ReadMark{Read: true, Clock: at}, ReadTarget{}, OutcomeRefused, RefusedNotPermitted},
		{"ErrNavigator", &Identity{Role: RoleNavigator}, ReadMark{Read: true, Clock: at}, ReadTarget{Visible: true}, OutcomeRefused, RefusedNotPermitted},
		{"ErrClockAhead", sup, ReadMark{Read: true, Clock: syncengine.TimestampAt(now.Add(2 * MaxClockAhead))}, ReadTarget{Visible: true}, OutcomeRefused, RefusedClockAhead},
		{"ErrClockZero", sup, ReadMark{Read: true}, ReadTarget{Visible: true}, OutcomeRefused, RefusedInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, keep := DecideReadMark(tc.who, tc.m, tc.t, now)
			if r.Outcome != tc.outcome || r.Reason != tc.reason || keep != (tc.outcome == OutcomeApplied) {
				t.Fatalf("DecideReadMark = %+v, keep %v; want outcome %d reason %d", r, keep, tc.outcome, tc.reason)
			}
			if r.Outcome == OutcomeRefused && r.Message == "" {
				t.Fatal("a refusal without a message")
			}
		})
	}
	if err := CheckReadMarksSize(MaxReadMarks + 1); syncengine.ErrorCode(err) != syncengine.ETOOLARGE {
		t.Fatalf("CheckReadMarksSize = %v", err)
	}
}

func TestInboxQuery(t *testing.T) {
	t.Run("Check", func(t *testing.T) {
		for _, q := range []InboxQuery{{Navigator: "bad code!"}, {Tag: " padded"}, {From: "2026-02-30"}, {From: "2026-03-02", To: "2026-03-01"}} {
			if err := CheckInboxQuery(&q); syncengine.ErrorCode(err) != syncengine.EINVALID {
				t.Errorf("CheckInboxQuery(%+v) = %v, want EINVALID", q, err)
			}
		}
		if err := CheckInboxQuery(&InboxQuery{Navigator: "PN-A", Tag: "housing", From: "2026-03-01", To: "2026-03-01"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Matches", func(t *testing.T) {
		e := &syncengine.Entry{Author: "PN-A", Date: syncengine.Text{Value: "2026-03-01"}, Tags: []syncengine.Tag{{Name: "gone"}, {Name: "housing", Present: true}}}
		it := &InboxItem{Entry: e}
		for _, tc := range []struct {
			q    InboxQuery
			want bool
		}{
			{InboxQuery{}, true},
			{InboxQuery{Navigator: "pn-a"}, true},
			{InboxQuery{Navigator: "PN-B"}, false},
			{InboxQuery{Tag: "housing"}, true},
			{InboxQuery{Tag: "gone"}, false},
			{InboxQuery{From: "2026-03-01", To: "2026-03-01"}, true},
			{InboxQuery{From: "2026-03-02"}, false},
			{InboxQuery{To: "2026-02-28"}, false},
			{InboxQuery{Unread: true}, true},
		} {
			if got := tc.q.Matches(it); got != tc.want {
				t.Errorf("%+v matches = %v, want %v", tc.q, got, tc.want)
			}
		}
		it.Read = true
		if (&InboxQuery{Unread: true}).Matches(it) {
			t.Error("a read item passes the unread filter")
		}
	})
	t.Run("Token", func(t *testing.T) {
		id := syncengine.NewEntryID()
		date, got, err := DecodeInboxToken(EncodeInboxToken("2026-03-01", id))
		if err != nil || date != "2026-03-01" || got != id {
			t.Fatalf("round trip: %q %s %v", date, got, err)
		}
		for _, bad := range []string{"!!", EncodePageToken("2026-03-01|zz"), EncodePageToken("not a date|" + "00112233445566778899aabbccddeeff"), EncodePageToken("2026-03-01")} {
			if _, _, err := DecodeInboxToken(bad); syncengine.ErrorCode(err) != syncengine.EINVALID {
				t.Errorf("DecodeInboxToken(%q) = %v, want EINVALID", bad, err)
			}
		}
	})
	if InboxPageSize(0) != DefaultInboxPageSize || InboxPageSize(1e6) != MaxInboxPageSize || InboxPageSize(7) != 7 {
		t.Fatal("InboxPageSize")
	}
}

func TestCheckAuditQuery(t *testing.T) {
	now := time.Now()
	if err := CheckAuditQuery(&AuditQuery{Actor: "ADMIN", Action: "device.", Since: now.Add(-time.Hour), Until: now}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []AuditQuery{{Actor: "a\nb"}, {Since: now, Until: now}} {
		if err := CheckAuditQuery(&q); syncengine.ErrorCode(err) != syncengine.EINVALID {
			t.Errorf("CheckAuditQuery(%+v) = %v, want EINVALID", q, err)
		}
	}
	if err := CheckAuditQuery(&AuditQuery{Subject: strings.Repeat("x", MaxAuditFilterBytes+1)}); syncengine.ErrorCode(err) != syncengine.ETOOLARGE {
		t.Errorf("an over-long filter: %v, want ETOOLARGE", err)
	}
}
