package study

import (
	"strings"
	"testing"

	"github.com/diarysync/diarysync/syncengine"
)

func TestManifestTally(t *testing.T) {
	plan := NewWavePlan([]Wave{
		{Number: 1, Label: "Baseline", Start: "2026-01-01", End: "2026-01-31"},
		{Number: 2, Label: "Middle", Start: "2026-02-01", End: "2026-02-28"},
		// PN-B was interviewed late: their wave 1 is in March.
		{Number: 1, Navigator: "PN-B", Start: "2026-03-01", End: "2026-03-31"},
	})
	entries := []StoredEntry{
		{Navigator: "PN-A", Date: "2026-01-10", ResearchVisible: true}, // wave 1, exported
		{Navigator: "PN-A", Date: "2026-02-10", ResearchVisible: true}, // wave 2, exported
		{Navigator: "PN-A", Date: "2026-02-11", Deleted: true},         // wave 2, deleted
		{Navigator: "PN-A", Date: "2026-02-12"},                        // wave 2, not shared
		{Navigator: "PN-A", Date: "2026-05-01", ResearchVisible: true}, // no wave
		{Navigator: "PN-A", Date: "", ResearchVisible: true},           // no date, no wave
		{Navigator: "PN-A", Date: "2026-01-31", ResearchVisible: true}, // last day of wave 1
		{Navigator: "PN-B", Date: "2026-01-10", ResearchVisible: true}, // PN-B's January is in no wave
		{Navigator: "PN-B", Date: "2026-03-10", ResearchVisible: true}, // PN-B's own wave 1
		{Erased: true}, // erased, whatever its wave
		{Navigator: "PN-A", Date: "2026-01-05", Erased: true},  // erased
		{Navigator: "PN-A", Date: "2026-03-01", Deleted: true}, // no wave, deleted: not counted
	}
	tests := []struct {
		name                                        string
		m                                           Manifest
		entries, deleted, notShared, erased, noWave uint64
	}{
		{"OKAllWaves", Manifest{}, 4, 1, 1, 2, 3},
		{"OKWave1", Manifest{Wave: 1}, 3, 0, 0, 2, 0},
		{"OKWave2", Manifest{Wave: 2}, 1, 1, 1, 2, 0},
		// Erased entries are counted whatever the filters: their author
		// and date are gone with them.
		{"OKNavigator", Manifest{Navigator: "PN-B"}, 1, 0, 0, 2, 1},
		{"OKDates", Manifest{From: "2026-02-01", To: "2026-02-28"}, 1, 1, 1, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.m
			for _, e := range entries {
				m.Tally(plan, e)
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
