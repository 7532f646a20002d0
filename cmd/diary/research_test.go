package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
)

// researchStudy is a small study made through the command line: an
// administrator, navigators PN-A and PN-B, researcher RES-1, two
// study-wide waves, PN-B's own dates for wave 2, and entries synced to
// the server:
//
//	PN-A "Met Jane"    2026-02-10 wave 1  shared for research, a listed name, a phone number, an e-mail address, a place
//	PN-A "Private"     2026-02-20 wave 1  not shared
//	PN-A "=Court"      2026-05-05 wave 2  shared, title and body that a spreadsheet would run as formulas
//	PN-B "Day centre"  2026-03-01 wave 1  shared
//	PN-B "Old window"  2026-05-10 no wave (PN-B's wave 2 is July and August), shared
//	PN-B "Outreach"    2026-07-15 wave 2 by PN-B's own dates, shared, accents, Arabic and an emoji
type researchStudy struct {
	te                   *testEnv
	admin, pnA, pnB, res string
	dir                  string
	// id holds each entry's id by title.
	id map[string]string
}

func newResearchStudy(t *testing.T) *researchStudy {
	t.Helper()
	te := startServer(t)
	s := &researchStudy{
		te:    te,
		admin: enrol(t, te, study.RoleAdmin, "ADMIN"),
		pnA:   enrol(t, te, study.RoleNavigator, "PN-A"),
		pnB:   enrol(t, te, study.RoleNavigator, "PN-B"),
		res:   enrol(t, te, study.RoleResearcher, "RES-1"),
		dir:   t.TempDir(),
		id:    map[string]string{},
	}
	mustDiary(t, s.admin, "", "admin", "wave", "add", "--number", "1", "--label", "Baseline", "--from", "2026-01-01", "--to", "2026-03-31")
	mustDiary(t, s.admin, "", "admin", "wave", "add", "--number", "2", "--label", "Follow-up", "--from", "2026-04-01", "--to", "2026-06-30")
	mustDiary(t, s.admin, "", "admin", "wave", "add", "--number", "2", "--navigator", "PN-B", "--from", "2026-07-01", "--to", "2026-08-31")
	mustDiary(t, s.admin, "", "admin", "redact", "add", "Jane Doe")
	s.write(t, s.pnA, "Met Jane", "--date", "2026-02-10", "--tag", "housing", "--tag", "naloxone", "--share", "research",
		"--body", "Jane Doe called from 07700 900123 about the room at Riverside.\nWrite to jane.doe@example.org.")
	s.write(t, s.pnA, "Private", "--date", "2026-02-20", "--body", "Just for me.")
	s.write(t, s.pnA, "=Court", "--date", "2026-05-05", "--tag", "court", "--share", "research", "--body", "-went to court with K.")
	s.write(t, s.pnB, "Day centre", "--date", "2026-03-01", "--tag", "outreach", "--share", "research", "--body", "Quiet morning.")
	s.write(t, s.pnB, "Old window", "--date", "2026-05-10", "--share", "research", "--body", "Dated outside PN-B's waves.")
	s.write(t, s.pnB, "Outreach", "--date", "2026-07-15", "--tag", "outreach", "--share", "both", "--body", "Día at the centre; one asked about العلاج 🙂")
	mustDiary(t, s.pnA, "", "sync")
	mustDiary(t, s.pnB, "", "sync")
	return s
}

// write writes an entry as a navigator and keeps its id by title.
func (s *researchStudy) write(t *testing.T, home, title string, args ...string) {
	t.Helper()
	s.id[title] = strings.TrimSpace(mustDiary(t, home, "", append([]string{"write", "--title", title}, args...)...))
}

// path is a file in the study's export directory.
func (s *researchStudy) path(name string) string { return filepath.Join(s.dir, name) }

// export runs diary export as the researcher, wants it to succeed with
// nothing on standard output (unless it writes there), and returns
// standard output and standard error.
func (s *researchStudy) export(t *testing.T, args ...string) (string, string) {
	t.Helper()
	status, out, errOut := diary(t, s.res, "", append([]string{"export"}, args...)...)
	if status != 0 {
		t.Fatalf("diary export %v: exit %d: %s", args, status, errOut)
	}
	if !slices.Contains(args, "-") && out != "" {
		t.Fatalf("diary export %v printed %q on standard output", args, out)
	}
	return out, errOut
}

// manifestFile is what the tests read of a manifest file.
type manifestFile struct {
	ExportID  int64  `json:"export_id"`
	Format    string `json:"format"`
	Empty     bool   `json:"empty"`
	Selection struct {
		Wave, Navigator, From, To string
	} `json:"selection"`
	NavigatorWaves []struct {
		Number    int    `json:"number"`
		Navigator string `json:"navigator"`
		Start     string `json:"start"`
		End       string `json:"end"`
	} `json:"navigator_waves"`
	Counts struct {
		Entries  int `json:"entries"`
		Excluded struct {
			NotShared int `json:"not_shared"`
			Deleted   int `json:"deleted"`
			Erased    int `json:"erased"`
			NoWave    int `json:"no_wave"`
		} `json:"excluded"`
	} `json:"counts"`
	Redaction struct {
		Enabled      bool `json:"enabled"`
		Terms        int  `json:"terms"`
		Replacements int  `json:"replacements"`
	} `json:"redaction"`
	CSV *struct {
		BOM          bool `json:"bom"`
		FormulaGuard bool `json:"formula_guard"`
	} `json:"csv"`
	Since *struct {
		ExportID  int64          `json:"export_id"`
		Counts    map[string]int `json:"counts"`
		Added     []string       `json:"added"`
		Changed   []string       `json:"changed"`
		Withdrawn []string       `json:"withdrawn"`
		Erased    []string       `json:"erased"`
		Outside   []string       `json:"outside"`
	} `json:"since"`
	Entries []struct {
		EntryID        string         `json:"entry_id"`
		StudyCode      string         `json:"study_code"`
		Wave           int            `json:"wave"`
		WaveDefinition string         `json:"wave_definition"`
		TextSHA256     string         `json:"text_sha256"`
		Redactions     map[string]int `json:"redactions"`
	} `json:"entries"`
}

func readManifest(t *testing.T, path string) *manifestFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m manifestFile
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return &m
}

// entryIDs are the ids of the manifest's entries, in its order.
func (m *manifestFile) entryIDs() []string {
	var out []string
	for _, e := range m.Entries {
		out = append(out, e.EntryID)
	}
	return out
}

// readCSV reads a CSV export into maps by column name.
func readCSV(t *testing.T, path string) []map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(rows) == 0 {
		t.Fatalf("%s: %v %q", path, err, b)
	}
	var out []map[string]string
	for _, row := range rows[1:] {
		m := map[string]string{}
		for i, name := range rows[0] {
			m[name] = row[i]
		}
		out = append(out, m)
	}
	return out
}

// readJSONL reads a JSON Lines export.
func readJSONL(t *testing.T, text string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("JSON Lines export: %v in %q", err, line)
		}
		out = append(out, m)
	}
	return out
}

// summaryLine matches the line diary export prints first, and the one
// diary export preview prints.
var (
	summaryLine = regexp.MustCompile(`^Export (\d+): (\d+) entries \(position \d+; left out: (\d+) not shared, (\d+) deleted, (\d+) erased, (\d+) in no wave\) to (.+)\.$`)
	previewLine = regexp.MustCompile(`^Would export (\d+) entries at position \d+ \(left out: (\d+) not shared, (\d+) deleted, (\d+) erased, (\d+) in no wave\)\.$`)
)

// wantSummary checks the first line diary export printed on standard
// error: the export's id, its entries, what was left out and where it
// went.
func wantSummary(t *testing.T, stderr, id, entries, notShared, deleted, erased, noWave, where string) {
	t.Helper()
	first, _, _ := strings.Cut(stderr, "\n")
	m := summaryLine.FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("export printed:\n%s", stderr)
	}
	if got, want := m[1:], []string{id, entries, notShared, deleted, erased, noWave, where}; !slices.Equal(got, want) {
		t.Fatalf("export summary %q: got export, entries, not shared, deleted, erased, no wave, target %q; want %q", first, got, want)
	}
}

// wantNoPersonalDetails checks that no name on the list, phone number or
// e-mail address of the study's entries is in text.
func wantNoPersonalDetails(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range []string{"Jane Doe", "07700", "900123", "jane.doe@example.org", "example.org"} {
		if strings.Contains(text, s) {
			t.Errorf("%s holds %q:\n%s", what, s, text)
		}
	}
}

func TestExportPreview(t *testing.T) {
	s := newResearchStudy(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string // entries, not shared, deleted, erased, no wave
	}{
		{"Wave2", []string{"--wave", "2"}, []string{"2", "0", "0", "0", "0"}},
		// Every wave: PN-B's entry of May is in none of PN-B's waves.
		{"AllWaves", []string{"--wave", "all"}, []string{"4", "1", "0", "0", "1"}},
		{"Navigator", []string{"--wave", "all", "--navigator", "PN-A"}, []string{"2", "1", "0", "0", "0"}},
		{"Dates", []string{"--wave", "all", "--from", "2026-02-15", "--to", "2026-05-31"}, []string{"2", "1", "0", "0", "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := mustDiary(t, s.res, "", append([]string{"export", "preview"}, tc.args...)...)
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != 2 {
				t.Fatalf("preview printed:\n%s", out)
			}
			if m := previewLine.FindStringSubmatch(lines[0]); m == nil || !slices.Equal(m[1:], tc.want) {
				t.Fatalf("preview %q; want entries, not shared, deleted, erased, no wave %q", lines[0], tc.want)
			}
			if lines[1] != "De-identification: on ([email] [phone] [postcode], and 1 listed terms)." {
				t.Fatalf("preview's second line %q", lines[1])
			}
		})
	}
	// A preview is not an export: nothing is kept.
	if out := mustDiary(t, s.res, "", "export", "list"); strings.Count(out, "\n") != 1 {
		t.Fatalf("export list after previews:\n%s", out)
	}
	t.Run("Errors", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			args   []string
			status int
			stderr string
		}{
			{"NoWave", nil, 2, "export preview needs --wave N|all"},
			{"BadWave", []string{"--wave", "two"}, 2, `--wave must be a wave number or all, not "two"`},
			{"UnknownWave", []string{"--wave", "9"}, 1, "cannot preview export: there is no wave 9"},
			{"UnknownNavigator", []string{"--wave", "all", "--navigator", "PN-Z"}, 1, `no user has the study code "PN-Z"`},
			{"NotANavigator", []string{"--wave", "all", "--navigator", "RES-1"}, 1, "RES-1 is a researcher, not a navigator"},
			{"BadDate", []string{"--wave", "all", "--from", "1 May"}, 2, `--from "1 May": date "1 May" is not written YYYY-MM-DD`},
			{"ToBeforeFrom", []string{"--wave", "all", "--from", "2026-05-01", "--to", "2026-04-01"}, 1, "the to date (2026-04-01) is before the from date (2026-05-01)"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				status, out, errOut := diary(t, s.res, "", append([]string{"export", "preview"}, tc.args...)...)
				if status != tc.status || out != "" || !strings.Contains(errOut, tc.stderr) {
					t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", status, out, errOut, tc.status, tc.stderr)
				}
			})
		}
	})
}

func TestExportFiles(t *testing.T) {
	s := newResearchStudy(t)

	t.Run("CSV", func(t *testing.T) {
		path := s.path("all.csv")
		_, errOut := s.export(t, "--wave", "all", "--format", "csv", "--out", path)
		wantSummary(t, errOut, "1", "4", "1", "0", "0", "1", path)
		for _, line := range []string{
			"De-identified: 3 replacements ([email] [phone] [postcode], and 1 listed terms).",
			"Manifest: " + path + ".manifest.json",
			"Data dictionary: " + path + ".dictionary.md",
		} {
			if !strings.Contains(errOut, "\n"+line+"\n") {
				t.Errorf("export printed no %q:\n%s", line, errOut)
			}
		}
		b, _ := os.ReadFile(path)
		if bytes.HasPrefix(b, []byte("\uFEFF")) {
			t.Error("a byte order mark without --bom")
		}
		wantNoPersonalDetails(t, path, string(b))
		rows := readCSV(t, path)
		byTitle := map[string]map[string]string{}
		for _, r := range rows {
			byTitle[r["title"]] = r
		}
		if len(rows) != 4 || byTitle["Private"] != nil || byTitle["Old window"] != nil {
			t.Fatalf("CSV rows: %v", rows)
		}
		if r := byTitle["Met Jane"]; r["body"] != "[name] called from [phone] about the room at Riverside.\nWrite to [email]." || r["tags"] != "housing; naloxone" ||
			r["wave"] != "1" || r["wave_definition"] != "default" || r["redactions"] != "[email]=1; [name]=1; [phone]=1" || r["entry_id"] != s.id["Met Jane"] {
			t.Errorf("Met Jane: %v", r)
		}
		if r := byTitle["Outreach"]; r["wave"] != "2" || r["wave_label"] != "Follow-up" || r["wave_definition"] != "navigator" || r["body"] != "Día at the centre; one asked about العلاج 🙂" {
			t.Errorf("Outreach: %v", r)
		}
		// The formula guard is on by default.
		if r := byTitle["'=Court"]; r == nil || r["body"] != "'-went to court with K." {
			t.Errorf("guarded row: %v", rows)
		}
		m := readManifest(t, path+".manifest.json")
		if m.ExportID != 1 || m.Format != "csv" || m.Counts.Entries != 4 || m.Counts.Excluded.NotShared != 1 || m.Counts.Excluded.NoWave != 1 ||
			!m.Redaction.Enabled || m.Redaction.Terms != 1 || m.Redaction.Replacements != 3 || m.CSV == nil || m.CSV.BOM || !m.CSV.FormulaGuard {
			t.Errorf("manifest: %+v", m)
		}
		if len(m.NavigatorWaves) != 1 || m.NavigatorWaves[0].Navigator != "PN-B" || m.NavigatorWaves[0].Number != 2 || m.NavigatorWaves[0].Start != "2026-07-01" {
			t.Errorf("manifest's navigator waves: %+v", m.NavigatorWaves)
		}
		var ids []string
		for _, r := range rows {
			ids = append(ids, r["entry_id"])
		}
		if !slices.Equal(ids, m.entryIDs()) {
			t.Errorf("manifest lists %v, the CSV %v", m.entryIDs(), ids)
		}
		if d, err := os.ReadFile(path + ".dictionary.md"); err != nil || !bytes.HasPrefix(d, []byte("# Data dictionary: CSV export")) || !bytes.Contains(d, []byte("| wave_definition |")) {
			t.Errorf("data dictionary: %v\n%s", err, d)
		}
	})

	t.Run("BOMAndNoFormulaGuard", func(t *testing.T) {
		path := s.path("excel.csv")
		s.export(t, "--wave", "2", "--format", "csv", "--out", path, "--bom", "--no-formula-guard")
		b, _ := os.ReadFile(path)
		if !bytes.HasPrefix(b, []byte("\xEF\xBB\xBFentry_id,")) {
			t.Fatalf("--bom: the file starts %q", b[:min(len(b), 20)])
		}
		rows := readCSV(t, path)
		// "=Court" comes first: PN-A's entries sort before PN-B's.
		if len(rows) != 2 || rows[0]["title"] != "=Court" || rows[0]["body"] != "-went to court with K." {
			t.Fatalf("--no-formula-guard: %v", rows)
		}
		if m := readManifest(t, path+".manifest.json"); m.CSV == nil || !m.CSV.BOM || m.CSV.FormulaGuard {
			t.Fatalf("manifest's CSV settings: %+v", m.CSV)
		}
	})

	t.Run("JSONLNavigator", func(t *testing.T) {
		path := s.path("pnb.jsonl")
		_, errOut := s.export(t, "--wave", "all", "--format", "jsonl", "--out", path, "--navigator", "PN-B")
		wantSummary(t, errOut, "3", "2", "0", "0", "0", "1", path)
		b, _ := os.ReadFile(path)
		recs := readJSONL(t, string(b))
		if len(recs) != 2 || recs[0]["study_code"] != "PN-B" || recs[1]["study_code"] != "PN-B" || recs[0]["title"] != "Day centre" || recs[1]["title"] != "Outreach" {
			t.Fatalf("--navigator PN-B: %v", recs)
		}
		if m := readManifest(t, path+".manifest.json"); m.Selection.Navigator != "PN-B" || m.Format != "jsonl" || m.CSV != nil || len(m.Entries) != 2 {
			t.Fatalf("manifest: %+v", m)
		}
		if d, err := os.ReadFile(path + ".dictionary.md"); err != nil || !bytes.HasPrefix(d, []byte("# Data dictionary: JSON Lines export")) {
			t.Errorf("data dictionary: %v\n%.80s", err, d)
		}
	})

	t.Run("JSONLDates", func(t *testing.T) {
		path := s.path("may.jsonl")
		_, errOut := s.export(t, "--wave", "all", "--format", "jsonl", "--out", path, "--from", "2026-05-01", "--to", "2026-06-30")
		// PN-B's entry of May is in the dates, and in none of PN-B's waves.
		wantSummary(t, errOut, "4", "1", "0", "0", "0", "1", path)
		b, _ := os.ReadFile(path)
		if recs := readJSONL(t, string(b)); len(recs) != 1 || recs[0]["entry_id"] != s.id["=Court"] {
			t.Fatalf("--from 2026-05-01 --to 2026-06-30: %v", recs)
		}
		if m := readManifest(t, path+".manifest.json"); m.Selection.From != "2026-05-01" || m.Selection.To != "2026-06-30" {
			t.Fatalf("manifest's selection: %+v", m.Selection)
		}
	})

	t.Run("QDC", func(t *testing.T) {
		path := s.path("codes.qdc")
		_, errOut := s.export(t, "--wave", "all", "--format", "qdc", "--out", path)
		wantSummary(t, errOut, "5", "4", "1", "0", "0", "1", path)
		// The codebook goes alone: no manifest, no dictionary beside it.
		if strings.Contains(errOut, "Manifest:") || strings.Contains(errOut, "Data dictionary:") {
			t.Errorf("a codebook export printed:\n%s", errOut)
		}
		for _, f := range []string{path + ".manifest.json", path + ".dictionary.md"} {
			if _, err := os.Stat(f); err == nil {
				t.Errorf("%s was written", f)
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var book struct {
			XMLName xml.Name
			Codes   []struct {
				Name    string `xml:"name,attr"`
				GUID    string `xml:"guid,attr"`
				Codable string `xml:"isCodable,attr"`
			} `xml:"Codes>Code"`
		}
		if err := xml.Unmarshal(b, &book); err != nil {
			t.Fatalf("codebook: %v\n%s", err, b)
		}
		var names []string
		for _, c := range book.Codes {
			if len(c.GUID) != 36 || c.Codable != "true" {
				t.Errorf("code %+v", c)
			}
			names = append(names, c.Name)
		}
		if book.XMLName.Space != "urn:QDA-XML:codebook:1.0" || book.XMLName.Local != "CodeBook" || !slices.Equal(names, []string{"court", "housing", "naloxone", "outreach"}) {
			t.Fatalf("codebook %v with codes %q:\n%s", book.XMLName, names, b)
		}
		t.Run("Schema", func(t *testing.T) {
			validateXML(t, path, "DIARYSYNC_REFIQDA_CODEBOOK_XSD", "Codebook.xsd")
		})
	})

	t.Run("QDCWithoutTags", func(t *testing.T) {
		path := s.path("none.qdc")
		status, out, errOut := diary(t, s.res, "", "export", "--wave", "all", "--navigator", "PN-B", "--from", "2026-05-01", "--to", "2026-05-31", "--format", "qdc", "--out", path)
		if status != 1 || out != "" || !strings.Contains(errOut, "cannot export: this export holds no entries, so it has no tags for a codebook") {
			t.Fatalf("exit %d, stdout %q, stderr %q", status, out, errOut)
		}
		wantNoFiles(t, s.dir, "none.qdc")
	})

	t.Run("Empty", func(t *testing.T) {
		path := s.path("empty.csv")
		_, errOut := s.export(t, "--wave", "1", "--format", "csv", "--out", path, "--from", "2026-03-15")
		if !strings.Contains(errOut, "\nThe export holds no entries: nothing in its selection is shared for research.\n") {
			t.Fatalf("an empty export printed:\n%s", errOut)
		}
		if rows := readCSV(t, path); len(rows) != 0 {
			t.Fatalf("empty export: %v", rows)
		}
		if m := readManifest(t, path+".manifest.json"); !m.Empty || m.Counts.Entries != 0 || len(m.Entries) != 0 {
			t.Fatalf("manifest of an empty export: %+v", m)
		}
	})

	t.Run("Stdout", func(t *testing.T) {
		mpath := s.path("stdout.manifest.json")
		out, errOut := s.export(t, "--wave", "2", "--format", "csv", "--out", "-", "--manifest", mpath)
		if !strings.HasPrefix(out, "entry_id,study_code,") || strings.Count(out, "\r\n") != 3 {
			t.Fatalf("CSV on standard output:\n%s", out)
		}
		if !strings.Contains(errOut, ") to standard output.\n") || !strings.Contains(errOut, "Manifest: "+mpath+"\n") || strings.Contains(errOut, "Data dictionary") {
			t.Fatalf("export to standard output printed:\n%s", errOut)
		}
		m := readManifest(t, mpath)
		if m.ExportID == 0 || m.Format != "csv" || len(m.Entries) != 2 {
			t.Fatalf("manifest: %+v", m)
		}
		// Without --manifest the export is refused before anything is
		// asked of the server: no export is made.
		before := mustDiary(t, s.res, "", "export", "list")
		for _, format := range []string{"jsonl", "qdpx"} {
			status, out, errOut := diary(t, s.res, "", "export", "--wave", "2", "--format", format, "--out", "-")
			if status != 2 || out != "" || !strings.Contains(errOut, "diary: export --out - writes the export to standard output: give --manifest PATH for its manifest\n") {
				t.Fatalf("--out - without --manifest (%s): exit %d, stdout %q, stderr %q", format, status, out, errOut)
			}
		}
		if after := mustDiary(t, s.res, "", "export", "list"); after != before {
			t.Fatalf("a refused export was kept:\n%s", after)
		}
	})

	t.Run("QDPX", func(t *testing.T) {
		path := s.path("all.qdpx")
		_, errOut := s.export(t, "--wave", "all", "--format", "qdpx", "--out", path)
		if strings.Contains(errOut, "Manifest:") {
			t.Errorf("a .qdpx export names a manifest file beside it:\n%s", errOut)
		}
		project := string(unzipFile(t, path, "project.qde"))
		wantNoPersonalDetails(t, "project.qde", project)
		if n := strings.Count(project, "<TextSource "); n != 4 {
			t.Errorf("project.qde holds %d sources, want 4", n)
		}
		qde := s.path("project.qde")
		os.WriteFile(qde, []byte(project), 0o600)
		t.Run("Schema", func(t *testing.T) {
			validateXML(t, qde, "DIARYSYNC_REFIQDA_XSD", "Project.xsd")
		})
		var inside manifestFile
		if err := json.Unmarshal(unzipFile(t, path, "manifest.json"), &inside); err != nil || inside.ExportID != 0 || inside.Counts.Entries != 4 {
			t.Errorf("manifest.json in the archive: %v %+v", err, inside)
		}
	})
}

// wantNoFiles fails if dir holds a file named name or a temporary file
// of an export.
func wantNoFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".export-") || slices.Contains(names, e.Name()) {
			t.Errorf("%s is left in %s", e.Name(), dir)
		}
		for _, n := range names {
			if strings.HasPrefix(e.Name(), n+".") {
				t.Errorf("%s is left in %s", e.Name(), dir)
			}
		}
	}
}

// validateXML validates a file with xmllint against a REFI-QDA schema,
// and skips when xmllint or the schema is absent.
func validateXML(t *testing.T, path, env, schema string) {
	t.Helper()
	xsd := os.Getenv(env)
	if xsd == "" {
		xsd = filepath.Join("..", "..", "..", "shared", "refi-qda", schema)
	}
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		t.Skip("xmllint is not installed (apt-get install libxml2-utils); .ci/run installs it")
	}
	if _, err := os.Stat(xsd); err != nil {
		t.Skipf("the REFI-QDA schema is not at hand: %v (set $%s)", err, env)
	}
	if out, err := exec.Command(xmllint, "--noout", "--schema", xsd, path).CombinedOutput(); err != nil {
		t.Fatalf("%s does not validate against %s: %v\n%s", path, schema, err, out)
	}
}

func TestExportList(t *testing.T) {
	s := newResearchStudy(t)
	if out := mustDiary(t, s.res, "", "export", "list"); out != "ID  EXPORTED  FORMAT  WAVE  POSITION  ENTRIES  REDACTION  FILTERS\n" {
		t.Fatalf("export list with no exports:\n%q", out)
	}
	s.export(t, "--wave", "1", "--format", "csv", "--out", s.path("w1.csv"))
	s.export(t, "--wave", "all", "--format", "jsonl", "--out", s.path("b.jsonl"), "--navigator", "PN-B", "--from", "2026-03-01", "--to", "2026-08-31")
	s.export(t, "--wave", "2", "--format", "qdpx", "--out", s.path("w2.qdpx"), "--since", "1")

	out := mustDiary(t, s.res, "", "export", "list")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 || !regexp.MustCompile(`^ID +EXPORTED +FORMAT +WAVE +POSITION +ENTRIES +REDACTION +FILTERS$`).MatchString(lines[0]) {
		t.Fatalf("export list:\n%s", out)
	}
	// Newest first: id, date and time, format, wave, position, entries,
	// redaction, filters.
	for i, want := range []string{
		`^3 +\d{4}-\d\d-\d\d \d\d:\d\d +qdpx +2 +\d+ +2 +on +since=1$`,
		`^2 +\d{4}-\d\d-\d\d \d\d:\d\d +jsonl +all +\d+ +2 +on +navigator=PN-B from=2026-03-01 to=2026-08-31$`,
		`^1 +\d{4}-\d\d-\d\d \d\d:\d\d +csv +1 +\d+ +2 +on *$`,
	} {
		if !regexp.MustCompile(want).MatchString(lines[i+1]) {
			t.Errorf("export list line %d %q does not match %s", i+1, lines[i+1], want)
		}
	}

	out = mustDiary(t, s.res, "", "export", "list", "--json")
	var list []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("export list --json: %v in %q", err, line)
		}
		list = append(list, m)
	}
	if len(list) != 3 || list[0]["export_id"] != 3.0 || list[0]["format"] != "qdpx" || list[0]["wave"] != "2" || list[0]["since"] != 1.0 ||
		list[1]["navigator"] != "PN-B" || list[1]["from"] != "2026-03-01" || list[1]["to"] != "2026-08-31" || list[1]["entries"] != 2.0 ||
		list[2]["export_id"] != 1.0 || list[2]["redaction"] != true || list[2]["since"] != 0.0 {
		t.Fatalf("export list --json:\n%s", out)
	}

	if out := mustDiary(t, s.res, "", "export", "list", "--limit", "1"); strings.Count(out, "\n") != 2 || !strings.HasPrefix(strings.Split(out, "\n")[1], "3 ") {
		t.Fatalf("export list --limit 1:\n%s", out)
	}
	if out := mustDiary(t, s.res, "", "export", "list", "--json", "--limit", "2"); strings.Count(out, "\n") != 2 {
		t.Fatalf("export list --json --limit 2:\n%s", out)
	}
	for _, tc := range []struct {
		name   string
		home   string
		args   []string
		status int
		stderr string
	}{
		{"NegativeLimit", s.res, []string{"--limit", "-1"}, 2, "export list takes --json and --limit N"},
		{"Argument", s.res, []string{"csv"}, 2, "export list takes --json and --limit N"},
		{"Navigator", s.pnA, nil, 1, "cannot list exports: a navigator may not call"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out, errOut := diary(t, tc.home, "", append([]string{"export", "list"}, tc.args...)...)
			if status != tc.status || out != "" || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", status, out, errOut, tc.status, tc.stderr)
			}
		})
	}
}

// TestExportSince exports, lets the study change (an entry edited, one
// added, one withdrawn, one erased, and one that a narrower selection
// leaves outside), and exports again with --since an id and --since a
// manifest file.
func TestExportSince(t *testing.T) {
	s := newResearchStudy(t)
	first := s.path("first.csv")
	s.export(t, "--wave", "all", "--format", "csv", "--out", first)
	old := readManifest(t, first+".manifest.json")

	mustDiary(t, s.pnA, "", "edit", s.id["Met Jane"], "--body", "Jane Doe called again.")
	s.write(t, s.pnA, "Naloxone training", "--date", "2026-03-10", "--tag", "naloxone", "--share", "research", "--body", "Six people took kits.")
	mustDiary(t, s.pnA, "", "sync")
	mustDiary(t, s.pnB, "", "edit", s.id["Outreach"], "--share", "supervisor")
	mustDiary(t, s.pnB, "", "sync")
	mustDiary(t, s.admin, "", "admin", "erase", "--entry", s.id["=Court"])

	t.Run("ManifestFile", func(t *testing.T) {
		path := s.path("second.csv")
		_, errOut := s.export(t, "--wave", "all", "--format", "csv", "--out", path, "--since", first+".manifest.json")
		wantSummary(t, errOut, "2", "3", "2", "0", "1", "1", path)
		if want := "\nSince export 1: 1 added, 1 changed, 1 withdrawn, 1 erased (purge your copies), 0 now outside the selection.\n"; !strings.Contains(errOut, want) {
			t.Fatalf("export --since printed:\n%s\nwant %q", errOut, want)
		}
		m := readManifest(t, path+".manifest.json")
		sc := m.Since
		if sc == nil || sc.ExportID != old.ExportID ||
			!slices.Equal(sc.Added, []string{s.id["Naloxone training"]}) ||
			!slices.Equal(sc.Changed, []string{s.id["Met Jane"]}) ||
			!slices.Equal(sc.Withdrawn, []string{s.id["Outreach"]}) ||
			!slices.Equal(sc.Erased, []string{s.id["=Court"]}) ||
			len(sc.Outside) != 0 || sc.Counts["added"] != 1 || sc.Counts["erased"] != 1 {
			t.Fatalf("manifest's since: %+v\nids %v", sc, s.id)
		}
		// The entries that did not change keep their hashes.
		hashes := map[string]string{}
		for _, e := range old.Entries {
			hashes[e.EntryID] = e.TextSHA256
		}
		for _, e := range m.Entries {
			if h, ok := hashes[e.EntryID]; ok && (h == e.TextSHA256) != (e.EntryID != s.id["Met Jane"]) {
				t.Errorf("entry %s: hash %s, in the first export %s", e.EntryID, e.TextSHA256, h)
			}
		}
	})

	t.Run("ID", func(t *testing.T) {
		// PN-A's entries only: PN-B's "Day centre" is still shared, and
		// now outside the selection.
		mpath := s.path("pna.manifest.json")
		out, errOut := s.export(t, "--wave", "all", "--format", "jsonl", "--out", "-", "--manifest", mpath, "--navigator", "PN-A", "--since", "1")
		if recs := readJSONL(t, out); len(recs) != 2 {
			t.Fatalf("JSON Lines on standard output: %v", recs)
		}
		if want := "\nSince export 1: 1 added, 1 changed, 1 withdrawn, 1 erased (purge your copies), 1 now outside the selection.\n"; !strings.Contains(errOut, want) {
			t.Fatalf("export --since 1 printed:\n%s\nwant %q", errOut, want)
		}
		if sc := readManifest(t, mpath).Since; sc == nil || sc.ExportID != 1 || !slices.Equal(sc.Outside, []string{s.id["Day centre"]}) {
			t.Fatalf("manifest's since: %+v", sc)
		}
		if out := mustDiary(t, s.res, "", "export", "list", "--limit", "1"); !strings.Contains(out, "navigator=PN-A since=1") {
			t.Fatalf("export list:\n%s", out)
		}
	})

	t.Run("Errors", func(t *testing.T) {
		notJSON := s.path("notes.txt")
		os.WriteFile(notJSON, []byte("wave 1 was fine\n"), 0o600)
		qdpx := s.path("a.qdpx")
		s.export(t, "--wave", "1", "--format", "qdpx", "--out", qdpx)
		inArchive := s.path("manifest.json")
		os.WriteFile(inArchive, unzipFile(t, qdpx, "manifest.json"), 0o600)
		before := mustDiary(t, s.res, "", "export", "list")
		for _, tc := range []struct {
			name, since string
			status      int
			stderr      string
		}{
			{"UnknownID", "99", 1, "diary: cannot export: there is no export 99: see diary export list\n"},
			{"NoFile", s.path("gone.manifest.json"), 1, "diary: --since must be an export id or a manifest file: open "},
			{"NotAManifest", notJSON, 1, "diary: --since " + notJSON + ": not a manifest file: "},
			{"ManifestInArchive", inArchive, 1, "the manifest has no export id (the one inside a .qdpx leaves it out); give the id from diary export list\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out := s.path("refused.csv")
				status, stdout, errOut := diary(t, s.res, "", "export", "--wave", "all", "--format", "csv", "--out", out, "--since", tc.since)
				if status != tc.status || stdout != "" || !strings.Contains(errOut, tc.stderr) {
					t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", status, stdout, errOut, tc.status, tc.stderr)
				}
				wantNoFiles(t, s.dir, "refused.csv")
			})
		}
		if after := mustDiary(t, s.res, "", "export", "list"); after != before {
			t.Fatalf("a refused export was kept:\n%s", after)
		}
	})
}

func TestExportErrors(t *testing.T) {
	s := newResearchStudy(t)
	out := s.path("x.csv")
	for _, tc := range []struct {
		name   string
		home   string
		args   []string
		status int
		stderr string
	}{
		{"NoFlags", s.res, nil, 2, "export needs --wave N|all --format csv|jsonl|qdpx|qdc --out FILE"},
		{"NoOut", s.res, []string{"--wave", "1", "--format", "csv"}, 2, "export needs --wave N|all"},
		{"BadFormat", s.res, []string{"--wave", "1", "--format", "xlsx", "--out", out}, 2, "--format must be csv, jsonl, qdpx or qdc"},
		{"BadWave", s.res, []string{"--wave", "0", "--format", "csv", "--out", out}, 2, `--wave must be a wave number or all, not "0"`},
		{"UnknownWave", s.res, []string{"--wave", "9", "--format", "csv", "--out", out}, 1, "diary: cannot export: there is no wave 9\n"},
		{"UnknownNavigator", s.res, []string{"--wave", "all", "--format", "csv", "--out", out, "--navigator", "PN-Z"}, 1, `cannot export: no user has the study code "PN-Z"`},
		{"NotANavigator", s.res, []string{"--wave", "all", "--format", "csv", "--out", out, "--navigator", "ADMIN"}, 1, "cannot export: ADMIN is a admin, not a navigator: only navigators write entries"},
		{"BadFrom", s.res, []string{"--wave", "all", "--format", "csv", "--out", out, "--from", "2026-13-01"}, 2, `--from "2026-13-01": date "2026-13-01" is not a calendar date`},
		{"ToBeforeFrom", s.res, []string{"--wave", "all", "--format", "csv", "--out", out, "--from", "2026-05-01", "--to", "2026-04-30"}, 1, "the to date (2026-04-30) is before the from date (2026-05-01)"},
		{"BOMNotCSV", s.res, []string{"--wave", "all", "--format", "jsonl", "--out", out, "--bom"}, 1, "a byte order mark and the formula guard are CSV settings; this export is jsonl"},
		{"GuardNotCSV", s.res, []string{"--wave", "all", "--format", "qdpx", "--out", out, "--no-formula-guard"}, 1, "this export is qdpx"},
		{"NoDirectory", s.res, []string{"--wave", "all", "--format", "csv", "--out", filepath.Join(s.dir, "missing", "x.csv")}, 1, "cannot create " + filepath.Join(s.dir, "missing", "x.csv")},
		{"Navigator", s.pnA, []string{"--wave", "all", "--format", "csv", "--out", out}, 1, "cannot export: a navigator may not call"},
		{"Admin", s.admin, []string{"--wave", "all", "--format", "csv", "--out", out}, 1, "cannot export: a admin may not call"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, stdout, errOut := diary(t, tc.home, "", append([]string{"export"}, tc.args...)...)
			if status != tc.status || stdout != "" || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", status, stdout, errOut, tc.status, tc.stderr)
			}
			wantNoFiles(t, s.dir, "x.csv")
		})
	}
	if out := mustDiary(t, s.res, "", "export", "list"); strings.Count(out, "\n") != 1 {
		t.Fatalf("refused exports were kept:\n%s", out)
	}
}

func TestAdminRedact(t *testing.T) {
	s := newResearchStudy(t)
	admin := func(args ...string) string {
		t.Helper()
		return mustDiary(t, s.admin, "", append([]string{"admin", "redact"}, args...)...)
	}
	// body exports PN-A's "Met Jane" and returns its body as the
	// research team receives it, and what export printed.
	body := func(t *testing.T) (string, string) {
		t.Helper()
		out, errOut := s.export(t, "--wave", "1", "--format", "jsonl", "--navigator", "PN-A", "--out", "-", "--manifest", s.path("m.json"))
		recs := readJSONL(t, out)
		if len(recs) != 1 {
			t.Fatalf("export: %v", recs)
		}
		return recs[0]["body"].(string), errOut
	}
	refused := func(t *testing.T, home string, status int, stderr string, args ...string) {
		t.Helper()
		st, out, errOut := diary(t, home, "", append([]string{"admin", "redact"}, args...)...)
		if st != status || out != "" || !strings.Contains(errOut, stderr) {
			t.Fatalf("admin redact %v: exit %d, stdout %q, stderr %q; want exit %d and %q", args, st, out, errOut, status, stderr)
		}
	}

	t.Run("Terms", func(t *testing.T) {
		if out := admin("add", "Riverside", "--marker", "[place]"); out != "" {
			t.Fatalf("redact add printed %q", out)
		}
		if out := admin("list"); out != "TERM       MARKER\nJane Doe   [name]\nRiverside  [place]\n" {
			t.Fatalf("redact list:\n%s", out)
		}
		var terms []map[string]string
		for _, line := range strings.Split(strings.TrimSpace(admin("list", "--json")), "\n") {
			var m map[string]string
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatal(err)
			}
			terms = append(terms, m)
		}
		if len(terms) != 2 || terms[0]["term"] != "Jane Doe" || terms[0]["marker"] != "[name]" || terms[1]["term"] != "Riverside" || terms[1]["marker"] != "[place]" {
			t.Fatalf("redact list --json: %v", terms)
		}
		refused(t, s.admin, 1, "cannot add redaction term: the term is on the list already", "add", "JANE DOE")
		refused(t, s.admin, 2, "admin redact add needs one term (quote a name of several words)", "add", "Jane", "Doe")
		refused(t, s.admin, 2, "admin redact add needs one term", "add")
		refused(t, s.admin, 1, `cannot add redaction term: redaction term "(Jane)" must start and end with a letter or digit`, "add", "(Jane)")
		if out := admin("show"); !strings.HasPrefix(out, "De-identification: on\nTerms on the list: 2\n") {
			t.Fatalf("redact show:\n%s", out)
		}

		if b, _ := body(t); b != "[name] called from [phone] about the room at [place].\nWrite to [email]." {
			t.Fatalf("body with two terms: %q", b)
		}
		if out := admin("remove", "riverside"); out != "" {
			t.Fatalf("redact remove printed %q", out)
		}
		refused(t, s.admin, 1, "cannot remove redaction term: it is not on the list", "remove", "Riverside")
		refused(t, s.admin, 2, "admin redact remove needs one term", "remove")
		if b, _ := body(t); b != "[name] called from [phone] about the room at Riverside.\nWrite to [email]." {
			t.Fatalf("body after the term was removed: %q", b)
		}
	})

	t.Run("OffAndOn", func(t *testing.T) {
		if out := admin("off"); out != "De-identification is off, with 3 patterns.\n" {
			t.Fatalf("redact off printed %q", out)
		}
		if out := admin("show"); !strings.HasPrefix(out, "De-identification: OFF: research exports and pulls carry texts as written\n") {
			t.Fatalf("redact show when off:\n%s", out)
		}
		b, errOut := body(t)
		if b != "Jane Doe called from 07700 900123 about the room at Riverside.\nWrite to jane.doe@example.org." || !strings.Contains(errOut, "\nWarning: de-identification is OFF for this study; texts are as the navigators wrote them.\n") {
			t.Fatalf("export with de-identification off: %q\n%s", b, errOut)
		}
		if out := mustDiary(t, s.res, "", "export", "preview", "--wave", "1"); !strings.HasSuffix(out, "\nDe-identification: OFF.\n") {
			t.Fatalf("preview when off:\n%s", out)
		}
		if m := readManifest(t, s.path("m.json")); m.Redaction.Enabled || m.Redaction.Replacements != 0 {
			t.Fatalf("manifest when off: %+v", m.Redaction)
		}
		if out := mustDiary(t, s.res, "", "export", "list", "--limit", "1"); !regexp.MustCompile(`\n\d+ .* OFF `).MatchString(out) {
			t.Fatalf("export list when off:\n%s", out)
		}
		audit := mustDiary(t, s.admin, "", "admin", "audit", "--limit", "5")
		if !regexp.MustCompile(`ADMIN +redaction\.update +.*enabled=false`).MatchString(audit) {
			t.Fatalf("audit after redact off:\n%s", audit)
		}
		if out := admin("on"); out != "De-identification is on, with 3 patterns.\n" {
			t.Fatalf("redact on printed %q", out)
		}
		if b, _ := body(t); b != "[name] called from [phone] about the room at Riverside.\nWrite to [email]." {
			t.Fatalf("body after redact on: %q", b)
		}
		refused(t, s.admin, 2, "admin redact off takes no arguments", "off", "now")
		refused(t, s.res, 1, "a researcher may not call", "off")
		refused(t, s.pnA, 1, "a navigator may not call", "list")
	})

	t.Run("Patterns", func(t *testing.T) {
		mustDiary(t, s.pnA, "", "edit", s.id["Met Jane"], "--body", "NHS number 943 476 5919, phone 07700 900123.")
		mustDiary(t, s.pnA, "", "sync")
		if out := admin("pattern", "add", "--name", "nhs", "--marker", "[nhs]", "--regexp", `\d{3} \d{3} \d{4}`); out != "De-identification is on, with 4 patterns.\n" {
			t.Fatalf("pattern add printed %q", out)
		}
		if out := admin("show"); !regexp.MustCompile(`\nnhs +\[nhs\] +\\d\{3\} \\d\{3\} \\d\{4\}\n$`).MatchString(out) {
			t.Fatalf("redact show after pattern add:\n%s", out)
		}
		b, errOut := body(t)
		if b != "NHS number [nhs], phone [phone]." || !strings.Contains(errOut, "([email] [phone] [postcode] [nhs], and 1 listed terms)") {
			t.Fatalf("export with the nhs pattern: %q\n%s", b, errOut)
		}
		// The same name again changes the pattern.
		if out := admin("pattern", "add", "--name", "nhs", "--marker", "[nhs-number]", "--regexp", `\d{3} \d{3} \d{4}`); out != "De-identification is on, with 4 patterns.\n" {
			t.Fatalf("pattern add of an existing name printed %q", out)
		}
		if b, _ := body(t); b != "NHS number [nhs-number], phone [phone]." {
			t.Fatalf("body after the pattern changed: %q", b)
		}
		refused(t, s.admin, 1, `cannot change redaction setting: redaction pattern "bad" is not a valid regular expression`, "pattern", "add", "--name", "bad", "--marker", "[x]", "--regexp", "(")
		refused(t, s.admin, 1, `redaction pattern "empty" matches empty text`, "pattern", "add", "--name", "empty", "--marker", "[x]", "--regexp", "a*")
		refused(t, s.admin, 1, `redaction pattern name "NHS 2"`, "pattern", "add", "--name", "NHS 2", "--marker", "[x]", "--regexp", "x")
		refused(t, s.admin, 2, "admin redact pattern add needs --name N --marker M --regexp RE", "pattern", "add", "--name", "x", "--marker", "[x]")
		refused(t, s.admin, 2, "admin redact pattern needs a subcommand: add, remove, reset", "pattern")

		if out := admin("pattern", "remove", "nhs"); out != "De-identification is on, with 3 patterns.\n" {
			t.Fatalf("pattern remove printed %q", out)
		}
		refused(t, s.admin, 1, `cannot remove redaction pattern: there is no pattern "nhs"`, "pattern", "remove", "nhs")
		refused(t, s.admin, 2, "admin redact pattern remove needs the pattern's name", "pattern", "remove")
		admin("pattern", "remove", "email")
		if out := admin("pattern", "remove", "phone"); out != "De-identification is on, with 1 patterns.\n" {
			t.Fatalf("pattern remove printed %q", out)
		}
		if b, _ := body(t); b != "NHS number 943 476 5919, phone 07700 900123." {
			t.Fatalf("body with only the postcode pattern: %q", b)
		}
		refused(t, s.admin, 1, "cannot remove the last redaction pattern: an empty list means the defaults; turn redaction off with admin redact off instead", "pattern", "remove", "postcode")

		if out := admin("pattern", "reset"); out != "De-identification is on, with 3 patterns.\n" {
			t.Fatalf("pattern reset printed %q", out)
		}
		show := admin("show")
		var names []string
		for _, line := range strings.Split(strings.TrimSpace(show), "\n")[3:] {
			names = append(names, strings.Fields(line)[0])
		}
		if !slices.Equal(names, []string{"email", "phone", "postcode"}) {
			t.Fatalf("redact show after pattern reset:\n%s", show)
		}
		if b, _ := body(t); b != "NHS number 943 476 5919, phone [phone]." {
			t.Fatalf("body after pattern reset: %q", b)
		}
	})

	// The navigator still sees what they wrote.
	if out := mustDiary(t, s.pnA, "", "show", s.id["Met Jane"]); !strings.Contains(out, "943 476 5919, phone 07700 900123") {
		t.Fatalf("the navigator's entry:\n%s", out)
	}
	refused(t, s.admin, 2, `unknown subcommand "purge" of "admin redact"`, "purge")
	refused(t, s.admin, 2, "admin redact needs a subcommand: add, remove, list, show, on, off, pattern", nil...)
}

func TestAdminWaves(t *testing.T) {
	s := newResearchStudy(t)
	wave := func(args ...string) string {
		t.Helper()
		return mustDiary(t, s.admin, "", append([]string{"admin", "wave"}, args...)...)
	}
	refused := func(t *testing.T, status int, stderr string, args ...string) {
		t.Helper()
		st, out, errOut := diary(t, s.admin, "", append([]string{"admin", "wave"}, args...)...)
		if st != status || out != "" || !strings.Contains(errOut, stderr) {
			t.Fatalf("admin wave %v: exit %d, stdout %q, stderr %q; want exit %d and %q", args, st, out, errOut, status, stderr)
		}
	}
	// outreach says where PN-B's "Outreach" (2026-07-15) is: its wave
	// and definition, or "" when in none.
	outreach := func(t *testing.T) string {
		t.Helper()
		out, _ := s.export(t, "--wave", "all", "--format", "jsonl", "--navigator", "PN-B", "--out", "-", "--manifest", s.path("m.json"))
		for _, r := range readJSONL(t, out) {
			if r["entry_id"] == s.id["Outreach"] {
				return r["wave_label"].(string) + " " + r["wave_definition"].(string)
			}
		}
		return ""
	}

	list := wave("list")
	if list != "WAVE  LABEL      NAVIGATOR  FROM        TO\n"+
		"1     Baseline   (all)      2026-01-01  2026-03-31\n"+
		"2     Follow-up  (all)      2026-04-01  2026-06-30\n"+
		"2     Follow-up  PN-B       2026-07-01  2026-08-31\n" {
		t.Fatalf("wave list:\n%s", list)
	}
	var defs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(wave("list", "--json")), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		defs = append(defs, m)
	}
	if len(defs) != 3 || defs[0]["navigator"] != "" || defs[0]["label"] != "Baseline" || defs[2]["navigator"] != "PN-B" || defs[2]["start_date"] != "2026-07-01" || defs[2]["end_date"] != "2026-08-31" || defs[2]["number"] != 2.0 {
		t.Fatalf("wave list --json: %v", defs)
	}
	if got := outreach(t); got != "Follow-up navigator" {
		t.Fatalf("Outreach is in %q", got)
	}

	// A navigator's own dates for wave 1 that PN-A's wave 2 does not
	// overlap; then PN-B's wave 2 moved.
	if out := wave("add", "--number", "1", "--navigator", "PN-A", "--from", "2025-12-01", "--to", "2026-02-28"); out != "1\n" {
		t.Fatalf("wave add --navigator printed %q", out)
	}
	if out := wave("edit", "--number", "2", "--navigator", "PN-B", "--from", "2026-07-20", "--to", "2026-09-30"); out != "2\n" {
		t.Fatalf("wave edit --navigator printed %q", out)
	}
	if got := outreach(t); got != "" {
		t.Fatalf("after PN-B's wave 2 moved past it, Outreach is in %q", got)
	}
	if out := wave("edit", "--number", "2", "--label", "Six months", "--from", "2026-04-01", "--to", "2026-06-30"); out != "2\n" {
		t.Fatalf("wave edit printed %q", out)
	}
	list = wave("list")
	if list != "WAVE  LABEL       NAVIGATOR  FROM        TO\n"+
		"1     Baseline    (all)      2026-01-01  2026-03-31\n"+
		"1     Baseline    PN-A       2025-12-01  2026-02-28\n"+
		"2     Six months  (all)      2026-04-01  2026-06-30\n"+
		"2     Six months  PN-B       2026-07-20  2026-09-30\n" {
		t.Fatalf("wave list after add and edit:\n%s", list)
	}

	for _, tc := range []struct {
		name   string
		status int
		stderr string
		args   []string
	}{
		{"Overlap", 1, "cannot add wave: for PN-A, wave 2 (2026-02-01 to 2026-05-31) overlaps wave 1 (2025-12-01 to 2026-02-28)",
			[]string{"add", "--number", "2", "--navigator", "PN-A", "--from", "2026-02-01", "--to", "2026-05-31"}},
		{"OverlapEdit", 1, "cannot edit wave: for PN-B, wave 2 (2026-03-01 to 2026-09-30) overlaps wave 1 (2026-01-01 to 2026-03-31)",
			[]string{"edit", "--number", "2", "--navigator", "PN-B", "--from", "2026-03-01", "--to", "2026-09-30"}},
		{"Twice", 1, "cannot add wave: PN-B already has their own dates for wave 2: use edit",
			[]string{"add", "--number", "2", "--navigator", "PN-B", "--from", "2026-07-01", "--to", "2026-08-31"}},
		{"EditNone", 1, "cannot edit wave: PN-A has no own dates for wave 2: use add",
			[]string{"edit", "--number", "2", "--navigator", "PN-A", "--from", "2026-04-01", "--to", "2026-05-31"}},
		{"NoSuchWave", 1, "cannot add wave: there is no wave 7 to give PN-B their own dates for: define the study-wide wave first",
			[]string{"add", "--number", "7", "--navigator", "PN-B", "--from", "2027-01-01", "--to", "2027-01-31"}},
		{"NotANavigator", 1, "cannot add wave: RES-1 is a researcher: only navigators have their own wave dates",
			[]string{"add", "--number", "1", "--navigator", "RES-1", "--from", "2026-01-01", "--to", "2026-01-31"}},
		{"UnknownNavigator", 1, `no user has the study code "PN-Z"`,
			[]string{"add", "--number", "1", "--navigator", "PN-Z", "--from", "2026-01-01", "--to", "2026-01-31"}},
		{"EndsBeforeStart", 2, "wave 1 ends (2026-01-01) before it starts (2026-01-31)",
			[]string{"add", "--number", "1", "--navigator", "PN-B", "--from", "2026-01-31", "--to", "2026-01-01"}},
		{"NoLabelNoNavigator", 2, "admin wave add needs --number N --label L --from DATE --to DATE, or --number N --navigator CODE --from DATE --to DATE",
			[]string{"add", "--number", "3", "--from", "2026-07-01", "--to", "2026-08-31"}},
		{"NoDates", 2, "admin wave edit needs --number N",
			[]string{"edit", "--number", "2", "--navigator", "PN-B"}},
		{"RemoveNoNavigator", 2, "admin wave remove needs --number N --navigator CODE: it removes a navigator's own dates (study-wide waves stay)",
			[]string{"remove", "--number", "2"}},
		{"RemoveNone", 1, "cannot remove wave dates: PN-A has no own dates for wave 2",
			[]string{"remove", "--number", "2", "--navigator", "PN-A"}},
		{"Unknown", 2, `unknown subcommand "delete" of "admin wave"`, []string{"delete"}},
	} {
		t.Run(tc.name, func(t *testing.T) { refused(t, tc.status, tc.stderr, tc.args...) })
	}
	if after := wave("list"); after != list {
		t.Fatalf("refused wave commands changed the waves:\n%s", after)
	}

	if out := wave("remove", "--number", "2", "--navigator", "PN-B"); out != "" {
		t.Fatalf("wave remove printed %q", out)
	}
	// PN-B's entry of May is back in wave 2 by the study-wide dates,
	// and Outreach in none.
	if list := wave("list"); strings.Contains(list, "PN-B") || !strings.Contains(list, "PN-A") {
		t.Fatalf("wave list after remove:\n%s", list)
	}
	out, _ := s.export(t, "--wave", "2", "--format", "jsonl", "--navigator", "PN-B", "--out", "-", "--manifest", s.path("m.json"))
	if recs := readJSONL(t, out); len(recs) != 1 || recs[0]["entry_id"] != s.id["Old window"] || recs[0]["wave_definition"] != "default" {
		t.Fatalf("PN-B's wave 2 after remove: %v", recs)
	}
	refused(t, 1, "cannot remove wave dates: PN-B has no own dates for wave 2", "remove", "--number", "2", "--navigator", "PN-B")
	if st, _, errOut := diary(t, s.res, "", "admin", "wave", "add", "--number", "1", "--navigator", "PN-B", "--from", "2026-01-01", "--to", "2026-01-31"); st != 1 || !strings.Contains(errOut, "a researcher may not call") {
		t.Fatalf("wave add as a researcher: exit %d, %q", st, errOut)
	}
}
