package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestTextMergeBinaries: with the real binaries, two devices of one
// navigator edit the same entry's body while the server is down (one
// appends a paragraph, the other changes a word in the first line), both
// sync, and both devices and the supervisor hold a body with both edits.
func TestTextMergeBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	dir := t.TempDir()
	for _, cmd := range []string{"diary", "diaryd"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "../"+cmd).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", cmd, err, out)
		}
	}
	addr, data := freeAddr(t), filepath.Join(dir, "data")
	re := regexp.MustCompile(`^\s+(PN-A|SUP-1)\s+\w+\s+([A-Z0-9]{5}-[A-Z0-9]{5})`)
	codes := func(s *runningServer) map[string]string {
		out := map[string]string{}
		for _, line := range strings.Split(s.stdout, "\n") {
			if m := re.FindStringSubmatch(line); m != nil {
				out[m[1]] = m[2]
			}
		}
		if len(out) != 2 {
			t.Fatalf("demo output:\n%s", s.stdout)
		}
		return out
	}
	diary := func(home, stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(dir, "diary"), append([]string{"--home", filepath.Join(dir, home)}, args...)...)
		var out, errOut bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("diary %v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}
	show := func(home, id string) map[string]any {
		t.Helper()
		var e map[string]any
		if err := json.Unmarshal([]byte(diary(home, "", "show", id, "--json")), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	url := "http://" + addr

	// A demo server prints a fresh code for each demo person each time
	// it starts: one for the phone and the supervisor, one for the tablet.
	server := startDiaryd(t, dir, data, addr, "--demo")
	c := codes(server)
	diary("phone", "", "enrol", "--server", url, "--code", c["PN-A"], "--name", "PN-A phone")
	diary("sup", "", "enrol", "--server", url, "--code", c["SUP-1"], "--name", "SUP-1 laptop")
	server.stop(t)
	server = startDiaryd(t, dir, data, addr, "--demo")
	diary("tablet", "", "enrol", "--server", url, "--code", codes(server)["PN-A"], "--name", "PN-A tablet")
	// The tablet waits for the phone, PN-A's first device, to approve it.
	var st map[string]any
	if err := json.Unmarshal([]byte(diary("tablet", "", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	tablet, _ := st["device_id"].(string)
	if tablet == "" {
		t.Fatalf("the tablet's status names no device: %v", st)
	}
	diary("phone", "", "device", "approve", tablet)

	first := "I went to the hostel today.\nJ. was there."
	id := strings.TrimSpace(diary("phone", "", "write", "--title", "Tuesday", "--share", "supervisor", "--body", first))
	diary("phone", "", "sync")
	diary("tablet", "", "sync")
	if got := show("tablet", id)["body"]; got != first {
		t.Fatalf("the tablet pulled %q", got)
	}

	// No signal: each device edits the body on its own.
	server.stop(t)
	diary("phone", "", "edit", id, "--body", first+"\n\nShe asked about a flat on Friday.")
	diary("tablet", "I went to the day centre today.\nJ. was there.\n", "edit", id) // the new body on standard input

	server = startDiaryd(t, dir, data, addr)
	defer server.stop(t)
	for _, home := range []string{"phone", "tablet", "phone", "sup"} {
		diary(home, "", "sync")
	}
	want := "I went to the day centre today.\nJ. was there.\n\nShe asked about a flat on Friday."
	for _, home := range []string{"phone", "tablet", "sup"} {
		e := show(home, id)
		if e["body"] != want {
			t.Fatalf("%s holds the body %q, want %q", home, e["body"], want)
		}
		if home != "sup" && e["body_edited_on_devices"] != true {
			t.Fatalf("%s does not say the body was edited on two devices: %v", home, e)
		}
	}
	if out := diary("phone", "", "show", id); !strings.Contains(out, "edited on two devices") || !strings.Contains(out, want) {
		t.Fatalf("diary show:\n%s", out)
	}
	for _, home := range []string{"phone", "tablet"} {
		var st map[string]any
		if err := json.Unmarshal([]byte(diary(home, "", "status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		if st["pending"] != 0.0 || len(st["refused"].([]any)) != 0 {
			t.Fatalf("%s after syncing: %v", home, st)
		}
	}
}
