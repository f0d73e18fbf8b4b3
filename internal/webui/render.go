package webui

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// pageData is the data of every page template.
type pageData struct {
	Title string
	// Nav is the navigation entry to mark as current.
	Nav     string
	Session *session
	// Failed lists requests and grants whose revoke has not succeeded,
	// shown in a banner at the top of every page of a signed-in person.
	Failed  []failedRevoke
	Content any
	// Status and Message are set on error pages.
	Status  int
	Message string
}

// failedRevoke is one entry of the failed revocations banner.
type failedRevoke struct {
	RequestID string
	What      string
	Error     string
}

// pageNames lists the page templates; each defines "content" and is
// rendered inside layout.html.
var pageNames = []string{
	"pending.html", "request.html", "active.html", "history.html", "audit.html",
	"dashboard.html", "signin.html", "signedin.html", "error.html",
}

var templateFuncs = template.FuncMap{
	"time":     formatTime,
	"isoTime":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"duration": formatDuration,
	"until":    func(now, t time.Time) string { return formatDuration(t.Sub(now)) },
	"short":    func(s string) string { return shorten(s, 12) },
	"runLink":  runLink,
	"nonZero":  func(t time.Time) bool { return !t.IsZero() },
	"inc":      func(i int) int { return i + 1 },
}

// parsePages parses every page with the layout and the shared parts.
func parsePages() (map[string]*template.Template, error) {
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(templateFuncs).ParseFS(templateFS,
			"templates/layout.html", "templates/parts.html", path.Join("templates", name))
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render executes a page into a buffer first, so a template error becomes
// a clean 500 instead of half a page.
func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, data pageData) {
	data.Session = s
	if s != nil {
		data.Failed = u.failedRevokes(r)
	}
	var buf bytes.Buffer
	if err := u.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		u.log.ErrorContext(r.Context(), "render page failed", "template", name, "error", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (u *UI) renderError(w http.ResponseWriter, r *http.Request, s *session, status int, message string) {
	u.render(w, r, status, "error.html", s, pageData{Title: http.StatusText(status), Status: status, Message: message})
}

// maxBannerEntries bounds the banner; the history page lists the rest.
const maxBannerEntries = 20

// failedRevokes lists requests in revoke_failed and grants whose revoke
// failed. A store error is logged and leaves the banner empty.
func (u *UI) failedRevokes(r *http.Request) []failedRevoke {
	ctx := r.Context()
	var out []failedRevoke
	page, err := u.store.ListRequests(ctx, store.RequestFilter{States: []store.RequestState{store.RequestRevokeFailed}, Limit: maxBannerEntries})
	if err != nil {
		u.log.ErrorContext(ctx, "list failed revocations failed", "error", err)
		return nil
	}
	seen := map[string]bool{}
	for _, req := range page.Requests {
		seen[req.ID] = true
		out = append(out, failedRevoke{RequestID: req.ID, What: "request " + req.ID, Error: req.Error})
	}
	grants, err := u.store.NonTerminalGrants(ctx)
	if err != nil {
		u.log.ErrorContext(ctx, "list grants failed", "error", err)
		return out
	}
	for _, g := range grants {
		if g.State != store.GrantRevokeFailed || len(out) >= maxBannerEntries {
			continue
		}
		out = append(out, failedRevoke{RequestID: g.RequestID,
			What:  fmt.Sprintf("grant %s (role %s at %s, %d attempts)", g.AssignmentName, g.RoleID, g.Scope, g.Attempts),
			Error: g.LastError})
	}
	return out
}

// formatTime shows a time in UTC to the second, or "" for a zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// formatDuration shows a duration to the second as hours, minutes and
// seconds, leaving out zero units: 1h5m, 15m, 2m30s.
func formatDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	d = d.Round(time.Second)
	h, m, sec := d/time.Hour, (d%time.Hour)/time.Minute, (d%time.Minute)/time.Second
	var b strings.Builder
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if sec > 0 || b.Len() == 0 {
		fmt.Fprintf(&b, "%ds", sec)
	}
	return b.String()
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// runLink returns the run URL when it is an https URL, else "", so a
// stored value can never become a javascript: or data: link.
func runLink(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return ""
	}
	return u.String()
}
