package study

import (
	"strings"

	"github.com/diarysync/diarysync/syncengine"
)

// Wave is one interview wave: entries dated within [Start, End] belong
// to it.
type Wave struct {
	Number uint32
	Label  string
	Start  string // YYYY-MM-DD, inclusive
	End    string // YYYY-MM-DD, inclusive
}

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
	if w.Label == "" {
		return syncengine.Errorf(syncengine.EINVALID, "wave %d needs a label", w.Number)
	}
	if err := syncengine.ValidateText("wave label", w.Label, MaxWaveLabelBytes, false); err != nil {
		return err
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
