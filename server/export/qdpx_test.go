package export

import (
	"archive/zip"
	"bytes"
	"cmp"
	"encoding/xml"
	"flag"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/google/uuid"
	"golang.org/x/text/unicode/norm"
)

// schemaPath is the REFI-QDA Project schema, in the shared folder beside
// the repository.
// schemaPath is where the REFI-QDA schema sits beside the repository;
// DIARYSYNC_REFIQDA_XSD overrides it.
var schemaPath = cmp.Or(os.Getenv("DIARYSYNC_REFIQDA_XSD"), "../../../shared/refi-qda/Project.xsd")

var update = flag.Bool("update", false, "rewrite testdata/hostile.qde from the current output")

// qde is the part of project.qde the tests look at.
type qde struct {
	XMLName   xml.Name `xml:"urn:QDA-XML:project:1.0 Project"`
	Name      string   `xml:"name,attr"`
	Variables []struct {
		GUID string `xml:"guid,attr"`
		Name string `xml:"name,attr"`
		Type string `xml:"typeOfVariable,attr"`
	} `xml:"Variables>Variable"`
	Cases   []qdeCase `xml:"Cases>Case"`
	Sources []struct {
		GUID          string `xml:"guid,attr"`
		Name          string `xml:"name,attr"`
		PlainTextPath string `xml:"plainTextPath,attr"`
		RichTextPath  string `xml:"richTextPath,attr"`
		Created       string `xml:"creationDateTime,attr"`
		Modified      string `xml:"modifiedDateTime,attr"`
		Description   string `xml:"Description"`
		Values        []struct {
			Variable qdeRef `xml:"VariableRef"`
			Text     string `xml:",any"`
		} `xml:"VariableValue"`
	} `xml:"Sources>TextSource"`
	Notes []struct {
		GUID string `xml:"guid,attr"`
		Name string `xml:"name,attr"`
		Text string `xml:"PlainTextContent"`
	} `xml:"Notes>Note"`
	Sets []struct {
		GUID    string   `xml:"guid,attr"`
		Name    string   `xml:"name,attr"`
		Members []qdeRef `xml:"MemberSource"`
	} `xml:"Sets>Set"`
	Description string   `xml:"Description"`
	NoteRefs    []qdeRef `xml:"NoteRef"`
}

type qdeCase struct {
	GUID    string   `xml:"guid,attr"`
	Name    string   `xml:"name,attr"`
	Sources []qdeRef `xml:"SourceRef"`
}

type qdeRef struct {
	Target string `xml:"targetGUID,attr"`
}

// exportQDPX writes a .qdpx and returns it with its files by name.
func exportQDPX(t *testing.T, m study.Manifest, recs study.Records) ([]byte, map[string][]byte, []*zip.File) {
	t.Helper()
	var b bytes.Buffer
	if err := WriteQDPX(&b, m, recs); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(b.Bytes()), int64(b.Len()))
	if err != nil {
		t.Fatalf("not a zip archive: %v", err)
	}
	files := make(map[string][]byte)
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc) // checks the CRC-32 at EOF
		rc.Close()
		if err != nil {
			t.Fatalf("cannot read %s: %v", f.Name, err)
		}
		if _, dup := files[f.Name]; dup {
			t.Fatalf("%s is in the archive twice", f.Name)
		}
		files[f.Name] = data
	}
	return b.Bytes(), files, zr.File
}

func parseQDE(t *testing.T, data []byte) *qde {
	t.Helper()
	var p qde
	if err := xml.Unmarshal(data, &p); err != nil {
		t.Fatalf("project.qde is not well-formed: %v", err)
	}
	return &p
}

// validate checks project.qde against the REFI-QDA schema with xmllint.
func validate(t *testing.T, project []byte) {
	t.Helper()
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		t.Skip("xmllint is not installed (apt-get install libxml2-utils); cannot check project.qde against the REFI-QDA schema")
	}
	schema, err := filepath.Abs(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(schema); err != nil {
		t.Skipf("REFI-QDA schema not found beside the repository: %v", err)
	}
	path := filepath.Join(t.TempDir(), "project.qde")
	if err := os.WriteFile(path, project, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(xmllint, "--noout", "--schema", schema, path).CombinedOutput()
	if err != nil {
		t.Fatalf("project.qde does not validate: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "validates") {
		t.Fatalf("xmllint said: %s", out)
	}
}

// oneWave returns the records and manifest of an export of wave 2 only.
func oneWave() ([]study.Record, study.Manifest) {
	var recs []study.Record
	for _, r := range hostileRecords() {
		if r.Wave == 2 {
			recs = append(recs, r)
		}
	}
	m := manifestFor(recs)
	m.Wave = 2
	return recs, m
}

func TestWriteQDPX(t *testing.T) {
	recs := hostileRecords()
	m := manifestFor(recs)
	archive, files, zipFiles := exportQDPX(t, m, sliceRecords(recs))
	project := parseQDE(t, files["project.qde"])

	t.Run("ValidatesAgainstSchema", func(t *testing.T) {
		oneRecs, oneM := oneWave()
		_, one, _ := exportQDPX(t, oneM, sliceRecords(oneRecs))
		empty := manifestFor(nil)
		_, none, _ := exportQDPX(t, empty, sliceRecords(nil))
		noWaves := manifestFor(nil)
		noWaves.Waves = nil
		_, bare, _ := exportQDPX(t, noWaves, sliceRecords(nil))
		for name, data := range map[string][]byte{
			"AllWaves": files["project.qde"], "OneWave": one["project.qde"],
			"NoEntries": none["project.qde"], "NoWaves": bare["project.qde"],
		} {
			t.Run(name, func(t *testing.T) { validate(t, data) })
		}
	})

	t.Run("Reproducible", func(t *testing.T) {
		again, againFiles, _ := exportQDPX(t, m, ignoringRecords(recs))
		if !bytes.Equal(files["project.qde"], againFiles["project.qde"]) {
			t.Fatal("project.qde differs between two exports of the same data")
		}
		if !bytes.Equal(archive, again) {
			t.Fatal("the archive differs between two exports of the same data")
		}
		// The GUIDs depend on the ids only: a later export at another
		// position, of one wave, gives the same GUIDs to the same things.
		oneRecs, oneM := oneWave()
		oneM.Position, oneM.ExportedAt = 99, exportedAt.Add(time.Hour)
		_, oneFiles, _ := exportQDPX(t, oneM, sliceRecords(oneRecs))
		one := parseQDE(t, oneFiles["project.qde"])
		guids := map[string]string{}
		for _, s := range project.Sources {
			guids[s.GUID] = s.Name
		}
		for _, s := range one.Sources {
			if name, ok := guids[s.GUID]; !ok || name != s.Name {
				t.Errorf("source %s (%s) of the wave 2 export is not in the full export", s.GUID, s.Name)
			}
		}
		for _, c := range one.Cases {
			if !slices.ContainsFunc(project.Cases, func(p qdeCase) bool {
				return p.GUID == c.GUID && p.Name == c.Name
			}) {
				t.Errorf("case %s (%s) has another GUID in the full export", c.GUID, c.Name)
			}
		}
		if one.Sets[0].GUID != project.Sets[1].GUID {
			t.Errorf("wave 2's set GUID differs: %s and %s", one.Sets[0].GUID, project.Sets[1].GUID)
		}
		if one.Variables[2].GUID != project.Variables[2].GUID {
			t.Error("variable GUIDs differ between exports")
		}
	})

	t.Run("SourceFiles", func(t *testing.T) {
		if len(project.Sources) != len(recs) {
			t.Fatalf("%d sources, want %d", len(project.Sources), len(recs))
		}
		referenced := map[string]bool{}
		for i, s := range project.Sources {
			ref, ok := strings.CutPrefix(s.PlainTextPath, "internal://")
			if !ok || ref != s.GUID+".txt" {
				t.Fatalf("source %s has plainTextPath %q, want internal://<guid>.txt", s.GUID, s.PlainTextPath)
			}
			if s.RichTextPath != "" {
				t.Errorf("source %s has a richTextPath", s.GUID)
			}
			text, ok := files["sources/"+ref]
			if !ok {
				t.Fatalf("source %s: sources/%s is not in the archive", s.GUID, ref)
			}
			referenced["sources/"+ref] = true
			if bytes.ContainsRune(text, '\r') {
				t.Errorf("sources/%s holds a CR", ref)
			}
			if !norm.NFC.IsNormal(text) {
				t.Errorf("sources/%s is not NFC", ref)
			}
			if bytes.HasPrefix(text, []byte("\uFEFF")) {
				t.Errorf("sources/%s starts with a byte order mark", ref)
			}
			if want := plainText(recs[i].Body); string(text) != want {
				t.Errorf("sources/%s = %q, want %q", ref, text, want)
			}
		}
		if got := string(files["sources/"+project.Sources[0].GUID+".txt"]); !strings.Contains(got, "Caf\u00e9 (decomposed)") || !strings.Contains(got, "left.\nNext line") {
			t.Errorf("first source not normalised: %q", got)
		}
		for name := range files {
			if name != "project.qde" && name != "manifest.json" && !referenced[name] {
				t.Errorf("%s is in the archive but no source refers to it", name)
			}
		}
		for _, f := range zipFiles {
			if !f.Modified.Equal(exportedAt) {
				t.Errorf("%s modified %v, want the export time %v", f.Name, f.Modified, exportedAt)
			}
		}
	})

	t.Run("Cases", func(t *testing.T) {
		if len(project.Cases) != 2 || project.Cases[0].Name != "PN-A" || project.Cases[1].Name != "PN-B" {
			t.Fatalf("cases %+v, want PN-A and PN-B", project.Cases)
		}
		for _, c := range project.Cases {
			if c.GUID != caseGUID(c.Name) {
				t.Errorf("case %s has GUID %s, want %s", c.Name, c.GUID, caseGUID(c.Name))
			}
			var want []string
			for _, r := range recs {
				if r.StudyCode == c.Name {
					want = append(want, sourceGUID(uuid.MustParse(r.EntryID)))
				}
			}
			var got []string
			for _, s := range c.Sources {
				got = append(got, s.Target)
			}
			if !slices.Equal(got, want) {
				t.Errorf("case %s lists %q, want %q", c.Name, got, want)
			}
		}
	})

	t.Run("Sets", func(t *testing.T) {
		if len(project.Sets) != 2 || project.Sets[0].Name != "Wave 1: Beginning" || project.Sets[1].Name != "Wave 2: Middle <& end>" {
			t.Fatalf("sets %+v, want waves 1 and 2", project.Sets)
		}
		for i, set := range project.Sets {
			wave := uint32(i + 1)
			if set.GUID != setGUID(wave) {
				t.Errorf("set %q has GUID %s, want %s", set.Name, set.GUID, setGUID(wave))
			}
			var want, got []string
			for _, r := range recs {
				if r.Wave == wave {
					want = append(want, sourceGUID(uuid.MustParse(r.EntryID)))
				}
			}
			for _, s := range set.Members {
				got = append(got, s.Target)
			}
			if !slices.Equal(got, want) {
				t.Errorf("set %q holds %q, want %q", set.Name, got, want)
			}
		}
	})

	t.Run("Variables", func(t *testing.T) {
		byGUID := map[string]string{}
		for _, v := range project.Variables {
			byGUID[v.GUID] = v.Name + "/" + v.Type
		}
		for _, want := range []string{"Wave/Integer", "Entry date/Date", "Tags/Text", "Mood/Integer", "Study code/Text"} {
			if !slices.Contains(slices.Collect(maps.Values(byGUID)), want) {
				t.Errorf("variable %s missing", want)
			}
		}
		values := func(i int) map[string]string {
			got := map[string]string{}
			for _, v := range project.Sources[i].Values {
				got[strings.Split(byGUID[v.Variable.Target], "/")[0]] = strings.TrimSpace(v.Text)
			}
			return got
		}
		first := values(0)
		for name, want := range map[string]string{
			"Study code": "PN-A", "Entry id": recs[0].EntryID, "Wave": "1", "Wave label": "Beginning",
			"Entry date": "2024-01-15", "Tags": "court; appeal; housing", "Mood": "7", "Revisions": "5", "Wave definition": "default",
		} {
			if first[name] != want {
				t.Errorf("first source's %s = %q, want %q", name, first[name], want)
			}
		}
		if _, ok := values(1)["Mood"]; ok {
			t.Error("a mood that was not recorded has a value")
		}
		if s := project.Sources[0]; s.Created != "2024-01-15T07:00:00.123Z" || s.Modified != "2024-01-16T09:00:00.123Z" {
			t.Errorf("first source created %s modified %s", s.Created, s.Modified)
		}
	})

	t.Run("ManifestNote", func(t *testing.T) {
		if len(project.Notes) != 1 || len(project.NoteRefs) != 1 || project.NoteRefs[0].Target != project.Notes[0].GUID {
			t.Fatalf("notes %+v, refs %+v: want one manifest note the project refers to", project.Notes, project.NoteRefs)
		}
		note := project.Notes[0].Text
		for _, want := range []string{
			"Waves exported: all", "Server position: 42", "Snapshot at: 2024-07-01T09:30:15.000Z",
			"Entries exported: 5", "not shared for research: 3", "deleted: 2", "erased: 1", "dated in no wave: 4",
			"Wave 1: Beginning: 2024-01-01 to 2024-03-31", "Wave 2: Middle <& end>: 2024-04-01 to 2024-06-30",
		} {
			if !strings.Contains(note, want) {
				t.Errorf("manifest note lacks %q:\n%s", want, note)
			}
		}
		if project.Name != "Diary entries, all waves, position 42" {
			t.Errorf("project name %q", project.Name)
		}
	})

	t.Run("OneWave", func(t *testing.T) {
		oneRecs, oneM := oneWave()
		_, oneFiles, _ := exportQDPX(t, oneM, sliceRecords(oneRecs))
		one := parseQDE(t, oneFiles["project.qde"])
		if one.Name != "Diary entries, wave 2 (Middle <& end>), position 42" {
			t.Errorf("project name %q does not say which wave", one.Name)
		}
		if len(one.Sets) != 1 || len(one.Sets[0].Members) != len(oneRecs) {
			t.Errorf("sets %+v, want wave 2 alone with %d members", one.Sets, len(oneRecs))
		}
		// The note still records every definition the export used.
		if !strings.Contains(one.Notes[0].Text, "Wave 1: Beginning: 2024-01-01 to 2024-03-31") {
			t.Errorf("manifest note lacks wave 1's definition:\n%s", one.Notes[0].Text)
		}
	})

	t.Run("HostileTextEscaped", func(t *testing.T) {
		raw := string(files["project.qde"])
		if strings.Contains(raw, "<script>") || strings.Contains(raw, "\x01") || strings.Contains(raw, "\r") {
			t.Fatal("unescaped text in project.qde")
		}
		if got := project.Sources[0].Description; got != recs[0].Title {
			t.Errorf("title %q read back as %q", recs[0].Title, got)
		}
		if got := project.Sources[0].Name; got != `PN-A 2024-01-15 script alert( x ) -script & quotes , commas [000001]` {
			t.Errorf("source name %q", got)
		}
	})

	t.Run("OnlyStudyCodes", func(t *testing.T) {
		// Every name in the project is a study code, a title, a wave or a
		// fixed word: nothing the records did not carry.
		for _, c := range project.Cases {
			if c.Name != "PN-A" && c.Name != "PN-B" {
				t.Errorf("case named %q", c.Name)
			}
		}
		if bytes.Contains(files["project.qde"], []byte("Users")) || bytes.Contains(files["project.qde"], []byte("creatingUser")) {
			t.Error("project.qde names users")
		}
	})
}

// TestProjectGolden compares project.qde with the one in testdata, so
// that any change to what researchers receive shows in review. After a
// change that is meant: go test ./server/export -run TestProjectGolden
// -update, and read the diff.
func TestProjectGolden(t *testing.T) {
	recs := hostileRecords()
	_, files, _ := exportQDPX(t, manifestFor(recs), sliceRecords(recs))
	golden := filepath.Join("testdata", "hostile.qde")
	if *update {
		if err := os.WriteFile(golden, files["project.qde"], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(files["project.qde"], want) {
		t.Fatalf("project.qde differs from %s; if the change is meant, rerun with -update and review the diff", golden)
	}
}

func TestWriteQDPXPasses(t *testing.T) {
	recs := hostileRecords()
	var passes []study.Pass
	counting := func(p study.Pass, yield func(*study.Record) error) error {
		passes = append(passes, p)
		return sliceRecords(recs)(p, yield)
	}
	var b bytes.Buffer
	if err := WriteQDPX(&b, manifestFor(recs), counting); err != nil {
		t.Fatal(err)
	}
	none := study.Pass{SkipBody: true, SkipRevisions: true}
	want := []study.Pass{{SkipRevisions: true}, none, none, {}, {Wave: 1, SkipBody: true, SkipRevisions: true}, {Wave: 2, SkipBody: true, SkipRevisions: true}, {SkipRevisions: true}}
	if !slices.Equal(passes, want) {
		t.Fatalf("passes %+v, want %+v: source files with bodies, tags and cases without, sources with bodies and revisions, one per wave without, the manifest with bodies", passes, want)
	}
}

func TestSourceNameTruncated(t *testing.T) {
	r := study.Record{StudyCode: "PN-C", Date: "2024-02-03", Title: strings.Repeat("é", 200)}
	name := sourceName(&r, uuid.MustParse("01900000-0000-7000-8000-0000000000ab"))
	if got := len([]rune(name)); got != len([]rune("PN-C 2024-02-03 "))+sourceNameTitleRunes+len(" [0000ab]") {
		t.Fatalf("name has %d characters: %q", got, name)
	}
	if !strings.HasSuffix(name, "… [0000ab]") {
		t.Fatalf("truncated name %q does not end in an ellipsis", name)
	}
}

// TestGUIDsAreStable pins the GUIDs: they must never change, or a
// researcher who combines an old export with a new one gets every entry
// twice.
func TestGUIDsAreStable(t *testing.T) {
	// The expected values are UUIDv5 (RFC 9562) of "kind\x00key" in the
	// namespace guidSpace, computed independently of this package.
	tests := []struct{ name, got, want string }{
		{"source", sourceGUID(uuid.MustParse("01900000-0000-7000-8000-000000000001")), "13959cc7-b486-5464-ade9-ac10cea32c81"},
		{"case", caseGUID("PN-A"), "e10176ea-bd46-5922-82f4-b39b265756ea"},
		{"set", setGUID(2), "ea7e86a0-6227-5bee-999d-a2c9401d4a41"},
		{"variable", variableGUID("Wave"), "23d47c64-5a77-513e-92c8-1dc4d0c9bb8b"},
		{"note", noteGUID(42, 0), "154512b1-cd0a-58b5-ada4-881fcf79835a"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s GUID %s, want %s", tt.name, tt.got, tt.want)
		}
	}
}
