package study

import (
	"strings"
	"testing"

	"github.com/diarysync/diarysync/syncengine"
)

func TestManifestTally(t *testing.T) {
	waves := []Wave{{1, "Baseline", "2026-01-01", "2026-01-31"}, {2, "Middle", "2026-02-01", "2026-02-28"}}
	entries := []StoredEntry{
		{Date: "2026-01-10", ResearchVisible: true}, // wave 1, exported
		{Date: "2026-02-10", ResearchVisible: true}, // wave 2, exported
		{Date: "2026-02-11", Deleted: true},         // wave 2, deleted
		{Date: "2026-02-12"},                        // wave 2, not shared
		{Date: "2026-05-01", ResearchVisible: true}, // no wave
		{Date: "", ResearchVisible: true},           // no date, no wave
		{Date: "2026-01-31", ResearchVisible: true}, // last day of wave 1
		{Erased: true},                      // erased, whatever its wave
		{Date: "2026-01-05", Erased: true},  // erased
		{Date: "2026-03-01", Deleted: true}, // no wave, deleted: not counted
	}
	tests := []struct {
		name                                        string
		wave                                        uint32
		entries, deleted, notShared, erased, noWave uint64
	}{
		{"OKAllWaves", 0, 3, 1, 1, 2, 2},
		{"OKWave1", 1, 2, 0, 0, 2, 0},
		{"OKWave2", 2, 1, 1, 1, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Manifest{Wave: tt.wave, Waves: waves}
			for _, e := range entries {
				m.Tally(e)
			}
			got := [5]uint64{m.Entries, m.ExcludedDeleted, m.ExcludedNotShared, m.ExcludedErased, m.ExcludedNoWave}
			want := [5]uint64{tt.entries, tt.deleted, tt.notShared, tt.erased, tt.noWave}
			if got != want {
				t.Fatalf("entries, deleted, not shared, erased, no wave = %v, want %v", got, want)
			}
		})
	}
}

func TestStoreErrors(t *testing.T) {
	t.Run("OKDeviceID", func(t *testing.T) {
		for _, id := range []string{"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B"} {
			if err := CheckDevicePublicID(id); err != nil {
				t.Fatalf("%s: %v", id, err)
			}
		}
	})
	t.Run("ErrDeviceID", func(t *testing.T) {
		long := strings.Repeat("x", 500)
		for _, id := range []string{"", "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", "{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5}", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g", "0190a1b2-c3d4-7e5f-8a9b_0c1d2e3f4a5b", long} {
			err := CheckDevicePublicID(id)
			if syncengine.ErrorCode(err) != syncengine.EINVALID {
				t.Fatalf("%.40q: %v, want invalid", id, err)
			}
			if len(syncengine.ErrorMessage(err)) > 80 {
				t.Fatalf("the message echoes too much: %s", syncengine.ErrorMessage(err))
			}
		}
	})
	t.Run("ErrCodeIssuable", func(t *testing.T) {
		if err := CheckCodeIssuable(&User{StudyCode: "PN-A", Active: false}); syncengine.ErrorCode(err) != syncengine.ECONFLICT {
			t.Fatalf("deactivated user: %v", err)
		}
		if err := CheckCodeIssuable(&User{StudyCode: "PN-A", Active: true}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OKCodes", func(t *testing.T) {
		for err, code := range map[error]syncengine.Code{
			ErrUnknownUser("X"):                   syncengine.ENOTFOUND,
			ErrCodeInUse("X"):                     syncengine.EEXISTS,
			ErrNoAdmin:                            syncengine.ENOTFOUND,
			ErrUnknownDevice("x"):                 syncengine.ENOTFOUND,
			ErrUnknownEntry(syncengine.EntryID{}): syncengine.ENOTFOUND,
			ErrWaveExists(1):                      syncengine.EEXISTS,
			ErrUnknownWave(1):                     syncengine.ENOTFOUND,
		} {
			if syncengine.ErrorCode(err) != code {
				t.Fatalf("%v: code %s, want %s", err, syncengine.ErrorCode(err), code)
			}
		}
	})
}

func TestPageTokenText(t *testing.T) {
	for _, s := range []string{"PN-A", "", "SUP-1.b"} {
		got, err := DecodePageToken(EncodePageToken(s))
		if err != nil || got != s {
			t.Fatalf("%q round-trips as %q, %v", s, got, err)
		}
	}
	for _, bad := range []string{"!!", EncodePageToken("\xff\xfe"), strings.Repeat("A", 300)} {
		if _, err := DecodePageToken(bad); syncengine.ErrorCode(err) != syncengine.EINVALID {
			t.Fatalf("%q: %v, want invalid", bad, err)
		}
	}
}
