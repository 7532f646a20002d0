package study

import (
	"testing"

	"github.com/diarysync/diarysync/syncengine"
)

func TestCheckWaveSave(t *testing.T) {
	plan := NewWavePlan([]Wave{
		{Number: 1, Label: "Baseline", Start: "2026-01-01", End: "2026-01-31"},
		{Number: 2, Label: "Middle", Start: "2026-03-01", End: "2026-03-31"},
		{Number: 1, Navigator: "PN-B", Start: "2026-01-10", End: "2026-02-10"},
	})
	for _, tc := range []struct {
		name   string
		w      Wave
		create bool
		code   syncengine.Code
		label  string
	}{
		{"OKCreateDefault", Wave{Number: 3, Label: "End", Start: "2026-05-01", End: "2026-05-31"}, true, "", "End"},
		{"OKUpdateDefault", Wave{Number: 2, Label: "Mid", Start: "2026-03-05", End: "2026-04-30"}, false, "", "Mid"},
		{"OKCreateOwn", Wave{Number: 2, Navigator: "PN-A", Start: "2026-04-01", End: "2026-04-30"}, true, "", "Middle"},
		{"OKUpdateOwn", Wave{Number: 1, Navigator: "PN-B", Start: "2026-01-15", End: "2026-02-15"}, false, "", "Baseline"},
		{"ErrDefaultExists", Wave{Number: 1, Label: "Again", Start: "2026-07-01", End: "2026-07-31"}, true, syncengine.EEXISTS, ""},
		{"ErrOwnExists", Wave{Number: 1, Navigator: "PN-B", Start: "2026-01-01", End: "2026-01-31"}, true, syncengine.EEXISTS, ""},
		{"ErrUnknownDefault", Wave{Number: 9, Label: "Nine", Start: "2026-09-01", End: "2026-09-30"}, false, syncengine.ENOTFOUND, ""},
		{"ErrUnknownOwn", Wave{Number: 2, Navigator: "PN-B", Start: "2026-04-01", End: "2026-04-30"}, false, syncengine.ENOTFOUND, ""},
		{"ErrOwnWithoutDefault", Wave{Number: 9, Navigator: "PN-A", Start: "2026-09-01", End: "2026-09-30"}, true, syncengine.ENOTFOUND, ""},
		{"ErrDefaultOverlap", Wave{Number: 3, Label: "End", Start: "2026-03-31", End: "2026-05-31"}, true, syncengine.ECONFLICT, ""},
		// PN-B's wave 1 runs to 10 February: wave 2 may not start before.
		{"ErrOwnOverlap", Wave{Number: 2, Label: "Middle", Start: "2026-02-05", End: "2026-03-31"}, false, syncengine.ECONFLICT, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.w
			err := CheckWaveSave(plan, &w, tc.create)
			if got := syncengine.ErrorCode(err); got != tc.code {
				t.Fatalf("got %v (%q), want %q", err, got, tc.code)
			}
			if err == nil && w.Label != tc.label {
				t.Fatalf("label %q, want %q", w.Label, tc.label)
			}
		})
	}
	t.Run("ErrNotNavigator", func(t *testing.T) {
		err := CheckWaveNavigator(&User{StudyCode: "SUP-1", Role: RoleSupervisor})
		if syncengine.ErrorCode(err) != syncengine.EINVALID {
			t.Fatalf("got %v, want EINVALID", err)
		}
		if err := CheckWaveNavigator(&User{StudyCode: "PN-A", Role: RoleNavigator}); err != nil {
			t.Fatal(err)
		}
	})
}
