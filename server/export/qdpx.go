package export

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/diarysync/diarysync/study"
	"github.com/google/uuid"
)

// qdeNamespace is the XML namespace of a REFI-QDA project.
const qdeNamespace = "urn:QDA-XML:project:1.0"

// guidSpace is the UUIDv5 namespace of every GUID in a project. It must
// never change: the GUIDs of earlier exports are derived from it, and a
// researcher who imports two exports into one project relies on the same
// entry having the same GUID in both.
var guidSpace = uuid.MustParse("5d167f95-47c0-49df-9e18-c1b627f97c7b")

// guid derives the GUID of one object of a project from its kind and key,
// so that the same data always gives the same GUIDs and objects of
// different kinds never share one.
func guid(kind, key string) string {
	return uuid.NewSHA1(guidSpace, []byte(kind+"\x00"+key)).String()
}

func sourceGUID(entry uuid.UUID) string { return guid("entry", entry.String()) }
func caseGUID(studyCode string) string  { return guid("case", studyCode) }
func setGUID(wave uint32) string        { return guid("wave", strconv.FormatUint(uint64(wave), 10)) }
func variableGUID(name string) string   { return guid("variable", name) }

// noteGUID is the GUID of an export's manifest note: exports of the same
// waves at the same position have the same one.
func noteGUID(position uint64, wave uint32) string {
	return guid("manifest", strconv.FormatUint(position, 10)+"/"+strconv.FormatUint(uint64(wave), 10))
}

// sourcePath is where a source's text lives in the archive, and
// sourceRef how project.qde points at it: REFI-QDA resolves
// "internal://NAME" to NAME in the archive's sources folder.
func sourcePath(g string) string { return "sources/" + g + ".txt" }
func sourceRef(g string) string  { return "internal://" + g + ".txt" }

// variable is one of the variables every text source carries.
type variable struct {
	name, kind, description string
}

// The variables, in the order each source lists its values. They are
// attached to the sources, not the cases: the schema allows both, but
// wave, date and tags differ from entry to entry, and MAXQDA, which has
// no cases, still gets the study code this way.
var variables = [...]variable{
	varStudyCode: {"Study code", "Text", "The navigator who wrote the entry, by study code (the case)."},
	varEntryID:   {"Entry id", "Text", "The entry's id, as in the CSV and JSON Lines exports."},
	varWave:      {"Wave", "Integer", "The number of the interview wave whose date window holds the entry's date."},
	varWaveLabel: {"Wave label", "Text", "The label of that wave."},
	varDate:      {"Entry date", "Date", "The date the entry is about."},
	varTags:      {"Tags", "Text", "The entry's tags, in alphabetical order, joined with \"; \"."},
	varMood:      {"Mood", "Integer", "The mood the navigator recorded, from 1 to 10; absent when none was recorded."},
	varEdits:     {"Edits", "Integer", "The number of accepted changes in the entry's history."},
}

// variableGUIDs are the variables' GUIDs, derived once rather than once
// per source.
var variableGUIDs = func() (g [len(variables)]string) {
	for i, v := range variables {
		g[i] = variableGUID(v.name)
	}
	return g
}()

const (
	varStudyCode = iota
	varEntryID
	varWave
	varWaveLabel
	varDate
	varTags
	varMood
	varEdits
)

// sourceNameTitleRunes bounds the title's share of a source's name: tools
// show names in narrow lists, and the full title is in the description.
const sourceNameTitleRunes = 80

// WriteQDPX writes the records as a REFI-QDA project (.qdpx) to w: a zip
// archive holding project.qde and one text file per entry in sources/.
//
// In project.qde, which validates against the REFI-QDA Project schema
// (QDA-XML 1.0):
//
//   - each navigator is a Case, named by study code, listing its entries'
//     sources;
//   - each entry is a TextSource named "<study code> <date>: <title>",
//     with the full title as its description, creation and modification
//     times, and its text in sources/<guid>.txt, referenced as
//     plainTextPath="internal://<guid>.txt";
//   - the variables Study code, Entry id, Wave, Wave label, Entry date,
//     Tags, Mood and Edits are values on each source;
//   - each wave exported is a Set of its entries' sources;
//   - the manifest (position, export time, waves, counts of what was
//     exported and left out) is a Note, referenced by the project.
//
// A source's text is the entry's body, UTF-8 without a byte order mark,
// LF line breaks, in Unicode normalisation form C; the project's texts
// are normalised the same way. Every GUID is a UUIDv5 of an id (entry
// id, study code, wave number, variable name, position), so exporting
// the same data again gives the same GUIDs, and every file's modification
// time is the manifest's ExportedAt, so it gives the same bytes too.
//
// WriteQDPX calls recs 3 times plus once per wave exported; only the
// first reading needs bodies. It keeps the archive's directory in a
// temporary file, which holds file names and sizes, never content.
func WriteQDPX(w io.Writer, m study.Manifest, recs study.Records) error {
	c, err := newChecker(&m)
	if err != nil {
		return fmt.Errorf("cannot export REFI-QDA project: %w", err)
	}
	z, err := newZipStream(w, m.ExportedAt)
	if err != nil {
		return fmt.Errorf("cannot export REFI-QDA project: %w", err)
	}
	defer z.discard()
	if err := writeSourceFiles(z, c, recs); err != nil {
		return fmt.Errorf("cannot export REFI-QDA project: %w", err)
	}
	f, err := z.create("project.qde")
	if err != nil {
		return fmt.Errorf("cannot export REFI-QDA project: %w", err)
	}
	if err := writeProject(f, c, recs); err != nil {
		return fmt.Errorf("cannot export REFI-QDA project: %w", err)
	}
	if err := z.close(); err != nil {
		return fmt.Errorf("cannot export REFI-QDA project: %w", err)
	}
	return nil
}

// writeSourceFiles writes every entry's text into the archive.
func writeSourceFiles(z *zipStream, c *checker, recs study.Records) error {
	rd := c.newReading(0)
	err := recs(study.Pass{}, func(r *study.Record) error {
		id, _, err := rd.check(r)
		if err != nil {
			return err
		}
		g := sourceGUID(id)
		f, err := z.create(sourcePath(g))
		if err != nil {
			return fmt.Errorf("cannot write source %s of entry %s: %w", g, id, err)
		}
		if _, err := io.WriteString(f, plainText(r.Body)); err != nil {
			return fmt.Errorf("cannot write source %s of entry %s: %w", g, id, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return rd.done()
}

// writeProject writes project.qde. The schema fixes the order of its
// parts; each part that lists entries is one reading of the records.
func writeProject(w io.Writer, c *checker, recs study.Records) error {
	m := c.m
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("cannot write project.qde: %w", err)
	}
	q := &qdeWriter{enc: xml.NewEncoder(w)}
	// Indented, so that a person (or xmllint) can point at a line; the
	// encoder never indents inside an element that holds text.
	q.enc.Indent("", "  ")
	q.startName(xml.Name{Space: qdeNamespace, Local: "Project"},
		"name", projectName(m),
		"origin", "diarysync",
		"creationDateTime", formatTime(m.ExportedAt),
	)

	q.start("Variables")
	for i, v := range variables {
		q.start("Variable", "guid", variableGUIDs[i], "name", v.name, "typeOfVariable", v.kind)
		q.text("Description", v.description)
		q.end("Variable")
	}
	q.end("Variables")

	if err := writeCases(q, c, recs); err != nil {
		return err
	}
	if err := writeSources(q, c, recs); err != nil {
		return err
	}

	note := noteGUID(m.Position, m.Wave)
	q.start("Notes")
	q.start("Note", "guid", note, "name", "Export manifest", "creationDateTime", formatTime(m.ExportedAt))
	q.text("PlainTextContent", manifestText(c))
	q.end("Note")
	q.end("Notes")

	if err := writeSets(q, c, recs); err != nil {
		return err
	}

	q.text("Description", projectDescription(c))
	q.empty("NoteRef", "targetGUID", note)
	q.endName(xml.Name{Space: qdeNamespace, Local: "Project"})
	if q.err != nil {
		return fmt.Errorf("cannot write project.qde: %w", q.err)
	}
	if err := q.enc.Close(); err != nil {
		return fmt.Errorf("cannot write project.qde: %w", err)
	}
	return nil
}

// writeCases writes one Case per study code, listing its sources. The
// records come ordered by study code, so each case's sources are
// consecutive.
func writeCases(q *qdeWriter, c *checker, recs study.Records) error {
	rd := c.newReading(0)
	code, open := "", false
	err := recs(study.Pass{SkipBody: true}, func(r *study.Record) error {
		id, _, err := rd.check(r)
		if err != nil {
			return err
		}
		if !open || r.StudyCode != code {
			if open {
				q.end("Case")
			} else {
				q.start("Cases")
			}
			code, open = r.StudyCode, true
			q.start("Case", "guid", caseGUID(code), "name", plainText(code))
		}
		q.empty("SourceRef", "targetGUID", sourceGUID(id))
		return q.failed()
	})
	if err != nil {
		return err
	}
	if open {
		q.end("Case")
		q.end("Cases")
	}
	if err := rd.done(); err != nil {
		return err
	}
	return q.failed()
}

// writeSources writes one TextSource per entry.
func writeSources(q *qdeWriter, c *checker, recs study.Records) error {
	rd := c.newReading(0)
	open := false
	err := recs(study.Pass{SkipBody: true}, func(r *study.Record) error {
		id, _, err := rd.check(r)
		if err != nil {
			return err
		}
		if !open {
			q.start("Sources")
			open = true
		}
		wv, _ := c.wave(r.Wave)
		g := sourceGUID(id)
		q.start("TextSource",
			"guid", g,
			"name", sourceName(r),
			"plainTextPath", sourceRef(g),
			"creationDateTime", formatTime(r.Created),
			"modifiedDateTime", formatTime(r.LastEdited),
		)
		if r.Title != "" {
			q.text("Description", plainText(r.Title))
		}
		q.value(varStudyCode, "TextValue", plainText(r.StudyCode))
		q.value(varEntryID, "TextValue", id.String())
		q.value(varWave, "IntegerValue", strconv.FormatUint(uint64(r.Wave), 10))
		q.value(varWaveLabel, "TextValue", plainText(wv.Label))
		q.value(varDate, "DateValue", r.Date)
		q.value(varTags, "TextValue", plainText(strings.Join(sortedTags(r.Tags), TagSeparator)))
		if r.Mood != 0 {
			q.value(varMood, "IntegerValue", strconv.Itoa(r.Mood))
		}
		q.value(varEdits, "IntegerValue", strconv.Itoa(r.Edits))
		q.end("TextSource")
		return q.failed()
	})
	if err != nil {
		return err
	}
	if open {
		q.end("Sources")
	}
	if err := rd.done(); err != nil {
		return err
	}
	return q.failed()
}

// writeSets writes one Set per wave exported, each one reading of the
// records of that wave.
func writeSets(q *qdeWriter, c *checker, recs study.Records) error {
	if len(c.selected) == 0 {
		return nil
	}
	var total uint64
	q.start("Sets")
	for _, wv := range c.selected {
		q.start("Set", "guid", setGUID(wv.Number), "name", plainText(setName(wv)))
		q.text("Description", fmt.Sprintf("Entries dated %s to %s.", wv.Start, wv.End))
		rd := c.newReading(wv.Number)
		err := recs(study.Pass{Wave: wv.Number, SkipBody: true}, func(r *study.Record) error {
			id, keep, err := rd.check(r)
			if err != nil || !keep {
				return err
			}
			q.empty("MemberSource", "targetGUID", sourceGUID(id))
			return q.failed()
		})
		if err != nil {
			return err
		}
		total += rd.n
		q.end("Set")
	}
	q.end("Sets")
	if total != c.m.Entries {
		return countError(total, c.m.Entries)
	}
	return q.failed()
}

// projectName says which waves a project holds and which snapshot.
func projectName(m *study.Manifest) string {
	waves := "all waves"
	for _, w := range m.Waves {
		if m.Wave != 0 && w.Number == m.Wave {
			waves = waveTitle(w)
		}
	}
	return plainText(fmt.Sprintf("Diary entries, %s, position %d", waves, m.Position))
}

// setName names a wave's set: "Wave 2: Middle".
func setName(w study.Wave) string {
	if w.Label == "" {
		return fmt.Sprintf("Wave %d", w.Number)
	}
	return fmt.Sprintf("Wave %d: %s", w.Number, w.Label)
}

// sourceName names an entry's source so that a list of sources reads as
// a list of diary entries: "PN-A 2024-03-05: Title".
func sourceName(r *study.Record) string {
	name := r.StudyCode + " " + r.Date
	if r.Title == "" {
		return plainText(name)
	}
	title := plainText(r.Title)
	if utf8.RuneCountInString(title) > sourceNameTitleRunes {
		runes := []rune(title)
		title = strings.TrimSpace(string(runes[:sourceNameTitleRunes-1])) + "…"
	}
	// Newlines do not belong in a name; titles have none, but be sure.
	title = strings.ReplaceAll(title, "\n", " ")
	return plainText(name + ": " + title)
}

// projectDescription tells a person opening the project what it holds.
func projectDescription(c *checker) string {
	m := c.m
	waves := "all waves"
	if m.Wave != 0 {
		w, _ := c.wave(m.Wave)
		waves = waveTitle(w)
	}
	return plainText(fmt.Sprintf("Reflective diary entries shared for research, %s, as the server held them at position %d, exported %s. "+
		"Each navigator is a case, named by study code; each entry is a text source; each wave is a set. "+
		"The note \"Export manifest\" lists the wave definitions used and what the export left out.",
		waves, m.Position, formatTime(m.ExportedAt)))
}

// manifestText writes the manifest for people, one fact a line.
func manifestText(c *checker) string {
	m := c.m
	var b strings.Builder
	waves := "all"
	if m.Wave != 0 {
		w, _ := c.wave(m.Wave)
		waves = waveTitle(w)
	}
	fmt.Fprintf(&b, "Waves exported: %s\n", waves)
	fmt.Fprintf(&b, "Server position: %d\n", m.Position)
	fmt.Fprintf(&b, "Exported at: %s\n", formatTime(m.ExportedAt))
	fmt.Fprintf(&b, "Entries exported: %d\n", m.Entries)
	fmt.Fprintf(&b, "Left out, not shared for research: %d\n", m.ExcludedNotShared)
	fmt.Fprintf(&b, "Left out, deleted: %d\n", m.ExcludedDeleted)
	fmt.Fprintf(&b, "Left out, erased: %d\n", m.ExcludedErased)
	fmt.Fprintf(&b, "Left out, dated in no wave: %d\n", m.ExcludedNoWave)
	b.WriteString("Wave definitions:\n")
	defs := sortedWaves(m.Waves)
	if len(defs) == 0 {
		b.WriteString("  none\n")
	}
	for _, w := range defs {
		fmt.Fprintf(&b, "  %s: %s to %s\n", setName(w), w.Start, w.End)
	}
	return plainText(b.String())
}

// qdeWriter writes project.qde element by element. It keeps the first
// error, so that a part can be written without checking every call.
type qdeWriter struct {
	enc *xml.Encoder
	err error
}

func (q *qdeWriter) failed() error { return q.err }

// start opens an element; attrs are name, value pairs, and a pair with an
// empty value is left out (every attribute that can be empty is optional
// in the schema).
func (q *qdeWriter) start(local string, attrs ...string) {
	q.startName(xml.Name{Local: local}, attrs...)
}

func (q *qdeWriter) startName(name xml.Name, attrs ...string) {
	if q.err != nil {
		return
	}
	se := xml.StartElement{Name: name}
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i+1] != "" {
			se.Attr = append(se.Attr, xml.Attr{Name: xml.Name{Local: attrs[i]}, Value: attrs[i+1]})
		}
	}
	q.err = q.enc.EncodeToken(se)
}

func (q *qdeWriter) end(local string) { q.endName(xml.Name{Local: local}) }

func (q *qdeWriter) endName(name xml.Name) {
	if q.err != nil {
		return
	}
	q.err = q.enc.EncodeToken(xml.EndElement{Name: name})
}

// empty writes an element with attributes only.
func (q *qdeWriter) empty(local string, attrs ...string) {
	q.start(local, attrs...)
	q.end(local)
}

// text writes an element holding text. encoding/xml escapes it, and
// writes any character XML cannot hold as U+FFFD.
func (q *qdeWriter) text(local, s string) {
	q.start(local)
	if q.err == nil {
		q.err = q.enc.EncodeToken(xml.CharData(s))
	}
	q.end(local)
}

// value writes one VariableValue of a source.
func (q *qdeWriter) value(v int, element, s string) {
	q.start("VariableValue")
	q.empty("VariableRef", "targetGUID", variableGUIDs[v])
	q.text(element, s)
	q.end("VariableValue")
}
