package study

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/diarysync/diarysync/syncengine"
)

// Wave is one interview wave: entries dated within [Start, End] belong
// to it. A wave with a Navigator is that navigator's own dates for the
// study-wide wave of the same number (its default): for that navigator
// they replace the default's dates, and its label is the default's.
type Wave struct {
	Number uint32
	Label  string
	Start  string // YYYY-MM-DD, inclusive
	End    string // YYYY-MM-DD, inclusive
	// Navigator is the study code of the navigator these dates are for,
	// or "" for the study-wide default.
	Navigator string
}

// Definition says which definition placed an entry in a wave, as
// exports and manifests state it.
func (w *Wave) Definition() string {
	if w.Navigator != "" {
		return DefinitionNavigator
	}
	return DefinitionDefault
}

// The definitions that can place an entry in a wave.
const (
	DefinitionDefault   = "default"
	DefinitionNavigator = "navigator"
)

// Wave limits.
const (
	MaxWaveNumber     = 1000
	MaxWaveLabelBytes = 128
)

// ValidateWave checks a wave definition, trimming its label.
func ValidateWave(w *Wave) error {
	if w.Number == 0 || w.Number > MaxWaveNumber {
		return syncengine.Errorf(syncengine.EINVALID, "wave number must be from 1 to %d", MaxWaveNumber)
	}
	w.Label = strings.TrimSpace(w.Label)
	w.Navigator = strings.TrimSpace(w.Navigator)
	if w.Navigator != "" {
		// A navigator's dates take the default's label.
		w.Label = ""
		if err := syncengine.ValidateStudyCode(w.Navigator); err != nil {
			return err
		}
	} else {
		if w.Label == "" {
			return syncengine.Errorf(syncengine.EINVALID, "wave %d needs a label", w.Number)
		}
		if err := syncengine.ValidateText("wave label", w.Label, MaxWaveLabelBytes, false); err != nil {
			return err
		}
	}
	if err := syncengine.ValidateDate(w.Start); err != nil {
		return syncengine.Errorf(syncengine.EINVALID, "wave start: %s", syncengine.ErrorMessage(err))
	}
	if err := syncengine.ValidateDate(w.End); err != nil {
		return syncengine.Errorf(syncengine.EINVALID, "wave end: %s", syncengine.ErrorMessage(err))
	}
	if w.End < w.Start {
		return syncengine.Errorf(syncengine.EINVALID, "wave %d ends (%s) before it starts (%s)", w.Number, w.End, w.Start)
	}
	return nil
}

// Holds reports whether the wave's window holds the date (YYYY-MM-DD).
func (w *Wave) Holds(date string) bool { return date >= w.Start && date <= w.End }

// CheckOverlap refuses a window that overlaps another wave's, so that
// every entry belongs to at most one wave. others are the waves defined
// so far; a wave with w's number among them is the one w replaces.
func CheckOverlap(w *Wave, others []*Wave) error {
	for _, o := range others {
		if o.Number != w.Number && o.Start <= w.End && o.End >= w.Start {
			return syncengine.Errorf(syncengine.ECONFLICT, "wave %d (%s to %s) overlaps wave %d", w.Number, w.Start, w.End, o.Number)
		}
	}
	return nil
}

// WavePlan is every wave definition of a study: the study-wide defaults
// and each navigator's own dates.
type WavePlan struct {
	// Defaults are the study-wide waves, by number.
	Defaults []Wave
	// Navigators holds each navigator's own dates, by study code, each
	// list by number.
	Navigators map[string][]Wave
}

// NewWavePlan sorts waves (defaults and navigators' dates, in any order)
// into a plan.
func NewWavePlan(waves []Wave) WavePlan {
	p := WavePlan{Navigators: map[string][]Wave{}}
	for _, w := range waves {
		if w.Navigator == "" {
			p.Defaults = append(p.Defaults, w)
		} else {
			p.Navigators[w.Navigator] = append(p.Navigators[w.Navigator], w)
		}
	}
	byNumber := func(a, b Wave) int { return cmp.Compare(a.Number, b.Number) }
	slices.SortFunc(p.Defaults, byNumber)
	for _, ws := range p.Navigators {
		slices.SortFunc(ws, byNumber)
	}
	return p
}

// All returns every definition: the defaults, then each navigator's
// dates in study-code order.
func (p WavePlan) All() []Wave {
	out := slices.Clone(p.Defaults)
	for _, code := range slices.Sorted(maps.Keys(p.Navigators)) {
		out = append(out, p.Navigators[code]...)
	}
	return out
}

// Default returns the study-wide wave numbered n.
func (p WavePlan) Default(n uint32) (Wave, bool) {
	i, ok := slices.BinarySearchFunc(p.Defaults, n, func(w Wave, n uint32) int { return cmp.Compare(w.Number, n) })
	if !ok {
		return Wave{}, false
	}
	return p.Defaults[i], true
}

// Effective returns the waves as they hold for one navigator (by study
// code, as stored), by number:
// each default, with the navigator's own dates where they have some (and
// then Navigator set). Dates of a navigator for a wave with no default
// are ignored: CheckWavePlan refuses them.
func (p WavePlan) Effective(code string) []Wave {
	own := p.Navigators[code]
	out := make([]Wave, 0, len(p.Defaults))
	for _, d := range p.Defaults {
		w := d
		if i, ok := slices.BinarySearchFunc(own, d.Number, func(w Wave, n uint32) int { return cmp.Compare(w.Number, n) }); ok {
			w.Start, w.End, w.Navigator = own[i].Start, own[i].End, own[i].Navigator
		}
		out = append(out, w)
	}
	return out
}

// Place returns the wave an entry of the navigator with the given study
// code, dated date, belongs to: the one whose effective dates for that
// navigator hold the date. CheckWavePlan makes it at most one.
func (p WavePlan) Place(code, date string) (Wave, bool) {
	for _, w := range p.Effective(code) {
		if w.Holds(date) {
			return w, true
		}
	}
	return Wave{}, false
}

// CheckWavePlan refuses a plan in which an entry could belong to two
// waves: the defaults must not overlap one another, and no navigator's
// effective waves may overlap one another. Every navigator's dates must
// be for a wave that has a default. Stores call it with the plan as a
// change would leave it, before they write the change.
func CheckWavePlan(p WavePlan) error { return checkPlan(p, 0) }

// CheckWaveChange is CheckWavePlan for the plan with w added or replacing
// the definition it redefines; an overlap is reported as w's.
func CheckWaveChange(p WavePlan, w Wave) error { return checkPlan(p.WithWave(w), w.Number) }

func checkPlan(p WavePlan, first uint32) error {
	if err := checkOverlaps(p.Defaults, "", first); err != nil {
		return err
	}
	for _, code := range slices.Sorted(maps.Keys(p.Navigators)) {
		for _, w := range p.Navigators[code] {
			if _, ok := p.Default(w.Number); !ok {
				return syncengine.Errorf(syncengine.ENOTFOUND, "there is no wave %d to give %s their own dates for: define the study-wide wave first", w.Number, code)
			}
		}
		if err := checkOverlaps(p.Effective(code), code, first); err != nil {
			return err
		}
	}
	return nil
}

// checkOverlaps refuses two waves of one list (sorted by number) whose
// windows overlap, naming wave first first.
func checkOverlaps(waves []Wave, code string, first uint32) error {
	for i := range waves {
		for j := i + 1; j < len(waves); j++ {
			a, b := &waves[i], &waves[j]
			if b.Number == first {
				a, b = b, a
			}
			if a.Start <= b.End && a.End >= b.Start {
				if code == "" {
					return syncengine.Errorf(syncengine.ECONFLICT, "wave %d (%s to %s) overlaps wave %d (%s to %s)", a.Number, a.Start, a.End, b.Number, b.Start, b.End)
				}
				return syncengine.Errorf(syncengine.ECONFLICT, "for %s, wave %d (%s to %s) overlaps wave %d (%s to %s)", code, a.Number, a.Start, a.End, b.Number, b.Start, b.End)
			}
		}
	}
	return nil
}

// WithWave returns the plan with w added or replacing the definition of
// the same number (and navigator), for CheckWavePlan.
func (p WavePlan) WithWave(w Wave) WavePlan {
	all := slices.DeleteFunc(p.All(), func(o Wave) bool { return o.Number == w.Number && o.Navigator == w.Navigator })
	return NewWavePlan(append(all, w))
}

// CheckWaveNavigator refuses own wave dates for a user who is not a
// navigator (EINVALID): only navigators write entries to place.
func CheckWaveNavigator(u *User) error {
	if u.Role != RoleNavigator {
		return syncengine.Errorf(syncengine.EINVALID, "%s is a %s: only navigators have their own wave dates", u.StudyCode, u.Role)
	}
	return nil
}

// CheckWaveSave decides whether w may be saved into plan, the study's
// definitions before the change: as a new definition when create
// (CreateWave), else as the new version of one that exists (UpdateWave).
// A navigator's dates (w.Navigator set, as stored) take their wave's
// label, which CheckWaveSave fills in. ENOTFOUND for a navigator's dates
// for a wave that does not exist or for a definition to update that does
// not; EEXISTS for one to create that does; ECONFLICT when the plan
// with w would have overlapping waves (CheckWaveChange).
func CheckWaveSave(plan WavePlan, w *Wave, create bool) error {
	exists := false
	if w.Navigator == "" {
		_, exists = plan.Default(w.Number)
	} else {
		d, ok := plan.Default(w.Number)
		if !ok {
			return syncengine.Errorf(syncengine.ENOTFOUND, "there is no wave %d to give %s their own dates for: define the study-wide wave first", w.Number, w.Navigator)
		}
		w.Label = d.Label
		for _, o := range plan.Navigators[w.Navigator] {
			exists = exists || o.Number == w.Number
		}
	}
	switch {
	case create && exists && w.Navigator == "":
		return ErrWaveExists(w.Number)
	case create && exists:
		return syncengine.Errorf(syncengine.EEXISTS, "%s already has their own dates for wave %d: use edit", w.Navigator, w.Number)
	case !create && !exists && w.Navigator == "":
		return ErrUnknownWave(w.Number)
	case !create && !exists:
		return syncengine.Errorf(syncengine.ENOTFOUND, "%s has no own dates for wave %d: use add", w.Navigator, w.Number)
	}
	return CheckWaveChange(plan, *w)
}

// ErrNoWaveDates is the error for removing a navigator's own dates for a
// wave when they have none.
func ErrNoWaveDates(code string, number uint32) error {
	return syncengine.Errorf(syncengine.ENOTFOUND, "%s has no own dates for wave %d", code, number)
}
