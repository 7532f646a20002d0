package sim

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"

	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
)

// Errors the network gives a device. They reach the client as transport
// errors, as a dropped connection would.
var (
	errOffline      = errors.New("sim: no network")
	errLostRequest  = errors.New("sim: request lost")
	errLostResponse = errors.New("sim: response lost")
)

// Chances, in percent, that one request meets each fault while faults
// are on.
const (
	pctLostRequest  = 3
	pctLostResponse = 3
	pctDuplicate    = 3
	pctCorruptPull  = 2 // of pulls: a page the client must reject whole
	maxPool         = 6 // recent pushes kept per device for replays
)

// transport is a device's network: it hands each request to the
// server's handler in the same goroutine, or fails it.
type transport struct {
	w *world
	d *device
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("sim: cannot read request body: %w", err)
		}
	}
	return t.w.deliver(t.d, req, body)
}

type fault int

const (
	noFault fault = iota
	lostRequest
	lostResponse
	duplicate
	corruptPull
)

// deliver carries one request of device d to the server, applying the
// fault the schedule draws for it.
func (w *world) deliver(d *device, req *http.Request, body []byte) (*http.Response, error) {
	d.sent++
	method := path.Base(req.URL.Path)
	if d.offlineUntil > w.step && !d.noFaults {
		w.count("fault.offline")
		d.failed = true
		return nil, errOffline
	}
	f := noFault
	if len(d.script) > 0 && !d.noFaults {
		f, d.script = d.script[0], d.script[1:]
	} else if w.faults && !d.noFaults {
		switch r := w.rng.IntN(100); {
		case d.sent == d.cutAt:
			f = lostRequest + fault(w.rng.IntN(2))
			w.count("fault.cut_sync")
		case r < pctLostRequest:
			f = lostRequest
		case r < pctLostRequest+pctLostResponse:
			f = lostResponse
		case r < pctLostRequest+pctLostResponse+pctDuplicate:
			f = duplicate
		case r < pctLostRequest+pctLostResponse+pctDuplicate+pctCorruptPull && method == "Pull":
			f = corruptPull
		}
	}
	switch f {
	case lostRequest:
		w.count("fault.lost_request")
		w.tracef("  %s %s: request lost", d.name, method)
		d.failed = true
		return nil, errLostRequest
	case lostResponse:
		w.count("fault.lost_response")
	case duplicate:
		w.count("fault.duplicate_request")
	}
	rec := w.serve(req.URL.String(), req.Header, body)
	if f == duplicate {
		// The server handles the request twice; the device sees one of
		// the two answers.
		again := w.serve(req.URL.String(), req.Header, body)
		if w.rng.IntN(2) == 0 {
			rec = again
		}
		w.tracef("  %s %s: delivered twice", d.name, method)
	}
	if method == "Push" {
		d.remember(w, savedRequest{url: req.URL.String(), header: req.Header.Clone(), body: body})
	}
	if f == lostResponse {
		w.tracef("  %s %s: response lost (status %d)", d.name, method, rec.Code)
		d.failed = true
		return nil, errLostResponse
	}
	if f == corruptPull && rec.Code == http.StatusOK {
		corrupted, err := corrupt(rec)
		if err != nil {
			w.fail(fmt.Errorf("%s: %w", d.name, err))
		}
		if corrupted {
			// A page the client cannot apply (as from a faulty server or
			// proxy) must be rejected whole, with the cursor left where
			// it was: the sync fails and a later one pulls the page again.
			w.count("fault.corrupt_pull_page")
			w.tracef("  %s Pull: page corrupted", d.name)
			d.failed = true
		}
	}
	if method == "Push" && rec.Code == http.StatusOK {
		if err := w.recordAcks(d, req.Header, body, rec); err != nil {
			w.fail(fmt.Errorf("%s: %w", d.name, err))
		}
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// serve runs the server's handler on one request.
func (w *world) serve(url string, header http.Header, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	r.Header = header.Clone()
	rec := httptest.NewRecorder()
	w.handler.ServeHTTP(rec, r)
	w.count("rpc." + path.Base(url))
	return rec
}

// remember keeps a push for a later replay, replacing a random old one
// when the pool is full.
func (d *device) remember(w *world, r savedRequest) {
	if len(d.pool) < maxPool {
		d.pool = append(d.pool, r)
		return
	}
	d.pool[w.rng.IntN(maxPool)] = r
}

// recordAcks decodes a push and the answer the device is about to
// receive, and remembers every change the server said it holds.
func (w *world) recordAcks(d *device, header http.Header, body []byte, rec *httptest.ResponseRecorder) error {
	var req diaryv1.PushRequest
	if err := decodeMessage(header.Get("Content-Encoding"), body, &req); err != nil {
		return fmt.Errorf("cannot decode push request: %w", err)
	}
	var resp diaryv1.PushResponse
	if err := decodeMessage(rec.Header().Get("Content-Encoding"), rec.Body.Bytes(), &resp); err != nil {
		return fmt.Errorf("cannot decode push response: %w", err)
	}
	if len(resp.GetResults()) != len(req.GetChanges()) {
		return fmt.Errorf("push of %d changes got %d results", len(req.GetChanges()), len(resp.GetResults()))
	}
	for i, r := range resp.GetResults() {
		switch r.GetOutcome() {
		case diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED, diaryv1.ChangeOutcome_CHANGE_OUTCOME_DUPLICATE:
		default:
			w.count("push.refused." + r.GetReason().String())
			if ch, err := wire.ChangeFromProto(req.GetChanges()[i]); err == nil {
				w.refused[ackKey{device: d.idx, clock: ch.Clock}] = true
			}
			continue
		}
		w.count("push." + r.GetOutcome().String())
		ch, err := wire.ChangeFromProto(req.GetChanges()[i])
		if err != nil {
			return fmt.Errorf("the server accepted a change that does not decode: %w", err)
		}
		k := ackKey{device: d.idx, clock: ch.Clock}
		a := ack{device: d.idx, clock: ch.Clock, entry: ch.Entry, key: changeKey(&ch), text: isText(ch.Field)}
		if old, ok := w.acks[k]; ok && old.key != a.key {
			return fmt.Errorf("the server accepted two different changes with clock %s from %s: %s and %s", ch.Clock, d.name, old.key, a.key)
		}
		w.acks[k] = a
	}
	return nil
}

// decodeMessage unmarshals a Connect unary body, gunzipping it first if
// it was sent compressed.
func decodeMessage(encoding string, body []byte, m proto.Message) error {
	switch encoding {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return err
		}
		if body, err = io.ReadAll(zr); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown content encoding %q", encoding)
	}
	return proto.Unmarshal(body, m)
}

// changeKey names a change by what it writes (entry, field, tag or
// feedback item, value), not by its clock, which a clock correction may
// replace. Written values are made unique where they can be (see
// world.text), and where they cannot (flags, moods) keys are counted.
func changeKey(c *syncengine.Change) string {
	var v string
	switch {
	case c.TextEdit != nil:
		v = fmt.Sprintf("edit %x", sha256.Sum256(syncengine.EncodeTextChange(c.TextEdit)))
	case c.Field.Kind() == syncengine.KindText:
		v = fmt.Sprintf("%q", c.Text)
	case c.Field.Kind() == syncengine.KindNumber:
		v = fmt.Sprint(c.Number)
	default:
		v = fmt.Sprint(c.Flag)
	}
	return textKey(c) + v
}

// textKey names what a change writes without its value: for the body and
// feedback bodies, which merge, the text it edits. Writes to merged text
// are accounted for by the no-lost-words check instead of one by one:
// the client may replace several refused edits by one (see client's
// text.go), and the server records an old device's whole text as the edit
// it became.
func textKey(c *syncengine.Change) string {
	fb := ""
	if c.Field.IsFeedback() {
		fb = c.Feedback.String()
	}
	return fmt.Sprintf("%s %s[%s%s]=", c.Entry, c.Field, c.Tag, fb)
}

// isText reports whether f is merged text.
func isText(f syncengine.Field) bool {
	return f == syncengine.FieldBody || f == syncengine.FieldFeedbackBody
}

// corrupt rewrites a pull response so that its last entry or removal
// names an entry by an id that does not parse. It reports false for a
// page with neither.
func corrupt(rec *httptest.ResponseRecorder) (bool, error) {
	enc := rec.Header().Get("Content-Encoding")
	var resp diaryv1.PullResponse
	if err := decodeMessage(enc, rec.Body.Bytes(), &resp); err != nil {
		return false, fmt.Errorf("cannot decode pull response: %w", err)
	}
	switch {
	case len(resp.GetRemovals()) > 0:
		resp.Removals[len(resp.Removals)-1].EntryId = "not-an-id"
	case len(resp.GetEntries()) > 0:
		resp.Entries[len(resp.Entries)-1].Id = "not-an-id"
	default:
		return false, nil
	}
	b, err := proto.Marshal(&resp)
	if err != nil {
		return false, err
	}
	if enc == "gzip" {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		if err := zw.Close(); err != nil {
			return false, err
		}
		b = buf.Bytes()
	}
	rec.Body = bytes.NewBuffer(b)
	if rec.Header().Get("Content-Length") != "" {
		rec.Header().Set("Content-Length", fmt.Sprint(len(b)))
	}
	return true, nil
}
