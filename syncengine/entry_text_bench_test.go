package syncengine

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// BenchmarkBodyEditedManyTimes edits a 256 KiB body 2,000 times, each
// time a text field's whole new text with one word changed (SetText), as
// a navigator revising a long entry over months would, and reports what
// the merged text costs then: its encoding (what a pull of the entry
// carries beside the rest), its runs, and the time of one more edit.
//
//	go test -run '^$' -bench BodyEditedManyTimes -benchtime 1x ./syncengine
func BenchmarkBodyEditedManyTimes(b *testing.B) {
	var body strings.Builder
	for body.Len() < MaxBodyBytes-16<<10 { // room for the words to grow
		body.WriteString("Met J. at the hostel; she asked about housing again. ")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	clock := typingClock(time.Minute)
	e := &Entry{ID: testEntryID}
	edit := func(text string) {
		c := Change{Entry: testEntryID, Field: FieldBody, Stamp: Stamp{clock.Now(), phone}, Author: "PN-A"}
		if err := e.EditText(&c, func(d *TextDoc) (*TextChange, error) { return d.SetText(c.Stamp, text) }); err != nil {
			b.Fatal(err)
		}
	}
	text := body.String()
	edit(text)
	words := []string{"court", "benefits", "shelter", "family", "outreach", "night"}
	next := func() string {
		at := rng.IntN(len(text) - 20)
		for text[at] != ' ' {
			at++
		}
		end := at + 1
		for text[end] != ' ' {
			end++
		}
		return text[:at+1] + words[rng.IntN(len(words))] + text[end:]
	}
	for range 2000 {
		text = next()
		edit(text)
	}
	b.ResetTimer()
	for b.Loop() {
		text = next()
		edit(text)
	}
	b.StopTimer()
	d, err := e.BodyText.Doc()
	if err != nil {
		b.Fatal(err)
	}
	enc := len(EncodeEntry(e))
	b.ReportMetric(float64(enc), "entry-bytes")
	b.ReportMetric(float64(enc)/float64(len(text)), "entry/text")
	b.ReportMetric(float64(d.Runs()), "runs")
}

// BenchmarkDecodeEntryText decodes an entry whose body is merged text of
// about 400 bytes (a typical entry) or 256 KiB: fully (DecodeEntry, what a
// device does with what it pulls) and lazily (DecodeEntryLazy, what a
// store and a replica do with their own states, reading only the text).
func BenchmarkDecodeEntryText(b *testing.B) {
	for _, size := range []int{400, MaxBodyBytes - 64} {
		label := "400B"
		if size > 400 {
			label = "256KiB"
		}
		var body strings.Builder
		for body.Len() < size {
			body.WriteString("Met J. at the hostel; she asked about housing again. ")
		}
		e := &Entry{ID: testEntryID}
		c := Change{Entry: testEntryID, Field: FieldBody, Stamp: Stamp{textT0, phone}, Author: "PN-A"}
		if err := e.EditText(&c, func(d *TextDoc) (*TextChange, error) { return d.SetText(c.Stamp, body.String()[:size]) }); err != nil {
			b.Fatal(err)
		}
		enc := EncodeEntry(e)
		for _, mode := range []struct {
			name   string
			decode func([]byte) (*Entry, error)
		}{{"full", DecodeEntry}, {"lazy", DecodeEntryLazy}} {
			b.Run(mode.name+"/body="+label, func(b *testing.B) {
				b.SetBytes(int64(len(enc)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := mode.decode(enc); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
