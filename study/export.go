package study

import (
	"strconv"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

// ExportFormat is the file format of a research export; the numbers match
// the API's ExportFormat.
type ExportFormat int

// Export formats.
const (
	FormatCSV   ExportFormat = 1
	FormatJSONL ExportFormat = 2
	FormatQDPX  ExportFormat = 3
)

var formatNames = map[ExportFormat]string{FormatCSV: "csv", FormatJSONL: "jsonl", FormatQDPX: "qdpx"}

// String returns the format's short name, as the audit log records it.
func (f ExportFormat) String() string {
	if n, ok := formatNames[f]; ok {
		return n
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// Valid reports whether f is a known format.
func (f ExportFormat) Valid() bool { _, ok := formatNames[f]; return ok }

// CheckExportFormat refuses an unknown export format.
func CheckExportFormat(f ExportFormat) error {
	if !f.Valid() {
		return syncengine.Errorf(syncengine.EINVALID, "unknown export format %d: use CSV, JSON Lines or QDPX", int(f))
	}
	return nil
}

// WaveName names a wave selection: its number, or "all" for 0.
func WaveName(w uint32) string {
	if w == 0 {
		return "all"
	}
	return strconv.FormatUint(uint64(w), 10)
}

// Manifest describes one export: the snapshot it reflects, the waves it
// used and what it left out. It holds counts only, never content.
type Manifest struct {
	// Position is the store position (sequence number) of the snapshot.
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

// RecordOf fills r from the research view of an entry (body left out
// when skipBody).
func RecordOf(r *Record, e *syncengine.Entry, skipBody bool) {
	e = e.View(syncengine.AudienceResearch)
	r.EntryID = e.ID.String()
	r.Date, r.Title, r.Tags, r.Mood = e.Date.Value, e.Title.Value, e.TagNames(), int(e.Mood.Value)
	r.Body = ""
	if !skipBody {
		r.Body = e.Body.Value
	}
	r.Created, r.LastEdited = e.Created.Time(), e.Updated().Time()
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
// must give the same records each time, so it reads from one snapshot.
// The Record passed to yield may be reused by the next call: the writers
// do not keep it.
type Records func(p Pass, yield func(*Record) error) error

// ExportRequest says what to export.
type ExportRequest struct {
	Wave   uint32 // 0: every wave
	Format ExportFormat
}

// StoredEntry is what a store keeps beside an entry's state that an
// export manifest counts by: its date, whether the research team may see
// it, whether it is deleted, and whether it was erased.
type StoredEntry struct {
	Date                     string
	ResearchVisible, Deleted bool
	Erased                   bool
}

// Tally counts one stored entry into the manifest of an export of
// m.Wave (0: every wave) over m.Waves: exported, or left out as erased,
// deleted, not shared, or (for every wave) shared but dated in none.
// Every store calls it for each entry it keeps, so that the counts mean
// the same whatever engine made the export.
func (m *Manifest) Tally(e StoredEntry) {
	if e.Erased {
		m.ExcludedErased++
		return
	}
	in := false
	for i := range m.Waves {
		if w := &m.Waves[i]; (m.Wave == 0 || w.Number == m.Wave) && w.Holds(e.Date) {
			in = true
			break
		}
	}
	switch {
	case !in:
		if m.Wave == 0 && e.ResearchVisible {
			m.ExcludedNoWave++
		}
	case e.ResearchVisible:
		m.Entries++
	case e.Deleted:
		m.ExcludedDeleted++
	default:
		m.ExcludedNotShared++
	}
}
