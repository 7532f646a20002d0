package export

import (
	"cmp"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
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

// codeGUID is the GUID of the code of a tag: the same tag has the same
// code in every export, so codings from two exports merge in one project.
func codeGUID(tag string) string { return guid("code", tag) }

// selectionGUID and codingGUID name the selection of an entry's whole
// text and its coding with one tag.
func selectionGUID(entry uuid.UUID) string { return guid("selection", entry.String()) }
func codingGUID(entry uuid.UUID, tag string) string {
	return guid("coding", entry.String()+"\x00"+tag)
}

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
	varWaveDef:   {"Wave definition", "Text", "Which dates placed the entry in its wave: default (study-wide) or navigator (the navigator's own interview dates)."},
	varDate:      {"Entry date", "Date", "The date the entry is about."},
	varTags:      {"Tags", "Text", "The entry's tags, in alphabetical order, joined with \"; \" (each is also a code coding the whole text)."},
	varMood:      {"Mood", "Integer", "The mood the navigator recorded, from 1 to 10; absent when none was recorded."},
	varRevisions: {"Revisions", "Integer", "How many times the navigator saved the entry (one per save on a device; supervisors' feedback not counted)."},
	varRedacted:  {"Redactions", "Text", "The replacements de-identification made in the entry, by marker, such as \"[name]=2; [phone]=1\"; absent when none."},
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
	varWaveDef
	varDate
	varTags
	varMood
	varRevisions
	varRedacted
)

// sourceNameTitleRunes bounds the title's share of a source's name: tools
// show names in narrow lists, and the full title is in the description.
const sourceNameTitleRunes = 80

// WriteQDPX writes the records as a REFI-QDA project (.qdpx) to w: a zip
// archive holding project.qde, one text file per entry in sources/, and
// manifest.json (WriteManifest, without the export's id and time).
//
// In project.qde, which validates against the REFI-QDA Project schema
// (QDA-XML 1.0):
//
//   - the codebook holds one code per tag the exported entries carry,
//     with a GUID derived from the tag's name, so that it is the same in
//     every export;
//   - each navigator is a Case, named by study code, listing its entries'
//     sources;
//   - each entry is a TextSource named "<study code> <date> <title>
//     [<last 6 of its id>]" (safe as a file name on Windows, macOS and
//     Linux, and unique), with the full title as its description,
//     creation and modification times, its text in sources/<guid>.txt,
//     referenced as plainTextPath="internal://<guid>.txt", and, when it
//     has text and tags, one selection of its whole text coded with each
//     of its tags: the entries arrive coded;
//   - the variables Study code, Entry id, Wave, Wave label, Wave
//     definition, Entry date, Tags, Mood, Revisions and Redactions are
//     values on each source;
//   - each wave exported is a Set of its entries' sources;
//   - the manifest (position, snapshot time, waves, settings, counts of
//     what was exported and left out) is a Note, referenced by the
//     project.
//
// A source's text is the entry's de-identified body, UTF-8 without a
// byte order mark, LF line breaks, in Unicode normalisation form C
// (study.PlainText); selections count characters (code points) of it.
// Every GUID is a UUIDv5 of an id (entry id, study code, tag, wave
// number, variable name, position), and every time in the archive is the
// snapshot's (m.SnapshotAt), so the same snapshot with the same settings
// gives the same bytes.
//
// WriteQDPX calls recs 5 times plus once per wave exported; three of the
// readings need bodies, and one (the sources') the revision counts. It keeps the archive's directory in a temporary
// file, which holds file names and sizes, never content, and the set of
// tag names in memory (a study's tag vocabulary, not its entries).
func WriteQDPX(w io.Writer, m study.Manifest, recs study.Records) error {
	c, err := newChecker(&m)
	if err != nil {
		return fmt.Errorf("cannot export REFI-QDA project: %w", err)
	}
	z, err := newZipStream(w, m.SnapshotAt)
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
	f, err = z.create("manifest.json")
	if err != nil {
		return fmt.Errorf("cannot export REFI-QDA project: %w", err)
	}
	if err := WriteManifest(f, m, recs, true); err != nil {
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
	err := recs(study.Pass{SkipRevisions: true}, func(r *study.Record) error {
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
		"creationDateTime", formatTime(m.SnapshotAt),
	)

	tags, err := collectTags(c, recs)
	if err != nil {
		return err
	}
	if len(tags) > 0 {
		q.start("CodeBook")
		writeCodes(q, tags)
		q.end("CodeBook")
	}

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
	q.start("Note", "guid", note, "name", "Export manifest", "creationDateTime", formatTime(m.SnapshotAt))
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
	err := recs(study.Pass{SkipBody: true, SkipRevisions: true}, func(r *study.Record) error {
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

// writeSources writes one TextSource per entry, with the coding of its
// whole text by its tags. It reads bodies: a selection's end is the
// text's length in characters.
func writeSources(q *qdeWriter, c *checker, recs study.Records) error {
	rd := c.newReading(0)
	open := false
	err := recs(study.Pass{}, func(r *study.Record) error {
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
			"name", sourceName(r, id),
			"plainTextPath", sourceRef(g),
			"creationDateTime", formatTime(r.Created),
			"modifiedDateTime", formatTime(r.LastEdited),
		)
		if r.Title != "" {
			q.text("Description", plainText(r.Title))
		}
		tags := sortedTags(r.Tags)
		if n := utf8.RuneCountInString(plainText(r.Body)); n > 0 && len(tags) > 0 {
			q.start("PlainTextSelection",
				"guid", selectionGUID(id),
				"name", "Whole entry",
				"startPosition", "0",
				"endPosition", strconv.Itoa(n),
				"creationDateTime", formatTime(r.LastEdited),
			)
			for _, t := range tags {
				q.start("Coding", "guid", codingGUID(id, t), "creationDateTime", formatTime(r.LastEdited))
				q.empty("CodeRef", "targetGUID", codeGUID(t))
				q.end("Coding")
			}
			q.end("PlainTextSelection")
		}
		q.value(varStudyCode, "TextValue", plainText(r.StudyCode))
		q.value(varEntryID, "TextValue", id.String())
		q.value(varWave, "IntegerValue", strconv.FormatUint(uint64(r.Wave), 10))
		q.value(varWaveLabel, "TextValue", plainText(wv.Label))
		q.value(varWaveDef, "TextValue", r.WaveDefinition)
		q.value(varDate, "DateValue", r.Date)
		q.value(varTags, "TextValue", plainText(strings.Join(tags, TagSeparator)))
		if r.Mood != 0 {
			q.value(varMood, "IntegerValue", strconv.Itoa(r.Mood))
		}
		q.value(varRevisions, "IntegerValue", strconv.Itoa(r.Revisions))
		if len(r.Redactions) > 0 {
			q.value(varRedacted, "TextValue", redactionText(r.Redactions))
		}
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

// collectTags reads the tags of every exported entry, as codes name them
// (PlainText), sorted.
func collectTags(c *checker, recs study.Records) ([]string, error) {
	rd := c.newReading(0)
	seen := map[string]bool{}
	err := recs(study.Pass{SkipBody: true, SkipRevisions: true}, func(r *study.Record) error {
		if _, _, err := rd.check(r); err != nil {
			return err
		}
		for _, t := range r.Tags {
			seen[t] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := rd.done(); err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

// writeCodes writes the Codes of a codebook: one codable code per tag.
func writeCodes(q *qdeWriter, tags []string) {
	q.start("Codes")
	for _, t := range tags {
		q.start("Code", "guid", codeGUID(t), "name", plainText(t), "isCodable", "true")
		q.text("Description", plainText(fmt.Sprintf("The navigators' tag %q. Each entry tagged with it is coded with it over its whole text.", t)))
		q.end("Code")
	}
	q.end("Codes")
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
		q.text("Description", fmt.Sprintf("Entries dated %s to %s, or within their navigator's own dates for this wave.", wv.Start, wv.End))
		rd := c.newReading(wv.Number)
		err := recs(study.Pass{Wave: wv.Number, SkipBody: true, SkipRevisions: true}, func(r *study.Record) error {
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
// a list of diary entries: "PN-A 2024-03-05 Title [a1b2c3]". Tools copy
// sources into files named after them, so the name is safe as a file name
// on Windows, macOS and Linux: no control characters, none of
// < > : " / \ | ? *, no trailing dot or space, at most
// sourceNameTitleRunes characters of title. The end of the entry id keeps
// two entries with the same code, date and title apart.
func sourceName(r *study.Record, id uuid.UUID) string {
	title := strings.Join(strings.Fields(strings.Map(safeNameRune, plainText(r.Title))), " ")
	if utf8.RuneCountInString(title) > sourceNameTitleRunes {
		runes := []rune(title)
		title = strings.TrimSpace(string(runes[:sourceNameTitleRunes-1])) + "…"
	}
	name := strings.Map(safeNameRune, r.StudyCode) + " " + r.Date
	if title = strings.TrimRight(title, ". "); title != "" {
		name += " " + title
	}
	s := id.String()
	return plainText(name + " [" + s[len(s)-6:] + "]")
}

// safeNameRune replaces a rune that a file name on some system cannot
// hold with a space, or for the path separators and ':' with '-'.
func safeNameRune(r rune) rune {
	switch r {
	case '/', '\\', ':', '|':
		return '-'
	case '<', '>', '"', '?', '*':
		return ' '
	}
	if unicode.IsControl(r) || r == utf8.RuneError {
		return ' '
	}
	return r
}

// projectDescription tells a person opening the project what it holds.
func projectDescription(c *checker) string {
	m := c.m
	waves := "all waves"
	if m.Wave != 0 {
		w, _ := c.wave(m.Wave)
		waves = waveTitle(w)
	}
	empty := ""
	if m.Empty() {
		empty = "This export holds no entries. "
	}
	return plainText(fmt.Sprintf("Reflective diary entries shared for research, %s, de-identified, as the server held them at position %d (%s). %s"+
		"Each navigator is a case, named by study code; each entry is a text source, coded over its whole text with its tags (one code per tag); each wave is a set. "+
		"The note \"Export manifest\" and the file manifest.json list the wave definitions used, the de-identification and what the export left out.",
		waves, m.Position, formatTime(m.SnapshotAt), empty))
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
	if m.Navigator != "" {
		fmt.Fprintf(&b, "Navigator: %s\n", m.Navigator)
	}
	if m.From != "" || m.To != "" {
		fmt.Fprintf(&b, "Dates: %s to %s\n", cmp.Or(m.From, "the first"), cmp.Or(m.To, "the last"))
	}
	fmt.Fprintf(&b, "Server position: %d\n", m.Position)
	fmt.Fprintf(&b, "Snapshot at: %s\n", formatTime(m.SnapshotAt))
	fmt.Fprintf(&b, "Entries exported: %d\n", m.Entries)
	if m.Empty() {
		b.WriteString("This export holds no entries.\n")
	}
	fmt.Fprintf(&b, "Left out, not shared for research: %d\n", m.ExcludedNotShared)
	fmt.Fprintf(&b, "Left out, deleted: %d\n", m.ExcludedDeleted)
	fmt.Fprintf(&b, "Left out, erased: %d\n", m.ExcludedErased)
	fmt.Fprintf(&b, "Left out, dated in no wave: %d\n", m.ExcludedNoWave)
	if m.Redaction.Enabled {
		names := make([]string, len(m.Redaction.Patterns))
		for i, p := range m.Redaction.Patterns {
			names[i] = p.Marker
		}
		fmt.Fprintf(&b, "De-identification: on (%s, and %d listed terms); %d replacements\n", strings.Join(names, ", "), m.Redaction.Terms, m.Redaction.Replacements)
	} else {
		b.WriteString("De-identification: OFF (turned off by an administrator): texts are as the navigators wrote them\n")
	}
	b.WriteString("Wave definitions:\n")
	defs := c.plan.All()
	if len(defs) == 0 {
		b.WriteString("  none\n")
	}
	for _, w := range defs {
		if w.Navigator != "" {
			fmt.Fprintf(&b, "  %s, for %s: %s to %s\n", setName(w), w.Navigator, w.Start, w.End)
			continue
		}
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
