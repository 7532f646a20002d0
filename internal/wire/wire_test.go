package wire

import (
	"strings"
	"testing"

	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
)

// checkRefusal fails unless err is what the server can report as a
// refusal: a validation error with a code and a sentence, never a raw Go
// error.
func checkRefusal(t *testing.T, what string, err error) {
	t.Helper()
	switch code := syncengine.ErrorCode(err); code {
	case syncengine.EINVALID, syncengine.ETOOLARGE:
	default:
		t.Fatalf("%s: error %q has code %q, want invalid or too large", what, err, code)
	}
	if msg := syncengine.ErrorMessage(err); strings.TrimSpace(msg) == "" || msg == "internal error" {
		t.Fatalf("%s: error %v has no message a person can read", what, err)
	}
}

// FuzzChangeFromProto feeds arbitrary bytes, as a pushed change, through
// what the server does with one: decode the protobuf, convert it, and
// validate it. Nothing may panic; every refusal must carry a reason; and
// a change that passes must survive the trip back to the wire and again
// unchanged, so that what the server stores is what the device sent.
func FuzzChangeFromProto(f *testing.F) {
	// Seeds beyond these live in testdata/fuzz/FuzzChangeFromProto.
	valid := &syncengine.Change{Field: syncengine.FieldTitle, Text: "Tuesday"}
	valid.Entry, _ = syncengine.ParseEntryID("01936f2e-8b1a-7c3d-9e4f-a1b2c3d4e5f6")
	valid.Replica, _ = syncengine.ParseReplicaID("0b8f5c2e-1111-4a3b-8c9d-0e1f2a3b4c5d")
	valid.Clock = syncengine.NewTimestamp(1795788185123, 0)
	b, err := proto.Marshal(ChangeToProto(valid))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var p diaryv1.Change
		if err := proto.Unmarshal(b, &p); err != nil {
			return // the RPC layer refuses the whole request
		}
		c, err := ChangeFromProto(&p)
		if err != nil {
			checkRefusal(t, "ChangeFromProto", err)
			return
		}
		if err := syncengine.ValidateChange(&c); err != nil {
			checkRefusal(t, "ValidateChange", err)
			return
		}
		again := ChangeToProto(&c)
		c2, err := ChangeFromProto(again)
		if err != nil {
			t.Fatalf("a valid change does not convert back from its wire form %v: %v", again, err)
		}
		if c2 != c {
			t.Fatalf("a valid change changed on the round trip:\n got %+v\nwant %+v", c2, c)
		}
		if err := syncengine.ValidateChange(&c2); err != nil {
			t.Fatalf("a valid change is invalid after the round trip: %v", err)
		}
		// The wire form itself is stable: bytes from it decode to it.
		wb, err := proto.MarshalOptions{Deterministic: true}.Marshal(again)
		if err != nil {
			t.Fatalf("the wire form of a valid change does not marshal: %v", err)
		}
		var p3 diaryv1.Change
		if err := proto.Unmarshal(wb, &p3); err != nil || !proto.Equal(&p3, again) {
			t.Fatalf("the wire form of a valid change does not read back: %v", err)
		}
	})
}

// FuzzEntryFromProto feeds arbitrary bytes, as a pulled entry, through
// what a device does with one. Nothing may panic; an entry that converts
// is in canonical form (its encoding decodes to the same entry) and
// survives the trip back to the wire and again unchanged, so that every
// replica hashes it alike.
func FuzzEntryFromProto(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p diaryv1.Entry
		if err := proto.Unmarshal(b, &p); err != nil {
			return
		}
		e, err := EntryFromProto(&p)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an entry was refused without a reason")
			}
			return
		}
		enc := syncengine.EncodeEntry(e)
		d, err := syncengine.DecodeEntry(enc)
		if err != nil {
			t.Fatalf("a converted entry does not decode from its canonical encoding: %v", err)
		}
		if d.Hash() != e.Hash() {
			t.Fatal("a converted entry's canonical encoding decodes to another entry")
		}
		e2, err := EntryFromProto(EntryToProto(e))
		if err != nil {
			t.Fatalf("a converted entry does not convert back from its wire form: %v", err)
		}
		if e2.Hash() != e.Hash() {
			t.Fatalf("an entry changed on the round trip:\n got %+v\nwant %+v", e2, e)
		}
	})
}
