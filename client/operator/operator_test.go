package operator

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/diarysync/diarysync/client"
)

// TestNotEnrolled: a client that has not enrolled has no services to
// give, and says why as its own calls do. (The services themselves are
// driven through the diary command line's tests of administration and
// exports.)
func TestNotEnrolled(t *testing.T) {
	c, err := client.Open(context.Background(), filepath.Join(t.TempDir(), "replica.db"), client.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if svc, err := Admin(c); svc != nil || !errors.Is(err, client.ErrNotEnrolled) {
		t.Fatalf("Admin of a client not enrolled: %v, %v", svc, err)
	}
	if svc, err := Research(c); svc != nil || !errors.Is(err, client.ErrNotEnrolled) {
		t.Fatalf("Research of a client not enrolled: %v, %v", svc, err)
	}
}
