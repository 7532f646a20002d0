package console

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/diarysync/diarysync/study"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// view is what every page template gets.
type view struct {
	Title   string
	Session *session
	CSRF    string
	// Notice is a success message, Error an error message (shown with
	// role="alert").
	Notice, Error string
	Data          any
}

// Role helpers for the layout's navigation; a session waiting for
// approval has none of its role's pages yet.
func (v *view) Supervisor() bool { return v.active() && v.Session.Role == study.RoleSupervisor }
func (v *view) Researcher() bool { return v.active() && v.Session.Role == study.RoleResearcher }
func (v *view) Admin() bool      { return v.active() && v.Session.Role == study.RoleAdmin }

func (v *view) active() bool { return v.Session != nil && !v.Session.Pending }

type pages struct {
	byName map[string]*template.Template
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"datetime": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"join":     strings.Join,
	"paragraphs": func(s string) []string {
		var out []string
		for _, p := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n\n") {
			if strings.TrimSpace(p) != "" {
				out = append(out, p)
			}
		}
		return out
	},
	"untitled": func(s string) string {
		if strings.TrimSpace(s) == "" {
			return "(untitled)"
		}
		return s
	},
}

func loadPages() (*pages, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{byName: map[string]*template.Template{}}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", base, err)
		}
		p.byName[base] = t
	}
	return p, nil
}

// render writes a page. The page is rendered into memory first, so a
// template error becomes a clean 500, never half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, v *view) {
	c.renderTemplate(w, r, status, name, "layout", v)
}

// renderFragment writes one named block of a page, for the console's
// script.
func (c *Console) renderFragment(w http.ResponseWriter, r *http.Request, name, block string, v *view) {
	c.renderTemplate(w, r, http.StatusOK, name, block, v)
}

func (c *Console) renderTemplate(w http.ResponseWriter, r *http.Request, status int, name, block string, v *view) {
	t := c.pages.byName[name]
	if t == nil {
		c.log.ErrorContext(r.Context(), "console: no such template", "template", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if v.CSRF == "" && v.Session != nil {
		v.CSRF = csrfToken(v.Session.token)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, block, v); err != nil {
		c.log.ErrorContext(r.Context(), "console: cannot render", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

var staticTypes = map[string]string{
	".css": "text/css; charset=utf-8",
	".js":  "text/javascript; charset=utf-8",
}

func (c *Console) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	typ, ok := staticTypes[path.Ext(name)]
	b, err := staticFS.ReadFile("static/" + name)
	if !ok || err != nil || strings.Contains(name, "/") {
		c.notFound(w, r)
		return
	}
	w.Header().Set("Content-Type", typ)
	w.Write(b)
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("cannot make a random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
