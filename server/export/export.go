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

	"github.com/google/uuid"
)

// Wave is one interview wave as the export used it: entries dated from
// Start to End, both inclusive, belong to it.
type Wave struct {
	Number uint32
	Label  string
	Start  string // YYYY-MM-DD, inclusive
	End    string // YYYY-MM-DD, inclusive
}

// Manifest describes one export: the snapshot it reflects, the waves it
// used and what it left out. It holds counts only, never content.
type Manifest struct {
	// Position is the server position (sequence number) of the snapshot.
	Position uint64
	// ExportedAt is when the export was made. It is also the modification
	// time of every file in a .qdpx, so that the same export gives the
	// same bytes.
	ExportedAt time.Time
	// Wave is the wave exported; 0 for all waves.
	Wave uint32
	// Waves are the wave definitions the export used. When Wave is not 0
	// it must be among them.
	Waves []Wave
	// Entries is the number of entries in the export; the writers check
	// that the records hold exactly this many.
	Entries uint64
	// ExcludedNotShared counts entries of the selected waves left out
	// because they are not shared for research.
	ExcludedNotShared uint64
	// ExcludedDeleted counts entries of the selected waves left out
	// because they are deleted.
	ExcludedDeleted uint64
	// ExcludedErased counts entries erased from the study.
	ExcludedErased uint64
	// ExcludedNoWave counts entries shared for research whose date is in
	// no wave.
	ExcludedNoWave uint64
}

// Record is one pseudonymised diary entry of an export. It carries the
// author's study code and nothing else about the author.
type Record struct {
	EntryID    string // the entry's UUIDv7, as text
	StudyCode  string // the author's study code, e.g. "PN-A"
	Wave       uint32 // the wave whose window holds Date
	Date       string // the date the entry is about, YYYY-MM-DD
	Title      string
	Body       string
	Tags       []string
	Mood       int // 0 when not recorded
	Created    time.Time
	LastEdited time.Time
	Edits      int // accepted changes in the entry's history
}

// Pass tells a Records function what one reading needs, so that it can
// leave out what that reading will not look at. A Records function may
// ignore a Pass and give everything: the writers skip records of other
// waves themselves, and never look at Body when SkipBody is set.
type Pass struct {
	// Wave, when not 0, asks for the records of that wave only.
	Wave uint32
	// SkipBody says the reading will not look at Body, so Body may be
	// left empty (the body is the only field that can be large).
	SkipBody bool
}

// Records gives the records of one export to yield, one at a time,
// ordered by study code, then date, then entry id, and returns the first
// error yield returns (or its own). It may be called several times and
// must give the same records each time, so it should read from one
// snapshot. The Record passed to yield may be reused by the next call:
// the writers do not keep it.
type Records func(p Pass, yield func(*Record) error) error

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
// against its manifest. It costs memory per wave, never per entry.
type checker struct {
	m     *Manifest
	waves map[uint32]Wave
	// selected are the waves the export covers, by number.
	selected []Wave
}

func newChecker(m *Manifest) (*checker, error) {
	if m.ExportedAt.IsZero() {
		return nil, errors.New("manifest has no export time")
	}
	c := &checker{m: m, waves: make(map[uint32]Wave, len(m.Waves))}
	for _, w := range m.Waves {
		if w.Number == 0 {
			return nil, errors.New("manifest has a wave numbered 0")
		}
		if _, dup := c.waves[w.Number]; dup {
			return nil, fmt.Errorf("manifest defines wave %d twice", w.Number)
		}
		if w.End < w.Start {
			return nil, fmt.Errorf("manifest's wave %d ends (%s) before it starts (%s)", w.Number, w.End, w.Start)
		}
		c.waves[w.Number] = w
	}
	if m.Wave != 0 {
		w, ok := c.waves[m.Wave]
		if !ok {
			return nil, fmt.Errorf("manifest exports wave %d but does not define it", m.Wave)
		}
		c.selected = []Wave{w}
	} else {
		c.selected = sortedWaves(m.Waves)
	}
	return c, nil
}

// sortedWaves returns a copy of waves ordered by number.
func sortedWaves(waves []Wave) []Wave {
	s := slices.Clone(waves)
	slices.SortFunc(s, func(a, b Wave) int { return cmp.Compare(a.Number, b.Number) })
	return s
}

// wave returns the definition of wave n if the export covers it.
func (c *checker) wave(n uint32) (Wave, bool) {
	w, ok := c.waves[n]
	if !ok || (c.m.Wave != 0 && n != c.m.Wave) {
		return Wave{}, false
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
func (rd *reading) check(r *Record) (id uuid.UUID, keep bool, err error) {
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
	w, ok := rd.c.wave(r.Wave)
	if !ok {
		return id, false, fmt.Errorf("entry %s is in wave %d, which this export does not cover", id, r.Wave)
	}
	if r.Date < w.Start || r.Date > w.End {
		return id, false, fmt.Errorf("entry %s is dated %q, outside wave %d (%s to %s)", id, truncate(r.Date, 20), w.Number, w.Start, w.End)
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
func waveTitle(w Wave) string {
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
