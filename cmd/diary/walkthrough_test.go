package main

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diarysync/diarysync/internal/storetest"
)

// TestWalkthrough follows the README with the real binaries: start the
// demo server, enrol a navigator, a supervisor and a researcher, write
// entries while the server is stopped, start it again, sync, read the
// supervisor's inbox, and export wave 2 as .qdpx (validated against the
// REFI-QDA schema when xmllint and the schema are at hand) and CSV. It
// runs with the embedded SQLite store and with diaryd on PostgreSQL.
func TestWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	dir := t.TempDir()
	for _, cmd := range []string{"diary", "diaryd"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "../"+cmd).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", cmd, err, out)
		}
	}
	t.Run("SQLite", func(t *testing.T) { walkthrough(t, dir, nil) })
	t.Run("PostgreSQL", func(t *testing.T) { walkthrough(t, dir, []string{"--database", storetest.NewDatabase(t)}) })
}

// walkthrough is TestWalkthrough with the binaries in bin and diaryd's
// store chosen by store (nil for SQLite in the data directory).
func walkthrough(t *testing.T, bin string, store []string) {
	dir := t.TempDir()
	for _, cmd := range []string{"diary", "diaryd"} {
		if err := os.Link(filepath.Join(bin, cmd), filepath.Join(dir, cmd)); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	data := filepath.Join(dir, "data")
	server := startDiaryd(t, dir, data, addr, append([]string{"--demo"}, store...)...)
	codes := map[string]string{}
	re := regexp.MustCompile(`^\s+(PN-A|SUP-1|RES-1)\s+\w+\s+([A-Z0-9]{5}-[A-Z0-9]{5})`)
	for _, line := range strings.Split(server.stdout, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			codes[m[1]] = m[2]
		}
	}
	if len(codes) != 3 || !strings.Contains(server.stdout, "go run ./cmd/diary --home /tmp/pn-a enrol --server http://"+addr) {
		t.Fatalf("demo output:\n%s", server.stdout)
	}
	diary := func(home string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(dir, "diary"), append([]string{"--home", filepath.Join(dir, home)}, args...)...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("diary %v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}
	// Both binaries say which build they are: the module version and the
	// revision go build stamped from the checkout, as "go version -m"
	// reads them (a toolchain told not to stamp, -buildvcs=false, leaves
	// the revision unknown, and the binary says so).
	for _, bin := range []string{"diary", "diaryd"} {
		meta, err := exec.Command("go", "version", "-m", filepath.Join(dir, bin)).Output()
		if err != nil {
			t.Fatal(err)
		}
		want := "(revision unknown"
		if m := regexp.MustCompile(`\bvcs\.revision=([0-9a-f]{40})`).FindSubmatch(meta); m != nil {
			want = "(revision " + string(m[1]) + ", "
		}
		out, err := exec.Command(filepath.Join(dir, bin), "version").Output()
		if err != nil || !strings.HasPrefix(string(out), bin+" ") || !strings.Contains(string(out), want) {
			t.Errorf("%s version: %q (%v), want it to hold %q", bin, out, err, want)
		}
	}
	url := "http://" + addr
	diary("pn-a", "enrol", "--server", url, "--code", codes["PN-A"], "--name", "PN-A phone")
	diary("sup1", "enrol", "--server", url, "--code", codes["SUP-1"], "--name", "SUP-1 laptop")
	diary("res1", "enrol", "--server", url, "--code", codes["RES-1"], "--name", "RES-1 laptop")

	server.stop(t)
	shared := strings.TrimSpace(diary("pn-a", "write", "--title", "First shift", "--share", "both", "--tag", "housing", "--body", "Met J. at the hostel, \"again\", with 🙂"))
	diary("pn-a", "write", "--title", "Just for me", "--body", "private")
	if out := diary("pn-a", "status"); !strings.Contains(out, "pending:") || strings.Contains(out, "pending:    0") {
		t.Fatalf("status while offline:\n%s", out)
	}

	server = startDiaryd(t, dir, data, addr, store...)
	defer server.stop(t)
	diary("pn-a", "sync")
	diary("sup1", "sync")
	inbox := diary("sup1", "inbox")
	if !strings.Contains(inbox, "First shift") || strings.Contains(inbox, "Just for me") {
		t.Fatalf("inbox:\n%s", inbox)
	}

	// A second device of PN-A, with a code from the administrator, waits
	// until PN-A's phone approves it.
	// On SQLite the first administrator's code is in the data directory,
	// as the README says; on PostgreSQL it is asked for at the console.
	adminCode, err := os.ReadFile(filepath.Join(data, "admin-code"))
	if store != nil {
		adminCode, err = exec.Command(filepath.Join(dir, "diaryd"), append([]string{"admin-code"}, store...)...).Output()
	}
	if err != nil {
		t.Fatal(err)
	}
	diary("admin", "enrol", "--server", url, "--code", strings.TrimSpace(string(adminCode)))
	code := strings.TrimSpace(diary("admin", "admin", "code", "--user", "PN-A"))
	if out := diary("pn-a-tablet", "enrol", "--server", url, "--code", code, "--name", "pn-a-tablet"); !strings.Contains(out, "waits for approval") {
		t.Fatalf("enrolling PN-A's tablet:\n%s", out)
	}
	diary("pn-a-tablet", "sync")
	if out := diary("pn-a-tablet", "list"); strings.Contains(out, "First shift") {
		t.Fatalf("the pending tablet holds PN-A's entries:\n%s", out)
	}
	diary("pn-a", "sync")
	st := diary("pn-a", "status")
	m := regexp.MustCompile(`\n\s+([0-9a-f-]{36})  "pn-a-tablet"`).FindStringSubmatch(st)
	if m == nil {
		t.Fatalf("PN-A's status does not show the tablet asking to join:\n%s", st)
	}
	diary("pn-a", "device", "approve", m[1])
	diary("pn-a-tablet", "sync")
	if out := diary("pn-a-tablet", "list"); !strings.Contains(out, "First shift") {
		t.Fatalf("the approved tablet does not hold PN-A's entries:\n%s", out)
	}
	if out := diary("pn-a", "activity"); !strings.Contains(out, "approved device pn-a-tablet") || !strings.Contains(out, "ADMIN") {
		t.Fatalf("PN-A's activity:\n%s", out)
	}

	qdpx := filepath.Join(dir, "wave2.qdpx")
	csvPath := filepath.Join(dir, "wave2.csv")
	diary("res1", "export", "--wave", "2", "--format", "qdpx", "--out", qdpx)
	diary("res1", "export", "--wave", "2", "--format", "csv", "--out", csvPath)
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 2 || rows[1][0] != shared || !strings.Contains(strings.Join(rows[1], ","), `"again", with 🙂`) {
		t.Fatalf("CSV export: %v %q", err, rows)
	}
	// The manifest and the data dictionary beside the CSV file, the
	// list of exports, and a comparison with the first export.
	var manifest struct {
		ExportID int `json:"export_id"`
		Entries  []struct {
			EntryID string `json:"entry_id"`
		} `json:"entries"`
	}
	if b, err := os.ReadFile(csvPath + ".manifest.json"); err != nil || json.Unmarshal(b, &manifest) != nil || manifest.ExportID != 2 || len(manifest.Entries) != 1 || manifest.Entries[0].EntryID != shared {
		t.Fatalf("CSV manifest: %v %+v", err, manifest)
	}
	if b, err := os.ReadFile(csvPath + ".dictionary.md"); err != nil || !bytes.Contains(b, []byte("| revisions |")) {
		t.Fatalf("data dictionary: %v\n%s", err, b)
	}
	if list := diary("res1", "export", "list"); !strings.Contains(list, "qdpx") || !strings.Contains(list, "csv") {
		t.Fatalf("export list:\n%s", list)
	}
	stdout := diary("res1", "export", "--wave", "2", "--format", "jsonl", "--out", "-", "--manifest", filepath.Join(dir, "stdout.manifest.json"), "--since", csvPath+".manifest.json")
	if !strings.Contains(stdout, shared) {
		t.Fatalf("export to standard output:\n%s", stdout)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "stdout.manifest.json")); err != nil || !bytes.Contains(b, []byte(`"since"`)) {
		t.Fatalf("manifest of the export to standard output: %v\n%s", err, b)
	}
	project := unzipFile(t, qdpx, "project.qde")
	if !bytes.Contains(project, []byte("PN-A")) || bytes.Contains(project, []byte("Navigator A")) {
		t.Fatalf("project.qde:\n%s", project)
	}
	schema := os.Getenv("DIARYSYNC_REFIQDA_XSD")
	if schema == "" {
		schema = "../../../shared/refi-qda/Project.xsd"
	}
	xmllint, err := exec.LookPath("xmllint")
	if _, serr := os.Stat(schema); err != nil || serr != nil {
		t.Skipf("cannot validate project.qde: xmllint %v, schema %v", err, serr)
	}
	path := filepath.Join(dir, "project.qde")
	os.WriteFile(path, project, 0o600)
	if out, err := exec.Command(xmllint, "--noout", "--schema", schema, path).CombinedOutput(); err != nil {
		t.Fatalf("project.qde does not validate: %v\n%s", err, out)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type runningServer struct {
	cmd    *exec.Cmd
	stdout string
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDiaryd starts diaryd and waits until it serves (and, with --demo,
// until it has printed the demo study).
func startDiaryd(t *testing.T, dir, data, addr string, extra ...string) *runningServer {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, "diaryd"), append([]string{"serve", "--data", data, "--addr", addr, "--log-level", "warn"}, extra...)...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			if !slices.Contains(extra, "--demo") || strings.Contains(out.String(), "inbox") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("diaryd did not start on %s; it printed:\n%s", addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &runningServer{cmd: cmd, stdout: out.String()}
}

func (s *runningServer) stop(t *testing.T) {
	t.Helper()
	if s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("diaryd did not stop cleanly: %v", err)
	}
}

func unzipFile(t *testing.T, path, name string) []byte {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	rc, err := zr.Open(name)
	if err != nil {
		t.Fatalf("%s in %s: %v", name, path, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
