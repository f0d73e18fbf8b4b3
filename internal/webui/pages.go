package webui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/approval"
	"github.com/elevate-dev/elevate/internal/policy"
	"github.com/elevate-dev/elevate/internal/store"
)

// maxListed bounds the requests one page lists; the history page pages on.
const maxListed = 200

// maxCommentRunes bounds a review comment.
const maxCommentRunes = 2000

// requestCard is one request as shown to a reviewer.
type requestCard struct {
	Request    store.Request
	Table      approval.Table
	TableError string
	Approvals  []store.Approval
	// Claims are the requester's token claims, sorted by name.
	Claims [][2]string
	// Own is set when the signed-in person is the requester under any of
	// the names policy gives the requester. OwnAs is the matching name.
	Own   bool
	OwnAs string
	// MyVerdict is the signed-in person's earlier verdict, if any.
	MyVerdict string
	CSRF      string
	Admin     bool
	Now       time.Time
}

// CanReview reports whether the review form is enabled.
func (c requestCard) CanReview() bool {
	return c.Request.State == store.RequestPending && !c.Own && c.MyVerdict == "" && c.TableError == ""
}

// card loads what the request card of r shows.
func (u *UI) card(ctx context.Context, s session, r store.Request) (requestCard, error) {
	c := requestCard{Request: r, CSRF: s.CSRF, Admin: s.Admin, Now: u.now()}
	c.OwnAs, c.Own = ownRequest(s, r)
	var err error
	if c.Table, err = u.tables.table(ctx, r); err != nil {
		// The page still shows the request, but no review form: what
		// would be approved cannot be shown faithfully.
		u.log.ErrorContext(ctx, "approval table failed", "request_id", r.ID, "error", err)
		c.TableError = err.Error()
	}
	if c.Approvals, err = u.store.ListApprovals(ctx, r.ID); err != nil {
		return c, fmt.Errorf("list approvals of request %s: %w", r.ID, err)
	}
	for _, a := range c.Approvals {
		if strings.EqualFold(a.Approver, s.Subject) {
			c.MyVerdict = a.Verdict
		}
	}
	for _, k := range sortedKeys(r.Claims) {
		c.Claims = append(c.Claims, [2]string{k, r.Claims[k]})
	}
	return c, nil
}

// ownRequest reports whether s is the requester of r, comparing the way
// policy does: the subject, "github:" + actor and "principal:" + principal
// id, equal as written or after the "kind:" prefix, so user:alice cannot
// review a run that github:alice started. The broker refuses it too.
func ownRequest(s session, r store.Request) (string, bool) {
	mine := []string{s.Subject}
	if s.ObjectID != "" {
		mine = append(mine, "principal:"+s.ObjectID)
	}
	theirs := policy.RequesterIdentities(policy.Input{
		Requester: map[string]string{"sub": r.Requester, "actor": r.Claims["actor"], "triggering_actor": r.Claims["triggering_actor"]},
		Principal: r.Principal.ID,
	})
	for _, a := range mine {
		for _, b := range theirs {
			if policy.IsRequester(a, []string{b}) {
				return b, true
			}
		}
	}
	return "", false
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// pendingPage lists the requests waiting for approval, oldest first, each
// with its approval table and review form.
func (u *UI) pendingPage(w http.ResponseWriter, r *http.Request, s session) error {
	page, err := u.store.ListRequests(r.Context(), store.RequestFilter{States: []store.RequestState{store.RequestPending}, Limit: maxListed})
	if err != nil {
		return fmt.Errorf("list pending requests: %w", err)
	}
	slices.Reverse(page.Requests)
	cards := make([]requestCard, 0, len(page.Requests))
	for _, req := range page.Requests {
		c, err := u.card(r.Context(), s, req)
		if err != nil {
			return err
		}
		cards = append(cards, c)
	}
	u.render(w, r, http.StatusOK, "pending.html", &s, pageData{Title: "Pending requests", Nav: "pending",
		Content: map[string]any{"Cards": cards, "More": page.Next != ""}})
	return nil
}

// requestPage shows one request with its approvals and leases.
func (u *UI) requestPage(w http.ResponseWriter, r *http.Request, s session) error {
	req, err := u.store.GetRequest(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	c, err := u.card(r.Context(), s, req)
	if err != nil {
		return err
	}
	leases, err := u.store.ListLeases(r.Context(), store.LeaseFilter{RequestID: req.ID})
	if err != nil {
		return fmt.Errorf("list leases of request %s: %w", req.ID, err)
	}
	u.render(w, r, http.StatusOK, "request.html", &s, pageData{Title: "Request " + req.ID,
		Content: map[string]any{"Card": c, "Leases": leases}})
	return nil
}

// review records an approve or deny verdict from the review form.
func (u *UI) review(w http.ResponseWriter, r *http.Request, s session) error {
	id := r.PathValue("id")
	verdict := r.PostForm.Get("verdict")
	comment := strings.TrimSpace(r.PostForm.Get("comment"))
	req, err := u.store.GetRequest(r.Context(), id)
	if err != nil {
		return err
	}
	if as, own := ownRequest(s, req); own {
		u.log.WarnContext(r.Context(), "self-review rejected", "request_id", id, "subject", s.Subject, "requester_as", as)
		return &userError{http.StatusForbidden, fmt.Sprintf(
			"You cannot review request %s: you are its requester (as %s). Another approver must review it.", id, as)}
	}
	switch {
	case verdict == "deny" && comment == "":
		return &userError{http.StatusBadRequest, "Missing comment: say why the request is denied."}
	case len([]rune(comment)) > maxCommentRunes:
		return &userError{http.StatusBadRequest, fmt.Sprintf("The comment has %d characters; use at most %d.", len([]rune(comment)), maxCommentRunes)}
	}
	// The hash is the one the page showed, so the verdict binds to what
	// the reviewer saw; the store rejects it if the request changed.
	updated, err := u.svc.Review(r.Context(), s.identity(), id, verdict, r.PostForm.Get("request_hash"), comment)
	if err != nil && !(updated.ID != "" && updated.State == store.RequestGrantFailed) {
		return err
	}
	u.log.InfoContext(r.Context(), "request reviewed", "request_id", id, "subject", s.Subject, "verdict", verdict, "state", updated.State)
	http.Redirect(w, r, "/requests/"+url.PathEscape(id), http.StatusSeeOther)
	return nil
}

// activePage lists active grants with the time left, counting down.
func (u *UI) activePage(w http.ResponseWriter, r *http.Request, s session) error {
	page, err := u.store.ListRequests(r.Context(), store.RequestFilter{
		States: []store.RequestState{store.RequestActive, store.RequestRevoking, store.RequestRevokeFailed}, Limit: maxListed})
	if err != nil {
		return fmt.Errorf("list active requests: %w", err)
	}
	// Soonest to expire first.
	slices.SortStableFunc(page.Requests, func(a, b store.Request) int { return a.ExpiresAt.Compare(b.ExpiresAt) })
	entries := make([]activeEntry, len(page.Requests))
	for i, req := range page.Requests {
		entries[i] = activeEntry{Request: req, Rows: u.rows(r.Context(), req)}
	}
	grants, err := u.store.ActiveGrants(r.Context())
	if err != nil {
		return fmt.Errorf("list active grants: %w", err)
	}
	u.render(w, r, http.StatusOK, "active.html", &s, pageData{Title: "Active grants", Nav: "active",
		Content: map[string]any{"Entries": entries, "Grants": grants, "Now": u.now(), "CSRF": s.CSRF, "Admin": s.Admin}})
	return nil
}

// activeEntry is one row of the active grants page or the history page.
type activeEntry struct {
	Request store.Request
	// Rows name the roles and resources, or show the ids when the
	// approval table cannot be built.
	Rows []approval.Row
}

// rows returns the approval table rows of r, with ids in place of names
// when the table cannot be built.
func (u *UI) rows(ctx context.Context, r store.Request) []approval.Row {
	t, err := u.tables.table(ctx, r)
	if err == nil {
		return t.Rows
	}
	u.log.WarnContext(ctx, "approval table failed", "request_id", r.ID, "error", err)
	rows := make([]approval.Row, len(r.Pairs))
	for i, p := range r.Pairs {
		rows[i] = approval.Row{RoleID: p.RoleID, ResourceID: p.Scope}
	}
	return rows
}

// revoke ends an active request now. The broker allows it to admins only.
func (u *UI) revoke(w http.ResponseWriter, r *http.Request, s session) error {
	id := r.PathValue("id")
	updated, err := u.svc.Revoke(r.Context(), s.identity(), id)
	if err != nil && updated.State != store.RequestRevokeFailed {
		return err
	}
	u.log.InfoContext(r.Context(), "request revoked", "request_id", id, "subject", s.Subject, "state", updated.State)
	http.Redirect(w, r, "/requests/"+url.PathEscape(id), http.StatusSeeOther)
	return nil
}

// historyFilter is the history page's form, echoed back into it.
type historyFilter struct {
	Requester, Role, Scope, State, From, To string
}

// filter parses the form into a store filter. From and To are dates
// (2006-01-02) in UTC; To includes its whole day.
func (f historyFilter) filter() (store.RequestFilter, error) {
	sf := store.RequestFilter{Requester: f.Requester, RoleID: strings.ToLower(f.Role), ScopePrefix: f.Scope, Limit: maxListed}
	if f.State != "" {
		st := store.RequestState(f.State)
		if !slices.Contains(store.RequestStates, st) {
			return sf, &userError{http.StatusBadRequest, fmt.Sprintf("Unknown state %q.", f.State)}
		}
		sf.States = []store.RequestState{st}
	}
	for _, d := range []struct {
		value string
		out   *time.Time
		add   time.Duration
	}{{f.From, &sf.CreatedAfter, 0}, {f.To, &sf.CreatedBefore, 24 * time.Hour}} {
		if d.value == "" {
			continue
		}
		t, err := time.Parse(time.DateOnly, d.value)
		if err != nil {
			return sf, &userError{http.StatusBadRequest, fmt.Sprintf("Invalid date %q: use YYYY-MM-DD.", d.value)}
		}
		*d.out = t.Add(d.add)
	}
	return sf, nil
}

// historyPage lists requests newest first, filtered, a page at a time.
func (u *UI) historyPage(w http.ResponseWriter, r *http.Request, s session) error {
	q := r.URL.Query()
	f := historyFilter{Requester: strings.TrimSpace(q.Get("requester")), Role: strings.TrimSpace(q.Get("role")),
		Scope: strings.TrimSpace(q.Get("scope")), State: q.Get("state"), From: q.Get("from"), To: q.Get("to")}
	sf, err := f.filter()
	if err != nil {
		return err
	}
	sf.Cursor = q.Get("cursor")
	page, err := u.store.ListRequests(r.Context(), sf)
	if err != nil {
		return fmt.Errorf("list requests: %w", err)
	}
	next := ""
	if page.Next != "" {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("cursor", page.Next)
		next = "/history?" + nq.Encode()
	}
	entries := make([]activeEntry, len(page.Requests))
	for i, req := range page.Requests {
		entries[i] = activeEntry{Request: req, Rows: u.rows(r.Context(), req)}
	}
	u.render(w, r, http.StatusOK, "history.html", &s, pageData{Title: "History", Nav: "history",
		Content: map[string]any{"Filter": f, "Entries": entries, "Next": next, "States": store.RequestStates, "Admin": s.Admin}})
	return nil
}

// Bounds of the audit trail scan: the store reads the chain in order only.
const (
	auditPageSize = 1000
	maxAuditScan  = 200_000
)

// auditPage shows the audit events of one request. Admins only, as the
// API's audit log is.
func (u *UI) auditPage(w http.ResponseWriter, r *http.Request, s session) error {
	if !s.Admin {
		return &userError{http.StatusForbidden, "Reading the audit log needs an admin."}
	}
	req, err := u.store.GetRequest(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	events, truncated, err := u.requestAudit(r.Context(), req.ID)
	if err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "audit.html", &s, pageData{Title: "Audit trail of " + req.ID,
		Content: map[string]any{"Request": req, "Events": events, "Truncated": truncated}})
	return nil
}

// requestAudit collects the events of one request from the chain.
//
// NOTE: the store has no index of events by request, so this reads the
// chain from the start, up to maxAuditScan events. Later events of a
// request in a longer chain are not shown, and the page warns about it.
func (u *UI) requestAudit(ctx context.Context, requestID string) ([]store.AuditEvent, bool, error) {
	var out []store.AuditEvent
	var from int64
	for scanned := 0; scanned < maxAuditScan; {
		events, err := u.store.AuditRange(ctx, from, auditPageSize)
		if err != nil {
			return nil, false, fmt.Errorf("read audit events from %d: %w", from, err)
		}
		for _, e := range events {
			if e.RequestID == requestID {
				out = append(out, e)
			}
		}
		scanned += len(events)
		if len(events) < auditPageSize {
			return out, false, nil
		}
		from = events[len(events)-1].Seq + 1
	}
	return out, true, nil
}

// dashboardPage shows counts and charts of the last dashboardDays days.
func (u *UI) dashboardPage(w http.ResponseWriter, r *http.Request, s session) error {
	st, err := u.stats(r.Context())
	if err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "dashboard.html", &s, pageData{Title: "Dashboard", Nav: "dashboard", Content: st})
	return nil
}
