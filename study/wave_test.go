package study

import (
	"strings"
	"testing"

	"github.com/diarysync/diarysync/syncengine"
)

func TestValidateWave(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    Wave
		code syncengine.Code
	}{
		{"OK", Wave{Number: 1, Label: " Baseline ", Start: "2026-01-01", End: "2026-01-31"}, ""},
		{"OKOneDay", Wave{Number: MaxWaveNumber, Label: "x", Start: "2026-01-01", End: "2026-01-01"}, ""},
		{"ErrNumber", Wave{Number: 0, Label: "x", Start: "2026-01-01", End: "2026-01-31"}, syncengine.EINVALID},
		{"ErrNumberTooLarge", Wave{Number: MaxWaveNumber + 1, Label: "x", Start: "2026-01-01", End: "2026-01-31"}, syncengine.EINVALID},
		{"ErrNoLabel", Wave{Number: 1, Label: "  ", Start: "2026-01-01", End: "2026-01-31"}, syncengine.EINVALID},
		{"ErrLongLabel", Wave{Number: 1, Label: strings.Repeat("l", MaxWaveLabelBytes+1), Start: "2026-01-01", End: "2026-01-31"}, syncengine.ETOOLARGE},
		{"ErrStart", Wave{Number: 1, Label: "x", Start: "2026-13-01", End: "2026-01-31"}, syncengine.EINVALID},
		{"ErrBackwards", Wave{Number: 1, Label: "x", Start: "2026-02-01", End: "2026-01-31"}, syncengine.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.w
			err := ValidateWave(&w)
			if got := syncengine.ErrorCode(err); got != tc.code {
				t.Fatalf("got %v (%s), want %q", err, got, tc.code)
			}
			if err == nil && w.Label != strings.TrimSpace(tc.w.Label) {
				t.Fatalf("label %q was not trimmed", w.Label)
			}
		})
	}
}

func TestCheckOverlap(t *testing.T) {
	waves := []*Wave{
		{Number: 1, Label: "a", Start: "2026-01-01", End: "2026-01-31"},
		{Number: 2, Label: "b", Start: "2026-03-01", End: "2026-03-31"},
	}
	for _, tc := range []struct {
		name string
		w    Wave
		ok   bool
	}{
		{"OKBetween", Wave{Number: 3, Start: "2026-02-01", End: "2026-02-28"}, true},
		{"OKReplacesItself", Wave{Number: 1, Start: "2026-01-15", End: "2026-02-15"}, true},
		{"ErrEndTouches", Wave{Number: 3, Start: "2025-12-01", End: "2026-01-01"}, false},
		{"ErrStartTouches", Wave{Number: 3, Start: "2026-03-31", End: "2026-04-30"}, false},
		{"ErrInside", Wave{Number: 3, Start: "2026-03-10", End: "2026-03-11"}, false},
		{"ErrAround", Wave{Number: 1, Start: "2025-01-01", End: "2027-01-01"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckOverlap(&tc.w, waves)
			if tc.ok != (err == nil) || (err != nil && syncengine.ErrorCode(err) != syncengine.ECONFLICT) {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if w := waves[0]; !w.Holds("2026-01-01") || !w.Holds("2026-01-31") || w.Holds("2026-02-01") {
		t.Fatal("Holds does not take both ends of the window")
	}
}
