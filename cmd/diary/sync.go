package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/study"
)

// syncWithProgress runs one sync; on a terminal it shows its progress on
// standard error.
func (e *env) syncWithProgress(c *client.Client) (client.Report, error) {
	if !isTerminal(e.stderr) {
		return c.SyncReport(e.ctx)
	}
	events, stop := c.Watch()
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range events {
			st, err := c.Status(e.ctx)
			if err != nil || !st.Progress.Running {
				continue
			}
			p := st.Progress
			if p.Phase == "push" {
				fmt.Fprintf(e.stderr, "\rpushing: %d changes sent, %d waiting      ", p.Pushed, st.Pending)
			} else {
				fmt.Fprintf(e.stderr, "\rpulling: %d received, %d waiting           ", p.Pulled, p.Remaining)
			}
		}
	}()
	r, err := c.SyncReport(e.ctx)
	stop()
	<-done
	fmt.Fprint(e.stderr, "\r\033[K")
	return r, err
}

func cmdSync(e *env, args []string) error {
	fs := e.flags()
	watch := fs.Bool("watch", false, "keep syncing until interrupted: after changes here or on the server")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	return e.withClient(func(c *client.Client) error {
		if !*watch {
			r, err := e.syncWithProgress(c)
			if err != nil {
				return err
			}
			return e.printSummary(c, r)
		}
		return e.watch(c, func(st client.Status) {
			if st.LastError != "" && !st.Offline {
				fmt.Fprintf(e.stderr, "%s  sync failed: %s (retrying)\n", time.Now().Format("15:04:05"), st.LastError)
			} else if st.LastError == "" {
				fmt.Fprintf(e.stderr, "%s  in sync: %d pending, %d refused\n", time.Now().Format("15:04:05"), st.Pending, st.Refused)
			}
		})
	})
}

// watch runs the client's background sync until interrupted, calling
// onChange after each change of the status, and saying when the server
// cannot be reached and when it can again.
func (e *env) watch(c *client.Client, onChange func(client.Status)) error {
	events, stop := c.Watch()
	defer stop()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	silence, err := silenceTimeout()
	if err != nil {
		return err
	}
	opts := client.RunOptions{Debounce: 200 * time.Millisecond, StreamTimeout: silence}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx, opts) }()
	last, offline := "", false
	for {
		select {
		case err := <-errc:
			return err
		case _, ok := <-events:
			if !ok {
				return <-errc
			}
			st, err := c.Status(e.ctx)
			if err != nil || st.Progress.Running {
				continue
			}
			switch {
			case st.Offline && !offline:
				offline = true
				fmt.Fprintf(e.stderr, "%s  offline: %s (retrying)\n", time.Now().Format("15:04:05"), st.OfflineReason)
			case !st.Offline && offline:
				offline = false
				fmt.Fprintf(e.stderr, "%s  back online\n", time.Now().Format("15:04:05"))
			}
			key := fmt.Sprint(st.LastSync, st.LastError, st.Pending, st.Refused, st.AwaitingApprovalCount)
			if key != last {
				last = key
				onChange(st)
			}
		}
	}
}

// printSummary ends a sync with one line saying what went each way.
func (e *env) printSummary(c *client.Client, r client.Report) error {
	st, err := c.Status(e.ctx)
	if err != nil {
		return err
	}
	sent := fmt.Sprintf("sent %d change(s)", r.Sent)
	if r.Sent > 0 {
		sent += fmt.Sprintf(" (%d accepted, %d refused)", r.Accepted, r.Refused)
	}
	if r.AwaitingApproval {
		p, _ := c.Profile()
		fmt.Fprintf(e.stderr, "Waiting for approval: %s, held until one of your devices approves this one (diary device approve %s); received nothing; %d pending.\n", sent, p.DeviceID, r.Pending)
		return nil
	}
	msg := fmt.Sprintf("Synced: %s; received %d entr%s and %d removal(s); %d pending", sent, r.Received, plural(r.Received, "y", "ies"), r.Removed, r.Pending)
	if st.Refused > 0 {
		msg += fmt.Sprintf("; %d refused kept (see \"diary refused\")", st.Refused)
	}
	if st.AwaitingApprovalCount > 0 {
		msg += fmt.Sprintf("; %d new device(s) ask to join your account (see \"diary status\")", st.AwaitingApprovalCount)
	}
	fmt.Fprintln(e.stderr, msg+".")
	return nil
}

func cmdStatus(e *env, args []string) error {
	fs := e.flags()
	jsonOut := fs.Bool("json", false, "print JSON")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	return e.withClient(func(c *client.Client) error {
		st, err := c.Status(e.ctx)
		if err != nil {
			return err
		}
		p, ok := c.Profile()
		if !ok {
			return fmt.Errorf("the profile in %s is not enrolled: enrol it with \"diary enrol --server URL --code CODE\"", e.home)
		}
		refused, err := c.Refused(e.ctx, 0, 1000)
		if err != nil {
			return err
		}
		if *jsonOut {
			out := map[string]any{
				"study_code":      p.StudyCode,
				"role":            p.Role.String(),
				"server":          p.ServerURL,
				"device_id":       p.DeviceID,
				"device_state":    st.DeviceState.String(),
				"entries":         st.Entries,
				"pending":         st.Pending,
				"pending_entries": st.PendingEntries,
				"refused":         refusedJSON(refused),
				"cursor":          st.Cursor,
				"clock_offset":    st.ClockOffset.String(),
				"last_sync":       nil,
				"last_error":      st.LastError,
				"awaiting_approval": func() []map[string]any {
					out := []map[string]any{}
					for _, d := range st.AwaitingApproval {
						out = append(out, map[string]any{"device_id": d.ID, "name": d.Name, "enrolled_at": d.EnrolledAt, "issued_by": d.IssuedBy})
					}
					return out
				}(),
				"awaiting_approval_count": st.AwaitingApprovalCount,
			}
			if st.Revoked != nil {
				out["revoked"] = map[string]any{"reason": st.Revoked.Reason.String(), "by": st.Revoked.By, "at": timeOrNil(st.Revoked.At), "message": st.Revoked.Message, "lost_changes": st.Revoked.LostChanges}
			}
			if !st.LastSync.IsZero() {
				out["last_sync"] = st.LastSync
			}
			return writeJSON(e.stdout, out)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "profile:\t%s (%s) on %s\n", p.StudyCode, p.Role, p.ServerURL)
		switch {
		case st.Revoked != nil:
			fmt.Fprintf(tw, "device:\trevoked: %s\n", st.Revoked.Message)
			fmt.Fprintf(tw, "\tits copy of the diary was deleted, with %d change(s) the server never received\n", st.Revoked.LostChanges)
		case st.DeviceState == study.DevicePending:
			fmt.Fprintf(tw, "device:\t%s waits for approval: on another of your devices, run \"diary device approve %s\"\n", p.DeviceID, p.DeviceID)
		default:
			fmt.Fprintf(tw, "device:\t%s\n", p.DeviceID)
		}
		if st.AwaitingApprovalCount > 0 {
			fmt.Fprintf(tw, "approval:\t%d new device(s) ask to join your account; approve only your own (\"diary device approve ID\", \"diary device deny ID\"):\n", st.AwaitingApprovalCount)
			for _, d := range st.AwaitingApproval {
				fmt.Fprintf(tw, "\t  %s  %q, enrolled %s with a code from %s\n", d.ID, d.Name, localTime(d.EnrolledAt), d.IssuedBy)
			}
		}
		fmt.Fprintf(tw, "entries:\t%d on this device\n", st.Entries)
		fmt.Fprintf(tw, "pending:\t%d change(s) to %d entr%s not yet synced\n", st.Pending, st.PendingEntries, plural(st.PendingEntries, "y", "ies"))
		last := "never"
		if !st.LastSync.IsZero() {
			last = st.LastSync.Local().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "last sync:\t%s\n", last)
		if st.LastError != "" && st.Revoked == nil {
			fmt.Fprintf(tw, "last error:\t%s (%s)\n", st.LastError, st.LastErrorAt.Local().Format("2006-01-02 15:04:05"))
		}
		if st.ClockOffset != 0 {
			fmt.Fprintf(tw, "clock:\tthis device's clock is corrected by %s\n", st.ClockOffset)
		}
		fmt.Fprintf(tw, "refused:\t%d change(s)\n", st.Refused)
		tw.Flush()
		for _, r := range refused {
			fmt.Fprintf(e.stdout, "  #%d entry %s, %s: %s\n", r.Seq, client.ShortID(r.Change.Entry), r.Change.Field, r.Message)
		}
		return nil
	})
}

func refusedJSON(rs []client.RefusedChange) []map[string]any {
	out := []map[string]any{}
	for _, r := range rs {
		m := map[string]any{
			"seq":        r.Seq,
			"entry_id":   r.Change.Entry.String(),
			"field":      r.Change.Field.String(),
			"reason":     r.Reason.String(),
			"message":    r.Message,
			"refused_at": r.RefusedAt,
		}
		switch {
		case r.Change.Field.String() == "tag":
			m["tag"], m["value"] = r.Change.Tag, r.Change.Flag
		case r.Change.Text != "":
			m["value"] = r.Change.Text
		case r.Change.Number != 0:
			m["value"] = r.Change.Number
		default:
			m["value"] = r.Change.Flag
		}
		out = append(out, m)
	}
	return out
}

func cmdRefused(e *env, args []string) error {
	fs := e.flags()
	jsonOut := fs.Bool("json", false, "print JSON, one change per line")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	return e.withClient(func(c *client.Client) error {
		for after := int64(0); ; {
			page, err := c.Refused(e.ctx, after, 500)
			if err != nil {
				return err
			}
			for _, m := range refusedJSON(page) {
				if *jsonOut {
					if err := writeJSON(e.stdout, m); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(e.stdout, "#%v  entry %s  %v = %q\n     %v\n", m["seq"], m["entry_id"], m["field"], fmt.Sprint(m["value"]), m["message"])
			}
			if len(page) < 500 {
				return nil
			}
			after = page[len(page)-1].Seq
		}
	})
}

func cmdRefusedDismiss(e *env, args []string) error {
	fs := e.flags()
	arg, err := e.oneArg(fs, args, "the number shown with the change (see \"diary refused\")")
	if err != nil {
		return err
	}
	seq, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || seq <= 0 {
		return usagef("refused dismiss needs the number shown with the change, not %q", arg)
	}
	return e.withClient(func(c *client.Client) error { return c.DismissRefused(e.ctx, seq) })
}

func cmdInbox(e *env, args []string) error {
	fs := e.flags()
	jsonOut := fs.Bool("json", false, "print JSON, one entry per line")
	unread := fs.Bool("unread", false, "only entries not yet read")
	watch := fs.Bool("watch", false, "keep syncing and show new reflections as they arrive; say when the server cannot be reached and when it can again")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	return e.withClient(func(c *client.Client) error {
		p, _ := c.Profile()
		if p.Role != study.RoleSupervisor {
			return fmt.Errorf("the inbox is for supervisors; %s is a %s", p.StudyCode, p.Role)
		}
		o := client.ListOptions{Unread: *unread}
		if !*watch {
			return e.printEntries(c, o, 0, *jsonOut, true)
		}
		seen := map[string]bool{}
		show := func() {
			for tok := ""; ; {
				o.PageToken, o.Limit = tok, 200
				page, err := c.List(e.ctx, o)
				if err != nil {
					fmt.Fprintln(e.stderr, "diary:", message(err))
					return
				}
				for _, en := range page.Entries {
					key := en.ID.String() + en.UpdatedAt.String() + fmt.Sprint(len(en.Feedback))
					if seen[key] {
						continue
					}
					seen[key] = true
					if *jsonOut {
						writeJSON(e.stdout, toJSON(en, true))
					} else {
						fmt.Fprintf(e.stdout, "%s  %s  %s  %s\n", en.Date, client.ShortID(en.ID), en.Author, oneLine(en.Title, 60))
					}
				}
				if tok = page.Next; tok == "" {
					return
				}
			}
		}
		show()
		return e.watch(c, func(client.Status) { show() })
	})
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func cmdRepair(e *env, args []string) error {
	fs := e.flags()
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	path := filepath.Join(e.home, "replica.db")
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no profile in %s to repair", e.home)
	}
	silence, err := silenceTimeout()
	if err != nil {
		return err
	}
	opts := client.Options{ResponseTimeout: silence}
	if c, err := client.Open(e.ctx, path, opts); err == nil {
		c.Close()
		fmt.Fprintln(e.stderr, "The replica is not damaged: nothing to repair.")
		return nil
	} else if !errors.As(err, new(*client.DamagedError)) {
		return err
	}
	report, err := client.Repair(e.ctx, path, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "Rebuilt the replica: kept %d unsynced change(s) and %d refused one(s)", report.Kept, report.RefusedKept)
	if report.ReadsKept > 0 {
		fmt.Fprintf(e.stderr, ", and %d read mark(s) not yet sent", report.ReadsKept)
	}
	if report.Unreadable > 0 {
		fmt.Fprintf(e.stderr, "; %d unsynced change(s) could not be read and are lost", report.Unreadable)
	}
	fmt.Fprintf(e.stderr, ".\nThe damaged file was kept as %s; it holds diary text: delete it once you no longer need it.\n", report.DamagedCopy)
	return e.withClient(func(c *client.Client) error {
		r, err := e.syncWithProgress(c)
		if err != nil {
			return fmt.Errorf("the replica was rebuilt, but the sync that fills it again failed (run \"diary sync\" later): %w", err)
		}
		return e.printSummary(c, r)
	})
}
