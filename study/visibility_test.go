package study

import (
	"testing"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

// entryWith returns a navigator's entry after the given flag writes.
func entryWith(flags map[syncengine.Field]bool, title string) *syncengine.Entry {
	e := &syncengine.Entry{ID: entryID}
	at := now
	write := func(c syncengine.Change) {
		at = at.Add(time.Millisecond)
		c.Stamp = syncengine.Stamp{Clock: syncengine.TimestampAt(at), Replica: navReplica}
		c.Entry, c.Author = e.ID, navigator.StudyCode
		e.Apply(&c)
	}
	write(syncengine.Change{Field: syncengine.FieldTitle, Text: title})
	for _, f := range []syncengine.Field{syncengine.FieldShareSupervisor, syncengine.FieldShareResearch, syncengine.FieldDeleted} {
		if v, ok := flags[f]; ok {
			write(syncengine.Change{Field: f, Flag: v})
		}
	}
	return e
}

func TestFeedChanges(t *testing.T) {
	const (
		sup = syncengine.FieldShareSupervisor
		res = syncengine.FieldShareResearch
		del = syncengine.FieldDeleted
	)
	type fc = FeedChange
	supVisible := fc{Audience: syncengine.AudienceSupervisor, Visible: true}
	resVisible := fc{Audience: syncengine.AudienceResearch, Visible: true}
	for _, tc := range []struct {
		name     string
		old, new *syncengine.Entry
		want     []FeedChange
	}{
		{"OKNewPrivate", nil, entryWith(nil, "a"), nil},
		{"OKNewShared", nil, entryWith(map[syncengine.Field]bool{sup: true, res: true}, "a"), []FeedChange{supVisible, resVisible}},
		{"OKPrivateEdit", entryWith(nil, "a"), entryWith(nil, "b"), nil},
		{"OKShared", entryWith(nil, "a"), entryWith(map[syncengine.Field]bool{sup: true}, "a"), []FeedChange{supVisible}},
		{"OKSharedEdit", entryWith(map[syncengine.Field]bool{res: true}, "a"), entryWith(map[syncengine.Field]bool{res: true}, "b"), []FeedChange{resVisible}},
		{"OKUnshared", entryWith(map[syncengine.Field]bool{sup: true, res: true}, "a"), entryWith(map[syncengine.Field]bool{sup: false, res: true}, "a"),
			[]FeedChange{{Audience: syncengine.AudienceSupervisor, Reason: ReasonNotShared}, resVisible}},
		{"OKDeleted", entryWith(map[syncengine.Field]bool{sup: true, res: true}, "a"), entryWith(map[syncengine.Field]bool{sup: true, res: true, del: true}, "a"),
			[]FeedChange{{Audience: syncengine.AudienceSupervisor, Reason: ReasonDeleted}, {Audience: syncengine.AudienceResearch, Reason: ReasonDeleted}}},
		{"OKDeletedPrivate", entryWith(nil, "a"), entryWith(map[syncengine.Field]bool{del: true}, "a"), nil},
		{"OKRestored", entryWith(map[syncengine.Field]bool{sup: true, del: true}, "a"), entryWith(map[syncengine.Field]bool{sup: true, del: false}, "a"), []FeedChange{supVisible}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FeedChanges(tc.old, tc.new)
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %+v, want %+v", got, tc.want)
				}
			}
		})
	}

	t.Run("OKSameView", func(t *testing.T) {
		// A write the readers' view does not show (a device's replica id
		// is hidden from them) changes nothing in their feeds.
		old := entryWith(map[syncengine.Field]bool{sup: true}, "a")
		new := old.Clone()
		c := syncengine.Change{Entry: new.ID, Field: syncengine.FieldTitle, Text: "a", Stamp: old.Title.Stamp}
		c.Replica = syncengine.ReplicaID{0xff}
		if !new.Apply(&c) {
			t.Fatal("the write changed nothing; the test no longer covers a hidden change")
		}
		if got := FeedChanges(old, new); len(got) != 0 {
			t.Fatalf("got %+v, want no feed change", got)
		}
	})
}

func TestReaderFor(t *testing.T) {
	for _, tc := range []struct {
		who  *Identity
		want Reader
	}{
		{navigator, Reader{Owner: true, ID: navigator.UserID, Audience: syncengine.AudienceOwner, Code: "PN-A"}},
		{supervisor, Reader{ID: supervisor.UserID, Audience: syncengine.AudienceSupervisor, Code: "SUP-1"}},
		{researcher, Reader{ID: ResearchReader, Audience: syncengine.AudienceResearch}},
	} {
		got, err := ReaderFor(tc.who)
		if err != nil || got != tc.want {
			t.Fatalf("%s: got %+v, %v; want %+v", tc.who.Role, got, err, tc.want)
		}
	}
	if _, err := ReaderFor(&Identity{Role: RoleAdmin}); syncengine.ErrorCode(err) != syncengine.EPERMISSION {
		t.Fatalf("admin: got %v, want %s", err, syncengine.EPERMISSION)
	}
}

func TestPullPageSize(t *testing.T) {
	for n, want := range map[uint32]int{0: DefaultPullPageSize, 1: 1, MaxPullPageSize: MaxPullPageSize, MaxPullPageSize + 1: MaxPullPageSize} {
		if got := PullPageSize(n); got != want {
			t.Errorf("PullPageSize(%d) = %d, want %d", n, got, want)
		}
	}
	if err := CheckCursor(-1); syncengine.ErrorCode(err) != syncengine.EINVALID {
		t.Fatalf("negative cursor: got %v", err)
	}
}
