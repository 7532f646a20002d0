package console

import (
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// adminNotices are the messages of a redirect after a change; the
// redirect carries only their key and a study code, wave number or
// device id.
var adminNotices = map[string]string{
	"user-created":     "Created %s. Issue an enrolment code to let them enrol a phone or sign in here.",
	"user-deactivated": "Deactivated %s: every device and console session of theirs was revoked.",
	"assigned":         "Assigned %s.",
	"unassigned":       "Removed the assignment of %s.",
	"wave-created":     "Defined wave %s.",
	"wave-updated":     "Updated wave %s.",
	"revoked":          "Revoked device %s: it is refused at its next request.",
}

func noticeOf(r *http.Request) string {
	q := r.URL.Query()
	msg, ok := adminNotices[q.Get("done")]
	if !ok {
		return ""
	}
	return strings.Replace(msg, "%s", q.Get("subject"), 1)
}

func redirectDone(w http.ResponseWriter, r *http.Request, path, done, subject string) {
	http.Redirect(w, r, Prefix+path+"?done="+done+"&subject="+url.QueryEscape(subject), http.StatusSeeOther)
}

type roleChoice struct {
	Value    int
	Label    string
	Selected bool
}

func roleChoices(selected study.Role) []roleChoice {
	var out []roleChoice
	for _, r := range []study.Role{study.RoleNavigator, study.RoleSupervisor, study.RoleResearcher, study.RoleAdmin} {
		out = append(out, roleChoice{int(r), r.String(), r == selected})
	}
	return out
}

type usersData struct {
	Users []*study.User
	Next  string
	Form  struct {
		Code, Name string
		Roles      []roleChoice
	}
}

func (c *Console) usersView(r *http.Request, s *session, token string) (*usersData, error) {
	users, next, err := c.db.ListUsers(r.Context(), 50, token)
	if err != nil {
		return nil, err
	}
	d := &usersData{Users: users, Next: next}
	d.Form.Roles = roleChoices(study.RoleNavigator)
	return d, nil
}

func (c *Console) users(w http.ResponseWriter, r *http.Request, s *session) {
	d, err := c.usersView(r, s, r.URL.Query().Get("page"))
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "users", &view{Title: "People", Session: s, Notice: noticeOf(r), Data: d})
}

func (c *Console) createUser(w http.ResponseWriter, r *http.Request, s *session) {
	code := strings.TrimSpace(r.PostFormValue("study_code"))
	name := r.PostFormValue("display_name")
	role, _ := strconv.Atoi(r.PostFormValue("role"))
	u, err := c.db.CreateUser(r.Context(), code, study.Role(role), name)
	if err == nil {
		redirectDone(w, r, "admin/users", "user-created", u.StudyCode)
		return
	}
	if !formError(err) {
		c.fail(w, r, s, err)
		return
	}
	d, lerr := c.usersView(r, s, "")
	if lerr != nil {
		c.fail(w, r, s, lerr)
		return
	}
	d.Form.Code, d.Form.Name, d.Form.Roles = code, name, roleChoices(study.Role(role))
	c.render(w, r, statusOf[syncengine.ErrorCode(err)], "users", &view{Title: "People", Session: s, Error: upperFirst(syncengine.ErrorMessage(err)) + ".", Data: d})
}

// formError reports whether err is about what was typed, to show on the
// form rather than on an error page.
func formError(err error) bool {
	switch syncengine.ErrorCode(err) {
	case syncengine.EINVALID, syncengine.ETOOLARGE, syncengine.EEXISTS, syncengine.ECONFLICT, syncengine.ENOTFOUND:
		return true
	}
	return false
}

type confirmData struct {
	Action   string // the form's action
	Question string
	Detail   string
	Button   string
	Back     string
	Fields   map[string]string
	Typed    string // when set, the person must type this to confirm
}

func (c *Console) confirm(w http.ResponseWriter, r *http.Request, s *session, status int, title string, d *confirmData, errMsg string) {
	c.render(w, r, status, "confirm", &view{Title: title, Session: s, Error: errMsg, Data: d})
}

func (c *Console) pathUser(w http.ResponseWriter, r *http.Request, s *session) (*study.User, bool) {
	u, err := c.db.UserByCode(r.Context(), r.PathValue("code"))
	if err != nil {
		if code := syncengine.ErrorCode(err); code == syncengine.ENOTFOUND || code == syncengine.EINVALID {
			c.notFoundFor(w, r, s)
		} else {
			c.fail(w, r, s, err)
		}
		return nil, false
	}
	return u, true
}

func (c *Console) deactivatePage(w http.ResponseWriter, r *http.Request, s *session) {
	u, ok := c.pathUser(w, r, s)
	if !ok {
		return
	}
	c.confirm(w, r, s, http.StatusOK, "Deactivate "+u.StudyCode, &confirmData{
		Action:   Prefix + "admin/users/" + url.PathEscape(u.StudyCode) + "/deactivate",
		Question: "Deactivate " + u.StudyCode + "?",
		Detail:   "Every device and console session of theirs is revoked at once, and no new enrolment code can be issued for them. Their entries stay; erasing them is separate.",
		Button:   "Deactivate " + u.StudyCode,
		Back:     Prefix + "admin/users",
	}, "")
}

func (c *Console) deactivate(w http.ResponseWriter, r *http.Request, s *session) {
	u, ok := c.pathUser(w, r, s)
	if !ok {
		return
	}
	if _, _, err := c.db.DeactivateUser(r.Context(), u.StudyCode); err != nil {
		if formError(err) {
			c.render(w, r, statusOf[syncengine.ErrorCode(err)], "error", &view{Title: "Not deactivated", Session: s, Error: upperFirst(syncengine.ErrorMessage(err)) + "."})
			return
		}
		c.fail(w, r, s, err)
		return
	}
	c.hub.WakeAll()
	redirectDone(w, r, "admin/users", "user-deactivated", u.StudyCode)
}

func (c *Console) resetPage(w http.ResponseWriter, r *http.Request, s *session) {
	u, ok := c.pathUser(w, r, s)
	if !ok {
		return
	}
	c.confirm(w, r, s, http.StatusOK, "Reset the account of "+u.StudyCode, &confirmData{
		Action:   Prefix + "admin/users/" + url.PathEscape(u.StudyCode) + "/reset",
		Question: "Reset the account of " + u.StudyCode + "?",
		Detail: "For a person who lost their only device or forgot their console passphrase: every device of theirs is revoked (each is told, at its next request, that an administrator reset the account), " +
			"every browser they are signed in with is signed out, their console passphrase is forgotten, and codes issued for them and not used stop working. " +
			"You get a new one-time code to give them, which enrols one device or a first console sign-in without approval. The reset is recorded in the audit log with you as the actor, and in their activity.",
		Button: "Reset and issue a new code",
		Back:   Prefix + "admin/users",
	}, "")
}

// reset is the audited account reset (Store.ResetUser): it revokes the
// person's devices and console sessions, clears their passphrase and
// shows the new code, which needs no approval.
func (c *Console) reset(w http.ResponseWriter, r *http.Request, s *session) {
	u, ok := c.pathUser(w, r, s)
	if !ok {
		return
	}
	res, err := c.db.ResetUser(r.Context(), u.StudyCode, 0)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.hub.WakeAll()
	notice := "Reset the account of " + res.User.StudyCode + ": " + strconv.Itoa(res.DevicesRevoked) + " device(s) and console session(s) revoked. The code below needs no approval."
	c.renderCode(w, r, s, &codesData{StudyCode: res.User.StudyCode, TTLs: ttlChoices("")}, res.Code, res.Expires, notice)
}

type assignmentsData struct {
	Assignments []*study.Assignment
	Next        string
	Supervisor  string
	Form        struct{ Supervisor, Navigator string }
}

func (c *Console) assignmentsView(r *http.Request, supervisor, token string) (*assignmentsData, error) {
	list, next, err := c.db.ListAssignments(r.Context(), 50, token, supervisor)
	if err != nil {
		return nil, err
	}
	return &assignmentsData{Assignments: list, Next: next, Supervisor: supervisor}, nil
}

func (c *Console) assignments(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	v := &view{Title: "Assignments", Session: s, Notice: noticeOf(r)}
	d, err := c.assignmentsView(r, strings.TrimSpace(q.Get("supervisor")), q.Get("page"))
	if formError(err) {
		v.Error = upperFirst(syncengine.ErrorMessage(err)) + "."
		d, err = c.assignmentsView(r, "", "")
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	v.Data = d
	c.render(w, r, http.StatusOK, "assignments", v)
}

func (c *Console) assign(w http.ResponseWriter, r *http.Request, s *session) {
	sup, nav := strings.TrimSpace(r.PostFormValue("supervisor")), strings.TrimSpace(r.PostFormValue("navigator"))
	created, supID, err := c.db.Assign(r.Context(), sup, nav)
	if err == nil {
		if created {
			c.hub.Notify(&study.Wakeups{Readers: []int64{supID}})
		}
		redirectDone(w, r, "admin/assignments", "assigned", nav+" to "+sup)
		return
	}
	if !formError(err) {
		c.fail(w, r, s, err)
		return
	}
	d, lerr := c.assignmentsView(r, "", "")
	if lerr != nil {
		c.fail(w, r, s, lerr)
		return
	}
	d.Form.Supervisor, d.Form.Navigator = sup, nav
	c.render(w, r, statusOf[syncengine.ErrorCode(err)], "assignments", &view{Title: "Assignments", Session: s, Error: upperFirst(syncengine.ErrorMessage(err)) + ".", Data: d})
}

func (c *Console) unassign(w http.ResponseWriter, r *http.Request, s *session) {
	sup, nav := r.PostFormValue("supervisor"), r.PostFormValue("navigator")
	removed, supID, err := c.db.Unassign(r.Context(), sup, nav)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if removed {
		c.hub.Notify(&study.Wakeups{Readers: []int64{supID}})
	}
	redirectDone(w, r, "admin/assignments", "unassigned", nav+" from "+sup)
}

type wavesData struct {
	Waves []*study.Wave
	Next  string
	Form  study.Wave
	Edit  bool
}

func (c *Console) wavesView(r *http.Request, token string) (*wavesData, error) {
	waves, next, err := c.db.ListWaves(r.Context(), 50, token)
	if err != nil {
		return nil, err
	}
	d := &wavesData{Waves: waves, Next: next}
	if len(waves) > 0 && token == "" {
		d.Form.Number = waves[len(waves)-1].Number + 1
	} else if token == "" {
		d.Form.Number = 1
	}
	return d, nil
}

func (c *Console) waves(w http.ResponseWriter, r *http.Request, s *session) {
	d, err := c.wavesView(r, r.URL.Query().Get("page"))
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "waves", &view{Title: "Interview waves", Session: s, Notice: noticeOf(r), Data: d})
}

func waveForm(r *http.Request) study.Wave {
	n, _ := strconv.ParseUint(r.PostFormValue("number"), 10, 32)
	return study.Wave{Number: uint32(n), Label: r.PostFormValue("label"), Start: r.PostFormValue("start"), End: r.PostFormValue("end")}
}

func (c *Console) createWave(w http.ResponseWriter, r *http.Request, s *session) {
	wave := waveForm(r)
	got, err := c.db.CreateWave(r.Context(), wave)
	if err == nil {
		redirectDone(w, r, "admin/waves", "wave-created", strconv.FormatUint(uint64(got.Number), 10))
		return
	}
	if !formError(err) {
		c.fail(w, r, s, err)
		return
	}
	d, lerr := c.wavesView(r, "")
	if lerr != nil {
		c.fail(w, r, s, lerr)
		return
	}
	d.Form = wave
	c.render(w, r, statusOf[syncengine.ErrorCode(err)], "waves", &view{Title: "Interview waves", Session: s, Error: upperFirst(syncengine.ErrorMessage(err)) + ".", Data: d})
}

func (c *Console) pathWave(w http.ResponseWriter, r *http.Request, s *session) (*study.Wave, bool) {
	n, err := strconv.ParseUint(r.PathValue("n"), 10, 32)
	if err == nil && n > 0 {
		waves, _, err := c.db.ListWaves(r.Context(), 1, study.EncodeIntPageToken(int64(n-1)))
		if err != nil {
			c.fail(w, r, s, err)
			return nil, false
		}
		if len(waves) == 1 && uint64(waves[0].Number) == n {
			return waves[0], true
		}
	}
	c.notFoundFor(w, r, s)
	return nil, false
}

func (c *Console) editWavePage(w http.ResponseWriter, r *http.Request, s *session) {
	wave, ok := c.pathWave(w, r, s)
	if !ok {
		return
	}
	c.render(w, r, http.StatusOK, "wave-edit", &view{Title: "Edit wave " + strconv.Itoa(int(wave.Number)), Session: s, Data: &wavesData{Form: *wave, Edit: true}})
}

func (c *Console) editWave(w http.ResponseWriter, r *http.Request, s *session) {
	old, ok := c.pathWave(w, r, s)
	if !ok {
		return
	}
	wave := waveForm(r)
	wave.Number = old.Number
	if _, err := c.db.UpdateWave(r.Context(), wave); err != nil {
		if !formError(err) {
			c.fail(w, r, s, err)
			return
		}
		c.render(w, r, statusOf[syncengine.ErrorCode(err)], "wave-edit", &view{Title: "Edit wave " + strconv.Itoa(int(wave.Number)), Session: s,
			Error: upperFirst(syncengine.ErrorMessage(err)) + ".", Data: &wavesData{Form: wave, Edit: true}})
		return
	}
	redirectDone(w, r, "admin/waves", "wave-updated", strconv.FormatUint(uint64(wave.Number), 10))
}

type ttlChoice struct {
	Value    string
	Label    string
	Selected bool
}

type codesData struct {
	StudyCode string
	TTLs      []ttlChoice
	Issued    *issuedCode
}

type issuedCode struct {
	StudyCode string
	Code      string
	Expires   time.Time
	Link      string
	QR        template.HTML
}

var codeTTLs = []ttlChoice{{"1h", "1 hour", false}, {"24h", "24 hours", true}, {"168h", "7 days", false}}

func ttlChoices(selected string) []ttlChoice {
	out := make([]ttlChoice, len(codeTTLs))
	for i, t := range codeTTLs {
		t.Selected = t.Value == selected || (selected == "" && t.Value == "24h")
		out[i] = t
	}
	return out
}

func (c *Console) codesPage(w http.ResponseWriter, r *http.Request, s *session) {
	d := &codesData{StudyCode: r.URL.Query().Get("user"), TTLs: ttlChoices("")}
	c.render(w, r, http.StatusOK, "codes", &view{Title: "Enrolment codes", Session: s, Data: d})
}

func (c *Console) issueCode(w http.ResponseWriter, r *http.Request, s *session) {
	code := strings.TrimSpace(r.PostFormValue("study_code"))
	ttl, err := time.ParseDuration(r.PostFormValue("ttl"))
	if err != nil {
		ttl = study.DefaultCodeTTL
	}
	c.showCode(w, r, s, code, ttl, "")
}

// showCode issues an enrolment code and shows it as text and as a QR
// code of its enrolment link. The code is a credential: it is shown in
// the answer to a post, never put in a URL.
func (c *Console) showCode(w http.ResponseWriter, r *http.Request, s *session, studyCode string, ttl time.Duration, notice string) {
	d := &codesData{StudyCode: studyCode, TTLs: ttlChoices(r.PostFormValue("ttl"))}
	code, expires, err := c.db.IssueEnrollmentCode(r.Context(), studyCode, ttl)
	if err != nil {
		if !formError(err) {
			c.fail(w, r, s, err)
			return
		}
		c.render(w, r, statusOf[syncengine.ErrorCode(err)], "codes", &view{Title: "Enrolment codes", Session: s, Notice: notice, Error: upperFirst(syncengine.ErrorMessage(err)) + ".", Data: d})
		return
	}
	if u, err := c.db.UserByCode(r.Context(), studyCode); err == nil {
		studyCode = u.StudyCode
	}
	d.StudyCode = studyCode
	c.renderCode(w, r, s, d, code, expires, notice)
}

// renderCode shows an issued code as text, as a link and as a QR code.
func (c *Console) renderCode(w http.ResponseWriter, r *http.Request, s *session, d *codesData, code string, expires time.Time, notice string) {
	link := study.EnrolLink(c.publicBase(r), code)
	qr, err := qrSVG(link, "QR code of the enrolment link for "+d.StudyCode+": scan it with the diary app")
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d.Issued = &issuedCode{StudyCode: d.StudyCode, Code: code, Expires: expires, Link: link, QR: qr}
	c.render(w, r, http.StatusOK, "codes", &view{Title: "Enrolment codes", Session: s, Notice: notice, Data: d})
}

type devicesData struct {
	Devices []*study.Device
	Next    string
	User    string
}

func (c *Console) devices(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	user := strings.TrimSpace(q.Get("user"))
	v := &view{Title: "Devices", Session: s, Notice: noticeOf(r)}
	list, next, err := c.db.ListDevices(r.Context(), 50, q.Get("page"), user)
	if formError(err) {
		v.Error = upperFirst(syncengine.ErrorMessage(err)) + "."
		list, next, err = c.db.ListDevices(r.Context(), 50, "", "")
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	v.Data = &devicesData{Devices: list, Next: next, User: user}
	c.render(w, r, http.StatusOK, "devices", v)
}

func (c *Console) revokePage(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if syncengine.ValidateText("device id", id, 36, false) != nil || len(id) != 36 {
		c.notFoundFor(w, r, s)
		return
	}
	c.confirm(w, r, s, http.StatusOK, "Revoke a device", &confirmData{
		Action:   Prefix + "admin/devices/" + id + "/revoke",
		Question: "Revoke device " + id + "?",
		Detail:   "It is refused at its next request: a phone must be enrolled again with a new code, a browser must sign in again. What it has not synced yet stays on it.",
		Button:   "Revoke the device",
		Back:     Prefix + "admin/devices",
	}, "")
}

func (c *Console) revoke(w http.ResponseWriter, r *http.Request, s *session) {
	d, err := c.db.RevokeDevice(r.Context(), r.PathValue("id"))
	if err != nil {
		if code := syncengine.ErrorCode(err); code == syncengine.ENOTFOUND || code == syncengine.EINVALID {
			c.notFoundFor(w, r, s)
			return
		}
		c.fail(w, r, s, err)
		return
	}
	c.hub.WakeAll()
	redirectDone(w, r, "admin/devices", "revoked", d.PublicID)
}

func (c *Console) erasePage(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, http.StatusOK, "erase", &view{Title: "Erase", Session: s})
}

// eraseTarget reads what an erase form names: an entry id or a
// navigator's study code.
func eraseTarget(r *http.Request) (kind, target string) {
	if id := strings.TrimSpace(r.PostFormValue("entry")); id != "" {
		return "entry", strings.ToLower(id)
	}
	return "navigator", strings.TrimSpace(r.PostFormValue("navigator"))
}

// eraseConfirm is the step between asking and erasing: it checks what
// was named and asks the administrator to type it again.
func (c *Console) eraseConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	kind, target := eraseTarget(r)
	again := func(err error) {
		c.render(w, r, statusOf[syncengine.ErrorCode(err)], "erase", &view{Title: "Erase", Session: s, Error: upperFirst(syncengine.ErrorMessage(err)) + "."})
	}
	d := &confirmData{Action: Prefix + "admin/erase/confirm", Back: Prefix + "admin/erase", Fields: map[string]string{kind: target}, Typed: target}
	switch kind {
	case "entry":
		if _, err := syncengine.ParseEntryID(target); err != nil {
			again(err)
			return
		}
		d.Question = "Erase entry " + target + "?"
		d.Detail = "Its content leaves the server's state and history at once, every device and reader that holds it drops it at its next sync, and it can never be written again. This cannot be undone."
		d.Button = "Erase the entry"
	default:
		u, err := c.db.UserByCode(r.Context(), target)
		if err == nil {
			err = study.CheckErasable(u)
		}
		if err != nil {
			again(err)
			return
		}
		target = u.StudyCode
		d.Fields, d.Typed = map[string]string{kind: target}, target
		d.Question = "Erase every entry of " + target + "?"
		d.Detail = "This is their withdrawal from the study: all their entries leave the server and every device, and what their phones still hold offline is refused when it comes. Their account stays (deactivate it separately). This cannot be undone."
		d.Button = "Erase every entry of " + target
	}
	c.confirm(w, r, s, http.StatusOK, "Confirm erasure", d, "")
}

func (c *Console) erase(w http.ResponseWriter, r *http.Request, s *session) {
	kind, target := eraseTarget(r)
	if strings.TrimSpace(r.PostFormValue("typed")) != target || target == "" {
		d := &confirmData{Action: Prefix + "admin/erase/confirm", Back: Prefix + "admin/erase", Fields: map[string]string{kind: target}, Typed: target,
			Question: "Erase " + kind + " " + target + "?", Button: "Erase"}
		c.confirm(w, r, s, http.StatusBadRequest, "Confirm erasure", d, "What you typed is not "+target+": nothing was erased.")
		return
	}
	var notice string
	switch kind {
	case "entry":
		id, err := syncengine.ParseEntryID(target)
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		erased, wake, err := c.db.EraseEntry(r.Context(), id)
		if err != nil {
			if formError(err) {
				c.render(w, r, statusOf[syncengine.ErrorCode(err)], "erase", &view{Title: "Erase", Session: s, Error: upperFirst(syncengine.ErrorMessage(err)) + "."})
				return
			}
			c.fail(w, r, s, err)
			return
		}
		c.hub.Notify(wake)
		notice = "Erased entry " + target + "."
		if !erased {
			notice = "Entry " + target + " had already been erased."
		}
	default:
		n, wake, err := c.db.EraseNavigator(r.Context(), target)
		if err != nil {
			if formError(err) {
				c.render(w, r, statusOf[syncengine.ErrorCode(err)], "erase", &view{Title: "Erase", Session: s, Error: upperFirst(syncengine.ErrorMessage(err)) + "."})
				return
			}
			c.fail(w, r, s, err)
			return
		}
		c.hub.Notify(wake)
		notice = "Erased " + strconv.Itoa(n) + " entries of " + target + "."
	}
	c.render(w, r, http.StatusOK, "erase", &view{Title: "Erase", Session: s, Notice: notice})
}

type auditData struct {
	Events       []*study.AuditEvent
	Next         string
	Query        study.AuditQuery
	Since, Until string
	NextURL      string
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := &auditData{Since: q.Get("since"), Until: q.Get("until")}
	aq := study.AuditQuery{Actor: strings.TrimSpace(q.Get("actor")), Action: strings.TrimSpace(q.Get("action")), Subject: strings.TrimSpace(q.Get("subject")), PageSize: 50, PageToken: q.Get("page")}
	v := &view{Title: "Audit log", Session: s, Data: d}
	var bad error
	parse := func(s string, end bool) time.Time {
		if s == "" {
			return time.Time{}
		}
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			bad = syncengine.Errorf(syncengine.EINVALID, "dates are written YYYY-MM-DD")
			return time.Time{}
		}
		if end {
			t = t.AddDate(0, 0, 1) // the day given is included
		}
		return t
	}
	aq.Since, aq.Until = parse(d.Since, false), parse(d.Until, true)
	d.Query = aq
	var events []*study.AuditEvent
	var next string
	err := bad
	if err == nil {
		events, next, err = c.db.QueryAudit(r.Context(), aq)
	}
	if formError(err) {
		v.Error = upperFirst(syncengine.ErrorMessage(err)) + "."
		events, next, err = c.db.QueryAudit(r.Context(), study.AuditQuery{PageSize: 50})
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d.Events, d.Next = events, next
	if next != "" {
		nq := url.Values{}
		for k, val := range map[string]string{"actor": aq.Actor, "action": aq.Action, "subject": aq.Subject, "since": d.Since, "until": d.Until, "page": next} {
			if val != "" {
				nq.Set(k, val)
			}
		}
		d.NextURL = Prefix + "admin/audit?" + nq.Encode()
	}
	c.render(w, r, http.StatusOK, "audit", v)
}
