package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/store"
)

// requestView converts a stored request to its API form.
func requestView(r store.Request) brokerclient.Request {
	v := brokerclient.Request{
		ID: r.ID, State: string(r.State), Requester: r.Requester, Claims: r.Claims,
		Principal:     brokerclient.Principal{ID: r.Principal.ID, Type: r.Principal.Type},
		Pairs:         make([]brokerclient.Pair, len(r.Pairs)),
		Justification: r.Justification, Duration: r.Duration.String(), Metadata: r.Metadata,
		Hash: r.Hash, Backend: r.Backend,
		Decision: brokerclient.Decision{
			Outcome: r.Decision.Outcome, RuleID: r.Decision.RuleID, RequiredApprovals: r.Decision.RequiredApprovals,
			Groups: r.Decision.Groups, BreakGlass: r.Decision.BreakGlass, EachGroup: r.Decision.EachGroup,
			Message: r.Decision.Message,
		},
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		ApprovalDeadline: timePtr(r.ApprovalDeadline), GrantedAt: timePtr(r.GrantedAt),
		ExpiresAt: timePtr(r.ExpiresAt), EndedAt: timePtr(r.EndedAt),
		Error: r.Error, Version: r.Version,
	}
	if r.Decision.MaxDuration > 0 {
		v.Decision.MaxDuration = r.Decision.MaxDuration.String()
	}
	for i, p := range r.Pairs {
		v.Pairs[i] = brokerclient.Pair{RoleID: p.RoleID, Scope: p.Scope}
	}
	return v
}

func approvalView(a store.Approval) brokerclient.Approval {
	return brokerclient.Approval{Approver: a.Approver, Groups: a.Groups, Verdict: a.Verdict,
		Comment: a.Comment, RequestHash: a.RequestHash, CreatedAt: a.CreatedAt}
}

func leaseView(l store.Lease) brokerclient.Lease {
	return brokerclient.Lease{ID: l.ID, GrantID: l.GrantID, State: l.State, ExpiresAt: l.ExpiresAt,
		ReleasedAt: timePtr(l.ReleasedAt)}
}

func grantView(g store.Grant) brokerclient.Grant {
	return brokerclient.Grant{ID: g.ID, PrincipalID: g.PrincipalID, PrincipalType: g.PrincipalType,
		RoleID: g.RoleID, Scope: g.Scope, RequestID: g.RequestID, AssignmentName: g.AssignmentName,
		AssignmentID: g.AssignmentID, Backend: g.Backend, PreExisting: g.PreExisting, State: string(g.State),
		Attempts: g.Attempts, LastError: g.LastError, GrantedAt: timePtr(g.GrantedAt)}
}

func auditView(e store.AuditEvent) brokerclient.AuditEvent {
	return brokerclient.AuditEvent{Seq: e.Seq, Time: e.Time, RequestID: e.RequestID, Event: e.Event,
		Actor: e.Actor, Detail: e.Detail, PrevHash: e.PrevHash, Hash: e.Hash}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// AccessRequest rebuilds the access.Request a stored request was made
// from. Its Hash must equal the stored hash, which is what makes the
// rendered table the thing reviewers approve.
func AccessRequest(r store.Request) (access.Request, error) {
	req := access.Request{
		ID:            r.ID,
		Principal:     access.Principal{ID: r.Principal.ID, Type: r.Principal.Type},
		Justification: r.Justification,
		Duration:      r.Duration,
		CreatedAt:     r.CreatedAt,
	}
	// The stored metadata uses the JSON names of access.Metadata.
	data, err := json.Marshal(r.Metadata)
	if err != nil {
		return req, fmt.Errorf("encode metadata of request %s: %w", r.ID, err)
	}
	if err := json.Unmarshal(data, &req.Metadata); err != nil {
		return req, fmt.Errorf("decode metadata of request %s: %w", r.ID, err)
	}
	for _, p := range r.Pairs {
		scope, err := access.ParseResourceID(p.Scope)
		if err != nil {
			return req, fmt.Errorf("stored scope of request %s: %w", r.ID, err)
		}
		req.Pairs = append(req.Pairs, access.Pair{RoleID: p.RoleID, Scope: scope})
	}
	if got := req.Hash(); got != r.Hash {
		return req, fmt.Errorf("request %s: stored hash %s does not match its fields (%s)", r.ID, r.Hash, got)
	}
	return req, nil
}

// renderedTable is a request's approval table in both formats.
type renderedTable struct {
	markdown string
	json     json.RawMessage
}

// maxCachedTables bounds tableCache. A request's table never changes,
// because the hash fixes every field shown, so entries are never stale.
const maxCachedTables = 1024

// tableCache keeps rendered tables by request id and hash, so polling
// clients do not cost name lookups in Azure on every call.
type tableCache struct {
	mu     sync.Mutex
	tables map[string]renderedTable
}

// table renders the approval table of r, with role and resource names
// looked up in Azure. A failed lookup shows the id and a warning.
func (a *API) table(ctx context.Context, r store.Request) (renderedTable, error) {
	key := r.ID + "/" + r.Hash
	a.tables.mu.Lock()
	t, ok := a.tables.tables[key]
	a.tables.mu.Unlock()
	if ok {
		return t, nil
	}
	req, err := AccessRequest(r)
	if err != nil {
		return t, err
	}
	engine := a.svc.cfg.Engine
	refs := make([]access.RoleRef, len(req.Pairs))
	scopes := make([]access.ResourceID, len(req.Pairs))
	for i, p := range req.Pairs {
		refs[i] = access.RoleRef{GUID: p.RoleID}
		scopes[i] = p.Scope
	}
	resolved, err := engine.ResolveRoles(ctx, refs, lifecycle.LookupScope(scopes))
	if err != nil {
		return t, fmt.Errorf("resolve roles of request %s: %w", r.ID, err)
	}
	roles := make(map[string]lifecycle.Role, len(resolved))
	for _, role := range resolved {
		roles[role.GUID] = role
	}
	table := engine.Describe(ctx, req, roles)
	table.Backend = r.Backend
	js, err := table.JSON()
	if err != nil {
		return t, err
	}
	t = renderedTable{markdown: table.Markdown(), json: js}
	a.tables.mu.Lock()
	if len(a.tables.tables) >= maxCachedTables {
		clear(a.tables.tables)
	}
	a.tables.tables[key] = t
	a.tables.mu.Unlock()
	return t, nil
}

// detail builds the full response about one request.
func (a *API) detail(ctx context.Context, r store.Request) (brokerclient.RequestDetail, error) {
	d := brokerclient.RequestDetail{Request: requestView(r), RequestHash: r.Hash,
		Approvals: []brokerclient.Approval{}, Leases: []brokerclient.Lease{}}
	st := a.svc.cfg.Store
	approvals, err := st.ListApprovals(ctx, r.ID)
	if err != nil {
		return d, fmt.Errorf("list approvals of request %s: %w", r.ID, err)
	}
	for _, ap := range approvals {
		d.Approvals = append(d.Approvals, approvalView(ap))
	}
	leases, err := st.ListLeases(ctx, store.LeaseFilter{RequestID: r.ID})
	if err != nil {
		return d, fmt.Errorf("list leases of request %s: %w", r.ID, err)
	}
	for _, l := range leases {
		d.Leases = append(d.Leases, leaseView(l))
	}
	t, err := a.table(ctx, r)
	if err != nil {
		return d, err
	}
	d.TableMarkdown, d.Table = t.markdown, t.json
	return d, nil
}
