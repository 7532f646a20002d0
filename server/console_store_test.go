package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// mustCode creates the user if new and returns a fresh one-time code.
func mustCode(tb testing.TB, db study.Store, role study.Role, code string) string {
	tb.Helper()
	ctx := context.Background()
	if _, err := db.UserByCode(ctx, code); err != nil {
		if _, err := db.CreateUser(ctx, code, role, "Person "+code); err != nil {
			tb.Fatal(err)
		}
	}
	c, _, err := db.IssueEnrollmentCode(ctx, code, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func wantErrCode(tb testing.TB, err error, want syncengine.Code) {
	tb.Helper()
	if got := syncengine.ErrorCode(err); err == nil || got != want {
		tb.Fatalf("got %v (%s), want %s", err, got, want)
	}
}

// TestStore_ConsoleSessions: a first sign-in with a code sets the
// passphrase and starts a browser session, which is a device of kind
// browser, never a bearer token, and ends on sign-out, revocation,
// reset, idle time and lifetime.
func TestStore_ConsoleSessions(t *testing.T) {
	ctx := context.Background()
	clk := newTestClock()
	db := MustOpenDBWith(t, storetest.Options{Now: clk.Now})

	t.Run("ErrNavigatorKeepsCode", func(t *testing.T) {
		code := mustCode(t, db, study.RoleNavigator, "PN-A")
		if _, err := db.EnrollBrowser(ctx, code, "hash", "browser", time.Hour); err != study.ErrNotConsoleRole {
			t.Fatalf("navigator's code: %v, want ErrNotConsoleRole", err)
		}
		if _, err := db.Enroll(ctx, study.EnrollRequest{Code: code, DeviceName: "phone"}); err != nil {
			t.Fatalf("the navigator's code was spent by the refused console sign-in: %v", err)
		}
	})

	code := mustCode(t, db, study.RoleSupervisor, "SUP-1")
	u, err := db.CodeUser(ctx, code)
	if err != nil || u.StudyCode != "SUP-1" || u.Role != study.RoleSupervisor {
		t.Fatalf("CodeUser = %+v, %v", u, err)
	}
	enr, err := db.EnrollBrowser(ctx, code, "$argon2id$first", "Firefox on Linux", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ErrCodeSpent", func(t *testing.T) {
		_, err := db.EnrollBrowser(ctx, code, "$argon2id$again", "browser", time.Hour)
		wantErrCode(t, err, syncengine.EUNAUTHENTICATED)
		if _, err := db.CodeUser(ctx, code); syncengine.ErrorCode(err) != syncengine.EUNAUTHENTICATED {
			t.Fatalf("CodeUser of a spent code: %v", err)
		}
	})
	t.Run("NotABearerToken", func(t *testing.T) {
		if _, err := db.Authenticate(ctx, enr.Token); err != study.ErrBadToken {
			t.Fatalf("Authenticate(session token) = %v, want ErrBadToken", err)
		}
		phone := MustEnrollDevice(t, db, study.RoleSupervisor, "SUP-1")
		if _, err := db.Session(ctx, phone.Token); err != study.ErrBadToken {
			t.Fatalf("Session(device token) = %v, want ErrBadToken", err)
		}
	})
	s, err := db.Session(ctx, enr.Token)
	if err != nil {
		t.Fatal(err)
	}
	if s.StudyCode != "SUP-1" || s.Role != study.RoleSupervisor || s.Replica != enr.Replica || !s.UserActive || !s.Ended.IsZero() ||
		!s.Expires.Equal(clk.Now().Add(time.Hour).Truncate(time.Millisecond)) {
		t.Fatalf("session %+v", s)
	}
	t.Run("InDeviceList", func(t *testing.T) {
		devices, _, err := db.ListDevices(ctx, 0, "", "SUP-1")
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]study.DeviceKind{}
		for _, d := range devices {
			kinds[d.PublicID] = d.Kind
		}
		if kinds[enr.Device] != study.KindBrowser || len(kinds) != 2 {
			t.Fatalf("devices %v, want the browser session among them", kinds)
		}
	})
	t.Run("Passphrase", func(t *testing.T) {
		h, err := db.PassphraseHash(ctx, "sup-1")
		if err != nil || h != "$argon2id$first" {
			t.Fatalf("PassphraseHash = %q, %v", h, err)
		}
		for _, who := range []string{"NOBODY", "PN-A", "not a code!"} {
			if _, err := db.PassphraseHash(ctx, who); err != study.ErrBadLogin {
				t.Fatalf("PassphraseHash(%s) = %v, want ErrBadLogin", who, err)
			}
		}
		if _, err := db.StartSession(ctx, "SUP-1", "$argon2id$other", "b", time.Hour); err != study.ErrBadLogin {
			t.Fatalf("StartSession with another hash: %v", err)
		}
	})
	t.Run("Idle", func(t *testing.T) {
		second, err := db.StartSession(ctx, "SUP-1", "$argon2id$first", "Chromium", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(20 * time.Minute)
		s, _ := db.Session(ctx, second.Token)
		if r, err := study.CheckSession(s, clk.Now(), 30*time.Minute); r != study.EndNone || err != nil {
			t.Fatalf("after 20 min: %q %v", r, err)
		}
		if err := db.TouchSession(ctx, s.DeviceID); err != nil {
			t.Fatal(err)
		}
		clk.Advance(20 * time.Minute)
		s, _ = db.Session(ctx, second.Token)
		if r, _ := study.CheckSession(s, clk.Now(), 30*time.Minute); r != study.EndNone {
			t.Fatalf("20 min after a touch: %q", r)
		}
		clk.Advance(11 * time.Minute)
		s, _ = db.Session(ctx, second.Token)
		if r, _ := study.CheckSession(s, clk.Now(), 30*time.Minute); r != study.EndIdle {
			t.Fatalf("31 min after a touch: %q, want idle", r)
		}
		if err := db.EndSession(ctx, s.DeviceID, study.EndIdle); err != nil {
			t.Fatal(err)
		}
		// Ending it again keeps the first reason.
		if err := db.EndSession(ctx, s.DeviceID, study.EndSignOut); err != nil {
			t.Fatal(err)
		}
		s, _ = db.Session(ctx, second.Token)
		if r, _ := study.CheckSession(s, clk.Now(), 30*time.Minute); r != study.EndIdle {
			t.Fatalf("ended session: %q, want idle", r)
		}
	})
	t.Run("Lifetime", func(t *testing.T) {
		s, _ := db.Session(ctx, enr.Token)
		if r, _ := study.CheckSession(s, clk.Now(), 0); r != study.EndNone {
			t.Fatalf("51 minutes into an hour-long session: %q", r)
		}
		clk.Advance(9 * time.Minute)
		if r, _ := study.CheckSession(s, clk.Now(), 0); r != study.EndLifetime {
			t.Fatalf("an hour into an hour-long session: %q, want lifetime", r)
		}
		if err := db.EndSession(ctx, s.DeviceID, study.EndLifetime); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("RevokedFromDeviceList", func(t *testing.T) {
		third, err := db.StartSession(ctx, "SUP-1", "$argon2id$first", "Safari", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.RevokeDevice(ctx, third.Device); err != nil {
			t.Fatal(err)
		}
		s, _ := db.Session(ctx, third.Token)
		if r, _ := study.CheckSession(s, clk.Now(), time.Hour); r != study.EndRevoked {
			t.Fatalf("revoked session: %q", r)
		}
	})
	t.Run("Reset", func(t *testing.T) {
		// The console's reset is the account reset: it ends the console
		// sessions with the reason said, forgets the passphrase, revokes
		// the app devices too, and its code needs no approval.
		fourth, err := db.StartSession(ctx, "SUP-1", "$argon2id$first", "Edge", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		actx := study.NewContext(ctx, &study.Identity{StudyCode: "ADMIN", Role: study.RoleAdmin})
		res, err := db.ResetUser(actx, "SUP-1", 0)
		if err != nil || res.DevicesRevoked < 2 || res.Code == "" {
			t.Fatalf("ResetUser = %+v, %v; want the session and the phone revoked, and a code", res, err)
		}
		s, _ := db.Session(ctx, fourth.Token)
		if r, _ := study.CheckSession(s, clk.Now(), time.Hour); r != study.EndReset {
			t.Fatalf("after reset: %q", r)
		}
		if _, err := db.PassphraseHash(ctx, "SUP-1"); err != study.ErrBadLogin {
			t.Fatalf("passphrase after reset: %v", err)
		}
		if _, err := db.StartSession(ctx, "SUP-1", "$argon2id$first", "Edge", time.Hour); err != study.ErrBadLogin {
			t.Fatalf("signing in with the old passphrase after reset: %v", err)
		}
		events, _, err := db.QueryAudit(ctx, study.AuditQuery{Action: "user.reset"})
		if err != nil || len(events) != 1 || events[0].Actor != "ADMIN" || events[0].Subject != "SUP-1" || events[0].Details["console_passphrase"] != "cleared" {
			t.Fatalf("audit %+v, %v", events, err)
		}
		devices, _, _ := db.ListDevices(ctx, 0, "", "SUP-1")
		byReset := 0
		for _, d := range devices {
			if d.State != study.DeviceRevoked {
				t.Fatalf("after the reset: device %s (%v) is %v", d.PublicID, d.Kind, d.State)
			}
			if d.Revocation == study.RevokedByReset {
				byReset++
			}
		}
		if byReset != res.DevicesRevoked {
			t.Fatalf("%d devices say the reset revoked them, the reset says %d", byReset, res.DevicesRevoked)
		}
		// SUP-1 has had devices, yet the reset's code starts an active
		// session: an administrator's audited reset is the way back in.
		again, err := db.EnrollBrowser(ctx, res.Code, "$argon2id$second", "Firefox", time.Hour)
		if err != nil || again.State != study.DeviceActive {
			t.Fatalf("console setup with the reset's code: %+v, %v; want an active session", again, err)
		}
		wantErrCode(t, func() error { _, err := db.ResetUser(actx, "NOBODY", 0); return err }(), syncengine.ENOTFOUND)
	})
	t.Run("ErrDeactivated", func(t *testing.T) {
		code := mustCode(t, db, study.RoleResearcher, "RES-1")
		res, err := db.EnrollBrowser(ctx, code, "$argon2id$r", "browser", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.DeactivateUser(ctx, "RES-1"); err != nil {
			t.Fatal(err)
		}
		s, _ := db.Session(ctx, res.Token)
		if r, _ := study.CheckSession(s, clk.Now(), time.Hour); r != study.EndDeactivated {
			t.Fatalf("deactivated: %q", r)
		}
		if _, err := db.StartSession(ctx, "RES-1", "$argon2id$r", "b", time.Hour); err != study.ErrBadLogin {
			t.Fatalf("StartSession for a deactivated account: %v", err)
		}
	})
	t.Run("ErrBadInput", func(t *testing.T) {
		wantErrCode(t, db.EndSession(ctx, 1, "because"), syncengine.EINVALID)
		wantErrCode(t, db.EndSession(ctx, 99999, study.EndSignOut), syncengine.ENOTFOUND)
		if _, err := db.Session(ctx, "ds1.garbage"); err != study.ErrBadToken {
			t.Fatalf("Session(garbage) = %v", err)
		}
	})
}

// TestStore_LoginAttempts: attempts are counted before they are checked,
// so that parallel guesses cannot exceed the free ones, and a right
// passphrase takes its attempt back.
func TestStore_LoginAttempts(t *testing.T) {
	ctx := context.Background()
	clk := newTestClock()
	db := MustOpenDBWith(t, storetest.Options{Now: clk.Now})
	keys := []study.LoginKey{{Key: "account:SUP-1", Free: 5}, {Key: "address:192.0.2.1", Free: 20}}

	var wg sync.WaitGroup
	var mu sync.Mutex
	passed, waited := 0, 0
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := db.SpendLoginAttempt(ctx, keys)
			mu.Lock()
			defer mu.Unlock()
			switch syncengine.ErrorCode(err) {
			case "":
				passed++
			case syncengine.ERATELIMIT:
				waited++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if passed != 5 || waited != 35 {
		t.Fatalf("40 parallel attempts: %d passed, %d told to wait; want 5 and 35", passed, waited)
	}
	clk.Advance(time.Second)
	if err := db.SpendLoginAttempt(ctx, keys); err != nil {
		t.Fatalf("after the first wait: %v", err)
	}
	if err := db.SpendLoginAttempt(ctx, keys); syncengine.ErrorCode(err) != syncengine.ERATELIMIT {
		t.Fatalf("at once after that: %v, want ERATELIMIT (2 s)", err)
	}
	// Another account from the same address is not slowed yet.
	if err := db.SpendLoginAttempt(ctx, []study.LoginKey{{Key: "account:SUP-2", Free: 5}, keys[1]}); err != nil {
		t.Fatal(err)
	}
	if err := db.RefundLoginAttempt(ctx, []string{"account:SUP-1"}, true); err != nil {
		t.Fatal(err)
	}
	if err := db.SpendLoginAttempt(ctx, keys[:1]); err != nil {
		t.Fatalf("after a reset: %v", err)
	}
	clk.Advance(study.LoginForgetAfter)
	for range 20 {
		if err := db.SpendLoginAttempt(ctx, keys[1:]); err != nil {
			t.Fatalf("a day later the address is forgotten: %v", err)
		}
	}
	wantErrCode(t, db.SpendLoginAttempt(ctx, []study.LoginKey{{Key: "", Free: 1}}), syncengine.EINVALID)
}

// TestStore_ReadMarks: marks are last-writer-wins per supervisor and
// entry, only on entries shared with them, and a changed mark brings the
// entry back in their pull with its read state, and only theirs.
func TestStore_ReadMarks(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	nav := MustEnroll(t, db, study.RoleNavigator, "PN-A")
	sup := MustEnroll(t, db, study.RoleSupervisor, "SUP-1")
	other := MustEnroll(t, db, study.RoleSupervisor, "SUP-2")
	MustAssign(t, db, "SUP-1", "PN-A")
	MustAssign(t, db, "SUP-2", "PN-A")
	clock := syncengine.NewClock(nil)
	shared := entryChanges(nav.Replica, clock, true, false)
	private := entryChanges(nav.Replica, clock, false, false)
	MustPush(t, db, nav, append(shared, private...))
	id, privateID := shared[0].Change.Entry, private[0].Change.Entry

	head := func(who *study.Identity) int64 {
		h, err := db.Head(ctx, who)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	supHead, otherHead := head(sup), head(other)
	at := syncengine.TimestampAt(time.Now())
	results, wake, err := db.MarkRead(ctx, sup, []study.ReadMark{
		{Entry: id, Read: true, Clock: at},
		{Entry: privateID, Read: true, Clock: at},
		{Entry: id, Read: false, Clock: at - 1}, // older: a duplicate
	})
	if err != nil {
		t.Fatal(err)
	}
	if results[0].Outcome != study.OutcomeApplied || results[1].Reason != study.RefusedNotPermitted || results[2].Outcome != study.OutcomeDuplicate {
		t.Fatalf("results %+v", results)
	}
	if len(wake.Readers) != 1 || wake.Readers[0] != sup.UserID {
		t.Fatalf("wake-ups %+v", wake)
	}
	if head(sup) <= supHead || head(other) != otherHead {
		t.Fatal("a mark did not move the supervisor's feed, or moved another's")
	}
	page, err := db.Pull(ctx, sup, study.PullRequest{Cursor: supHead})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 1 || page.Entries[0].ID != id || len(page.Reads) != 1 || page.Reads[0] != (study.ReadState{Entry: id, Read: true, Clock: at}) {
		t.Fatalf("pull after the mark: %d entries, reads %+v", len(page.Entries), page.Reads)
	}
	// The other supervisor's pull carries no read state of SUP-1's.
	page, _ = db.Pull(ctx, other, study.PullRequest{})
	if len(page.Reads) != 0 {
		t.Fatalf("SUP-2 pulled SUP-1's read marks: %+v", page.Reads)
	}
	// The same request again changes nothing.
	h := head(sup)
	results, _, _ = db.MarkRead(ctx, sup, []study.ReadMark{{Entry: id, Read: true, Clock: at}})
	if results[0].Outcome != study.OutcomeDuplicate || head(sup) != h {
		t.Fatalf("repeated mark: %+v, head moved %v", results, head(sup) != h)
	}
	t.Run("ErrNotSupervisor", func(t *testing.T) {
		results, _, _ := db.MarkRead(ctx, nav, []study.ReadMark{{Entry: id, Read: true, Clock: at}})
		if results[0].Reason != study.RefusedNotPermitted {
			t.Fatalf("navigator's mark: %+v", results)
		}
		if _, _, err := db.MarkRead(ctx, sup, make([]study.ReadMark, study.MaxReadMarks+1)); syncengine.ErrorCode(err) != syncengine.ETOOLARGE {
			t.Fatalf("too many marks: %v", err)
		}
	})
	t.Run("Erased", func(t *testing.T) {
		if _, _, err := db.EraseEntry(ctx, id); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := rawDB(db).QueryRow(`SELECT count(*) FROM read_marks`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("read marks left after erasure: %d, %v", n, err)
		}
	})
}

// TestStore_Inbox: a supervisor's inbox holds what is shared with them
// now, newest date first, with filters, read state and pages; a guessed
// id of anything else is not found.
func TestStore_Inbox(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	navA := MustEnroll(t, db, study.RoleNavigator, "PN-A")
	navB := MustEnroll(t, db, study.RoleNavigator, "PN-B")
	navC := MustEnroll(t, db, study.RoleNavigator, "PN-C") // not assigned
	sup := MustEnroll(t, db, study.RoleSupervisor, "SUP-1")
	MustAssign(t, db, "SUP-1", "PN-A")
	MustAssign(t, db, "SUP-1", "PN-B")
	clock := syncengine.NewClock(nil)
	write := func(who *study.Identity, date string, shared bool, tags ...string) syncengine.EntryID {
		id := syncengine.NewEntryID()
		mk := func(c syncengine.Change) study.Incoming {
			c.Entry, c.Replica, c.Clock = id, who.Replica, clock.Now()
			return study.Incoming{Change: c}
		}
		in := []study.Incoming{mk(syncengine.Change{Field: syncengine.FieldTitle, Text: "t " + date}), mk(syncengine.Change{Field: syncengine.FieldDate, Text: date})}
		for _, tag := range tags {
			in = append(in, mk(syncengine.Change{Field: syncengine.FieldTag, Tag: tag, Flag: true}))
		}
		if shared {
			in = append(in, mk(syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: true}))
		}
		MustPush(t, db, who, in)
		return id
	}
	a1 := write(navA, "2026-03-01", true, "housing")
	a2 := write(navA, "2026-03-03", true)
	aPrivate := write(navA, "2026-03-04", false)
	b1 := write(navB, "2026-03-02", true, "housing", "health")
	cShared := write(navC, "2026-03-05", true)

	ids := func(p *study.InboxPage) []syncengine.EntryID {
		var out []syncengine.EntryID
		for _, it := range p.Items {
			out = append(out, it.Entry.ID)
		}
		return out
	}
	inbox := func(q study.InboxQuery) *study.InboxPage {
		t.Helper()
		p, err := db.Inbox(ctx, sup, q)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	eq := func(got, want []syncengine.EntryID) bool { return fmt.Sprint(got) == fmt.Sprint(want) }
	if got := ids(inbox(study.InboxQuery{})); !eq(got, []syncengine.EntryID{a2, b1, a1}) {
		t.Fatalf("inbox %v, want a2 b1 a1", got)
	}
	t.Run("Filters", func(t *testing.T) {
		for _, tc := range []struct {
			q    study.InboxQuery
			want []syncengine.EntryID
		}{
			{study.InboxQuery{Navigator: "PN-B"}, []syncengine.EntryID{b1}},
			{study.InboxQuery{Navigator: "PN-C"}, nil},
			{study.InboxQuery{Tag: "housing"}, []syncengine.EntryID{b1, a1}},
			{study.InboxQuery{Tag: "health", Navigator: "PN-A"}, nil},
			{study.InboxQuery{From: "2026-03-02", To: "2026-03-02"}, []syncengine.EntryID{b1}},
		} {
			if got := ids(inbox(tc.q)); !eq(got, tc.want) {
				t.Errorf("%+v: %v, want %v", tc.q, got, tc.want)
			}
		}
	})
	t.Run("Pages", func(t *testing.T) {
		p1 := inbox(study.InboxQuery{PageSize: 2})
		if !eq(ids(p1), []syncengine.EntryID{a2, b1}) || p1.Next == "" {
			t.Fatalf("page 1: %v next %q", ids(p1), p1.Next)
		}
		p2 := inbox(study.InboxQuery{PageSize: 2, PageToken: p1.Next})
		if !eq(ids(p2), []syncengine.EntryID{a1}) || p2.Next != "" {
			t.Fatalf("page 2: %v next %q", ids(p2), p2.Next)
		}
		if _, err := db.Inbox(ctx, sup, study.InboxQuery{PageToken: "nonsense"}); syncengine.ErrorCode(err) != syncengine.EINVALID {
			t.Fatalf("bad token: %v", err)
		}
	})
	t.Run("Unread", func(t *testing.T) {
		if _, _, err := db.MarkRead(ctx, sup, []study.ReadMark{{Entry: b1, Read: true, Clock: clock.Now()}}); err != nil {
			t.Fatal(err)
		}
		p := inbox(study.InboxQuery{})
		for _, it := range p.Items {
			if it.Read != (it.Entry.ID == b1) || it.Read == it.ReadAt.IsZero() {
				t.Fatalf("entry %s: read %v at %v", it.Entry.ID, it.Read, it.ReadAt)
			}
		}
		if got := ids(inbox(study.InboxQuery{Unread: true})); !eq(got, []syncengine.EntryID{a2, a1}) {
			t.Fatalf("unread: %v", got)
		}
	})
	t.Run("Entry", func(t *testing.T) {
		it, err := db.InboxEntry(ctx, sup, b1)
		if err != nil || it.Entry.ID != b1 || !it.Read || !it.Entry.HasTag("health") {
			t.Fatalf("InboxEntry = %+v, %v", it, err)
		}
		// The supervisor's view: no replica ids.
		if !it.Entry.Title.Replica.IsZero() {
			t.Fatal("the inbox entry shows replica ids")
		}
		for name, id := range map[string]syncengine.EntryID{"private": aPrivate, "unassigned": cShared, "unknown": syncengine.NewEntryID()} {
			if _, err := db.InboxEntry(ctx, sup, id); syncengine.ErrorCode(err) != syncengine.ENOTFOUND {
				t.Errorf("%s entry: %v, want ENOTFOUND", name, err)
			}
		}
		if _, err := db.InboxEntry(ctx, navA, a1); syncengine.ErrorCode(err) != syncengine.EPERMISSION {
			t.Fatalf("a navigator's inbox: %v", err)
		}
	})
	t.Run("Unshared", func(t *testing.T) {
		MustPush(t, db, navA, []study.Incoming{{Change: syncengine.Change{Entry: a2, Field: syncengine.FieldShareSupervisor, Flag: false, Stamp: syncengine.Stamp{Clock: clock.Now(), Replica: navA.Replica}}}})
		if got := ids(inbox(study.InboxQuery{})); !eq(got, []syncengine.EntryID{b1, a1}) {
			t.Fatalf("after unsharing: %v", got)
		}
		if _, err := db.InboxEntry(ctx, sup, a2); syncengine.ErrorCode(err) != syncengine.ENOTFOUND {
			t.Fatalf("unshared entry: %v", err)
		}
	})
}

// TestStore_InboxScanLimit: a tag filter that leaves out most entries
// stops after InboxScanLimit entries with a token to go on, and going on
// finds the rest.
func TestStore_InboxScanLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a few thousand entries")
	}
	ctx := context.Background()
	db := MustOpenDBWith(t, storetest.Options{Synchronous: "NORMAL"})
	nav := MustEnroll(t, db, study.RoleNavigator, "PN-A")
	sup := MustEnroll(t, db, study.RoleSupervisor, "SUP-1")
	MustAssign(t, db, "SUP-1", "PN-A")
	clock := syncengine.NewClock(nil)
	var in []study.Incoming
	var tagged syncengine.EntryID
	n := study.InboxScanLimit + 50
	for i := range n {
		id := syncengine.NewEntryID()
		mk := func(c syncengine.Change) study.Incoming {
			c.Entry, c.Replica, c.Clock = id, nav.Replica, clock.Now()
			return study.Incoming{Change: c}
		}
		in = append(in, mk(syncengine.Change{Field: syncengine.FieldDate, Text: "2026-03-01"}), mk(syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: true}))
		if i == 0 { // the oldest id: last in the inbox's order
			tagged = id
			in = append(in, mk(syncengine.Change{Field: syncengine.FieldTag, Tag: "rare", Flag: true}))
		}
		if len(in) >= study.MaxPushChanges-3 {
			MustPush(t, db, nav, in)
			in = nil
		}
	}
	MustPush(t, db, nav, in)
	p, err := db.Inbox(ctx, sup, study.InboxQuery{Tag: "rare"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 0 || p.Next == "" {
		t.Fatalf("first page: %d items, next %q; want none yet and a token", len(p.Items), p.Next)
	}
	p, err = db.Inbox(ctx, sup, study.InboxQuery{Tag: "rare", PageToken: p.Next})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 1 || p.Items[0].Entry.ID != tagged || p.Next != "" {
		t.Fatalf("second page: %d items, next %q", len(p.Items), p.Next)
	}
}

func TestStore_QueryAudit(t *testing.T) {
	ctx := context.Background()
	clk := newTestClock()
	db := MustOpenDBWith(t, storetest.Options{Now: clk.Now})
	admin := study.NewContext(ctx, &study.Identity{StudyCode: "ADMIN", Role: study.RoleAdmin})
	if _, err := db.CreateUser(admin, "PN-A", study.RoleNavigator, ""); err != nil {
		t.Fatal(err)
	}
	start := clk.Now()
	clk.Advance(time.Minute)
	MustEnrollDevice(t, db, study.RoleNavigator, "PN-A")
	MustEnrollDevice(t, db, study.RoleNavigator, "PN-A")
	count := func(q study.AuditQuery) int {
		t.Helper()
		var n int
		for {
			events, next, err := db.QueryAudit(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			n += len(events)
			if next == "" {
				return n
			}
			q.PageToken = next
		}
	}
	for _, tc := range []struct {
		q    study.AuditQuery
		want int
	}{
		{study.AuditQuery{Actor: "ADMIN"}, 1},
		{study.AuditQuery{Action: "device.enrol"}, 2},
		{study.AuditQuery{Action: "device."}, 3}, // two enrolments, one approval
		{study.AuditQuery{Action: "code."}, 2},
		{study.AuditQuery{Action: "device"}, 0},
		{study.AuditQuery{Subject: "PN-A", Action: "user.create"}, 1},
		{study.AuditQuery{Until: start.Add(time.Second)}, 1},
		{study.AuditQuery{Since: start.Add(time.Second)}, 5},
		{study.AuditQuery{PageSize: 1}, 6},
	} {
		if got := count(tc.q); got != tc.want {
			t.Errorf("%+v: %d events, want %d", tc.q, got, tc.want)
		}
	}
}

func TestStore_DeviceClock(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	nav := MustEnroll(t, db, study.RoleNavigator, "PN-A")
	if c, err := db.DeviceClock(ctx, nav.DeviceID); err != nil || c != 0 {
		t.Fatalf("a new device's clock: %v, %v", c, err)
	}
	clock := syncengine.NewClock(nil)
	in := entryChanges(nav.Replica, clock, false, false)
	MustPush(t, db, nav, in)
	want := in[len(in)-1].Change.Clock
	// A refused change whose refusal is kept counts too.
	ahead := syncengine.TimestampAt(time.Now().Add(time.Hour))
	refused := study.Incoming{Change: syncengine.Change{Entry: in[0].Change.Entry, Field: syncengine.FieldTitle, Text: "x", Stamp: syncengine.Stamp{Clock: ahead, Replica: nav.Replica}}}
	if r, _, err := db.Push(ctx, nav, []study.Incoming{refused}); err != nil || r[0].Reason != study.RefusedClockAhead {
		t.Fatalf("push ahead: %+v %v", r, err)
	}
	if c, err := db.DeviceClock(ctx, nav.DeviceID); err != nil || c != ahead || c <= want {
		t.Fatalf("DeviceClock = %v, %v; want the refused clock %v", c, err, ahead)
	}
}
