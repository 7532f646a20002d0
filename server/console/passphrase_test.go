package console

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

var testParams = HashParams{Memory: 64, Time: 1, Threads: 1}

func TestHasher(t *testing.T) {
	ctx := context.Background()
	h := newHasher(testParams, 2)
	enc, err := h.hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q is not an argon2id PHC string", enc)
	}
	other, _ := h.hash(ctx, "correct horse battery")
	if other == enc {
		t.Fatal("two hashes of one passphrase are equal: no salt")
	}
	for pass, want := range map[string]bool{"correct horse battery": true, "correct horse batterz": false, "": false} {
		if ok, err := h.verify(ctx, pass, enc); err != nil || ok != want {
			t.Fatalf("verify(%q) = %v, %v; want %v", pass, ok, err, want)
		}
	}
	// A hash made with other parameters still verifies: it carries its own.
	stronger := newHasher(HashParams{Memory: 128, Time: 2, Threads: 1}, 1)
	enc2, _ := stronger.hash(ctx, "another passphrase")
	if ok, err := h.verify(ctx, "another passphrase", enc2); err != nil || !ok {
		t.Fatalf("verify with other parameters: %v, %v", ok, err)
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5", "$argon2id$v=19$m=999999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		strings.Replace(enc, "$v=19$", "$v=16$", 1), enc[:len(enc)-30]} {
		if _, err := h.verify(ctx, "x", bad); err == nil {
			t.Errorf("verify accepted the stored hash %q", bad)
		}
	}
	if ok, _ := h.verify(ctx, "correct horse battery", enc[:len(enc)-8]); ok {
		t.Error("a shortened hash matched")
	}
	if err := h.burn(ctx, "whatever"); err != nil {
		t.Fatal(err)
	}
}

// TestHasherCapped: no more passphrases are hashed at once than the
// limit, and a request that cannot get a turn is told the server is
// busy instead of queueing without end.
func TestHasherCapped(t *testing.T) {
	h := newHasher(HashParams{Memory: 8 * 1024, Time: 1, Threads: 1}, 2)
	var running, most atomic.Int32
	orig := h.sem
	// Count how many hold a slot at once.
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.acquire(context.Background()); err != nil {
				t.Error(err)
				return
			}
			n := running.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			running.Add(-1)
			h.release()
		}()
	}
	wg.Wait()
	if most.Load() > 2 {
		t.Fatalf("%d hashes at once, limit 2", most.Load())
	}
	// Both slots taken: a hash waits until its context ends, then fails.
	orig <- struct{}{}
	orig <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.hash(ctx, "a passphrase of length"); syncengine.ErrorCode(err) != syncengine.EUNAVAILABLE {
		t.Fatalf("hash with every slot taken: %v, want EUNAVAILABLE", err)
	}
	<-orig
	<-orig
}
