package study

import (
	"crypto/sha256"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/diarysync/diarysync/syncengine"
	"golang.org/x/text/unicode/norm"
)

// ExportFormat is the file format of a research export; the numbers match
// the API's ExportFormat.
type ExportFormat int

// Export formats.
const (
	FormatCSV   ExportFormat = 1
	FormatJSONL ExportFormat = 2
	FormatQDPX  ExportFormat = 3
	// FormatQDC is the REFI-QDA codebook alone (.qdc): one code per tag.
	FormatQDC ExportFormat = 4
)

var formatNames = map[ExportFormat]string{FormatCSV: "csv", FormatJSONL: "jsonl", FormatQDPX: "qdpx", FormatQDC: "qdc"}

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
		return syncengine.Errorf(syncengine.EINVALID, "unknown export format %d: use CSV, JSON Lines, QDPX or QDC", int(f))
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

// ExportRequest says what to export.
type ExportRequest struct {
	Wave   uint32 // 0: every wave
	Format ExportFormat
	// Navigator, when not "", exports only that navigator's entries.
	Navigator string
	// From and To, when not "", export only entries dated on or after
	// From and on or before To (YYYY-MM-DD).
	From, To string
	// Since, when not 0, is the id of an earlier export: the manifest
	// then lists what was added, changed, withdrawn and erased since.
	Since int64
	// BOM starts a CSV file with a UTF-8 byte order mark, so that Excel
	// opens it as UTF-8.
	BOM bool
	// NoFormulaGuard writes CSV cells as they are, without the quote
	// put before a cell that a spreadsheet would run as a formula.
	NoFormulaGuard bool
}

// CheckExportRequest refuses a request that cannot be exported.
func CheckExportRequest(r *ExportRequest) error {
	if err := CheckExportFormat(r.Format); err != nil {
		return err
	}
	r.Navigator = strings.TrimSpace(r.Navigator)
	if r.Navigator != "" {
		if err := syncengine.ValidateStudyCode(r.Navigator); err != nil {
			return err
		}
	}
	for _, d := range []struct{ name, v string }{{"from", r.From}, {"to", r.To}} {
		if d.v == "" {
			continue
		}
		if err := syncengine.ValidateDate(d.v); err != nil {
			return syncengine.Errorf(syncengine.EINVALID, "%s date: %s", d.name, syncengine.ErrorMessage(err))
		}
	}
	if r.From != "" && r.To != "" && r.To < r.From {
		return syncengine.Errorf(syncengine.EINVALID, "the to date (%s) is before the from date (%s)", r.To, r.From)
	}
	if r.Since < 0 {
		return syncengine.Errorf(syncengine.EINVALID, "an export id is a positive number")
	}
	if r.Format != FormatCSV && (r.BOM || r.NoFormulaGuard) {
		return syncengine.Errorf(syncengine.EINVALID, "a byte order mark and the formula guard are CSV settings; this export is %s", r.Format)
	}
	return nil
}

// Exclusion is where an entry stands in an export.
type Exclusion int

// Exclusions.
const (
	// Included: the entry is exported.
	Included Exclusion = iota
	// OutOfScope: the entry is not the selected navigator's, outside the
	// dates asked for, or in another wave than the one exported. It is
	// not counted.
	OutOfScope
	// ExcludedNotShared: in the selection, not shared for research.
	ExcludedNotShared
	// ExcludedDeleted: in the selection, deleted.
	ExcludedDeleted
	// ExcludedNoWave: shared for research, dated in none of its
	// author's waves (counted only when every wave is exported).
	ExcludedNoWave
)

// Classify says where an entry of the navigator code, dated date, shared
// for research or not, deleted or not, stands in the export of r under
// plan, and the wave that holds it. It is the one rule every store uses
// to select and count the entries of an export.
func Classify(r *ExportRequest, plan WavePlan, code, date string, shared, deleted bool) (Wave, Exclusion) {
	if (r.Navigator != "" && !strings.EqualFold(code, r.Navigator)) || (r.From != "" && date < r.From) || (r.To != "" && date > r.To) {
		return Wave{}, OutOfScope
	}
	w, ok := plan.Place(code, date)
	switch {
	case !ok && r.Wave == 0 && shared && !deleted:
		return w, ExcludedNoWave
	case !ok, r.Wave != 0 && w.Number != r.Wave:
		return w, OutOfScope
	case deleted:
		return w, ExcludedDeleted
	case !shared:
		return w, ExcludedNotShared
	}
	return w, Included
}

// Manifest describes one export: the snapshot it reflects, the wave
// definitions it used, its settings and what it left out. It holds
// counts and settings only, never content; the per-entry part of a
// manifest file comes from the records.
type Manifest struct {
	// ExportID is the export's id in the list of exports (0 for a
	// preview, which is not kept).
	ExportID int64
	// Position is the store position (sequence number) of the snapshot.
	Position uint64
	// ExportedAt is when the export was made.
	ExportedAt time.Time
	// SnapshotAt is when the store reached Position (the zero time for
	// an empty store). It is the time a .qdpx and a .qdc carry, as every
	// file's modification time and the project's creation time, so that
	// exports of the same snapshot with the same settings are the same
	// bytes.
	SnapshotAt time.Time
	// Format is the format asked for.
	Format ExportFormat
	// Wave is the wave exported; 0 for all waves.
	Wave uint32
	// Navigator, From and To are the request's filters ("" for none).
	Navigator, From, To string
	// Waves are the study-wide wave definitions. When Wave is not 0 it
	// must be among them.
	Waves []Wave
	// NavigatorWaves are the navigators' own dates (Navigator set) of
	// the navigators in the export's scope.
	NavigatorWaves []Wave
	// Entries is the number of entries in the export; the writers check
	// that the records hold exactly this many.
	Entries uint64
	// ExcludedNotShared counts entries of the selection left out because
	// they are not shared for research.
	ExcludedNotShared uint64
	// ExcludedDeleted counts entries of the selection left out because
	// they are deleted.
	ExcludedDeleted uint64
	// ExcludedErased counts entries erased from the study (their dates
	// are gone with them, so this is study-wide).
	ExcludedErased uint64
	// ExcludedNoWave counts entries shared for research whose date is in
	// none of their author's waves (when every wave is exported).
	ExcludedNoWave uint64
	// Redaction is the de-identification the export went through.
	Redaction ManifestRedaction
	// BOM and FormulaGuard are the CSV settings (FormulaGuard is true
	// for every other format, which has no formulas to guard against).
	BOM, FormulaGuard bool
	// Since, when not nil, compares the export with an earlier one.
	Since *Since
}

// NewManifest starts the manifest of the export of r (as
// CheckExportRequest and the store completed it: Navigator is the
// navigator's study code as stored) under plan, with redaction red, made
// at now. The store sets the snapshot's Position and SnapshotAt, and
// counts its entries with Tally.
func NewManifest(r *ExportRequest, plan WavePlan, red *Redaction, now time.Time) Manifest {
	m := Manifest{
		ExportedAt: now.UTC(),
		Format:     r.Format,
		Wave:       r.Wave,
		Navigator:  r.Navigator, From: r.From, To: r.To,
		Waves:        plan.Defaults,
		BOM:          r.BOM,
		FormulaGuard: r.Format != FormatCSV || !r.NoFormulaGuard,
	}
	for _, w := range plan.All() {
		if w.Navigator != "" && (r.Navigator == "" || w.Navigator == r.Navigator) {
			m.NavigatorWaves = append(m.NavigatorWaves, w)
		}
	}
	m.Redaction = ManifestRedaction{Enabled: red.Enabled, Terms: red.Terms}
	if red.Enabled {
		m.Redaction.Patterns = red.Patterns
	}
	return m
}

// StoredEntry is what a store keeps beside an entry's state that an
// export manifest counts by: its author's study code, its date, whether
// the research team may see it, whether it is deleted, and whether it
// was erased.
type StoredEntry struct {
	Navigator                string
	Date                     string
	ResearchVisible, Deleted bool
	Erased                   bool
}

// Tally counts one stored entry into the manifest of the export m
// describes (its Wave, Navigator, From and To) under plan: exported, or
// left out as not shared, deleted or dated in none of its author's
// waves, as Classify places it; or erased, which is counted whatever
// the selection, since an erased entry's author and date are gone with
// it. Every store calls it for each entry it keeps, so that the counts
// mean the same whatever engine made the export.
func (m *Manifest) Tally(plan WavePlan, e StoredEntry) {
	if e.Erased {
		m.ExcludedErased++
		return
	}
	r := ExportRequest{Wave: m.Wave, Navigator: m.Navigator, From: m.From, To: m.To}
	switch _, ex := Classify(&r, plan, e.Navigator, e.Date, e.ResearchVisible, e.Deleted); ex {
	case Included:
		m.Entries++
	case ExcludedNotShared:
		m.ExcludedNotShared++
	case ExcludedDeleted:
		m.ExcludedDeleted++
	case ExcludedNoWave:
		m.ExcludedNoWave++
	}
}

// AuditDetails returns what the audit log records of the export m
// describes, made for r: its id, settings and counts, never content.
func (m *Manifest) AuditDetails(r *ExportRequest) map[string]string {
	details := map[string]string{
		"export_id":           strconv.FormatInt(m.ExportID, 10),
		"format":              r.Format.String(),
		"position":            strconv.FormatUint(m.Position, 10),
		"entries":             strconv.FormatUint(m.Entries, 10),
		"excluded_not_shared": strconv.FormatUint(m.ExcludedNotShared, 10),
		"excluded_deleted":    strconv.FormatUint(m.ExcludedDeleted, 10),
		"excluded_erased":     strconv.FormatUint(m.ExcludedErased, 10),
		"excluded_no_wave":    strconv.FormatUint(m.ExcludedNoWave, 10),
		"redaction":           strconv.FormatBool(m.Redaction.Enabled),
		"replacements":        strconv.FormatUint(m.Redaction.Replacements, 10),
	}
	for k, v := range map[string]string{"navigator": r.Navigator, "from": r.From, "to": r.To} {
		if v != "" {
			details[k] = v
		}
	}
	if r.Since != 0 {
		details["since"] = strconv.FormatInt(r.Since, 10)
	}
	if r.Format == FormatCSV {
		details["bom"], details["formula_guard"] = strconv.FormatBool(m.BOM), strconv.FormatBool(m.FormulaGuard)
	}
	return details
}

// Plan returns the wave plan the manifest records.
func (m *Manifest) Plan() WavePlan {
	all := append(append([]Wave(nil), m.Waves...), m.NavigatorWaves...)
	return NewWavePlan(all)
}

// Empty reports whether the export holds no entry.
func (m *Manifest) Empty() bool { return m.Entries == 0 }

// ManifestRedaction states the de-identification of an export.
type ManifestRedaction struct {
	Enabled bool
	// Patterns are the patterns applied (none when not Enabled).
	Patterns []RedactPattern
	// Terms is how many terms the study's list held; the terms
	// themselves are never in a manifest.
	Terms int
	// Replacements counts the replacements made in the whole export.
	Replacements uint64
}

// SinceKind is how an entry changed between two exports.
type SinceKind string

// The kinds, in the order a manifest lists them.
const (
	// SinceAdded: in this export, not in the earlier one.
	SinceAdded SinceKind = "added"
	// SinceChanged: in both, with a different text hash.
	SinceChanged SinceKind = "changed"
	// SinceWithdrawn: in the earlier export; now not shared for research,
	// or deleted.
	SinceWithdrawn SinceKind = "withdrawn"
	// SinceErased: in the earlier export; now erased. Copies must be
	// purged.
	SinceErased SinceKind = "erased"
	// SinceOutside: in the earlier export; still shared, but outside
	// this export's wave or filters (its date or the waves changed, or
	// the exports select differently).
	SinceOutside SinceKind = "outside"
)

// SinceKinds lists the kinds in manifest order.
var SinceKinds = []SinceKind{SinceAdded, SinceChanged, SinceWithdrawn, SinceErased, SinceOutside}

// Since compares an export with an earlier one.
type Since struct {
	ExportID   int64
	Position   uint64
	ExportedAt time.Time
	// Counts holds the number of entries of each kind.
	Counts map[SinceKind]uint64
	// List gives the entries of each kind, kind by kind in SinceKinds
	// order, each kind by entry id. It may be called several times.
	List SinceList `json:"-"`
}

// SinceList yields the entries that changed between two exports, and
// returns the first error yield returns (or its own).
type SinceList func(yield func(kind SinceKind, entryID string) error) error

// ClassifyGone says what became of an entry that was in an earlier
// export and is not in this one.
func ClassifyGone(erased, shared, deleted bool) SinceKind {
	switch {
	case erased:
		return SinceErased
	case deleted || !shared:
		return SinceWithdrawn
	}
	return SinceOutside
}

// Record is one pseudonymised, de-identified diary entry of an export.
// It carries the author's study code and nothing else about the author.
type Record struct {
	EntryID   string // the entry's UUIDv7, as text
	StudyCode string // the author's study code, e.g. "PN-A"
	Wave      uint32 // the wave whose dates for the author hold Date
	// WaveDefinition says which definition placed the entry in Wave:
	// DefinitionDefault or DefinitionNavigator.
	WaveDefinition string
	Date           string // the date the entry is about, YYYY-MM-DD
	Title          string
	Body           string
	Tags           []string
	Mood           int // 0 when not recorded
	Created        time.Time
	LastEdited     time.Time
	// Revisions counts the author's own saved writes (see Revisions).
	Revisions int
	// TextSHA256 is TextHash of Body; zero when the pass skipped bodies.
	TextSHA256 [32]byte
	// Redactions counts the replacements in the title, body and tags;
	// nil when nothing was replaced or the pass skipped bodies.
	Redactions RedactionCounts
}

// RecordOf fills r from an entry: its research view, de-identified by
// rd (nil: as it is), with the body, its hash and the redaction counts
// left out when skipBody.
func RecordOf(r *Record, e *syncengine.Entry, rd *Redactor, skipBody bool) {
	e = e.View(syncengine.AudienceResearch)
	var counts, c RedactionCounts
	r.EntryID = e.ID.String()
	r.Date, r.Mood = e.Date.Value, int(e.Mood.Value)
	r.Created, r.LastEdited = e.Created.Time(), e.Updated().Time()
	r.Title, counts = rd.Redact(e.Title.Value)
	r.Tags = r.Tags[:0]
	seen := map[string]bool{}
	for _, t := range e.TagNames() {
		name, tc := rd.Redact(t)
		if tc != nil {
			name = truncateText(name, syncengine.MaxTagBytes)
			if counts == nil {
				counts = RedactionCounts{}
			}
			counts.Add(tc)
		}
		if !seen[name] {
			seen[name] = true
			r.Tags = append(r.Tags, name)
		}
	}
	r.Body, r.TextSHA256, r.Redactions = "", [32]byte{}, nil
	if skipBody {
		return
	}
	r.Body, c = rd.Redact(e.Body.Value)
	if c != nil {
		if counts == nil {
			counts = RedactionCounts{}
		}
		counts.Add(c)
	}
	r.TextSHA256 = TextHash(r.Body)
	r.Redactions = counts
}

// TextHash is the SHA-256 of an entry's exported text: its body as
// PlainText gives it, the text a coder codes in every format. Two exports
// of an entry have the same hash exactly when that text is the same.
func TextHash(body string) [32]byte { return sha256.Sum256([]byte(PlainText(body))) }

// PlainText prepares text for researchers' tools: valid UTF-8, LF line
// breaks, no character that XML 1.0 cannot carry or that is a control
// character other than tab and line feed (each becomes U+FFFD, so that
// character positions do not shift), in Unicode normalisation form C.
//
// Tools code a REFI-QDA text source by character positions, so the text
// file and the project must agree on every character: NFC makes "é" one
// character whichever way the device composed it. The server's
// validation already refuses control characters; this is the last line
// of defence, not the rule.
func PlainText(s string) string {
	s = LineFeeds(strings.ToValidUTF8(s, "\uFFFD"))
	if strings.IndexFunc(s, unsafeRune) >= 0 {
		s = strings.Map(func(r rune) rune {
			if unsafeRune(r) {
				return utf8.RuneError
			}
			return r
		}, s)
	}
	return norm.NFC.String(s)
}

// LineFeeds writes every line break of s as LF: CRLF and a lone CR both
// become LF. Devices write all three, and a reader sees the same line
// break in each, but tools that count characters (REFI-QDA selections)
// or split records (CSV readers) do not treat them alike.
func LineFeeds(s string) string {
	if !strings.ContainsRune(s, '\r') {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

// unsafeRune reports whether r must not reach a REFI-QDA project: a
// control character other than tab and line feed, or one of the two
// non-characters XML 1.0 excludes. (Surrogates cannot occur: they are not
// valid UTF-8 and PlainText replaces invalid UTF-8 first.)
func unsafeRune(r rune) bool {
	switch {
	case r == '\t' || r == '\n':
		return false
	case unicode.IsControl(r):
		return true
	case r == 0xFFFE || r == 0xFFFF:
		return true
	}
	return false
}

// HistoryWrite is what the revision count needs of one accepted change
// in an entry's history.
type HistoryWrite struct {
	User   int64            // who pushed it
	Device int64            // from which device
	Field  syncengine.Field // the field written
	// Write is the clock of the first change of the save it was part of,
	// as the device said (0 from an app that does not say).
	Write uint64
	// Received is when the server accepted the push that carried it.
	Received int64
}

// Revisions counts the saved writes the author (owner) made to an entry:
// one per save on a device, however many fields or text operations it
// carried. A device that says which save a change belongs to is counted
// by (device, save); for changes from older apps, which do not say, all
// the changes of one entry in one push count as one save, which may
// count several offline saves pushed together as one. Supervisors'
// feedback is not counted: researchers do not see it, and the count must
// not tell them about it.
func Revisions(writes []HistoryWrite, owner int64) int {
	type key struct {
		device int64
		saved  bool
		id     int64
	}
	seen := map[key]bool{}
	for _, w := range writes {
		if w.User != owner || w.Field.IsFeedback() {
			continue
		}
		k := key{device: w.Device, saved: w.Write != 0, id: int64(w.Write)}
		if w.Write == 0 {
			k.id = w.Received
		}
		seen[k] = true
	}
	return len(seen)
}

// Pass tells a Records function what one reading needs, so that it can
// leave out what that reading will not look at. A Records function may
// ignore a Pass and give everything: the writers skip records of other
// waves themselves, never look at Body when SkipBody is set, and never
// at Revisions when SkipRevisions is.
type Pass struct {
	// Wave, when not 0, asks for the records of that wave only.
	Wave uint32
	// SkipBody says the reading will not look at Body, TextSHA256 or
	// Redactions, so they may be left empty (the body is the only field
	// that can be large, and redacting it the costliest step).
	SkipBody bool
	// SkipRevisions says the reading will not look at Revisions, so it
	// may be left 0: counting them reads each entry's history, which
	// only the readings that write the count need.
	SkipRevisions bool
}

// Records gives the records of one export to yield, one at a time,
// ordered by study code, then date, then entry id, and returns the first
// error yield returns (or its own). It may be called several times and
// must give the same records each time, so it reads from one snapshot.
// The Record passed to yield may be reused by the next call: the writers
// do not keep it.
type Records func(p Pass, yield func(*Record) error) error

// CheckExportNavigator refuses an export of a user's entries when the
// user is not a navigator (EINVALID): only navigators write entries.
func CheckExportNavigator(u *User) error {
	if u.Role != RoleNavigator {
		return syncengine.Errorf(syncengine.EINVALID, "%s is a %s, not a navigator: only navigators write entries", u.StudyCode, u.Role)
	}
	return nil
}

// ErrUnknownExport is the error for an earlier export (Since) that the
// store did not keep.
func ErrUnknownExport(id int64) error {
	return syncengine.Errorf(syncengine.ENOTFOUND, "there is no export %d: see diary export list", id)
}
