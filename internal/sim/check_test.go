package sim

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// The checks read the server's tables on a connection of their own and
// work out what each user may see from the rows (owner, assignments,
// sharing flags, erasure), not from the feed the server builds for Pull:
// the code under test decides nothing about its own verdict.

// stored is the server's data as the tables hold it.
type stored struct {
	entries  map[syncengine.EntryID]*storedEntry
	assigned map[[2]int64]bool // {supervisor, navigator}
	history  map[ackKey]*historyRow
	devices  map[int64]int // devices.id → index in world.devices
}

type storedEntry struct {
	rid        int64
	owner      int64
	erased     bool
	state      *syncengine.Entry // nil when erased
	raw        []byte
	supVisible bool // the columns the server keeps beside the state
	resVisible bool
	heldBy     int64 // devices.id of the pending device it is held back for, or 0
}

type historyRow struct {
	entry  syncengine.EntryID
	change syncengine.Change
}

// load reads the server's tables in one snapshot; the history only when
// asked, as the checks after each sync do not need it.
func (w *world) load(ctx context.Context, withHistory bool) (*stored, error) {
	s := &stored{
		entries:  map[syncengine.EntryID]*storedEntry{},
		assigned: map[[2]int64]bool{},
		history:  map[ackKey]*historyRow{},
		devices:  map[int64]int{},
	}
	for _, d := range w.devices {
		s.devices[d.serverID] = d.idx
	}
	tx, err := w.ro.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("cannot read the server's tables: %w", err)
	}
	defer tx.Rollback()

	rows, err := tx.QueryContext(ctx, `SELECT rid, id, owner_id, state, sup_visible, res_visible, erased_at IS NOT NULL, coalesce(held_by, 0) FROM entries`)
	if err != nil {
		return nil, fmt.Errorf("cannot read entries: %w", err)
	}
	for rows.Next() {
		e := &storedEntry{}
		var id []byte
		if err := rows.Scan(&e.rid, &id, &e.owner, &e.raw, &e.supVisible, &e.resVisible, &e.erased, &e.heldBy); err != nil {
			rows.Close()
			return nil, fmt.Errorf("cannot read entries: %w", err)
		}
		if e.erased != (e.raw == nil) {
			rows.Close()
			return nil, fmt.Errorf("entry %x: erased=%v but state present=%v", id, e.erased, e.raw != nil)
		}
		if !e.erased {
			if e.state, err = syncengine.DecodeEntry(e.raw); err != nil {
				rows.Close()
				return nil, fmt.Errorf("entry %x: stored state: %w", id, err)
			}
		}
		s.entries[syncengine.EntryID(id)] = e
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	rows, err = tx.QueryContext(ctx, `SELECT supervisor_id, navigator_id FROM assignments`)
	if err != nil {
		return nil, fmt.Errorf("cannot read assignments: %w", err)
	}
	for rows.Next() {
		var a [2]int64
		if err := rows.Scan(&a[0], &a[1]); err != nil {
			rows.Close()
			return nil, err
		}
		s.assigned[a] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	if !withHistory {
		return s, nil
	}
	// SQLite keeps a change's value in one untyped column (a text edit
	// as a blob); PostgreSQL in text_value, int_value or text_change.
	value := `h.value, NULL, NULL`
	if w.engine == storetest.Postgres {
		value = `h.text_value, h.int_value, h.text_change`
	}
	rows, err = tx.QueryContext(ctx, `SELECT e.id, h.field, h.tag, h.feedback, `+value+`, h.clock, h.device_id, d.replica_id, u.study_code
		FROM history h JOIN entries e ON e.rid = h.entry JOIN devices d ON d.id = h.device_id JOIN users u ON u.id = h.user_id ORDER BY h.id`)
	if err != nil {
		return nil, fmt.Errorf("cannot read history: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, feedback, replica []byte
			field                 int
			tag, author           string
			value, number, edit   any
			clock, device         int64
		)
		if err := rows.Scan(&id, &field, &tag, &feedback, &value, &number, &edit, &clock, &device, &replica, &author); err != nil {
			return nil, fmt.Errorf("cannot read history: %w", err)
		}
		switch {
		case edit != nil && (value != nil || number != nil):
			return nil, fmt.Errorf("history of %x: a text edit beside a whole value", id)
		case edit != nil:
			value = edit
		case value == nil:
			value = number
		}
		c := syncengine.Change{Entry: syncengine.EntryID(id), Field: syncengine.Field(field), Tag: tag, Author: author}
		c.Clock = syncengine.Timestamp(clock)
		copy(c.Replica[:], replica)
		copy(c.Feedback[:], feedback)
		switch b, edit := value.([]byte); {
		case edit && isText(c.Field):
			// A text edit, kept as its encoding; it carries its own
			// stamp, which for an old device's whole text is the
			// device's legacy replica.
			tc, err := syncengine.DecodeTextChange(b)
			if err != nil {
				return nil, fmt.Errorf("history of %x: %s holds no text change: %w", id, c.Field, err)
			}
			c.TextEdit, c.Stamp = tc, tc.Stamp
		case c.Field.Kind() == syncengine.KindText:
			v, ok := value.(string)
			if !ok {
				return nil, fmt.Errorf("history of %x: %s holds %T", id, c.Field, value)
			}
			c.Text = v
		case c.Field.Kind() == syncengine.KindNumber:
			v, ok := value.(int64)
			if !ok {
				return nil, fmt.Errorf("history of %x: %s holds %T", id, c.Field, value)
			}
			c.Number = v
		default:
			v, ok := value.(int64)
			if !ok || v < 0 || v > 1 {
				return nil, fmt.Errorf("history of %x: %s holds %v", id, c.Field, value)
			}
			c.Flag = v == 1
		}
		idx, ok := s.devices[device]
		if !ok {
			return nil, fmt.Errorf("history of %x names device %d, which the simulation never enrolled", id, device)
		}
		k := ackKey{device: idx, clock: syncengine.Timestamp(clock)}
		if _, dup := s.history[k]; dup {
			return nil, fmt.Errorf("law 3: history holds two changes of %s with clock %s", w.devices[idx].name, k.clock)
		}
		s.history[k] = &historyRow{entry: c.Entry, change: c}
	}
	return s, rows.Err()
}

// supVisible and resVisible say, from an entry's state alone, whether
// supervisors and researchers may see it; the server's own columns are
// checked against them.
func supVisible(e *syncengine.Entry) bool {
	return e.Exists() && e.ShareSupervisor.Value && !e.Deleted.Value
}

func resVisible(e *syncengine.Entry) bool {
	return e.Exists() && e.ShareResearch.Value && !e.Deleted.Value
}

// expected returns the canonical encoding of every entry d's user may
// see, by id: a navigator their own entries; a supervisor the entries
// shared with supervisors, not deleted, of navigators assigned to them; a
// researcher the entries shared for research, not deleted; nobody an
// erased entry.
func (s *stored) expected(d *device) map[syncengine.EntryID][]byte {
	out := map[syncengine.EntryID][]byte{}
	for id, e := range s.entries {
		if e.erased {
			continue
		}
		// An entry a pending device wrote is that device's alone until
		// the device is approved (a pending device is not checked this
		// way: it pulls nothing, so it cannot learn of an erasure).
		if e.heldBy != 0 {
			continue
		}
		var aud syncengine.Audience
		switch d.user.role {
		case study.RoleNavigator:
			if e.owner != d.user.id {
				continue
			}
			aud = syncengine.AudienceOwner
		case study.RoleSupervisor:
			if !s.assigned[[2]int64{d.user.id, e.owner}] || !supVisible(e.state) {
				continue
			}
			aud = syncengine.AudienceSupervisor
		case study.RoleResearcher:
			if !resVisible(e.state) {
				continue
			}
			aud = syncengine.AudienceResearch
		}
		out[id] = syncengine.EncodeEntry(e.state.ViewFor(aud, d.user.code, true))
	}
	return out
}

// held returns the canonical encoding of every entry d holds, by id.
func held(ctx context.Context, d *device) (map[syncengine.EntryID][]byte, error) {
	es, err := entriesOn(ctx, d)
	if err != nil {
		return nil, err
	}
	out := make(map[syncengine.EntryID][]byte, len(es))
	for _, e := range es {
		out[e.ID] = syncengine.EncodeEntry(e.State)
	}
	return out, nil
}

// compareHoldings explains how what d holds differs from what its user
// may see; it returns "" when they are the same.
func (s *stored) compareHoldings(d *device, got, want map[syncengine.EntryID][]byte) string {
	var msgs []string
	for id, g := range got {
		wv, ok := want[id]
		switch {
		case ok && !bytes.Equal(g, wv):
			msgs = append(msgs, fmt.Sprintf("entry %s differs from the server's view", id))
		case !ok:
			why := "not visible to " + d.user.code
			if e := s.entries[id]; e == nil {
				why = "unknown to the server"
			} else if e.erased {
				why = "erased (law 5)"
			} else if d.user.role == study.RoleNavigator && e.owner != d.user.id {
				why = "another navigator's (law 4)"
			}
			msgs = append(msgs, fmt.Sprintf("holds entry %s, which is %s", id, why))
		}
	}
	for id := range want {
		if _, ok := got[id]; !ok {
			msgs = append(msgs, fmt.Sprintf("misses entry %s", id))
		}
	}
	sort.Strings(msgs)
	return strings.Join(msgs, "; ")
}

// checkDevice runs after a sync that met no fault: the device must hold
// exactly its user's view of the server, with nothing pending. During the
// random phase it compares the device's state hash with one computed from
// the server's tables, and explains a difference entry by entry; full
// also compares each entry and asks the server for its own state hash.
func (w *world) checkDevice(ctx context.Context, d *device, s *stored, full bool) error {
	n, err := pending(ctx, d)
	if err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("%s has %d changes pending after a sync that succeeded", d.name, n)
	}
	if d.pending {
		// It pushed everything, and may receive nothing until approved.
		w.count("check.pending_device")
		return nil
	}
	local, ln, err := d.c.StateHash(ctx)
	if err != nil {
		return fmt.Errorf("cannot hash %s: %w", d.name, err)
	}
	if s == nil {
		if s, err = w.load(ctx, false); err != nil {
			return err
		}
	}
	want := s.expected(d)
	views := make([]*syncengine.Entry, 0, len(want))
	for _, b := range want {
		e, err := syncengine.DecodeEntry(b)
		if err != nil {
			return err
		}
		views = append(views, e)
	}
	ours := syncengine.StateHash(views)
	w.count("check.state_hash")
	if full || ours != local || ln != len(views) {
		got, err := held(ctx, d)
		if err != nil {
			return err
		}
		w.count("check.holdings")
		if diff := s.compareHoldings(d, got, want); diff != "" {
			return fmt.Errorf("law 4: %s after a clean sync: %s", d.name, diff)
		}
	}
	if ours != local || ln != len(views) {
		return fmt.Errorf("law 2: %s holds %d entries (hash %x); the server's tables give %d (hash %x)", d.name, ln, local[:6], len(views), ours[:6])
	}
	if full {
		d.noFaults = true
		remote, rn, _, err := d.c.ServerStateHash(ctx)
		d.noFaults = false
		if err != nil {
			return fmt.Errorf("cannot get the server's state hash for %s: %w", d.name, err)
		}
		if remote != local || rn != ln {
			return fmt.Errorf("law 2: %s holds %d entries (hash %x); the server's state hash says %d (hash %x)", d.name, ln, local[:6], rn, remote[:6])
		}
		w.count("check.server_state_hash")
	}
	return nil
}

// checkFinal checks every law after the quiet phase.
func (w *world) checkFinal(ctx context.Context) error {
	s, err := w.load(ctx, true)
	if err != nil {
		return err
	}
	for id, e := range s.entries {
		if e.heldBy != 0 && !e.erased {
			return fmt.Errorf("entry %s is still held back for device %d although every device was approved", id, e.heldBy)
		}
		if !e.erased && (e.supVisible != supVisible(e.state) || e.resVisible != resVisible(e.state)) {
			return fmt.Errorf("entry %s: visibility columns (%v, %v) disagree with its state", id, e.supVisible, e.resVisible)
		}
	}

	// Every replica holds exactly its user's view; the devices of one
	// user hold byte-identical entries, and so do the replicas of one
	// audience as text (a supervisor's view keeps the merged text of
	// their own feedback, which other supervisors see as text).
	byUser := map[string]map[syncengine.EntryID][]byte{}
	byAudience := map[study.Role]map[syncengine.EntryID][]byte{}
	for _, d := range w.devices {
		if err := w.checkDevice(ctx, d, s, true); err != nil {
			return err
		}
		got, err := held(ctx, d)
		if err != nil {
			return err
		}
		if byUser[d.user.code] == nil {
			byUser[d.user.code] = map[syncengine.EntryID][]byte{}
		}
		if byAudience[d.user.role] == nil {
			byAudience[d.user.role] = map[syncengine.EntryID][]byte{}
		}
		for id, b := range got {
			if prev, ok := byUser[d.user.code][id]; ok && !bytes.Equal(prev, b) {
				return fmt.Errorf("law 2: entry %s differs between two replicas of %s", id, d.user.code)
			}
			byUser[d.user.code][id] = b
			e, err := syncengine.DecodeEntry(b)
			if err != nil {
				return err
			}
			flat := syncengine.EncodeEntry(e.Flat())
			if prev, ok := byAudience[d.user.role][id]; ok && !bytes.Equal(prev, flat) {
				return fmt.Errorf("law 2: entry %s differs between two %s replicas", id, d.user.role)
			}
			byAudience[d.user.role][id] = flat
			w.count("check.entry_compared")
		}
	}

	// Nothing acknowledged is lost, and the server holds nothing a
	// device was not told it holds.
	acked := map[int]map[syncengine.Timestamp]bool{}
	for _, k := range sortedKeys(w.acks) {
		a := w.acks[k]
		e := s.entries[a.entry]
		if e == nil {
			return fmt.Errorf("law 1: %s was told entry %s was accepted; the server has no such entry", w.devices[a.device].name, a.entry)
		}
		if e.erased {
			w.count("check.ack_erased")
			continue
		}
		h := s.history[k]
		if h == nil {
			return fmt.Errorf("law 1: acknowledged change %s of %s (clock %s) is not in the history", a.key, w.devices[a.device].name, a.clock)
		}
		if got := changeKey(&h.change); got != a.key && !(isText(h.change.Field) && strings.HasPrefix(a.key, textKey(&h.change))) {
			return fmt.Errorf("history of %s at clock %s holds %s; the device was told %s was accepted", w.devices[a.device].name, a.clock, got, a.key)
		}
		if acked[a.device] == nil {
			acked[a.device] = map[syncengine.Timestamp]bool{}
		}
		acked[a.device][a.clock] = true
		w.count("check.ack_in_history")
	}
	for _, k := range sortedKeys(s.history) {
		h := s.history[k]
		if !acked[k.device][k.clock] {
			return fmt.Errorf("law 3: the server holds %s from %s (clock %s), which the device was never told was accepted", changeKey(&h.change), w.devices[k.device].name, k.clock)
		}
		w.count("check.history_row")
	}

	// Every local write was accepted or is shown as refused, exactly once.
	for _, d := range w.devices {
		if err := w.checkWrites(ctx, d, s); err != nil {
			return err
		}
	}

	if err := w.checkWords(ctx, s); err != nil {
		return err
	}

	// Merging is order-free: the history of each entry, applied in
	// shuffled orders, rebuilds the entry the server stored.
	byEntry := map[syncengine.EntryID][]syncengine.Change{}
	for _, k := range sortedKeys(s.history) {
		h := s.history[k]
		byEntry[h.entry] = append(byEntry[h.entry], h.change)
	}
	for _, id := range sortedIDs(s.entries) {
		e := s.entries[id]
		if e.erased {
			if len(byEntry[id]) > 0 {
				return fmt.Errorf("law 5: erased entry %s still has %d history rows", id, len(byEntry[id]))
			}
			continue
		}
		changes := byEntry[id]
		for range 3 {
			w.rng.Shuffle(len(changes), func(i, j int) { changes[i], changes[j] = changes[j], changes[i] })
			r := &syncengine.Entry{ID: id}
			for i := range changes {
				// A whole text kept as it came changed no merged text
				// (the server records the edit it became otherwise).
				if c := &changes[i]; isText(c.Field) && c.TextEdit == nil && e.state.MergedText(c.Field, c.Feedback) != nil {
					continue
				}
				r.Apply(&changes[i])
			}
			if !bytes.Equal(syncengine.EncodeEntry(r), e.raw) {
				return fmt.Errorf("law 2: entry %s rebuilt from its %d history rows in another order differs from the stored entry", id, len(changes))
			}
			w.count("check.history_replay")
		}
	}
	return nil
}

// checkWrites matches the changes written on d against the changes the
// server acknowledged to d and the changes d lists as refused.
func (w *world) checkWrites(ctx context.Context, d *device, s *stored) error {
	left := map[string]int{}
	for _, k := range d.writes {
		left[k]++
	}
	for _, a := range w.acks {
		if a.device == d.idx && !a.text {
			left[a.key]--
		}
	}
	var after int64
	for {
		page, err := d.c.Refused(ctx, after, 1000)
		if err != nil {
			return fmt.Errorf("cannot list refused changes of %s: %w", d.name, err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			if isText(r.Change.Field) {
				w.count("check.refused_text_listed")
				after = r.Seq
				continue
			}
			left[changeKey(&r.Change)]--
			if _, held := s.history[ackKey{d.idx, r.Change.Clock}]; held {
				return fmt.Errorf("law 6: %s lists %s as refused (%s), but the server holds it", d.name, changeKey(&r.Change), r.Reason)
			}
			w.count("check.refused_listed")
			after = r.Seq
		}
	}
	for _, k := range sortedKeys(left) {
		switch n := left[k]; {
		case n > 0:
			return fmt.Errorf("law 6: %s wrote %s; it was neither accepted nor listed as refused (%d times)", d.name, k, n)
		case n < 0:
			return fmt.Errorf("law 3: %s wrote %s %d times fewer than it was accepted or refused", d.name, k, -n)
		}
		w.count("check.write_accounted")
	}
	return nil
}

// sortedKeys returns the keys of m in the order of their printed form, so
// that checks visit maps, and report failures, in the same order on every
// run.
func sortedKeys[K comparable, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b K) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	return keys
}

// sortedIDs returns the ids of m in increasing order.
func sortedIDs[V any](m map[syncengine.EntryID]V) []syncengine.EntryID {
	ids := make([]syncengine.EntryID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b syncengine.EntryID) int { return a.Compare(b) })
	return ids
}

// checkWords checks that no word is lost: every word a body edit typed
// is in the body the server holds after the quiet phase, unless an edit
// made on a text that held it removed it. (Words typed at one place on
// two devices end up side by side, so they are looked for as they are
// written, not between spaces.) Entries that were erased, and
// bodies with an edit refused for good (its words are then on the
// device's refused list, which checkWrites checks), are left out.
func (w *world) checkWords(ctx context.Context, s *stored) error {
	refused := map[syncengine.EntryID]bool{}
	for _, d := range w.devices {
		var after int64
		for {
			page, err := d.c.Refused(ctx, after, 1000)
			if err != nil {
				return fmt.Errorf("cannot list refused changes of %s: %w", d.name, err)
			}
			if len(page) == 0 {
				break
			}
			for _, r := range page {
				if r.Change.Field == syncengine.FieldBody {
					refused[r.Change.Entry] = true
				}
				after = r.Seq
			}
		}
	}
	for _, id := range sortedIDs(w.bodyEdits) {
		e := s.entries[id]
		if e == nil || e.erased || refused[id] {
			w.count("check.words_skipped")
			continue
		}
		held := words(e.state.Body.Value)
		removed := map[string]bool{}
		for _, ed := range w.bodyEdits[id] {
			for _, t := range ed.removed {
				removed[t] = true
			}
		}
		for _, ed := range w.bodyEdits[id] {
			for _, t := range ed.added {
				if !held[t] && !removed[t] {
					return fmt.Errorf("no lost words: %q, typed on %s, is missing from the body of entry %s, and no edit made on a text holding it removed it", t, w.devices[ed.device].name, id)
				}
				w.count("check.word_kept")
			}
		}
	}
	return nil
}
