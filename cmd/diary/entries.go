package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

func cmdEnrol(e *env, args []string) error {
	fs := e.flags()
	server := fs.String("server", "", "server URL, such as https://diary.example.org")
	code := fs.String("code", "", "one-time enrolment code from an administrator")
	link := fs.String("link", "", "the diarysync:enrol?… link of an enrolment QR code, instead of --server and --code")
	host, _ := os.Hostname()
	name := fs.String("name", host, "a name for this device")
	replace := fs.Bool("replace", false, "enrol an enrolled profile again as a new device: push what it holds unsynced, then revoke the old device")
	jsonOut := fs.Bool("json", false, "print JSON")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	if *link != "" {
		if *server != "" || *code != "" {
			return usagef("enrol takes --link or --server and --code, not both")
		}
		var err error
		if *server, *code, err = client.ParseEnrolLink(*link); err != nil {
			return usagef("%s", syncengine.ErrorMessage(err))
		}
	}
	if *code == "" || (*server == "" && !*replace) {
		return usagef("enrol needs --server URL and --code CODE, or --link LINK")
	}
	if *server != "" && !strings.HasPrefix(*server, "http://") && !strings.HasPrefix(*server, "https://") {
		return usagef("--server %q must start with http:// or https://", *server)
	}
	if err := study.CheckCodeForm(*code); err != nil {
		return usagef("--code %q is not an enrolment code: they are ten letters and digits, such as K7MPQ-3XRTA", *code)
	}
	if _, err := study.DeviceName(*name); err != nil {
		return usagef("--name: %s", syncengine.ErrorMessage(err))
	}
	// A failed enrolment leaves no profile behind: remember what there
	// was, to remove only what this command made.
	path := filepath.Join(e.home, "replica.db")
	_, statErr := os.Stat(path)
	newProfile := errors.Is(statErr, iofs.ErrNotExist)
	_, dirErr := os.Stat(e.home)
	newDir := errors.Is(dirErr, iofs.ErrNotExist)
	c, err := e.open(true)
	if err != nil {
		return err
	}
	p, err := e.enrol(c, *server, *code, *name, *replace)
	if err != nil {
		c.Close()
		if newProfile {
			for _, f := range []string{path, path + "-wal", path + "-shm"} {
				os.Remove(f)
			}
			if newDir {
				os.Remove(e.home) // only if empty
			}
		}
		return err
	}
	defer c.Close()
	st, err := c.Status(e.ctx)
	if err != nil {
		return err
	}
	if *jsonOut {
		return writeJSON(e.stdout, map[string]any{"device_id": p.DeviceID, "study_code": p.StudyCode, "role": p.Role.String(), "server": p.ServerURL, "state": st.DeviceState.String()})
	}
	fmt.Fprintf(e.stdout, "Enrolled this device as %s (%s) with %s.\n", p.StudyCode, p.Role, p.ServerURL)
	if st.DeviceState == study.DevicePending {
		fmt.Fprintf(e.stdout, "It waits for approval: on another of your devices, run \"diary device approve %s\". Until then it can write new entries, and receives nothing.\n", p.DeviceID)
	}
	return nil
}

func (e *env) enrol(c *client.Client, server, code, name string, replace bool) (client.Profile, error) {
	if !replace {
		return c.Enroll(e.ctx, server, code, name)
	}
	if _, ok := c.Profile(); !ok {
		return client.Profile{}, usagef("--replace is for a profile that is enrolled; this one is not")
	}
	return c.Replace(e.ctx, code, name)
}

// entryFlags are the flags write and edit share.
type entryFlags struct {
	title, date, share, body *string
	mood                     *int
	tags                     stringList
	fs                       *flag.FlagSet
}

func newEntryFlags(e *env) *entryFlags {
	fs := e.flags()
	f := &entryFlags{fs: fs}
	f.title = fs.String("title", "", "title")
	f.date = fs.String("date", "", "the date the entry is about, YYYY-MM-DD (default today)")
	f.share = fs.String("share", "", "who may see it: none, supervisor, research or both")
	f.body = fs.String("body", "", "the text (default: standard input, or $EDITOR on a terminal)")
	f.mood = fs.Int("mood", 0, "mood, 1 to 10 (0: not recorded)")
	fs.Var(&f.tags, "tag", "a tag (repeatable)")
	return f
}

func (f *entryFlags) set(name string) bool {
	found := false
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name == name {
			found = true
		}
	})
	return found
}

func parseShare(s string) (sup, res bool, err error) {
	switch strings.ToLower(s) {
	case "none", "":
		return false, false, nil
	case "supervisor":
		return true, false, nil
	case "research":
		return false, true, nil
	case "both":
		return true, true, nil
	}
	return false, false, usagef("--share must be none, supervisor, research or both, not %q", s)
}

// readBody gets the body from --body, else standard input when it is not
// a terminal, else the editor on a terminal.
func (e *env) readBody(initial string) (string, error) {
	if !isTerminal(e.stdin) {
		b, err := io.ReadAll(io.LimitReader(e.stdin, syncengine.MaxBodyBytes+1))
		if err != nil {
			return "", fmt.Errorf("cannot read the body from standard input: %w", err)
		}
		return strings.TrimRight(string(b), "\n"), nil
	}
	editor := os.Getenv("VISUAL")
	if editor == "" {
		editor = os.Getenv("EDITOR")
	}
	if editor == "" {
		return "", usagef("give the text with --body, on standard input, or set $EDITOR")
	}
	dir, err := os.MkdirTemp("", "diary-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "entry.txt")
	if err := os.WriteFile(path, []byte(initial), 0o600); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(e.ctx, "sh", "-c", editor+` "$1"`, "editor", path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("the editor failed: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\n"), nil
}

// check refuses, as usage mistakes, flag values that no entry may hold.
func (f *entryFlags) check() error {
	if f.set("mood") && (*f.mood < 0 || *f.mood > 10) {
		return usagef("--mood must be from 1 to 10 (0: not recorded), not %d", *f.mood)
	}
	if f.set("date") && *f.date != "" {
		if err := syncengine.ValidateDate(*f.date); err != nil {
			return usagef("--date %q: %s", *f.date, syncengine.ErrorMessage(err))
		}
	}
	if err := syncengine.ValidateText("title", *f.title, syncengine.MaxTitleBytes, false); err != nil {
		return usagef("--title: %s", syncengine.ErrorMessage(err))
	}
	for _, t := range f.tags {
		if err := syncengine.ValidateTag(t); err != nil {
			return usagef("--tag %q: %s", t, syncengine.ErrorMessage(err))
		}
	}
	if f.set("body") {
		if err := syncengine.ValidateText("body", *f.body, syncengine.MaxBodyBytes, true); err != nil {
			return usagef("--body: %s", syncengine.ErrorMessage(err))
		}
	}
	if _, _, err := parseShare(*f.share); err != nil {
		return err
	}
	return nil
}

func cmdWrite(e *env, args []string) error {
	f := newEntryFlags(e)
	if pos, err := e.parse(f.fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("write takes no arguments; put the text in --body or on standard input")
	}
	if err := f.check(); err != nil {
		return err
	}
	sup, res, err := parseShare(*f.share)
	if err != nil {
		return err
	}
	return e.withClient(func(c *client.Client) error {
		body := *f.body
		if !f.set("body") {
			if body, err = e.readBody(""); err != nil {
				return err
			}
		}
		id, err := c.Create(e.ctx, client.Draft{Title: *f.title, Body: body, Date: *f.date, Mood: *f.mood, Tags: f.tags, ShareSupervisor: sup, ShareResearch: res})
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, id)
		return nil
	})
}

func (e *env) resolve(c *client.Client, args []string, cmd string) (syncengine.EntryID, error) {
	if err := oneEntry(args, cmd); err != nil {
		return syncengine.EntryID{}, err
	}
	return c.FindID(e.ctx, args[0])
}

// oneEntry refuses positional arguments that are not exactly one entry
// ID, before anything is opened.
func oneEntry(args []string, cmd string) error {
	if len(args) != 1 {
		return usagef("%s needs exactly one entry ID", cmd)
	}
	return nil
}

func cmdEdit(e *env, args []string) error {
	f := newEntryFlags(e)
	var add, remove stringList
	f.fs.Var(&add, "add-tag", "add a tag (repeatable)")
	f.fs.Var(&remove, "remove-tag", "remove a tag (repeatable)")
	pos, err := e.parse(f.fs, args)
	if err != nil {
		return err
	}
	if err := oneEntry(pos, "edit"); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	for _, t := range append(append([]string(nil), add...), remove...) {
		if err := syncengine.ValidateTag(t); err != nil {
			return usagef("tag %q: %s", t, syncengine.ErrorMessage(err))
		}
	}
	return e.withClient(func(c *client.Client) error {
		id, err := e.resolve(c, pos, "edit")
		if err != nil {
			return err
		}
		var ed client.Edit
		if f.set("title") {
			ed.Title = f.title
		}
		if f.set("body") {
			ed.Body = f.body
		}
		if f.set("date") {
			ed.Date = f.date
		}
		if f.set("mood") {
			ed.Mood = f.mood
		}
		if f.set("share") {
			sup, res, err := parseShare(*f.share)
			if err != nil {
				return err
			}
			ed.ShareSupervisor, ed.ShareResearch = &sup, &res
		}
		ed.AddTags = append(append([]string(nil), f.tags...), add...)
		ed.RemoveTags = remove
		if !anySet(f) {
			// No flags: the new body comes from standard input, or from
			// the editor, which starts with the current body.
			cur, err := c.Get(e.ctx, id)
			if err != nil {
				return err
			}
			b, err := e.readBody(cur.Body)
			if err != nil {
				return err
			}
			// The edit is made from the text the editor started with,
			// so that what syncs meanwhile stays.
			ed.Body, ed.BodyBase = &b, &cur.Body
		}
		return c.Update(e.ctx, id, ed)
	})
}

func cmdDelete(e *env, args []string, deleted bool) error {
	fs := e.flags()
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if err := oneEntry(pos, fs.Name()); err != nil {
		return err
	}
	return e.withClient(func(c *client.Client) error {
		id, err := e.resolve(c, pos, fs.Name())
		if err != nil {
			return err
		}
		return c.Update(e.ctx, id, client.Edit{Deleted: &deleted})
	})
}

// entryJSON is an entry in --json output.
type entryJSON struct {
	ID              string         `json:"id"`
	Author          string         `json:"author"`
	Title           string         `json:"title"`
	Body            string         `json:"body"`
	Date            string         `json:"date"`
	Mood            int            `json:"mood,omitempty"`
	Tags            []string       `json:"tags"`
	ShareSupervisor bool           `json:"share_supervisor"`
	ShareResearch   bool           `json:"share_research"`
	Deleted         bool           `json:"deleted"`
	CreatedAt       time.Time      `json:"created_at"`
	UpdatedAt       time.Time      `json:"updated_at"`
	Pending         int            `json:"pending"`
	BodyConcurrent  bool           `json:"body_edited_on_devices,omitempty"`
	Read            *bool          `json:"read,omitempty"`
	Feedback        []feedbackJSON `json:"feedback"`
}

type feedbackJSON struct {
	ID        string    `json:"id"`
	Author    string    `json:"author"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func toJSON(en *client.Entry, withRead bool) entryJSON {
	j := entryJSON{
		ID: en.ID.String(), Author: en.Author, Title: en.Title, Body: en.Body, Date: en.Date, Mood: en.Mood,
		Tags: en.Tags, ShareSupervisor: en.ShareSupervisor, ShareResearch: en.ShareResearch, Deleted: en.Deleted,
		CreatedAt: en.CreatedAt, UpdatedAt: en.UpdatedAt, Pending: en.Pending, BodyConcurrent: en.BodyConcurrent, Feedback: []feedbackJSON{},
	}
	if j.Tags == nil {
		j.Tags = []string{}
	}
	if withRead {
		r := !en.ReadAt.IsZero()
		j.Read = &r
	}
	for _, f := range en.Feedback {
		j.Feedback = append(j.Feedback, feedbackJSON{ID: f.ID.String(), Author: f.Author, Body: f.Body, CreatedAt: f.CreatedAt, UpdatedAt: f.UpdatedAt})
	}
	return j
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func shareLabel(en *client.Entry) string {
	switch {
	case en.ShareSupervisor && en.ShareResearch:
		return "both"
	case en.ShareSupervisor:
		return "supervisor"
	case en.ShareResearch:
		return "research"
	}
	return "private"
}

func cmdList(e *env, args []string) error {
	fs := e.flags()
	jsonOut := fs.Bool("json", false, "print JSON, one entry per line")
	from := fs.String("from", "", "first date, YYYY-MM-DD")
	to := fs.String("to", "", "last date, YYYY-MM-DD")
	tag := fs.String("tag", "", "only entries with this tag")
	shared := fs.String("shared", "any", "any, supervisor, research or none")
	deleted := fs.Bool("deleted", false, "list deleted entries instead")
	limit := fs.Int("limit", 0, "at most this many entries (default: all)")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("--limit must not be negative")
	}
	for name, d := range map[string]string{"--from": *from, "--to": *to} {
		if d == "" {
			continue
		}
		if err := syncengine.ValidateDate(d); err != nil {
			return usagef("%s %q: %s", name, d, syncengine.ErrorMessage(err))
		}
	}
	if *tag != "" {
		if err := syncengine.ValidateTag(*tag); err != nil {
			return usagef("--tag %q: %s", *tag, syncengine.ErrorMessage(err))
		}
	}
	o := client.ListOptions{From: *from, To: *to, Tag: *tag}
	switch *shared {
	case "any":
	case "supervisor":
		o.Sharing = client.SharedSupervisor
	case "research":
		o.Sharing = client.SharedResearch
	case "none":
		o.Sharing = client.SharedWithNoone
	default:
		return usagef("--shared must be any, supervisor, research or none")
	}
	if *deleted {
		o.Deleted = client.OnlyDeleted
	}
	return e.withClient(func(c *client.Client) error {
		return e.printEntries(c, o, *limit, *jsonOut, false)
	})
}

// printEntries pages through a listing and prints it: a table, or JSON
// Lines with --json.
func (e *env) printEntries(c *client.Client, o client.ListOptions, limit int, jsonOut, inbox bool) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	if !jsonOut {
		if inbox {
			fmt.Fprintln(tw, "\tDATE\tID\tAUTHOR\tTITLE\tFEEDBACK")
		} else {
			fmt.Fprintln(tw, "DATE\tID\tSHARED\tTAGS\tTITLE")
		}
	}
	n := 0
	for {
		o.Limit = 200
		if limit > 0 {
			o.Limit = min(200, limit-n)
		}
		page, err := c.List(e.ctx, o)
		if err != nil {
			return err
		}
		for _, en := range page.Entries {
			n++
			if jsonOut {
				if err := writeJSON(e.stdout, toJSON(en, inbox)); err != nil {
					return err
				}
				continue
			}
			title := oneLine(en.Title, 60)
			if title == "" {
				title = "(" + oneLine(en.Body, 40) + ")"
			}
			if inbox {
				mark := "new"
				if !en.ReadAt.IsZero() {
					mark = ""
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", mark, en.Date, client.ShortID(en.ID), en.Author, title, len(en.Feedback))
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", en.Date, client.ShortID(en.ID), shareLabel(en), strings.Join(en.Tags, ","), title)
			}
		}
		if page.Next == "" || (limit > 0 && n >= limit) {
			break
		}
		o.PageToken = page.Next
	}
	if !jsonOut {
		return tw.Flush()
	}
	return nil
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func cmdShow(e *env, args []string) error {
	fs := e.flags()
	jsonOut := fs.Bool("json", false, "print JSON")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if err := oneEntry(pos, "show"); err != nil {
		return err
	}
	return e.withClient(func(c *client.Client) error {
		id, err := e.resolve(c, pos, "show")
		if err != nil {
			return err
		}
		en, err := c.Get(e.ctx, id)
		if err != nil {
			return err
		}
		p, _ := c.Profile()
		if p.Role == study.RoleSupervisor && en.ReadAt.IsZero() {
			if err := c.MarkRead(e.ctx, id, true); err != nil {
				return err
			}
		}
		if *jsonOut {
			return writeJSON(e.stdout, toJSON(en, p.Role == study.RoleSupervisor))
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s\n", en.Title)
		fmt.Fprintf(&b, "id:      %s\nauthor:  %s\ndate:    %s\nshared:  %s\n", en.ID, en.Author, en.Date, shareLabel(en))
		if len(en.Tags) > 0 {
			fmt.Fprintf(&b, "tags:    %s\n", strings.Join(en.Tags, ", "))
		}
		if en.Mood > 0 {
			fmt.Fprintf(&b, "mood:    %d/10\n", en.Mood)
		}
		fmt.Fprintf(&b, "created: %s\nedited:  %s\n", en.CreatedAt.Local().Format("2006-01-02 15:04"), en.UpdatedAt.Local().Format("2006-01-02 15:04"))
		if en.Deleted {
			b.WriteString("deleted: yes (diary restore " + client.ShortID(en.ID) + " brings it back)\n")
		}
		if en.Pending > 0 {
			fmt.Fprintf(&b, "pending: %d change(s) not yet synced\n", en.Pending)
		}
		if en.BodyConcurrent {
			b.WriteString("body:    edited on two devices; both edits are in it\n")
		}
		fmt.Fprintf(&b, "\n%s\n", en.Body)
		for _, f := range en.Feedback {
			fmt.Fprintf(&b, "\n— feedback from %s, %s:\n%s\n", f.Author, f.UpdatedAt.Local().Format("2006-01-02 15:04"), f.Body)
		}
		_, err = e.stdout.Write(b.Bytes())
		return err
	})
}

func cmdFeedback(e *env, args []string) error {
	fs := e.flags()
	body := fs.String("body", "", "the feedback (default: standard input or $EDITOR)")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if err := oneEntry(pos, "feedback"); err != nil {
		return err
	}
	if err := syncengine.ValidateText("feedback", *body, syncengine.MaxFeedbackBodyBytes, true); err != nil {
		return usagef("--body: %s", syncengine.ErrorMessage(err))
	}
	return e.withClient(func(c *client.Client) error {
		id, err := e.resolve(c, pos, "feedback")
		if err != nil {
			return err
		}
		text := *body
		if text == "" {
			if text, err = e.readBody(""); err != nil {
				return err
			}
		}
		if strings.TrimSpace(text) == "" {
			return usagef("feedback needs some text")
		}
		fid, err := c.WriteFeedback(e.ctx, id, text)
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, fid)
		return nil
	})
}

func anySet(f *entryFlags) bool {
	n := 0
	f.fs.Visit(func(*flag.Flag) { n++ })
	return n > 0
}
