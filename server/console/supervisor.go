package console

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

type inboxData struct {
	Query      study.InboxQuery
	Items      []*study.InboxItem
	Navigators []string
	Filtered   bool
	Next       string
	Live       bool
}

// inboxQuery reads the inbox's filters: from the query string for a GET
// (only filters that hold no diary text: navigator, dates, unread, page)
// and from the form for a POST, which alone carries a tag.
func inboxQuery(r *http.Request) study.InboxQuery {
	get := r.URL.Query().Get
	if r.Method == http.MethodPost {
		get = r.PostFormValue
	}
	q := study.InboxQuery{
		Navigator: strings.TrimSpace(get("navigator")),
		From:      get("from"),
		To:        get("to"),
		Unread:    get("unread") == "1",
		PageToken: get("page"),
	}
	if r.Method == http.MethodPost {
		q.Tag = strings.TrimSpace(get("tag"))
	}
	return q
}

func (c *Console) inbox(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	q := inboxQuery(r)
	d := &inboxData{Query: q, Live: q.PageToken == ""}
	d.Filtered = q.Navigator != "" || q.Tag != "" || q.From != "" || q.To != "" || q.Unread
	v := &view{Title: "Inbox", Session: s, Data: d}
	assignments, _, err := c.db.ListAssignments(ctx, study.MaxListPageSize, "", s.StudyCode)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	for _, a := range assignments {
		d.Navigators = append(d.Navigators, a.NavigatorCode)
	}
	page, err := c.db.Inbox(ctx, s.identity(), q)
	switch {
	case syncengine.ErrorCode(err) == syncengine.EINVALID:
		v.Error = upperFirst(syncengine.ErrorMessage(err)) + "."
		d.Query.PageToken = ""
	case err != nil:
		c.fail(w, r, s, err)
		return
	default:
		d.Items, d.Next = page.Items, page.Next
	}
	if wantsFragment(r) {
		c.renderFragment(w, r, "inbox", "inbox-list", v)
		return
	}
	status := http.StatusOK
	if v.Error != "" {
		status = http.StatusBadRequest
	}
	c.render(w, r, status, "inbox", v)
}

// events streams server-sent events to an open inbox: "inbox" when
// something the supervisor sees changed (an entry shared, edited,
// unshared, deleted or erased, a read mark from another device), "ended"
// when the session may no longer be used, "shutdown" when the server
// stops. An event carries no data but the position; the page fetches
// its list again.
func (c *Console) events(w http.ResponseWriter, r *http.Request, s *session) {
	// A live page counts against the same caps as a phone's Subscribe
	// streams: per device (this session) and in all.
	release, err := c.streams.Acquire("device:"+s.Device, "this browser session")
	if err != nil {
		http.Error(w, syncengine.ErrorMessage(err), http.StatusTooManyRequests)
		return
	}
	defer release()
	ctx := r.Context()
	rc := http.NewResponseController(w)
	who := s.identity()
	rd, err := study.ReaderFor(who)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	wake, cancel := c.hub.Subscribe(rd)
	defer cancel()
	sent, err := c.db.Head(ctx, who)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no") // a proxy must pass each event on at once
	w.WriteHeader(http.StatusOK)
	send := func(event, data string) bool {
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// alive checks the session again: revoked, signed out elsewhere,
	// idle (a stream open in a forgotten tab is no use of the console).
	alive := func() bool {
		cur, err := c.db.Session(ctx, s.token)
		if err != nil {
			send("ended", string(study.EndRevoked))
			return false
		}
		if reason, _ := study.CheckSession(cur, c.db.Now(), c.idle); reason != study.EndNone {
			send("ended", string(reason))
			return false
		}
		return true
	}
	if !send("ready", strconv.FormatInt(sent, 10)) {
		return
	}
	tick := time.NewTicker(c.heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.hub.Done():
			send("shutdown", "the server is shutting down")
			return
		case <-wake:
			if !alive() {
				return
			}
			head, err := c.db.Head(ctx, who)
			if err != nil {
				return
			}
			if head != sent {
				sent = head
				if !send("inbox", strconv.FormatInt(head, 10)) {
					return
				}
			}
		case <-tick.C:
			if !alive() {
				return
			}
			if _, err := fmt.Fprint(w, ": heartbeat\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

type entryData struct {
	Item      *study.InboxItem
	Feedback  []feedbackView
	Draft     string
	StudyCode string
}

type feedbackView struct {
	ID      string
	Author  string
	Body    string
	Created time.Time
	Edited  time.Time
	Mine    bool
}

func entryID(r *http.Request) (syncengine.EntryID, bool) {
	id, err := syncengine.ParseEntryID(r.PathValue("id"))
	return id, err == nil
}

// loadEntry returns the entry of the request's path as the supervisor
// sees it, or writes the 404 every other entry gets.
func (c *Console) loadEntry(w http.ResponseWriter, r *http.Request, s *session) (*study.InboxItem, bool) {
	id, ok := entryID(r)
	if !ok {
		c.notFoundFor(w, r, s)
		return nil, false
	}
	it, err := c.db.InboxEntry(r.Context(), s.identity(), id)
	if syncengine.ErrorCode(err) == syncengine.ENOTFOUND {
		c.notFoundFor(w, r, s)
		return nil, false
	}
	if err != nil {
		c.fail(w, r, s, err)
		return nil, false
	}
	return it, true
}

var entryNotices = map[string]string{
	"feedback-saved":   "Your feedback was saved. It reaches the navigator's phone when it next syncs.",
	"feedback-merged":  "This note had been changed on another of your devices since you opened it; both changes were kept.",
	"feedback-deleted": "Your feedback was deleted.",
}

func (c *Console) entry(w http.ResponseWriter, r *http.Request, s *session) {
	it, ok := c.loadEntry(w, r, s)
	if !ok {
		return
	}
	// Opening an entry marks it read, on every device of the supervisor.
	if !it.Read {
		if err := c.mark(r.Context(), s, it.Entry.ID, true); err != nil {
			c.fail(w, r, s, err)
			return
		}
		it.Read, it.ReadAt = true, c.db.Now()
	}
	c.renderEntry(w, r, s, it, http.StatusOK, entryNotices[r.URL.Query().Get("done")], "", "")
}

func (c *Console) renderEntry(w http.ResponseWriter, r *http.Request, s *session, it *study.InboxItem, status int, notice, errMsg, draft string) {
	d := &entryData{Item: it, Draft: draft, StudyCode: s.StudyCode}
	for _, f := range it.Entry.Feedback {
		if f.Deleted.Value {
			continue
		}
		d.Feedback = append(d.Feedback, feedbackView{ID: f.ID.String(), Author: f.Author, Body: f.Body.Value,
			Created: f.Created.Time(), Edited: f.Body.Clock.Time(), Mine: f.Author == s.StudyCode})
	}
	c.render(w, r, status, "entry", &view{Title: untitled(it.Entry.Title.Value), Session: s, Notice: notice, Error: errMsg, Data: d})
}

func untitled(s string) string {
	if strings.TrimSpace(s) == "" {
		return "(untitled)"
	}
	return s
}

// mark keeps a read mark stamped by the session's clock and wakes the
// supervisor's devices.
func (c *Console) mark(ctx context.Context, s *session, id syncengine.EntryID, read bool) error {
	clk, err := c.clock(ctx, s)
	if err != nil {
		return err
	}
	results, wake, err := c.db.MarkRead(ctx, s.identity(), []study.ReadMark{{Entry: id, Read: read, Clock: clk.Now()}})
	if err != nil {
		return err
	}
	c.hub.Notify(wake)
	if r := results[0]; r.Outcome == study.OutcomeRefused {
		return syncengine.Errorf(syncengine.ECONFLICT, "%s", r.Message)
	}
	return nil
}

func (c *Console) markRead(w http.ResponseWriter, r *http.Request, s *session) {
	it, ok := c.loadEntry(w, r, s)
	if !ok {
		return
	}
	read := r.PostFormValue("read") == "1"
	if err := c.mark(r.Context(), s, it.Entry.ID, read); err != nil {
		c.fail(w, r, s, err)
		return
	}
	if read {
		http.Redirect(w, r, Prefix+"entries/"+it.Entry.ID.String(), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, Prefix+"inbox", http.StatusSeeOther)
}

// push stamps changes with the session's clock and replica and pushes
// them as any device's would be: CheckIncoming and Decide in Store.Push.
// The clock first observes every clock of the entry as the page read it
// (the receive rule of a hybrid logical clock), so that a write made
// after reading a state is stamped later than that state: a merged edit
// wins over the version it merged, even when another device's clock runs
// ahead of the server's.
func (c *Console) push(ctx context.Context, s *session, read *syncengine.Entry, changes ...syncengine.Change) (study.ChangeResult, error) {
	clk, err := c.clock(ctx, s)
	if err != nil {
		return study.ChangeResult{}, err
	}
	clk.Observe(latestClock(read))
	in := make([]study.Incoming, len(changes))
	for i, ch := range changes {
		ch.Stamp = syncengine.Stamp{Clock: clk.Now(), Replica: s.Replica}
		in[i] = study.Incoming{Change: ch}
	}
	results, wake, err := c.db.Push(ctx, s.identity(), in)
	if err != nil {
		return study.ChangeResult{}, err
	}
	c.hub.Notify(wake)
	for _, r := range results {
		if r.Outcome == study.OutcomeRefused {
			return r, nil
		}
	}
	return results[0], nil
}

func (c *Console) writeFeedback(w http.ResponseWriter, r *http.Request, s *session) {
	it, ok := c.loadEntry(w, r, s)
	if !ok {
		return
	}
	body := strings.TrimSpace(normalizeNewlines(r.PostFormValue("body")))
	if body == "" {
		c.renderEntry(w, r, s, it, http.StatusBadRequest, "", "Write something first: the note is empty.", "")
		return
	}
	id := syncengine.NewFeedbackID()
	res, err := c.push(r.Context(), s, it.Entry, syncengine.Change{Entry: it.Entry.ID, Field: syncengine.FieldFeedbackBody, Feedback: id, Text: body})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if res.Outcome == study.OutcomeRefused {
		c.renderEntry(w, r, s, it, http.StatusConflict, "", "Your feedback was not saved: "+res.Message+".", body)
		return
	}
	http.Redirect(w, r, Prefix+"entries/"+it.Entry.ID.String()+"?done=feedback-saved#feedback", http.StatusSeeOther)
}

// latestClock returns the newest clock anywhere in e.
func latestClock(e *syncengine.Entry) syncengine.Timestamp {
	m := max(e.Updated(), e.Created)
	for _, f := range e.Feedback {
		m = max(m, f.Created, f.Body.Clock, f.Deleted.Clock)
	}
	return m
}

func normalizeNewlines(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

type editData struct {
	Item    *study.InboxItem
	ID      string
	Body    string // what the textarea holds
	Base    string // the text the form was rendered from
	Version string // the clock of that text
	Theirs  string // on a conflict, the text saved elsewhere meanwhile
}

// ownFeedback returns the supervisor's own, not deleted, feedback item
// named by the path.
func ownFeedback(r *http.Request, it *study.InboxItem, s *session) *syncengine.Feedback {
	fid, err := syncengine.ParseFeedbackID(r.PathValue("fid"))
	if err != nil {
		return nil
	}
	f := it.Entry.FindFeedback(fid)
	if f == nil || f.Deleted.Value || f.Author != s.StudyCode {
		return nil
	}
	return f
}

func (c *Console) editFeedbackPage(w http.ResponseWriter, r *http.Request, s *session) {
	it, ok := c.loadEntry(w, r, s)
	if !ok {
		return
	}
	f := ownFeedback(r, it, s)
	if f == nil {
		c.notFoundFor(w, r, s)
		return
	}
	d := &editData{Item: it, ID: f.ID.String(), Body: f.Body.Value, Base: f.Body.Value, Version: strconv.FormatUint(uint64(f.Body.Clock), 10)}
	c.render(w, r, http.StatusOK, "feedback-edit", &view{Title: "Edit your feedback", Session: s, Data: d})
}

// editFeedback saves an edited note. The form carries the version (the
// clock of the text's register) and the text it was rendered from. The
// text is a last-writer-wins register: saving it as typed would replace
// whatever the supervisor's phone wrote to it since the form was opened.
// So when the register moved on, the edit made here is merged into the
// newer text (study.MergeText) and the merge is what gets stamped; when
// both changed the same words, nothing is saved and both versions are
// shown.
func (c *Console) editFeedback(w http.ResponseWriter, r *http.Request, s *session) {
	it, ok := c.loadEntry(w, r, s)
	if !ok {
		return
	}
	f := ownFeedback(r, it, s)
	if f == nil {
		c.renderEntry(w, r, s, it, http.StatusConflict, "", "That note is gone: it was deleted, perhaps on another of your devices.", "")
		return
	}
	mine := strings.TrimSpace(normalizeNewlines(r.PostFormValue("body")))
	base := normalizeNewlines(r.PostFormValue("base"))
	version, _ := strconv.ParseUint(r.PostFormValue("version"), 10, 64)
	d := &editData{Item: it, ID: f.ID.String(), Body: mine, Base: base, Version: r.PostFormValue("version")}
	if mine == "" {
		c.render(w, r, http.StatusBadRequest, "feedback-edit", &view{Title: "Edit your feedback", Session: s, Error: "The note is empty: to remove it, delete it instead.", Data: d})
		return
	}
	text, done := mine, "feedback-saved"
	if syncengine.Timestamp(version) != f.Body.Clock {
		merged, ok := study.MergeText(base, mine, f.Body.Value)
		if !ok {
			d.Theirs, d.Base, d.Version = f.Body.Value, f.Body.Value, strconv.FormatUint(uint64(f.Body.Clock), 10)
			c.render(w, r, http.StatusConflict, "feedback-edit", &view{Title: "Edit your feedback", Session: s,
				Error: "This note was changed on another of your devices while you were editing it, in the same words you changed. Both versions are below: edit yours and save again.", Data: d})
			return
		}
		text, done = merged, "feedback-merged"
	}
	if text == f.Body.Value {
		http.Redirect(w, r, Prefix+"entries/"+it.Entry.ID.String()+"?done="+done+"#feedback", http.StatusSeeOther)
		return
	}
	res, err := c.push(r.Context(), s, it.Entry, syncengine.Change{Entry: it.Entry.ID, Field: syncengine.FieldFeedbackBody, Feedback: f.ID, Text: text})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if res.Outcome == study.OutcomeRefused {
		c.render(w, r, http.StatusConflict, "feedback-edit", &view{Title: "Edit your feedback", Session: s, Error: "Not saved: " + res.Message + ".", Data: d})
		return
	}
	http.Redirect(w, r, Prefix+"entries/"+it.Entry.ID.String()+"?done="+done+"#feedback", http.StatusSeeOther)
}

func (c *Console) deleteFeedback(w http.ResponseWriter, r *http.Request, s *session) {
	it, ok := c.loadEntry(w, r, s)
	if !ok {
		return
	}
	f := ownFeedback(r, it, s)
	if f == nil {
		c.notFoundFor(w, r, s)
		return
	}
	res, err := c.push(r.Context(), s, it.Entry, syncengine.Change{Entry: it.Entry.ID, Field: syncengine.FieldFeedbackDeleted, Feedback: f.ID, Flag: true})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if res.Outcome == study.OutcomeRefused {
		c.renderEntry(w, r, s, it, http.StatusConflict, "", "Not deleted: "+res.Message+".", "")
		return
	}
	http.Redirect(w, r, Prefix+"entries/"+it.Entry.ID.String()+"?done=feedback-deleted#feedback", http.StatusSeeOther)
}
