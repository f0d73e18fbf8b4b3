package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/azure"
)

// Backend names besides BackendRBAC, as --backend spells them.
const (
	// BackendPIMActivate activates the principal's own PIM eligibility.
	BackendPIMActivate = "pim-activate"
	// BackendPIMAssign makes a time-bound active PIM assignment that Azure
	// ends at the deadline even if Elevate never runs again.
	BackendPIMAssign = "pim-assign"
	// BackendEntraRole grants a Microsoft Entra directory role through PIM
	// for Microsoft Graph.
	BackendEntraRole = "entra-role"
	// BackendAuto picks pim-activate for a pair the principal is eligible
	// for, else rbac.
	BackendAuto = "auto"
)

// BackendNames lists every value --backend accepts.
var BackendNames = []string{BackendRBAC, BackendPIMActivate, BackendPIMAssign, BackendEntraRole, BackendAuto}

// Entra request modes of the entra-role backend, as Graph spells the actions.
const (
	EntraSelfActivate = "selfActivate"
	EntraAdminAssign  = "adminAssign"
)

// PIM request statuses (armauthorization v2 Status values; Graph spells
// them alike) that mean a request is not finished. Those of
// awaitingApproval wait for a person, so they count against ApprovalWait.
// Those of provisioning are PIM's own work, polled up to EffectiveTimeout.
var (
	awaitingApproval = []string{azure.StatusPendingApproval, "PendingApprovalProvisioning", "PendingAdminDecision", "PendingEvaluation"}
	provisioning     = []string{"Accepted", "AdminApproved", "PendingProvisioning", "ProvisioningStarted",
		"PendingScheduleCreation", "ScheduleCreated", "PendingExternalProvisioning"}
)

// PIMClient is the part of azure.PIM the pim-activate and pim-assign
// backends use.
type PIMClient interface {
	FindEligibility(ctx context.Context, scope, principalID, roleDefinitionID string) (azure.Eligibility, error)
	Request(ctx context.Context, scope, name string, r azure.ScheduleRequest) (azure.ScheduleRequest, error)
	GetRequest(ctx context.Context, scope, name string) (azure.ScheduleRequest, error)
	CancelRequest(ctx context.Context, scope, name string) error
	ActiveInstance(ctx context.Context, scope, principalID, roleDefinitionID string) (azure.Instance, error)
	Policy(ctx context.Context, scope, roleDefinitionID string) (azure.RolePolicy, error)
}

// DirectoryClient is the part of azure.Graph the entra-role backend uses.
type DirectoryClient interface {
	FindEligibility(ctx context.Context, principalID, roleDefinitionID, directoryScopeID string) (azure.Eligibility, error)
	Request(ctx context.Context, r azure.DirectoryScheduleRequest) (azure.DirectoryScheduleRequest, error)
	GetRequest(ctx context.Context, id string) (azure.DirectoryScheduleRequest, error)
	CancelRequest(ctx context.Context, id string) error
	ActiveInstance(ctx context.Context, principalID, roleDefinitionID, directoryScopeID string) (azure.Instance, error)
	ListRequests(ctx context.Context, principalID, roleDefinitionID, directoryScopeID string) ([]azure.DirectoryScheduleRequest, error)
	Policy(ctx context.Context, roleDefinitionID string) (azure.RolePolicy, error)
}

// PIMConfig configures the PIM backends. A backend whose client is nil is
// not registered, and a grant routed to it fails with a message naming it.
type PIMConfig struct {
	// PIM serves pim-activate, pim-assign and the eligibility lookup of auto.
	PIM PIMClient
	// Graph serves entra-role.
	Graph DirectoryClient
	// DirectoryScope is the Entra directory scope id of entra-role grants:
	// "/" for the whole tenant (the default) or "/administrativeUnits/{id}".
	DirectoryScope string
	// EntraMode forces EntraSelfActivate or EntraAdminAssign; empty means
	// selfActivate when the principal is eligible, else adminAssign.
	EntraMode string
	// ApprovalWait bounds how long a grant waits for a PIM approver before
	// it cancels its request. Zero means no wait: pre-flight rejects a role
	// whose policy requires approval, and a request that still needs one is
	// canceled at once.
	ApprovalWait time.Duration
	// TicketSystem is sent with the request's ticket number, because PIM's
	// ticketing rule needs both. Default "Elevate".
	TicketSystem string
	// Planning marks a caller that only plans for the principal, which
	// signs in itself to apply, as in workflow mode. Choices and checks
	// then do not require the principal to be the caller; Grant still does.
	Planning bool
}

// CheckAndSetDefaults rejects invalid settings and fills in defaults.
func (c *PIMConfig) CheckAndSetDefaults() error {
	if c.DirectoryScope == "" {
		c.DirectoryScope = "/"
	}
	if err := checkDirectoryScope(c.DirectoryScope); err != nil {
		return err
	}
	switch c.EntraMode {
	case "", EntraSelfActivate, EntraAdminAssign:
	default:
		return fmt.Errorf("invalid Entra mode %q: use %s or %s, or leave it empty to choose by eligibility",
			c.EntraMode, EntraSelfActivate, EntraAdminAssign)
	}
	if c.ApprovalWait < 0 {
		return fmt.Errorf("invalid PIM approval wait %s: use 0 or a positive duration", c.ApprovalWait)
	}
	if c.TicketSystem == "" {
		c.TicketSystem = "Elevate"
	}
	return nil
}

// checkDirectoryScope accepts the directory scope ids Elevate grants at:
// the tenant ("/") and one administrative unit.
func checkDirectoryScope(s string) error {
	if s == "/" {
		return nil
	}
	id, ok := strings.CutPrefix(s, "/administrativeUnits/")
	if !ok || !access.IsGUID(id) {
		return fmt.Errorf("invalid directory scope %q: use / for the tenant or /administrativeUnits/{object id}", s)
	}
	return nil
}

// AddPIM registers the PIM backends whose clients cfg sets.
func (e *Engine) AddPIM(cfg PIMConfig) error {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return err
	}
	if cfg.PIM != nil {
		e.backends[BackendPIMActivate] = &pimActivateBackend{pimARM{e: e, pim: cfg.PIM, cfg: &cfg}}
		e.backends[BackendPIMAssign] = &pimAssignBackend{pimARM{e: e, pim: cfg.PIM, cfg: &cfg}}
	}
	if cfg.Graph != nil {
		e.backends[BackendEntraRole] = &entraBackend{e: e, graph: cfg.Graph, cfg: &cfg}
	}
	return nil
}

// Choice is the backend chosen for one pair and why.
type Choice struct {
	Backend string `json:"backend"`
	Reason  string `json:"reason"`
}

// ChooseBackends returns one choice per pair of req, in order. For a named
// backend every pair gets it. For auto a pair gets pim-activate when the
// principal holds an eligible schedule for exactly that role and scope and
// is the caller (or the caller is planning for it), else rbac. A failed
// eligibility lookup is an error rather than a silent fall back to rbac.
func (e *Engine) ChooseBackends(ctx context.Context, req access.Request, name string) ([]Choice, error) {
	choices := make([]Choice, len(req.Pairs))
	if name == "" {
		name = BackendRBAC
	}
	if name != BackendAuto {
		if !knownBackend(name) {
			return nil, fmt.Errorf("unknown backend %q: use one of %s", name, strings.Join(BackendNames, ", "))
		}
		for i := range choices {
			choices[i] = Choice{Backend: name, Reason: "requested with --backend " + name}
		}
		return choices, nil
	}
	activate, ok := e.backends[BackendPIMActivate].(*pimActivateBackend)
	if !ok {
		return nil, errors.New("backend auto needs the PIM client to look up eligibilities; call AddPIM first")
	}
	self := strings.EqualFold(req.Principal.ID, e.callerID) || activate.cfg.Planning
	for i, p := range req.Pairs {
		if !self || strings.EqualFold(req.Principal.Type, access.PrincipalGroup) {
			choices[i] = Choice{Backend: BackendRBAC, Reason: "auto: only the principal itself, and never a group, can activate a PIM eligibility"}
			continue
		}
		elig, err := activate.pim.FindEligibility(ctx, p.Scope.String(), req.Principal.ID, RoleDefinitionID(p.Scope, p.RoleID))
		switch {
		case err == nil && strings.EqualFold(elig.PrincipalType, access.PrincipalGroup):
			choices[i] = Choice{Backend: BackendRBAC, Reason: fmt.Sprintf(
				"auto: eligible schedule %s is a group's, and a group cannot activate a PIM eligibility", elig.Name)}
		case err == nil:
			reason := fmt.Sprintf("auto: eligible schedule %s", elig.Name)
			if !elig.End.IsZero() {
				reason += " until " + elig.End.UTC().Format(time.RFC3339)
			}
			choices[i] = Choice{Backend: BackendPIMActivate, Reason: reason}
		case errors.Is(err, azure.ErrNotFound):
			choices[i] = Choice{Backend: BackendRBAC, Reason: "auto: no eligible PIM schedule for this role at exactly this scope"}
		default:
			return nil, fmt.Errorf("choose backend for pair %d (%s): %w", i+1, p, err)
		}
	}
	return choices, nil
}

func knownBackend(name string) bool {
	for _, n := range BackendNames {
		if n == name && n != BackendAuto {
			return true
		}
	}
	return false
}

// Route makes Run, GrantAll and RevokePlanned use choices[i] for pair i of
// req. The router takes the rbac slot: Run sets each planned grant's
// Backend to its choice, GrantAll hands every grant to the router, which
// audits the choice and its reason, and revokes go by Grant.Backend.
func (e *Engine) Route(req access.Request, choices []Choice) error {
	if len(choices) != len(req.Pairs) {
		return fmt.Errorf("route grants: %d choices for %d pairs", len(choices), len(req.Pairs))
	}
	rbac := e.backends[BackendRBAC]
	if r, ok := rbac.(*router); ok {
		rbac = r.rbac
	}
	r := &router{e: e, rbac: rbac, byPair: map[string]Choice{}}
	for i, p := range req.Pairs {
		if choices[i].Backend != BackendRBAC {
			if _, ok := e.backends[choices[i].Backend]; !ok {
				return fmt.Errorf("route pair %d (%s): backend %q is not configured", i+1, p, choices[i].Backend)
			}
		}
		r.byPair[pairKey(p)] = choices[i]
	}
	e.backends[BackendRBAC] = r
	return nil
}

func pairKey(p access.Pair) string { return strings.ToLower(p.RoleID) + "\n" + p.Scope.Key() }

// router is the rbac slot of an engine whose grants go to chosen backends.
type router struct {
	e      *Engine
	rbac   Backend
	byPair map[string]Choice
}

// Grant audits the choice for the pair, then grants through it.
func (r *router) Grant(ctx context.Context, req access.Request, g *Grant) error {
	c, ok := r.byPair[pairKey(g.Pair)]
	if !ok {
		c = Choice{Backend: BackendRBAC, Reason: "no backend was chosen for this pair"}
	}
	g.Backend = c.Backend
	r.e.recordGrant(ctx, req, "backend", "ok", *g, c.Backend+": "+c.Reason)
	return r.pick(c.Backend).Grant(ctx, req, g)
}

// setChosenBackends sets the Backend of each grant to the one Route chose
// for its pair, so the request record names it before anything is granted.
// Without Route every grant stays as planned.
func (e *Engine) setChosenBackends(grants []Grant) {
	r, ok := e.backends[BackendRBAC].(*router)
	if !ok {
		return
	}
	for i := range grants {
		if c, ok := r.byPair[pairKey(grants[i].Pair)]; ok {
			grants[i].Backend = c.Backend
		}
	}
}

// granter returns what makes g: the router when Route ran, because it
// audits each pair's choice before it grants, else g's own backend.
func (e *Engine) granter(g Grant) Backend {
	if r, ok := e.backends[BackendRBAC].(*router); ok {
		return r
	}
	return e.backendOf(g)
}

func (r *router) Remove(ctx context.Context, req access.Request, g *Grant) error {
	return r.pick(g.Backend).Remove(ctx, req, g)
}

func (r *router) Exists(ctx context.Context, g Grant) (bool, error) {
	return r.pick(g.Backend).Exists(ctx, g)
}

func (r *router) pick(name string) Backend {
	if b, ok := r.e.backends[name]; ok && name != BackendRBAC && name != "" {
		return b
	}
	return r.rbac
}

// recordGrant appends an audit record about one grant whose pair names the
// grant's real backend, and logs a failed append instead of returning it.
func (e *Engine) recordGrant(ctx context.Context, req access.Request, event, outcome string, g Grant, detail string) {
	if e.audit == nil {
		return
	}
	e.recordQuiet(ctx, req, event, outcome, []Grant{g}, func(r *audit.Record) {
		r.Detail = detail
		for i := range r.Pairs {
			r.Pairs[i].Backend = orRBAC(g.Backend)
		}
	})
}

func orRBAC(name string) string {
	if name == "" {
		return BackendRBAC
	}
	return name
}

// justificationMarker starts the justification of every PIM request sent
// for the Elevate request requestID. Graph names its requests itself, so
// the marker is how FindEntraGrants finds an entra-role grant that no audit
// record names.
func justificationMarker(requestID string) string {
	return "elevate request " + strings.ToLower(requestID) + ": "
}

// requestName derives a PIM request name from the grant's deterministic
// assignment name and a purpose, so a retry finds the request it made.
func requestName(g Grant, purpose string) string {
	return uuid.NewSHA1(uuid.MustParse(access.AssignmentNamespace), []byte(strings.ToLower(g.AssignmentName)+"\n"+purpose)).String()
}

// ErrApprovalTimeout means a PIM request was still waiting for an approver
// at the deadline and was canceled.
var ErrApprovalTimeout = errors.New("PIM approval did not arrive in time")

// awaitDecision polls a PIM request while it is unfinished, with the
// engine's backoff. A request that waits for an approver is canceled once
// wait has passed, so a late approval grants nothing. One that PIM is
// still provisioning is polled up to EffectiveTimeout. It returns the
// final status.
func (e *Engine) awaitDecision(ctx context.Context, wait time.Duration, label, status string,
	get func(context.Context) (string, error), cancel func(context.Context) error) (string, error) {
	start := e.clock.Now()
	approvalDeadline, provisionDeadline := start.Add(wait), start.Add(e.opts.EffectiveTimeout)
	for attempt := 1; ; attempt++ {
		approval := slices.Contains(awaitingApproval, status)
		if !approval && !slices.Contains(provisioning, status) {
			return status, nil
		}
		deadline := provisionDeadline
		if approval {
			deadline = approvalDeadline
		}
		if !e.clock.Now().Before(deadline) {
			if !approval {
				return status, fmt.Errorf("%s is still %s after %s; read it in the Azure portal", label, status, e.opts.EffectiveTimeout)
			}
			return e.cancelPending(ctx, label, status, wait, cancel)
		}
		delay := min(e.backoff(attempt), deadline.Sub(e.clock.Now()))
		e.log.InfoContext(ctx, "PIM request not finished, polling", "request", label, "status", status, "attempt", attempt, "delay", delay)
		if err := e.sleep(ctx, delay); err != nil {
			if approval {
				_, cerr := e.cancelPending(ctx, label, status, wait, cancel)
				return status, errors.Join(fmt.Errorf("waiting for a decision on %s: %w", label, err), cerr)
			}
			return status, fmt.Errorf("waiting for %s: %w", label, err)
		}
		next, err := get(ctx)
		if err != nil {
			return status, fmt.Errorf("read %s: %w", label, err)
		}
		status = next
	}
}

// cancelPending cancels a request that still waits for an approver, on a
// context detached from ctx so that a cancelled job still withdraws it.
func (e *Engine) cancelPending(ctx context.Context, label, status string, wait time.Duration, cancel func(context.Context) error) (string, error) {
	cctx, stop := context.WithTimeout(context.WithoutCancel(ctx), e.opts.RevokeTimeout)
	defer stop()
	if err := cancel(cctx); err != nil {
		e.log.ErrorContext(ctx, "cancel PIM request failed", "request", label, "error", err)
		return status, fmt.Errorf("%w: %s still %s after %s, and canceling it failed: %w; cancel it in the Azure portal before an approver grants it",
			ErrApprovalTimeout, label, status, wait, err)
	}
	return azure.StatusCanceled, fmt.Errorf("%w: %s was still %s after %s and has been canceled; ask an approver to act within --pim-approval-wait, or raise it",
		ErrApprovalTimeout, label, status, wait)
}

// checkDecided turns a final PIM request status into an error unless it
// granted the role.
func checkDecided(label, status string) error {
	switch status {
	case azure.StatusProvisioned, azure.StatusGranted:
		return nil
	case azure.StatusDenied, "AdminDenied":
		return fmt.Errorf("%s was denied by a PIM approver", label)
	case azure.StatusCanceled:
		return fmt.Errorf("%s was canceled", label)
	}
	return fmt.Errorf("%s ended with status %q; read the request in the Azure portal for the reason", label, status)
}

// selfActivation rejects a self-activation that PIM would reject: only the
// principal itself may activate, and a group cannot. A planning caller
// skips the first rule, which apply checks.
func (e *Engine) selfActivation(req access.Request) error {
	return e.selfActivationPlanned(req, false)
}

func (e *Engine) selfActivationPlanned(req access.Request, planning bool) error {
	if strings.EqualFold(req.Principal.Type, access.PrincipalGroup) {
		return fmt.Errorf("principal %s is a group, and a group cannot activate a PIM role for itself; "+
			"activate as a member, or use --backend pim-assign", req.Principal.ID)
	}
	if !planning && !strings.EqualFold(req.Principal.ID, e.callerID) {
		return fmt.Errorf("principal %s is not the caller %s, and a PIM self-activation must come from the principal itself; "+
			"sign in as the principal, or use --backend pim-assign", req.Principal.ID, e.callerID)
	}
	return nil
}

// adoptWindow checks that an already active assignment lasts the whole
// requested window. A shorter one is rejected because PIM allows only one
// active assignment per principal, role and scope, so it would end early.
func (e *Engine) adoptWindow(req access.Request, g *Grant, inst azure.Instance) error {
	need := e.clock.Now().Add(req.Duration)
	if !inst.End.IsZero() && inst.End.Before(need) {
		return fmt.Errorf("%w: role %s at %s is already active for the principal until %s, before the requested window ends at %s; "+
			"wait until it ends, or request at most %s",
			ErrGrant, g.RoleName, scopeLabel(*g), inst.End.UTC().Format(time.RFC3339), need.UTC().Format(time.RFC3339),
			inst.End.Sub(e.clock.Now()).Truncate(time.Second))
	}
	g.PreExisting = true
	g.AssignmentID = orString(inst.RoleAssignmentID, inst.ID)
	g.EndsAt = inst.End
	g.GrantedAt = e.clock.Now()
	return nil
}

func scopeLabel(g Grant) string { return g.Pair.Scope.String() }

func orString(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// deactivation is a backend's means of ending an activation or assignment.
type deactivation struct {
	label string
	inst  azure.Instance
	// send makes one deactivation request; try counts from 1.
	send func(ctx context.Context, try int) error
}

// deactivate sends the deactivation. PIM rejects one within five minutes of
// the start (ActiveDurationTooShort). If the grant outlives that moment,
// deactivate waits for it and tries once more. Otherwise it leaves the grant
// to expire: it records the end in Grant.EndsAt and the audit log, then
// waits for the end so that the engine verifies the removal.
func (e *Engine) deactivate(ctx context.Context, req access.Request, g *Grant, d deactivation) error {
	err := d.send(ctx, 1)
	if err == nil || !errors.Is(err, azure.ErrDurationTooShort) {
		return err
	}
	activated := d.inst.Start
	if g.GrantedAt.After(activated) {
		activated = g.GrantedAt
	}
	retryAt := activated.Add(azure.MinimumActiveDuration)
	if e.opts.DeferEarlyRemoval {
		g.EndsAt = d.inst.End
		later := &RemoveLater{What: d.label, At: retryAt, EndsAt: d.inst.End}
		if !d.inst.End.IsZero() && d.inst.End.Before(retryAt) {
			later.At = d.inst.End
		}
		return later
	}
	if !d.inst.End.IsZero() && !retryAt.Before(d.inst.End) {
		g.EndsAt = d.inst.End
		e.recordGrant(ctx, req, "revoke_deferred", "ok", *g, fmt.Sprintf(
			"PIM refused to deactivate %s within %s of activation (ActiveDurationTooShort); it ends by itself at %s, no later than a retry could run, so Elevate leaves it to expire",
			d.label, azure.MinimumActiveDuration, d.inst.End.UTC().Format(time.RFC3339)))
		// Waiting for the end, within the revoke timeout, lets the engine
		// verify the removal instead of reporting a grant that may remain.
		if err := e.sleep(ctx, d.inst.End.Sub(e.clock.Now())+time.Second); err != nil {
			return fmt.Errorf("%s was left to expire at %s, and the revoke stopped waiting for that: %w", d.label, endLabel(d.inst.End), err)
		}
		return nil
	}
	e.recordGrant(ctx, req, "revoke_deferred", "ok", *g, fmt.Sprintf(
		"PIM refused to deactivate %s within %s of activation (ActiveDurationTooShort); retrying once at %s, and if that fails it ends by itself at %s",
		d.label, azure.MinimumActiveDuration, retryAt.UTC().Format(time.RFC3339), endLabel(d.inst.End)))
	e.log.InfoContext(ctx, "deactivation too early, waiting to retry", "request_id", req.ID, "retry_at", retryAt)
	if err := e.sleep(ctx, retryAt.Sub(e.clock.Now())+time.Second); err != nil {
		g.EndsAt = d.inst.End
		return fmt.Errorf("deactivate %s: waiting until %s to retry: %w; the activation ends by itself at %s",
			d.label, retryAt.UTC().Format(time.RFC3339), err, endLabel(d.inst.End))
	}
	if err := d.send(ctx, 2); err != nil {
		g.EndsAt = d.inst.End
		return fmt.Errorf("deactivate %s after the 5 minute minimum: %w; the activation ends by itself at %s", d.label, err, endLabel(d.inst.End))
	}
	return nil
}

// RemoveLater is the error of a PIM removal refused within five minutes
// of the grant's start, with DeferEarlyRemoval set: try again at At. The
// grant ends by itself at EndsAt (zero when it has no end).
type RemoveLater struct {
	What   string
	At     time.Time
	EndsAt time.Time
}

func (r *RemoveLater) Error() string {
	return fmt.Sprintf("PIM refused to remove %s within %s of its start (ActiveDurationTooShort): retry at %s; it ends by itself at %s",
		r.What, azure.MinimumActiveDuration, r.At.UTC().Format(time.RFC3339), endLabel(r.EndsAt))
}

// pimWait is how long from now the removal of PIM grants may have to wait
// for the five-minute minimum, at most. That wait is not revoke work, so
// RevokeAll adds it to the revoke timeout: with a command that ends at
// once, it alone would use up the timeout and fail a revoke that would
// succeed.
func (e *Engine) pimWait(grants []Grant) time.Duration {
	var wait time.Duration
	now := e.clock.Now()
	for _, g := range grants {
		if g.Owned() && g.Backend != "" && g.Backend != BackendRBAC && !g.GrantedAt.IsZero() {
			wait = max(wait, g.GrantedAt.Add(azure.MinimumActiveDuration).Sub(now))
		}
	}
	return wait
}

func endLabel(t time.Time) string {
	if t.IsZero() {
		return "no set time (it has no expiration)"
	}
	return t.UTC().Format(time.RFC3339)
}
