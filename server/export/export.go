package export

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/diarysync/diarysync/study"
	"github.com/google/uuid"
)

// timeLayout writes times in UTC with milliseconds, the precision of the
// entries' clocks; a fixed width keeps the column sortable as text.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// formatTime writes t in RFC 3339, UTC, or "" for the zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

// checker holds what a writer needs to check the records of one export
// against its manifest. It costs memory per wave definition, never per
// entry.
type checker struct {
	m    *study.Manifest
	plan study.WavePlan
	// selected are the study-wide waves the export covers, by number.
	selected []study.Wave
}

func newChecker(m *study.Manifest) (*checker, error) {
	if m.ExportedAt.IsZero() {
		return nil, errors.New("manifest has no export time")
	}
	seen := map[string]bool{}
	for _, w := range append(slices.Clone(m.Waves), m.NavigatorWaves...) {
		if w.Number == 0 {
			return nil, errors.New("manifest has a wave numbered 0")
		}
		key := strconv.FormatUint(uint64(w.Number), 10) + "/" + w.Navigator
		if seen[key] {
			return nil, fmt.Errorf("manifest defines wave %d twice", w.Number)
		}
		seen[key] = true
		if w.End < w.Start {
			return nil, fmt.Errorf("manifest's wave %d ends (%s) before it starts (%s)", w.Number, w.End, w.Start)
		}
	}
	for _, w := range m.Waves {
		if w.Navigator != "" {
			return nil, fmt.Errorf("manifest lists %s's own dates for wave %d among the study-wide waves", w.Navigator, w.Number)
		}
	}
	c := &checker{m: m, plan: m.Plan()}
	for _, w := range m.NavigatorWaves {
		if w.Navigator == "" {
			return nil, fmt.Errorf("manifest lists the study-wide wave %d among the navigators' own dates", w.Number)
		}
		if _, ok := c.plan.Default(w.Number); !ok {
			return nil, fmt.Errorf("manifest gives %s own dates for wave %d but does not define the wave", w.Navigator, w.Number)
		}
	}
	if m.Wave != 0 {
		w, ok := c.plan.Default(m.Wave)
		if !ok {
			return nil, fmt.Errorf("manifest exports wave %d but does not define it", m.Wave)
		}
		c.selected = []study.Wave{w}
	} else {
		c.selected = c.plan.Defaults
	}
	return c, nil
}

// sortedWaves returns a copy of waves ordered by number.
func sortedWaves(waves []study.Wave) []study.Wave {
	s := slices.Clone(waves)
	slices.SortFunc(s, func(a, b study.Wave) int { return cmp.Compare(a.Number, b.Number) })
	return s
}

// wave returns the study-wide definition of wave n if the export covers
// it.
func (c *checker) wave(n uint32) (study.Wave, bool) {
	w, ok := c.plan.Default(n)
	if !ok || (c.m.Wave != 0 && n != c.m.Wave) {
		return study.Wave{}, false
	}
	return w, true
}

// reading checks the records of one call of Records: their order, and
// for each one the fields the writers rely on. Tools key sources and
// cases by the ids derived from these fields, so a record out of order
// or outside the export would silently give a wrong project.
type reading struct {
	c         *checker
	wave      uint32 // 0, or the only wave this reading keeps
	n         uint64 // records kept
	prevCode  string
	prevDate  string
	prevEntry uuid.UUID
	started   bool
}

func (c *checker) newReading(wave uint32) *reading {
	return &reading{c: c, wave: wave}
}

// check checks r and reports whether this reading keeps it. It returns
// the record's entry id, parsed.
func (rd *reading) check(r *study.Record) (id uuid.UUID, keep bool, err error) {
	id, err = uuid.Parse(r.EntryID)
	if err != nil || len(r.EntryID) != 36 {
		return id, false, fmt.Errorf("entry id %q is not a UUID", truncate(r.EntryID, 40))
	}
	if r.StudyCode == "" {
		return id, false, fmt.Errorf("entry %s has no study code", id)
	}
	if _, err := time.Parse(time.DateOnly, r.Date); err != nil {
		return id, false, fmt.Errorf("entry %s is dated %q, not a date written YYYY-MM-DD", id, truncate(r.Date, 20))
	}
	m := rd.c.m
	if (m.Navigator != "" && r.StudyCode != m.Navigator) || (m.From != "" && r.Date < m.From) || (m.To != "" && r.Date > m.To) {
		return id, false, fmt.Errorf("entry %s (%s, %s) is outside the export's filters", id, r.StudyCode, r.Date)
	}
	if _, ok := rd.c.wave(r.Wave); !ok {
		return id, false, fmt.Errorf("entry %s is in wave %d, which this export does not cover", id, r.Wave)
	}
	w, ok := rd.c.plan.Place(r.StudyCode, r.Date)
	if !ok || w.Number != r.Wave {
		return id, false, fmt.Errorf("entry %s is dated %q, outside wave %d as defined for %s", id, truncate(r.Date, 20), r.Wave, r.StudyCode)
	}
	if r.WaveDefinition != w.Definition() {
		return id, false, fmt.Errorf("entry %s was placed by the %s definition of wave %d, but the manifest's is %s", id, r.WaveDefinition, r.Wave, w.Definition())
	}
	if rd.started {
		order := cmp.Or(
			strings.Compare(r.StudyCode, rd.prevCode),
			strings.Compare(r.Date, rd.prevDate),
			slices.Compare(id[:], rd.prevEntry[:]),
		)
		if order <= 0 {
			return id, false, fmt.Errorf("entry %s comes after entry %s but is not ordered after it by study code, date and entry id", id, rd.prevEntry)
		}
	}
	rd.started = true
	rd.prevCode, rd.prevDate, rd.prevEntry = r.StudyCode, r.Date, id
	if rd.wave != 0 && r.Wave != rd.wave {
		return id, false, nil
	}
	rd.n++
	return id, true, nil
}

// done checks that a reading of every wave gave as many records as the
// manifest counts.
func (rd *reading) done() error {
	if rd.n != rd.c.m.Entries {
		return countError(rd.n, rd.c.m.Entries)
	}
	return nil
}

func countError(got, want uint64) error {
	return fmt.Errorf("the records hold %d entries but the manifest counts %d", got, want)
}

// sortedTags returns the tags in a fixed order, so that the same entry
// always exports the same way whatever order the caller read them in.
func sortedTags(tags []string) []string {
	if slices.IsSorted(tags) {
		return tags
	}
	return slices.Sorted(slices.Values(tags))
}

// waveTitle names a wave for people: "wave 2 (Middle)".
func waveTitle(w study.Wave) string {
	if w.Label == "" {
		return "wave " + strconv.FormatUint(uint64(w.Number), 10)
	}
	return fmt.Sprintf("wave %d (%s)", w.Number, w.Label)
}

// truncate shortens s to at most n bytes for an error message, on a
// character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.ToValidUTF8(s[:n], "\uFFFD") + "…"
}
