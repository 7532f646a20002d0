package server

import (
	"context"
	"testing"

	"github.com/diarysync/diarysync/study"
)

// TestPull_Remaining checks the count of what waits after a page: capped
// at study.MaxRemainingCount unless an exact count is asked for, so that a
// page costs the same however much waits, and exact when asked.
func TestPull_Remaining(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	nav := MustEnroll(t, db, study.RoleNavigator, "PN-A")
	sup := MustEnroll(t, db, study.RoleSupervisor, "SUP-1")
	MustAssign(t, db, "SUP-1", "PN-A")
	total := study.MaxRemainingCount + 50
	pushEntries(t, db, nav, total, true, "")

	for _, who := range []*study.Identity{nav, sup} {
		t.Run("OKCapped"+who.Role.String(), func(t *testing.T) {
			page, err := db.Pull(ctx, who, study.PullRequest{PageSize: 10})
			if err != nil {
				t.Fatal(err)
			}
			if !page.More || page.RemainingExact || page.Remaining != study.MaxRemainingCount {
				t.Fatalf("more %v, remaining %d (exact %v); want a lower bound of %d", page.More, page.Remaining, page.RemainingExact, study.MaxRemainingCount)
			}
		})
		t.Run("OKExact"+who.Role.String(), func(t *testing.T) {
			page, err := db.Pull(ctx, who, study.PullRequest{PageSize: 10, CountRemaining: true})
			if err != nil {
				t.Fatal(err)
			}
			if !page.RemainingExact || page.Remaining != int64(total-10) {
				t.Fatalf("remaining %d (exact %v), want exactly %d", page.Remaining, page.RemainingExact, total-10)
			}
		})
		t.Run("OKExactBelowCap"+who.Role.String(), func(t *testing.T) {
			// Close to the end, the capped count is exact and says so.
			first, err := db.Pull(ctx, who, study.PullRequest{PageSize: 1000, CountRemaining: true})
			if err != nil {
				t.Fatal(err)
			}
			page, err := db.Pull(ctx, who, study.PullRequest{Cursor: first.Next, PageSize: 100})
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(total - 1100); !page.RemainingExact || page.Remaining != want {
				t.Fatalf("remaining %d (exact %v), want exactly %d", page.Remaining, page.RemainingExact, want)
			}
		})
		t.Run("OKLastPage"+who.Role.String(), func(t *testing.T) {
			head, err := db.Head(ctx, who)
			if err != nil {
				t.Fatal(err)
			}
			page, err := db.Pull(ctx, who, study.PullRequest{Cursor: head})
			if err != nil {
				t.Fatal(err)
			}
			if page.More || page.Remaining != 0 || !page.RemainingExact {
				t.Fatalf("at the head: more %v, remaining %d (exact %v)", page.More, page.Remaining, page.RemainingExact)
			}
		})
	}
}
