package console

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// hashWait bounds how long a sign-in waits for a free hashing slot.
const hashWait = 10 * time.Second

type signinData struct {
	StudyCode string
	Code      string
	Ended     string // why the last session ended, to say so
}

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request, pre string) {
	v := &view{Title: "Sign in", CSRF: csrfToken(pre), Data: &signinData{}}
	if reason := study.SessionEnd(r.URL.Query().Get("ended")); reason != "" {
		if msg := study.SessionEndMessage(reason); msg != "" {
			v.Notice = upperFirst(msg) + "."
		}
	}
	if r.URL.Query().Get("signedout") == "1" {
		v.Notice = "You signed out."
	}
	c.render(w, r, http.StatusOK, "signin", v)
}

func (c *Console) setupPage(w http.ResponseWriter, r *http.Request, pre string) {
	c.render(w, r, http.StatusOK, "setup", &view{Title: "First sign-in", CSRF: csrfToken(pre), Data: &signinData{}})
}

func accountKey(code string) study.LoginKey {
	return study.LoginKey{Key: "account:" + strings.ToUpper(code), Free: study.LoginFreeAccount}
}

func (c *Console) addressKey(r *http.Request) study.LoginKey {
	return study.LoginKey{Key: "address:" + c.clientAddress(r), Free: study.LoginFreeAddress}
}

// sessionName names a browser session in device lists from its user
// agent: browser and system only.
func sessionName(r *http.Request) string {
	ua := r.UserAgent()
	browser := "Browser"
	for _, b := range []struct{ token, name string }{{"Edg/", "Edge"}, {"Firefox/", "Firefox"}, {"Chromium/", "Chromium"}, {"Chrome/", "Chrome"}, {"Safari/", "Safari"}} {
		if strings.Contains(ua, b.token) {
			browser = b.name
			break
		}
	}
	system := ""
	for _, s := range []struct{ token, name string }{{"Android", "Android"}, {"iPhone", "iOS"}, {"iPad", "iPadOS"}, {"Windows", "Windows"}, {"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"}} {
		if strings.Contains(ua, s.token) {
			system = " on " + s.name
			break
		}
	}
	return browser + system + " (web console)"
}

func (c *Console) signin(w http.ResponseWriter, r *http.Request, pre string) {
	ctx := r.Context()
	code := strings.TrimSpace(r.PostFormValue("study_code"))
	pass := r.PostFormValue("passphrase")
	v := &view{Title: "Sign in", CSRF: csrfToken(pre), Data: &signinData{StudyCode: code}}
	again := func(status int, err error) {
		v.Error = upperFirst(syncengine.ErrorMessage(err)) + "."
		c.render(w, r, status, "signin", v)
	}
	if code == "" || pass == "" {
		again(http.StatusBadRequest, syncengine.Errorf(syncengine.EINVALID, "enter your study code and your passphrase"))
		return
	}
	if len(code) > 64 || len(pass) > study.MaxPassphraseBytes {
		again(http.StatusUnauthorized, study.ErrBadLogin)
		return
	}
	account, address := accountKey(code), c.addressKey(r)
	if err := c.db.SpendLoginAttempt(ctx, []study.LoginKey{account, address}); err != nil {
		if syncengine.ErrorCode(err) == syncengine.ERATELIMIT {
			again(http.StatusTooManyRequests, err)
			return
		}
		c.fail(w, r, nil, err)
		return
	}
	hctx, cancel := context.WithTimeout(ctx, hashWait)
	defer cancel()
	hash, err := c.db.PassphraseHash(ctx, code)
	if err == study.ErrBadLogin {
		if err := c.hasher.burn(hctx, pass); err != nil && syncengine.ErrorCode(err) == syncengine.EUNAVAILABLE {
			again(http.StatusServiceUnavailable, err)
			return
		}
		again(http.StatusUnauthorized, study.ErrBadLogin)
		return
	}
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	ok, err := c.hasher.verify(hctx, pass, hash)
	if err != nil {
		if syncengine.ErrorCode(err) == syncengine.EUNAVAILABLE {
			again(http.StatusServiceUnavailable, err)
			return
		}
		c.fail(w, r, nil, err)
		return
	}
	if !ok {
		again(http.StatusUnauthorized, study.ErrBadLogin)
		return
	}
	enr, err := c.db.StartSession(ctx, code, hash, sessionName(r), c.lifetime)
	if err == study.ErrBadLogin {
		again(http.StatusUnauthorized, err)
		return
	}
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	c.signedIn(w, r, enr, account, address)
}

// signedIn sets the session cookie and takes back the attempt that
// succeeded.
func (c *Console) signedIn(w http.ResponseWriter, r *http.Request, enr *study.Enrollment, account, address study.LoginKey) {
	ctx := r.Context()
	if account.Key != "" {
		if err := c.db.RefundLoginAttempt(ctx, []string{account.Key}, true); err != nil {
			c.log.WarnContext(ctx, "cannot clear sign-in failures", "err", err)
		}
	}
	if address.Key != "" {
		if err := c.db.RefundLoginAttempt(ctx, []string{address.Key}, false); err != nil {
			c.log.WarnContext(ctx, "cannot take back a sign-in attempt", "err", err)
		}
	}
	c.clearCookie(w, r, preCookie)
	c.setCookie(w, r, sessionCookie, enr.Token)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (c *Console) setup(w http.ResponseWriter, r *http.Request, pre string) {
	ctx := r.Context()
	code := strings.TrimSpace(r.PostFormValue("code"))
	pass, pass2 := r.PostFormValue("passphrase"), r.PostFormValue("passphrase2")
	v := &view{Title: "First sign-in", CSRF: csrfToken(pre), Data: &signinData{Code: code}}
	again := func(err error) {
		v.Error = upperFirst(syncengine.ErrorMessage(err)) + "."
		status := statusOf[syncengine.ErrorCode(err)]
		c.render(w, r, status, "setup", v)
	}
	if err := study.CheckCodeForm(code); err != nil {
		again(err)
		return
	}
	if err := study.CheckPassphrase(pass, ""); err != nil {
		again(err)
		return
	}
	if pass != pass2 {
		again(syncengine.Errorf(syncengine.EINVALID, "the two passphrases are not the same: type it twice the same way"))
		return
	}
	// A console setup is an enrolment: a wrong code counts against the
	// same limit per client address as a wrong code sent to Enroll,
	// spent before the code is looked at and given back unless the code
	// was wrong.
	from := c.clientAddress(r)
	if err := c.db.TakeEnrollAttempt(ctx, from); err != nil {
		again(err)
		return
	}
	u, err := c.db.CodeUser(ctx, code)
	if err == nil || syncengine.ErrorCode(err) != syncengine.EUNAUTHENTICATED {
		if rerr := c.db.ReturnEnrollAttempt(context.WithoutCancel(ctx), from); rerr != nil {
			c.log.WarnContext(ctx, "cannot give back an enrolment attempt", "err", rerr)
		}
	}
	if err != nil {
		again(err)
		return
	}
	if !study.ConsoleRole(u.Role) {
		again(study.ErrNotConsoleRole)
		return
	}
	if err := study.CheckPassphrase(pass, u.StudyCode); err != nil {
		again(err)
		return
	}
	hctx, cancel := context.WithTimeout(ctx, hashWait)
	defer cancel()
	hash, err := c.hasher.hash(hctx, pass)
	if err != nil {
		again(err)
		return
	}
	enr, err := c.db.EnrollBrowser(ctx, code, hash, sessionName(r), c.lifetime)
	if err != nil {
		again(err)
		return
	}
	c.log.InfoContext(ctx, "console enrolled", "device", enr.Device, "study_code", enr.StudyCode, "role", enr.Role.String(), "state", enr.State.String())
	c.signedIn(w, r, enr, accountKey(enr.StudyCode), study.LoginKey{})
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.db.EndSession(r.Context(), s.DeviceID, study.EndSignOut); err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.forgetClock(s.DeviceID)
	c.hub.WakeAll() // its live inbox streams end
	c.clearCookie(w, r, sessionCookie)
	http.Redirect(w, r, Prefix+"signin?signedout=1", http.StatusSeeOther)
}

type accountData struct {
	Devices []*study.Device
	Current string
	Next    string
	// Waiting counts the devices that wait for this person's approval.
	Waiting int
}

func (c *Console) account(w http.ResponseWriter, r *http.Request, s *session) {
	devices, next, err := c.db.ListDevices(r.Context(), 50, r.URL.Query().Get("page"), s.StudyCode)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	_, waiting, err := c.db.DevicesAwaitingApproval(r.Context(), s.UserID, 0)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	v := &view{Title: "Your devices and sessions", Session: s, Data: &accountData{Devices: devices, Current: s.Device, Next: next, Waiting: waiting}}
	switch r.URL.Query().Get("done") {
	case "revoke":
		v.Notice = "The device was revoked."
	case "approve":
		v.Notice = "The device was approved: it syncs from now on, and what it wrote reaches its readers."
	case "deny":
		v.Notice = "The device was denied, and what it wrote was erased."
	}
	c.render(w, r, http.StatusOK, "account", v)
}

// awaitingApproval answers every page of a session that waits for
// approval by another of the person's devices.
func (c *Console) awaitingApproval(w http.ResponseWriter, r *http.Request, s *session) {
	if r.Method != http.MethodGet || wantsFragment(r) || r.URL.Path == Prefix+"events" {
		http.Error(w, "this browser is waiting for approval by another of your devices", http.StatusForbidden)
		return
	}
	c.render(w, r, http.StatusForbidden, "waiting", &view{Title: "Waiting for approval", Session: s})
}

// ownDeviceAction approves, denies or revokes one of the person's own
// devices (a new phone, a browser left signed in elsewhere), as the
// diary command line's "device" commands do, with this session as the
// acting device.
func (c *Console) ownDeviceAction(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, id := r.Context(), r.PathValue("id")
	var err error
	switch action := r.PathValue("action"); action {
	case "approve":
		var wake *study.Wakeups
		if _, wake, err = c.db.ApproveDevice(ctx, s.identity(), id); err == nil {
			c.hub.Notify(wake)
		}
	case "deny":
		_, err = c.db.DenyDevice(ctx, s.identity(), id)
	case "revoke":
		_, err = c.db.RevokeOwnDevice(ctx, s.identity(), id)
	default:
		c.notFoundFor(w, r, s)
		return
	}
	if syncengine.ErrorCode(err) == syncengine.ENOTFOUND || syncengine.ErrorCode(err) == syncengine.EINVALID {
		c.notFoundFor(w, r, s)
		return
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.hub.WakeAll() // a revoked or denied device's streams end, and an approved one's page looks again
	if id == s.Device {
		c.forgetClock(s.DeviceID)
		c.clearCookie(w, r, sessionCookie)
		http.Redirect(w, r, Prefix+"signin?ended=revoked", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, Prefix+"account?done="+r.PathValue("action"), http.StatusSeeOther)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
