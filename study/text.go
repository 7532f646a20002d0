package study

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/diarysync/diarysync/syncengine"
)

// Limits on merged text that the server keeps, smaller than those of
// syncengine.TextDoc, which bound what any replica can be made to hold.
const (
	// MaxBodyRuns is the most runs (syncengine.TextDoc.Runs) a body's
	// merged text may hold, deleted ones included. A run costs at most
	// about 20 bytes in the canonical encoding beyond its text, so this
	// bounds a body's stored state, with the largest text, to about
	// 1 MiB, and its memory to a few MiB. Typing and editing as people
	// do makes a run every few words (the automerge-paper trace, 260,000
	// edits, ends with 17,000 runs for 104,000 characters).
	MaxBodyRuns = 1 << 15
	// MaxFeedbackRuns is MaxBodyRuns for a feedback body.
	MaxFeedbackRuns = 1 << 11
	// MaxTextWriters is the most replicas whose changes one merged text
	// may hold: a navigator's devices over the years, the old devices
	// whose whole-text writes the server merged, and the seed of a body
	// written before merged text.
	MaxTextWriters = 64
)

// ApplyChange merges one change that Decide allowed into the entry, with
// the rules of merged text, and returns what became of it and the change
// to record in the history. The entry changes only if the change is
// applied. Every store calls it, in push order, after Decide, through
// ApplyDecision.
//
//   - A change to a field that is not a body, or to a body that is still a
//     register and gets a whole value, merges as syncengine.Entry.Apply
//     merges it.
//   - A whole text written to a body or a feedback body (by a device that
//     predates merged text, or that talks to the server as one) becomes
//     the edit from the text that device may have seen to the text it
//     sent (syncengine.Entry.LegacyEdit); the history records that edit,
//     which every device that merges text then receives.
//   - A text edit applies if the text holds the version it was made on.
//     If not, it is refused as made on a history the server does not
//     hold (RefusedTextHistory), and the refusal is kept. It is never
//     held to wait, because nothing can complete its version later (see
//     TextEditReady).
//   - An edit that would leave the text over its size limit, its merged
//     text with more than MaxBodyRuns (MaxFeedbackRuns) runs, or written
//     by more than MaxTextWriters replicas, is refused as too large, and
//     the refusal is kept.
func ApplyChange(e *syncengine.Entry, c *syncengine.Change) (Decision, *syncengine.Change) {
	applied := Decision{Apply: true, Result: ChangeResult{Outcome: OutcomeApplied}}
	switch {
	case c.TextEdit != nil:
		if d, ok := TextEditReady(e, c); !ok {
			return d, nil
		}
	case c.Field != syncengine.FieldBody && c.Field != syncengine.FieldFeedbackBody:
		e.Apply(c)
		return applied, c
	}
	if err := checkWriters(e, c); err != nil {
		return Decision{Remember: true, Result: refusalFor(err)}, nil
	}
	// The limits are checked on the merged result, so a change that could
	// break them is applied to a copy first; the copy shares the text
	// until it changes it, and most changes cannot break them at all.
	target := e
	if mayExceed(e, c) {
		target = e.Clone()
	}
	record := c
	if c.TextEdit != nil {
		if _, err := target.ApplyText(c); err != nil {
			if errors.Is(err, syncengine.ErrTextHistory) {
				// Its version is complete but names text the server's
				// history does not hold: the device's came from another
				// seed (see TextEditReady).
				return Decision{Remember: true, Result: refusal(RefusedTextHistory, "%s: merge the server's text and make the edit again", syncengine.ErrorMessage(err))}, nil
			}
			return Decision{Remember: true, Result: refusalFor(err)}, nil
		}
	} else {
		edit, err := target.LegacyEdit(c)
		if err != nil {
			return Decision{Remember: true, Result: refusalFor(err)}, nil
		}
		if edit != nil {
			record = edit
		}
	}
	if target != e {
		if err := checkTextSize(target, c); err != nil {
			return Decision{Remember: true, Result: refusalFor(err)}, nil
		}
		*e = *target
	}
	return applied, record
}

// ApplyDecision carries out what Decide decided for one change: it
// returns d as it is when d does not apply the change, and otherwise
// merges the change with ApplyChange and returns its outcome and the
// change to record. An applied change keeps d's Hold, so an entry a
// pending device creates stays held back whatever merged text it holds.
// Every store calls it with Decide's result, in push order.
func ApplyDecision(d Decision, e *syncengine.Entry, c *syncengine.Change) (Decision, *syncengine.Change) {
	if !d.Apply {
		return d, nil
	}
	out, record := ApplyChange(e, c)
	out.Hold = d.Hold && out.Apply
	return out, record
}

// TextEditReady decides whether a pushed text edit can apply to the
// entry: it can when the text holds the version the edit was made on. It
// returns the refusal and false otherwise.
//
// Such an edit is refused, not held until its version arrives, because
// from a device nothing can complete it later. The version is the
// device's own previous edit of this text and changes of other replicas.
// Those other changes reached the device only through this server, which
// holds them; so do the server's own changes (old devices' writes, the
// seed of a body written as a register), made the same way on the device
// from what the server sent it. A device pushes its edits in the order it
// made them, so its previous edit was pushed first: the server accepted
// it (and holds it) or refused it, and then refuses everything made on
// it. What an edit can wait for is therefore a change the server refused,
// or one it does not have because its data was replaced or the device
// seeded a body from a register the server no longer holds; none of them
// arrives by waiting, and a held edit would sit in the stored state for
// ever. Refused, the edit tells the device to merge the server's text and
// make its edit again with a new clock, so no word is lost.
func TextEditReady(e *syncengine.Entry, c *syncengine.Change) (Decision, bool) {
	st, err := e.TextReady(c)
	switch {
	case err != nil:
		return Decision{Remember: true, Result: refusal(RefusedTextHistory, "%s", syncengine.ErrorMessage(err))}, false
	case st == syncengine.TextHeld:
		return Decision{Remember: true, Result: refusal(RefusedTextHistory,
			"the %s edit was made on a version of the text this server does not hold (an earlier edit it builds on was refused or never arrived): merge the server's text and make the edit again", c.Field)}, false
	case st == syncengine.TextDuplicate:
		// Decide answers retries of changes the server holds; a text
		// the server holds with this device's newer edit in it means
		// this one came out of order.
		return Decision{Remember: true, Result: refusal(RefusedTextHistory,
			"the %s edit's clock is not after this device's newest edit of the text that the server holds: make the edit again", c.Field)}, false
	}
	return Decision{}, true
}

// checkWriters refuses a change that would make a text written by more
// than MaxTextWriters replicas.
func checkWriters(e *syncengine.Entry, c *syncengine.Change) error {
	st := e.MergedText(c.Field, c.Feedback)
	if st == nil {
		return nil
	}
	d, err := st.Doc()
	if err != nil {
		return err
	}
	writer := c.Replica
	if c.TextEdit == nil {
		writer = syncengine.LegacyReplica(c.Replica)
	}
	v := d.Version()
	if len(v) < MaxTextWriters || d.Has(syncengine.Stamp{Replica: writer}) {
		return nil
	}
	return &syncengine.ValidationError{Subject: "text", Err: syncengine.ErrTooLarge,
		Detail: fmt.Sprintf("the %s has been written on %d devices; the limit is %d", c.Field, len(v), MaxTextWriters)}
}

// mayExceed reports whether applying c could break a limit that
// checkTextSize checks: an upper bound of the text's size and runs after
// it, from what they are before and what c inserts.
func mayExceed(e *syncengine.Entry, c *syncengine.Change) bool {
	textLimit, runLimit := sizeLimits(c.Field)
	text, runs := len(registerOf(e, c)), 0
	if st := e.MergedText(c.Field, c.Feedback); st != nil {
		d, err := st.Doc()
		if err != nil {
			return true
		}
		text, runs = d.Bytes(), d.Runs()
	}
	var ins, parts int
	if c.TextEdit != nil {
		for i := range c.TextEdit.Inserts {
			ins += len(c.TextEdit.Inserts[i].Text)
		}
		parts = len(c.TextEdit.Inserts) + len(c.TextEdit.Deletes)
	} else {
		// A whole text becomes at most one splice per character.
		ins, parts = len(c.Text), utf8.RuneCountInString(c.Text)+1
	}
	// An insert adds a run and can split two; a splice's deletion can
	// split two more.
	return text+ins > textLimit || runs+5*parts > runLimit
}

// checkTextSize checks the limits of the text c changed in e.
func checkTextSize(e *syncengine.Entry, c *syncengine.Change) error {
	st := e.MergedText(c.Field, c.Feedback)
	if st == nil {
		return nil
	}
	d, err := st.Doc()
	if err != nil {
		return err
	}
	textLimit, runLimit := sizeLimits(c.Field)
	if n := d.Bytes(); n > textLimit {
		return &syncengine.ValidationError{Subject: "text", Err: syncengine.ErrTooLarge,
			Detail: fmt.Sprintf("merged with the edits made on other devices, the %s would be %d bytes; the limit is %d bytes", c.Field, n, textLimit)}
	}
	if n := d.Runs(); n > runLimit {
		return &syncengine.ValidationError{Subject: "text", Err: syncengine.ErrTooLarge,
			Detail: fmt.Sprintf("the %s's edit history would hold %d runs of text; the limit is %d: copy the text into a new entry to go on editing it", c.Field, n, runLimit)}
	}
	return nil
}

func sizeLimits(f syncengine.Field) (text, runs int) {
	if f == syncengine.FieldFeedbackBody {
		return syncengine.MaxFeedbackBodyBytes, MaxFeedbackRuns
	}
	return syncengine.MaxBodyBytes, MaxBodyRuns
}

func registerOf(e *syncengine.Entry, c *syncengine.Change) string {
	if c.Field == syncengine.FieldFeedbackBody {
		if f := e.FindFeedback(c.Feedback); f != nil {
			return f.Body.Value
		}
		return ""
	}
	return e.Body.Value
}
