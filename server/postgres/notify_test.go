package postgres

import (
	"slices"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
)

func TestPayload(t *testing.T) {
	db := &DB{instance: "abc"}
	t.Run("OK", func(t *testing.T) {
		tx := &tx{}
		tx.notify(&study.Wakeups{Owners: []int64{7, 3, 7}, Readers: []int64{0, 12}})
		p, ok := db.payload(tx)
		if !ok || p != "abc 3,7;0,12" {
			t.Fatalf("payload %q %v", p, ok)
		}
		inst, w, err := parsePayload(p)
		if err != nil || inst != "abc" || !slices.Equal(w.Owners, []int64{3, 7}) || !slices.Equal(w.Readers, []int64{0, 12}) {
			t.Fatalf("parsed %q %+v %v", inst, w, err)
		}
	})
	t.Run("OKNothing", func(t *testing.T) {
		if p, ok := db.payload(&tx{}); ok {
			t.Fatalf("a commit that concerns nobody announced %q", p)
		}
	})
	t.Run("OKEveryone", func(t *testing.T) {
		tx := &tx{}
		tx.notifyAll()
		p, _ := db.payload(tx)
		if inst, w, err := parsePayload(p); err != nil || inst != "abc" || w != nil {
			t.Fatalf("%q parsed as %q %+v %v, want every stream", p, inst, w, err)
		}
	})
	t.Run("OKTooLongWakesEveryone", func(t *testing.T) {
		tx := &tx{}
		for i := range 2000 {
			tx.notify(&study.Wakeups{Readers: []int64{int64(1000000 + i)}})
		}
		p, _ := db.payload(tx)
		if len(p) > maxPayload || !strings.HasSuffix(p, " *") {
			t.Fatalf("a %d-byte payload, want the short 'everyone' one", len(p))
		}
	})
	t.Run("ErrForeign", func(t *testing.T) {
		for _, p := range []string{"", "abc", "abc 1,2", "abc x;1"} {
			if _, _, err := parsePayload(p); err == nil {
				t.Fatalf("%q parsed", p)
			}
		}
	})
}
