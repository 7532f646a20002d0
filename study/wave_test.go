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

func testPlan() WavePlan {
	return NewWavePlan([]Wave{
		{Number: 2, Label: "Middle", Start: "2026-04-01", End: "2026-06-30"},
		{Number: 1, Label: "Start", Start: "2026-01-01", End: "2026-03-31"},
		{Number: 3, Label: "End", Start: "2026-07-01", End: "2026-09-30"},
		{Number: 2, Navigator: "PN-B", Start: "2026-05-01", End: "2026-07-15"},
		{Number: 3, Navigator: "PN-B", Start: "2026-07-16", End: "2026-10-31"},
	})
}

func TestWavePlanEffective(t *testing.T) {
	p := testPlan()
	a := p.Effective("PN-A")
	if len(a) != 3 || a[1].Start != "2026-04-01" || a[1].Navigator != "" || a[1].Definition() != DefinitionDefault {
		t.Fatalf("PN-A's waves = %+v", a)
	}
	b := p.Effective("PN-B")
	if len(b) != 3 || b[0].Start != "2026-01-01" || b[1].Start != "2026-05-01" || b[1].Label != "Middle" || b[1].Definition() != DefinitionNavigator || b[2].End != "2026-10-31" {
		t.Fatalf("PN-B's waves = %+v", b)
	}
	if err := CheckWavePlan(p); err != nil {
		t.Fatal(err)
	}
}

func TestWavePlanPlace(t *testing.T) {
	p := testPlan()
	for _, tc := range []struct {
		code, date string
		wave       uint32
		def        string
	}{
		{"PN-A", "2026-04-15", 2, DefinitionDefault},
		{"PN-B", "2026-04-15", 0, ""}, // PN-B's wave 2 starts later: in no wave
		{"PN-B", "2026-07-10", 2, DefinitionNavigator},
		{"PN-A", "2026-07-10", 3, DefinitionDefault},
		{"PN-B", "2026-10-31", 3, DefinitionNavigator},
		{"PN-A", "2026-10-31", 0, ""},
		{"PN-B", "2026-02-01", 1, DefinitionDefault},
	} {
		w, ok := p.Place(tc.code, tc.date)
		if ok != (tc.wave != 0) || w.Number != tc.wave || (ok && w.Definition() != tc.def) {
			t.Errorf("Place(%s, %s) = %+v, %v; want wave %d (%s)", tc.code, tc.date, w, ok, tc.wave, tc.def)
		}
	}
}

func TestCheckWavePlan(t *testing.T) {
	p := testPlan()
	for _, tc := range []struct {
		name string
		w    Wave
		code syncengine.Code
	}{
		{"OKOwnDatesElsewhere", Wave{Number: 1, Navigator: "PN-C", Start: "2025-12-01", End: "2026-02-15"}, ""},
		{"OKMovesOwnWave", Wave{Number: 2, Navigator: "PN-B", Start: "2026-04-10", End: "2026-07-15"}, ""},
		{"ErrOwnWaveOverlapsDefault", Wave{Number: 1, Navigator: "PN-A", Start: "2026-01-01", End: "2026-04-10"}, syncengine.ECONFLICT},
		{"ErrOwnWaveOverlapsOwn", Wave{Number: 2, Navigator: "PN-B", Start: "2026-05-01", End: "2026-07-20"}, syncengine.ECONFLICT},
		{"ErrNoDefault", Wave{Number: 9, Navigator: "PN-A", Start: "2027-01-01", End: "2027-02-01"}, syncengine.ENOTFOUND},
		// A default that moves under a navigator's own dates.
		{"ErrDefaultMovesUnderOwnDates", Wave{Number: 1, Label: "Start", Start: "2026-01-01", End: "2026-05-15"}, syncengine.ECONFLICT},
		{"ErrDefaultsOverlap", Wave{Number: 4, Label: "Later", Start: "2026-09-01", End: "2026-12-31"}, syncengine.ECONFLICT},
		{"ErrNewDefaultOverlapsOwnDates", Wave{Number: 4, Label: "Later", Start: "2026-10-01", End: "2026-12-31"}, syncengine.ECONFLICT},
		{"OKNewDefault", Wave{Number: 4, Label: "Later", Start: "2026-11-01", End: "2026-12-31"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckWavePlan(p.WithWave(tc.w))
			if got := syncengine.ErrorCode(err); got != tc.code {
				t.Fatalf("got %v (%s), want %q", err, got, tc.code)
			}
		})
	}
}

func TestValidateWaveNavigator(t *testing.T) {
	w := Wave{Number: 1, Label: "ignored", Navigator: " pn-a ", Start: "2026-01-01", End: "2026-01-31"}
	if err := ValidateWave(&w); err != nil || w.Navigator != "pn-a" || w.Label != "" {
		t.Fatalf("ValidateWave = %v, %+v", err, w)
	}
}
