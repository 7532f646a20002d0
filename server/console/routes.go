package console

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

var (
	supervisors = []study.Role{study.RoleSupervisor}
	researchers = []study.Role{study.RoleResearcher}
	admins      = []study.Role{study.RoleAdmin}
	everyone    = []study.Role{study.RoleSupervisor, study.RoleResearcher, study.RoleAdmin}
)

// handlerFunc serves a page for a signed-in person.
type handlerFunc func(w http.ResponseWriter, r *http.Request, s *session)

func (c *Console) routes() {
	m := http.NewServeMux()
	c.mux = m
	m.HandleFunc("GET /console/static/{file}", c.static)
	m.Handle("GET /console/{$}", c.page(everyone, c.home))
	m.Handle("GET /console/signin", c.open(c.signinPage))
	m.Handle("POST /console/signin", c.open(c.signin))
	m.Handle("GET /console/setup", c.open(c.setupPage))
	m.Handle("POST /console/setup", c.open(c.setup))
	m.Handle("POST /console/signout", c.page(everyone, c.signout))
	m.Handle("GET /console/account", c.page(everyone, c.account))
	m.Handle("POST /console/account/devices/{id}/{action}", c.page(everyone, c.ownDeviceAction))

	m.Handle("GET /console/inbox", c.page(supervisors, c.inbox))
	m.Handle("POST /console/inbox", c.page(supervisors, c.inbox))
	m.Handle("GET /console/events", c.page(supervisors, c.events))
	m.Handle("GET /console/entries/{id}", c.page(supervisors, c.entry))
	m.Handle("POST /console/entries/{id}/read", c.page(supervisors, c.markRead))
	m.Handle("POST /console/entries/{id}/feedback", c.page(supervisors, c.writeFeedback))
	m.Handle("GET /console/entries/{id}/feedback/{fid}/edit", c.page(supervisors, c.editFeedbackPage))
	m.Handle("POST /console/entries/{id}/feedback/{fid}", c.page(supervisors, c.editFeedback))
	m.Handle("POST /console/entries/{id}/feedback/{fid}/delete", c.page(supervisors, c.deleteFeedback))

	m.Handle("GET /console/export", c.page(researchers, c.exportPage))
	m.Handle("POST /console/export/preview", c.page(researchers, c.exportPreview))
	m.Handle("POST /console/export/download", c.page(researchers, c.exportDownload))

	m.Handle("GET /console/admin/users", c.page(admins, c.users))
	m.Handle("POST /console/admin/users", c.page(admins, c.createUser))
	m.Handle("GET /console/admin/users/{code}/deactivate", c.page(admins, c.deactivatePage))
	m.Handle("POST /console/admin/users/{code}/deactivate", c.page(admins, c.deactivate))
	m.Handle("GET /console/admin/users/{code}/reset", c.page(admins, c.resetPage))
	m.Handle("POST /console/admin/users/{code}/reset", c.page(admins, c.reset))
	m.Handle("GET /console/admin/assignments", c.page(admins, c.assignments))
	m.Handle("POST /console/admin/assignments", c.page(admins, c.assign))
	m.Handle("POST /console/admin/assignments/remove", c.page(admins, c.unassign))
	m.Handle("GET /console/admin/waves", c.page(admins, c.waves))
	m.Handle("POST /console/admin/waves", c.page(admins, c.createWave))
	m.Handle("GET /console/admin/waves/{n}/edit", c.page(admins, c.editWavePage))
	m.Handle("POST /console/admin/waves/{n}", c.page(admins, c.editWave))
	m.Handle("GET /console/admin/codes", c.page(admins, c.codesPage))
	m.Handle("POST /console/admin/codes", c.page(admins, c.issueCode))
	m.Handle("GET /console/admin/devices", c.page(admins, c.devices))
	m.Handle("GET /console/admin/devices/{id}/revoke", c.page(admins, c.revokePage))
	m.Handle("POST /console/admin/devices/{id}/revoke", c.page(admins, c.revoke))
	m.Handle("GET /console/admin/erase", c.page(admins, c.erasePage))
	m.Handle("POST /console/admin/erase", c.page(admins, c.eraseConfirm))
	m.Handle("POST /console/admin/erase/confirm", c.page(admins, c.erase))
	m.Handle("GET /console/admin/audit", c.page(admins, c.audit))

	// Anything else under /console/, and a page of another role, is the
	// same 404.
	m.Handle("/console/", http.HandlerFunc(c.notFound))
}

func (c *Console) shuttingDown() bool {
	if c.hub == nil {
		return false
	}
	select {
	case <-c.hub.Done():
		return true
	default:
		return false
	}
}

// wantsFragment reports whether the request is the console's own script
// asking for part of a page: it gets a status, never a redirect.
func wantsFragment(r *http.Request) bool { return r.Header.Get("X-Console-Fragment") != "" }

// page wraps a handler for signed-in people of the given roles.
func (c *Console) page(roles []study.Role, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.shuttingDown() {
			c.fail(w, r, nil, errShuttingDown)
			return
		}
		s, err := c.loadSession(r)
		var ended errSessionEnded
		switch {
		case errors.As(err, &ended):
			c.clearCookie(w, r, sessionCookie)
			if wantsFragment(r) || r.URL.Path == Prefix+"events" {
				http.Error(w, ended.Error(), http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, Prefix+"signin?ended="+string(ended.reason), http.StatusSeeOther)
			return
		case err != nil:
			c.fail(w, r, nil, err)
			return
		case s == nil:
			if wantsFragment(r) || r.URL.Path == Prefix+"events" {
				http.Error(w, "sign in first", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
			return
		}
		if d, ok := r.Context().Value(logDeviceKey{}).(*string); ok {
			*d = s.Device
		}
		if !slices.Contains(roles, s.Role) {
			c.notFoundFor(w, r, s)
			return
		}
		// A first console sign-in of someone who already had a device
		// waits for one of their devices to approve it, as a new phone
		// does (study.CheckOperation): until then it may only sign out.
		if s.Pending && !(r.Method == http.MethodPost && r.URL.Path == Prefix+"signout") {
			c.awaitingApproval(w, r, s)
			return
		}
		if r.Method == http.MethodPost {
			if err := c.checkPost(w, r); err != nil {
				c.fail(w, r, s, err)
				return
			}
			if !checkCSRF(r, s.token) {
				c.fail(w, r, s, errCSRF)
				return
			}
		}
		ctx := context.WithValue(r.Context(), sessionKey{}, s)
		ctx = study.NewContext(ctx, s.identity())
		h(w, r.WithContext(ctx), s)
	})
}

// open wraps the sign-in pages: they need no session, and their forms
// carry a CSRF token derived from a cookie of their own.
func (c *Console) open(h func(w http.ResponseWriter, r *http.Request, pre string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.shuttingDown() {
			c.fail(w, r, nil, errShuttingDown)
			return
		}
		pre := ""
		if ck, err := r.Cookie(preCookie); err == nil && len(ck.Value) == 43 {
			pre = ck.Value
		}
		if r.Method == http.MethodPost {
			if err := c.checkPost(w, r); err != nil {
				c.fail(w, r, nil, err)
				return
			}
			if !checkCSRF(r, pre) {
				c.fail(w, r, nil, errCSRF)
				return
			}
		}
		if pre == "" {
			var err error
			if pre, err = randomToken(); err != nil {
				c.fail(w, r, nil, err)
				return
			}
			c.setCookie(w, r, preCookie, pre)
		}
		h(w, r, pre)
	})
}

var (
	errCSRF         = syncengine.Errorf(syncengine.EPERMISSION, "this form has expired or did not come from this console: reload the page and try again")
	errShuttingDown = syncengine.Errorf(syncengine.EUNAVAILABLE, "the server is shutting down: try again in a minute")
	errNotFound     = syncengine.Errorf(syncengine.ENOTFOUND, "there is no such page, or it is not one you may see")
)

func (c *Console) notFound(w http.ResponseWriter, r *http.Request) {
	s, _ := c.loadSession(r)
	c.notFoundFor(w, r, s)
}

func (c *Console) notFoundFor(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, http.StatusNotFound, "error", &view{Title: "Not found", Session: s, Error: syncengine.ErrorMessage(errNotFound)})
}

// statusOf maps an application error to an HTTP status.
var statusOf = map[syncengine.Code]int{
	syncengine.EINVALID:         http.StatusBadRequest,
	syncengine.ETOOLARGE:        http.StatusRequestEntityTooLarge,
	syncengine.ENOTFOUND:        http.StatusNotFound,
	syncengine.EEXISTS:          http.StatusConflict,
	syncengine.ECONFLICT:        http.StatusConflict,
	syncengine.EPERMISSION:      http.StatusForbidden,
	syncengine.EUNAUTHENTICATED: http.StatusUnauthorized,
	syncengine.ERATELIMIT:       http.StatusTooManyRequests,
	syncengine.EUNAVAILABLE:     http.StatusServiceUnavailable,
	syncengine.EINTERNAL:        http.StatusInternalServerError,
}

// fail renders an error page. Application errors show their message;
// anything else is logged with its cause and shown as an internal error.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	if errors.Is(err, errCrossSite) {
		c.render(w, r, http.StatusForbidden, "error", &view{Title: "Refused", Session: s, Error: "this form was sent from another site, so it was refused"})
		return
	}
	code := syncengine.ErrorCode(err)
	msg := syncengine.ErrorMessage(err)
	if code == syncengine.EINTERNAL {
		if !errors.Is(err, context.Canceled) {
			c.log.ErrorContext(r.Context(), "console internal error", "route", routeOf(r), "err", err)
		}
		msg = "something went wrong on the server; it was logged. Try again, and tell the study's administrator if it goes on"
	}
	title := "Something went wrong"
	switch code {
	case syncengine.ENOTFOUND:
		title = "Not found"
	case syncengine.EUNAVAILABLE:
		title = "Unavailable"
	case syncengine.ERATELIMIT:
		title = "Slow down"
	case syncengine.EPERMISSION:
		title = "Refused"
	}
	c.render(w, r, statusOf[code], "error", &view{Title: title, Session: s, Error: msg})
}

func (c *Console) home(w http.ResponseWriter, r *http.Request, s *session) {
	switch s.Role {
	case study.RoleSupervisor:
		http.Redirect(w, r, Prefix+"inbox", http.StatusSeeOther)
	case study.RoleResearcher:
		http.Redirect(w, r, Prefix+"export", http.StatusSeeOther)
	default:
		http.Redirect(w, r, Prefix+"admin/users", http.StatusSeeOther)
	}
}
