package broker

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/store"
)

// maxIdempotencyKey bounds the Idempotency-Key header and body field.
const maxIdempotencyKey = 255

// createRequest serves POST /v1/requests. It responds 201 with the new
// request, or 200 with the stored one when the idempotency key is known.
func (a *API) createRequest(w http.ResponseWriter, r *http.Request, caller Identity) error {
	var in CreateInput
	if err := decodeBody(r, &in, false); err != nil {
		return err
	}
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		in.IdempotencyKey = key
	}
	if len(in.IdempotencyKey) > maxIdempotencyKey {
		return fmt.Errorf("%w: idempotency key of %d characters: use at most %d", ErrInvalid, len(in.IdempotencyKey), maxIdempotencyKey)
	}
	if err := checkText("idempotency key", in.IdempotencyKey, maxIdempotencyKey, false); err != nil {
		return err
	}
	status := http.StatusCreated
	if in.IdempotencyKey != "" && caller.Pipeline {
		// A replay gets 200. Create itself checks that the body is
		// the same as the first time.
		if _, err := a.svc.cfg.Store.GetRequest(r.Context(), requestID(caller.Subject, in.IdempotencyKey)); err == nil {
			status = http.StatusOK
		}
	}
	created, err := a.svc.Create(r.Context(), caller, in)
	if err = a.settled(r, created, err); err != nil {
		return err
	}
	return a.writeDetail(w, r, status, created)
}

// settled turns the error of a grant that failed after the request was
// stored into a normal response, because the request is in state grant_failed with
// the reason in its error field, which is what the caller needs to see.
func (a *API) settled(r *http.Request, req store.Request, err error) error {
	if err != nil && req.ID != "" && req.State == store.RequestGrantFailed {
		a.log.WarnContext(r.Context(), "grant failed", "request_id", req.ID, "error", err)
		return nil
	}
	return err
}

func (a *API) writeDetail(w http.ResponseWriter, r *http.Request, status int, req store.Request) error {
	d, err := a.detail(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, status, d)
	return nil
}

// getRequest serves GET /v1/requests/{id}.
func (a *API) getRequest(w http.ResponseWriter, r *http.Request, caller Identity) error {
	req, err := a.readable(r, caller)
	if err != nil {
		return err
	}
	return a.writeDetail(w, r, http.StatusOK, req)
}

// readable loads the request named in the path if caller may read it:
// people and admins read every request, pipelines only their own.
func (a *API) readable(r *http.Request, caller Identity) (store.Request, error) {
	id := r.PathValue("id")
	req, err := a.svc.cfg.Store.GetRequest(r.Context(), id)
	if err != nil {
		return req, err
	}
	if caller.Pipeline && !caller.Admin && !strings.EqualFold(caller.Subject, req.Requester) {
		return store.Request{}, fmt.Errorf("%w: request %s belongs to another requester", ErrForbidden, id)
	}
	return req, nil
}

// listRequests serves GET /v1/requests with the filters state (repeatable
// or comma-separated), requester, principal, role, scope, limit and cursor.
func (a *API) listRequests(w http.ResponseWriter, r *http.Request, caller Identity) error {
	q := r.URL.Query()
	f := store.RequestFilter{
		Requester: q.Get("requester"), PrincipalID: strings.ToLower(q.Get("principal")),
		RoleID: strings.ToLower(q.Get("role")), ScopePrefix: q.Get("scope"), Cursor: q.Get("cursor"),
	}
	for _, v := range q["state"] {
		for _, s := range strings.Split(v, ",") {
			state := store.RequestState(strings.TrimSpace(s))
			if !validState(state) {
				return fmt.Errorf("%w: unknown state %q: use one of %s", ErrInvalid, s, stateNames())
			}
			f.States = append(f.States, state)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxListLimit {
			return fmt.Errorf("%w: invalid limit %q: use 1 to %d", ErrInvalid, v, store.MaxListLimit)
		}
		f.Limit = n
	}
	if caller.Pipeline && !caller.Admin {
		if f.Requester != "" && !strings.EqualFold(f.Requester, caller.Subject) {
			return fmt.Errorf("%w: pipelines list only their own requests", ErrForbidden)
		}
		f.Requester = caller.Subject
	}
	page, err := a.svc.cfg.Store.ListRequests(r.Context(), f)
	if err != nil {
		return err
	}
	out := brokerclient.RequestList{Requests: make([]brokerclient.Request, len(page.Requests)), NextCursor: page.Next}
	for i, req := range page.Requests {
		out.Requests[i] = requestView(req)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func validState(s store.RequestState) bool {
	for _, known := range store.RequestStates {
		if s == known {
			return true
		}
	}
	return false
}

func stateNames() string {
	names := make([]string, len(store.RequestStates))
	for i, s := range store.RequestStates {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// review serves approve and deny. The body carries the hash of the request
// the reviewer was shown.
func (a *API) review(verdict string) handler {
	return func(w http.ResponseWriter, r *http.Request, caller Identity) error {
		var in brokerclient.ReviewInput
		if err := decodeBody(r, &in, false); err != nil {
			return err
		}
		if verdict == store.VerdictDeny && strings.TrimSpace(in.Comment) == "" {
			return fmt.Errorf("%w: missing comment: say why the request is denied", ErrInvalid)
		}
		req, err := a.svc.Review(r.Context(), caller, r.PathValue("id"), verdict, in.RequestHash, in.Comment)
		if err = a.settled(r, req, err); err != nil {
			return err
		}
		return a.writeDetail(w, r, http.StatusOK, req)
	}
}

// cancelRequest serves POST /v1/requests/{id}/cancel. The body is empty or {}.
func (a *API) cancelRequest(w http.ResponseWriter, r *http.Request, caller Identity) error {
	if err := decodeBody(r, &struct{}{}, true); err != nil {
		return err
	}
	req, err := a.svc.Cancel(r.Context(), caller, r.PathValue("id"))
	if err != nil {
		return err
	}
	return a.writeDetail(w, r, http.StatusOK, req)
}

// revokeRequest serves POST /v1/requests/{id}/revoke, for admins.
func (a *API) revokeRequest(w http.ResponseWriter, r *http.Request, caller Identity) error {
	if err := decodeBody(r, &struct{}{}, true); err != nil {
		return err
	}
	req, err := a.svc.Revoke(r.Context(), caller, r.PathValue("id"))
	if err != nil {
		return err
	}
	return a.writeDetail(w, r, http.StatusOK, req)
}

// extendRequest serves POST /v1/requests/{id}/extend with the new total
// duration.
func (a *API) extendRequest(w http.ResponseWriter, r *http.Request, caller Identity) error {
	var in brokerclient.ExtendInput
	if err := decodeBody(r, &in, false); err != nil {
		return err
	}
	d, err := time.ParseDuration(in.Duration)
	if err != nil || d <= 0 {
		return fmt.Errorf("%w: invalid duration %q: use a Go duration such as 30m", ErrInvalid, in.Duration)
	}
	req, err := a.svc.Extend(r.Context(), caller, r.PathValue("id"), d)
	if err != nil {
		return err
	}
	return a.writeDetail(w, r, http.StatusOK, req)
}

// listGrants serves GET /v1/grants: the active grants, for people and
// admins.
func (a *API) listGrants(w http.ResponseWriter, r *http.Request, caller Identity) error {
	if caller.Pipeline && !caller.Admin {
		return fmt.Errorf("%w: pipelines cannot list grants", ErrForbidden)
	}
	grants, err := a.svc.cfg.Store.ActiveGrants(r.Context())
	if err != nil {
		return err
	}
	out := brokerclient.GrantList{Grants: make([]brokerclient.Grant, len(grants))}
	for i, g := range grants {
		out.Grants[i] = grantView(g)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listAudit serves GET /v1/audit?from=SEQ&limit=N, for admins.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request, caller Identity) error {
	if !caller.Admin {
		return fmt.Errorf("%w: reading the audit log needs an admin", ErrForbidden)
	}
	q := r.URL.Query()
	var from int64
	if v := q.Get("from"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: invalid from %q: use a sequence number, 0 or more", ErrInvalid, v)
		}
		from = n
	}
	limit := store.DefaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxListLimit {
			return fmt.Errorf("%w: invalid limit %q: use 1 to %d", ErrInvalid, v, store.MaxListLimit)
		}
		limit = n
	}
	events, err := a.svc.cfg.Store.AuditRange(r.Context(), from, limit)
	if err != nil {
		return err
	}
	out := brokerclient.AuditPage{Events: make([]brokerclient.AuditEvent, len(events))}
	for i, e := range events {
		out.Events[i] = auditView(e)
	}
	if len(events) == limit {
		out.NextFrom = events[len(events)-1].Seq + 1
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
