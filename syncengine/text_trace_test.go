package syncengine

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// The editing traces live outside the repository (see
// ../shared/traces/README.md): $DIARYSYNC_TRACES, or ../shared/traces
// next to the module root.

type tracePatch struct {
	Pos  int
	Del  int
	Text string
}

func (p *tracePatch) UnmarshalJSON(b []byte) error {
	var raw [3]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if err := json.Unmarshal(raw[0], &p.Pos); err != nil {
		return err
	}
	if err := json.Unmarshal(raw[1], &p.Del); err != nil {
		return err
	}
	return json.Unmarshal(raw[2], &p.Text)
}

type traceTxn struct {
	Agent   int          `json:"agent"`
	Parents []int        `json:"parents"`
	Patches []tracePatch `json:"patches"`
}

type editTrace struct {
	EndContent string     `json:"endContent"`
	NumAgents  int        `json:"numAgents"`
	Txns       []traceTxn `json:"txns"`
}

func traceDir(tb testing.TB) string {
	tb.Helper()
	if dir := os.Getenv("DIARYSYNC_TRACES"); dir != "" {
		return dir
	}
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "traces")
		}
		if filepath.Dir(dir) == dir {
			tb.Fatalf("no go.mod above %s", wd)
		}
	}
}

var traceCache sync.Map // file name -> *editTrace

func loadTrace(tb testing.TB, name string) *editTrace {
	tb.Helper()
	if tr, ok := traceCache.Load(name); ok {
		return tr.(*editTrace)
	}
	dir := traceDir(tb)
	f, err := os.Open(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			tb.Skipf("editing traces not found: %s does not exist (set DIARYSYNC_TRACES to the folder holding %s)", dir, name)
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	tr := &editTrace{}
	if err := json.NewDecoder(zr).Decode(tr); err != nil {
		tb.Fatalf("cannot read %s: %v", name, err)
	}
	traceCache.Store(name, tr)
	return tr
}

var traceT0 = NewTimestamp(1795788185123, 0)

// replaySequential types the trace into one document edit by edit.
func replaySequential(tb testing.TB, tr *editTrace) *TextDoc {
	d := NewTextDoc(0)
	r := ReplicaID{15: 1}
	clock := traceT0
	for i := range tr.Txns {
		for _, p := range tr.Txns[i].Patches {
			clock++
			if _, err := d.Splice(Stamp{clock, r}, p.Pos, p.Del, p.Text); err != nil {
				tb.Fatalf("edit %d: %v", i, err)
			}
		}
	}
	return d
}

func TestTraceAutomergePaper(t *testing.T) {
	tr := loadTrace(t, "automerge-paper.json.gz")
	d := replaySequential(t, tr)
	if got := d.Text(); got != tr.EndContent {
		t.Fatalf("replay gave %d bytes, want %d bytes of endContent", len(got), len(tr.EndContent))
	}
	enc := EncodeTextDoc(d)
	t.Logf("final state: %d bytes encoded for %d bytes of text (%.2fx), %d characters with history", len(enc), len(tr.EndContent), float64(len(enc))/float64(len(tr.EndContent)), d.root.len)
	back, err := DecodeTextDoc(enc, 0)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if back.Text() != tr.EndContent || !bytes.Equal(EncodeTextDoc(back), enc) {
		t.Fatal("decoded state differs")
	}
	if text, err := TextOfEncoding(enc); err != nil || text != tr.EndContent {
		t.Fatalf("TextOfEncoding: %v", err)
	}
}

// concurrentReplay is the result of replaying a concurrent trace: the
// changes each transaction became and each agent's final document.
type concurrentReplay struct {
	changes [][]*TextChange // per transaction
	agents  []*TextDoc
}

// replayConcurrent replays a concurrent trace with each agent on its own
// replica: before each transaction, the agent's document receives the
// changes of every transaction in the transaction's past that it lacks,
// so that the positions refer to the text the writer saw.
func replayConcurrent(tb testing.TB, tr *editTrace) *concurrentReplay {
	out := &concurrentReplay{changes: make([][]*TextChange, len(tr.Txns))}
	applied := make([][]bool, tr.NumAgents)
	for a := range tr.NumAgents {
		out.agents = append(out.agents, NewTextDoc(0))
		applied[a] = make([]bool, len(tr.Txns))
	}
	var stack, missing []int
	for i := range tr.Txns {
		txn := &tr.Txns[i]
		doc, seen := out.agents[txn.Agent], applied[txn.Agent]
		missing, stack = missing[:0], append(stack[:0], txn.Parents...)
		for len(stack) > 0 {
			j := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[j] {
				continue
			}
			seen[j] = true
			missing = append(missing, j)
			stack = append(stack, tr.Txns[j].Parents...)
		}
		slices.Sort(missing)
		for _, j := range missing {
			for _, c := range out.changes[j] {
				if st, err := doc.Apply(c); err != nil || st != TextApplied {
					tb.Fatalf("txn %d: applying txn %d to agent %d: %v %v", i, j, txn.Agent, st, err)
				}
			}
		}
		seen[i] = true
		for k, p := range txn.Patches {
			s := Stamp{Clock: traceT0 + Timestamp(4*i+k), Replica: ReplicaID{15: byte(txn.Agent + 1)}}
			c, err := doc.Splice(s, p.Pos, p.Del, p.Text)
			if err != nil {
				tb.Fatalf("txn %d: %v", i, err)
			}
			out.changes[i] = append(out.changes[i], c)
		}
	}
	return out
}

// agentLogs returns each agent's changes in the order it made them.
func (r *concurrentReplay) agentLogs(tr *editTrace) [][]*TextChange {
	logs := make([][]*TextChange, tr.NumAgents)
	for i, cs := range r.changes {
		logs[tr.Txns[i].Agent] = append(logs[tr.Txns[i].Agent], cs...)
	}
	return logs
}

func TestTraceConcurrent(t *testing.T) {
	for _, name := range []string{"friendsforever.json.gz", "clownschool.json.gz"} {
		t.Run(name, func(t *testing.T) {
			tr := loadTrace(t, name)
			r := replayConcurrent(t, tr)

			// In trace order (causal).
			inOrder := NewTextDoc(0)
			for _, cs := range r.changes {
				for _, c := range cs {
					if _, err := inOrder.Apply(c); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := inOrder.Text(); got != tr.EndContent {
				t.Fatalf("changes in trace order give %d bytes, want %d bytes of endContent", len(got), len(tr.EndContent))
			}
			want := EncodeTextDoc(inOrder)

			// One agent's whole log after another's, last agent first:
			// most changes arrive before what they were made on and are
			// held.
			logs := r.agentLogs(tr)
			byAgent := NewTextDoc(0)
			for a := len(logs) - 1; a >= 0; a-- {
				for _, c := range logs[a] {
					if _, err := byAgent.Apply(c); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := EncodeTextDoc(byAgent); !bytes.Equal(got, want) {
				t.Fatalf("agent logs applied one after another give %q, want endContent", truncate(byAgent.Text(), 80))
			}
			if n := len(byAgent.Pending()); n != 0 {
				t.Fatalf("%d changes still held", n)
			}

			// State-based: merge the agents' final documents, which did
			// not all see everything, plus the in-order document.
			merged := NewTextDoc(0)
			for _, a := range r.agents {
				if err := merged.Merge(a); err != nil {
					t.Fatal(err)
				}
			}
			if got := EncodeTextDoc(merged); !bytes.Equal(got, want) {
				t.Fatalf("merged agent states give %q, want endContent", truncate(merged.Text(), 80))
			}

			back, err := DecodeTextDoc(want, 0)
			if err != nil || !bytes.Equal(EncodeTextDoc(back), want) {
				t.Fatalf("decode: %v", err)
			}
			t.Logf("%d changes; final state %d bytes for %d bytes of text", len(r.changes), len(want), len(tr.EndContent))
		})
	}
}
