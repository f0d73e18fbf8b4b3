// Package broker is Elevate's service mode: it holds the right to grant, lets
// pipelines request roles with their OIDC identity, applies policy, collects
// approvals, and revokes at expiry whatever happened to the caller. The store
// is the source of truth. Every Azure call is preceded by a committed intent
// and followed by a conditional state change, so several replicas can share
// one PostgreSQL database without granting or revoking anything twice.
package broker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/crashpoint"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/policy"
	"github.com/elevate-dev/elevate/internal/store"
)

// activateTimeout bounds the detached work of granting one request.
const activateTimeout = 5 * time.Minute

// Errors the API maps to HTTP status codes.
var (
	ErrForbidden = errors.New("forbidden")
	ErrInvalid   = errors.New("invalid request")
	ErrNotFound  = store.ErrNotFound
	ErrConflict  = store.ErrConflict
)

// Identity is an authenticated caller.
type Identity struct {
	// Subject is the caller's unique name: a pipeline's OIDC sub
	// (repo:contoso/payments:environment:production) or a person's
	// (user:alice@contoso.example).
	Subject string
	// Pipeline is true for callers authenticated by a workload OIDC token.
	Pipeline bool
	// Claims are the token's string claims: repository, ref, environment,
	// workflow, actor, run_id and so on.
	Claims map[string]string
	// Groups are the caller's group claims, for approver membership.
	Groups []string
	// Admin may revoke any request and list everything.
	Admin bool
}

// Config holds a Service's dependencies and settings. Zero settings take the
// documented defaults.
type Config struct {
	Store  store.Store
	Policy *policy.Policy
	// Engine resolves role names and provides the grant backends.
	Engine *lifecycle.Engine
	// ReplicaID names this process in claims; default a random id.
	ReplicaID string
	Now       func() time.Time
	Logger    *slog.Logger
	// MaxDuration caps any request, whatever the policy allows. Default 8h.
	MaxDuration time.Duration
	// ApprovalTimeout is how long a request may wait for approvals. Default 1h.
	ApprovalTimeout time.Duration
	// SweepInterval is how often expired leases and due retries are
	// handled. Default 250ms, so a lease ends within a second of expiry.
	SweepInterval time.Duration
	// RetryBase and RetryMax shape the backoff between revoke attempts of a
	// grant. Defaults 2s and 5m.
	RetryBase, RetryMax time.Duration
	// MaxRevokeAttempts is the number of attempts after which a failing
	// revoke is raised as revoke_failed and retried only every RetryMax.
	// Default 8.
	MaxRevokeAttempts int
	// Notify, when set, turns notifications on. Events of a request state
	// change are written to the outbox with the change, for the
	// notification dispatcher to expand, and Notify receives the others
	// (revoke_failed from the sweeper).
	Notify func(ctx context.Context, event string, r store.Request)
	// Backends lists the grant backends requests may ask for, the default
	// first. The engine must have each registered. Default [rbac].
	Backends []string
}

// Service implements the broker's operations. Its HTTP API is in api.go.
type Service struct {
	cfg Config
	log *slog.Logger

	settleMu   sync.Mutex
	nextSettle time.Time // when SweepOnce next runs settleStalled

	quota *quotaCache
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("broker: missing store")
	case cfg.Policy == nil:
		return nil, errors.New("broker: missing policy")
	case cfg.Engine == nil:
		return nil, errors.New("broker: missing engine")
	}
	if cfg.ReplicaID == "" {
		cfg.ReplicaID = "replica-" + uuid.NewString()[:8]
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// The crashpoints test build may run the clock fast; see crashpoint.Clock.
	cfg.Now = crashpoint.Clock(cfg.Now)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	setDefault(&cfg.MaxDuration, 8*time.Hour)
	setDefault(&cfg.ApprovalTimeout, time.Hour)
	setDefault(&cfg.SweepInterval, 250*time.Millisecond)
	setDefault(&cfg.RetryBase, 2*time.Second)
	setDefault(&cfg.RetryMax, 5*time.Minute)
	if cfg.MaxRevokeAttempts <= 0 {
		cfg.MaxRevokeAttempts = 8
	}
	if len(cfg.Backends) == 0 {
		cfg.Backends = []string{lifecycle.BackendRBAC}
	}
	for _, b := range cfg.Backends {
		if !cfg.Engine.HasBackend(b) {
			return nil, fmt.Errorf("broker: backend %s has no client configured", b)
		}
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With("replica", cfg.ReplicaID)}
	s.quota = newQuotaCache(cfg.Engine.CountAssignments, cfg.Now, s.log)
	return s, nil
}

// idempotencyNamespace is the UUIDv5 namespace of request ids derived from
// an idempotency key. Changing it breaks retries across an upgrade.
var idempotencyNamespace = uuid.MustParse("6c9d8f0e-3a51-4f27-9b8e-2d4c6a1e5f37")

// requestID returns a random id, or, with an idempotency key, one derived
// from the requester and the key. A retry then builds the same request and
// the same hash, which the store recognises as the same request.
func requestID(requester, key string) string {
	if key == "" {
		return uuid.NewString()
	}
	return uuid.NewSHA1(idempotencyNamespace, []byte(requester+"\n"+key)).String()
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// CreateInput is a pipeline's request for access.
type CreateInput struct {
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Roles          []string          `json:"roles"`
	Scopes         []string          `json:"scopes"`
	Pairing        string            `json:"pairing,omitempty"`
	PrincipalID    string            `json:"principal_id"`
	PrincipalType  string            `json:"principal_type,omitempty"`
	Duration       string            `json:"duration"`
	Justification  string            `json:"justification"`
	Ticket         string            `json:"ticket,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	// Backend is rbac or pim-assign, among those the broker enables.
	// Default: the first it enables.
	Backend string `json:"backend,omitempty"`
}

// Create validates a request, decides it by policy and stores it. An
// auto-approved request is granted before Create returns; a denied one is
// stored as denied, with the rule that denied it.
func (s *Service) Create(ctx context.Context, caller Identity, in CreateInput) (store.Request, error) {
	req, names, err := s.buildRequest(ctx, caller, in)
	if err != nil {
		return store.Request{}, err
	}
	backend := cmp.Or(in.Backend, s.cfg.Backends[0])
	if !slices.Contains(s.cfg.Backends, backend) {
		return store.Request{}, fmt.Errorf("%w: backend %q is not enabled on this broker: use %s", ErrInvalid, in.Backend, strings.Join(s.cfg.Backends, " or "))
	}
	decision := s.cfg.Policy.Decide(policyInput(caller, req, names, in.Ticket, s.cfg.Now()))
	// A request that could not be revoked (a lock would block the delete)
	// or granted (the subscription's assignment quota is used up) is
	// refused before anyone is asked to approve it. A request the policy
	// denies costs no Azure call.
	var checks []lifecycle.Check
	if decision.Outcome != policy.OutcomeDeny {
		checks = append(s.cfg.Engine.PreflightLocks(ctx, req), s.quota.check(ctx, req)...)
	}
	if failed := lifecycle.Failed(checks); len(failed) > 0 {
		decision.Outcome = policy.OutcomeDeny
		decision.Message = "pre-flight check failed: " + failed[0].Name + " at " + failed[0].Scope + ": " + failed[0].Detail
	}
	stored := store.Request{
		ID:             req.ID,
		IdempotencyKey: in.IdempotencyKey,
		Requester:      caller.Subject,
		Claims:         caller.Claims,
		Principal:      store.Principal{ID: req.Principal.ID, Type: req.Principal.Type},
		Justification:  req.Justification,
		Duration:       req.Duration,
		Metadata:       metadataMap(req.Metadata),
		Hash:           req.Hash(),
		Backend:        backend,
		Decision:       toStoreDecision(decision),
	}
	for _, c := range checks {
		stored.Decision.Preflight = append(stored.Decision.Preflight, store.Check(c))
	}
	if decision.Outcome == policy.OutcomeRequire {
		stored.ApprovalDeadline = s.cfg.Now().Add(s.cfg.ApprovalTimeout)
		// The request event is stored with the request, so it survives a
		// crash right after the insert, and an idempotent retry, which
		// finds the stored request, writes no second one.
		stored.CreateEvent = s.event("request")
	}
	for _, p := range req.Pairs {
		stored.Pairs = append(stored.Pairs, store.Pair{RoleID: p.RoleID, Scope: p.Scope.String()})
	}
	created, isNew, err := s.cfg.Store.CreateRequest(ctx, stored)
	if err != nil {
		return store.Request{}, fmt.Errorf("store request: %w", err)
	}
	if !isNew {
		// An idempotent retry. The first call did the work, unless its
		// replica died between storing the request and acting on the
		// policy's outcome. In that case this call finishes it.
		if created.State == store.RequestPending && created.Decision.Outcome != store.OutcomeNeedsApproval {
			s.log.WarnContext(ctx, "finishing a request its first call left undecided", "request_id", created.ID)
			return s.applyDecision(ctx, created)
		}
		return created, nil
	}
	s.audit(ctx, created.ID, "request", caller.Subject, map[string]any{"pairs": created.Pairs, "duration": created.Duration.String()})
	s.audit(ctx, created.ID, "decision", "policy", created.Decision)
	s.log.InfoContext(ctx, "request created", "request_id", created.ID, "requester", caller.Subject,
		"outcome", decision.Outcome, "rule_id", decision.RuleID)
	if decision.Outcome == policy.OutcomeRequire {
		return created, nil
	}
	return s.applyDecision(ctx, created)
}

// applyDecision acts on the policy outcome stored with a pending request:
// a deny ends it, an auto-approval grants it. A request that needs
// approvals is left as it is. Two replicas may call it for one request, and
// the conditional transitions let only one act.
func (s *Service) applyDecision(ctx context.Context, r store.Request) (store.Request, error) {
	switch r.Decision.Outcome {
	case store.OutcomeDeny:
		msg := r.Decision.Message
		return s.transition(ctx, r.ID, []store.RequestState{store.RequestPending}, store.RequestDenied,
			store.RequestUpdate{EndedAt: s.cfg.Now(), Error: &msg})
	case store.OutcomeAutoApprove:
		var u store.RequestUpdate
		if r.Decision.BreakGlass {
			u.Event = s.event("break_glass")
		}
		approved, err := s.transition(ctx, r.ID, []store.RequestState{store.RequestPending}, store.RequestApproved, u)
		if err != nil {
			return approved, err
		}
		return s.activate(ctx, approved)
	}
	return r, nil
}

// MaxRequestPairs bounds the pairs of one broker request, and the roles
// and scopes it lists. Every pair becomes a role assignment, and a
// subscription holds at most 4,000 of them.
// NOTE: 100 is a judgment, large enough for a deployment's roles and small
// enough that one call cannot make thousands of ARM calls.
const MaxRequestPairs = 100

// apiFields rewrites the CLI flags that shared validation messages name
// into the JSON fields of the create body.
var apiFields = strings.NewReplacer(
	"--justification", "justification", "--duration", "duration", "--pairing", "pairing",
	"--principal-id", "principal_id", "--role", "roles", "--scope", "scopes")

// invalidInput wraps a validation error of the create body as ErrInvalid,
// naming the body's fields rather than the CLI's flags.
func invalidInput(err error) error {
	return fmt.Errorf("%w: %s", ErrInvalid, apiFields.Replace(err.Error()))
}

// buildRequest validates the input the same way the CLI does and resolves
// role names.
func (s *Service) buildRequest(ctx context.Context, caller Identity, in CreateInput) (access.Request, map[string]string, error) {
	var req access.Request
	if !caller.Pipeline {
		return req, nil, fmt.Errorf("%w: only pipelines authenticated by their OIDC token may request access", ErrForbidden)
	}
	d, err := time.ParseDuration(in.Duration)
	if err != nil {
		return req, nil, fmt.Errorf("%w: invalid duration %q: use a Go duration such as 15m", ErrInvalid, in.Duration)
	}
	// Bound the lists before any ARM lookup: each role name and each
	// scope costs an ARM call here and in the pre-flight check.
	if len(in.Roles) > MaxRequestPairs || len(in.Scopes) > MaxRequestPairs {
		return req, nil, fmt.Errorf("%w: %d roles and %d scopes: send at most %d of each, and split larger requests",
			ErrInvalid, len(in.Roles), len(in.Scopes), MaxRequestPairs)
	}
	var refs []access.RoleRef
	for _, r := range in.Roles {
		ref, err := access.ParseRoleRef(r)
		if err != nil {
			return req, nil, invalidInput(err)
		}
		refs = append(refs, ref)
	}
	var scopes []access.ResourceID
	for _, sc := range in.Scopes {
		id, err := access.ParseResourceID(sc)
		if err != nil {
			return req, nil, invalidInput(err)
		}
		scopes = append(scopes, id)
	}
	if len(refs) == 0 || len(scopes) == 0 {
		return req, nil, fmt.Errorf("%w: roles and scopes must each name at least one item", ErrInvalid)
	}
	roles, err := s.cfg.Engine.ResolveRoles(ctx, refs, lifecycle.LookupScope(scopes))
	if err != nil {
		return req, nil, invalidInput(err)
	}
	names := map[string]string{}
	guids := make([]string, len(roles))
	for i, r := range roles {
		guids[i] = r.GUID
		names[r.GUID] = r.Name()
	}
	pairs, err := access.BuildPairs(guids, scopes, access.Pairing(in.Pairing))
	if err != nil {
		return req, nil, invalidInput(err)
	}
	if len(pairs) > MaxRequestPairs {
		return req, nil, fmt.Errorf("%w: %d pairs from pairing %q: send at most %d, and split larger requests",
			ErrInvalid, len(pairs), in.Pairing, MaxRequestPairs)
	}
	ptype := in.PrincipalType
	if ptype == "" {
		ptype = access.PrincipalServicePrincipal
	}
	req = access.Request{
		ID:            requestID(caller.Subject, in.IdempotencyKey),
		Principal:     access.Principal{ID: strings.ToLower(in.PrincipalID), Type: ptype},
		Pairs:         pairs,
		Justification: in.Justification,
		Duration:      d,
		Metadata:      metadataFromClaims(caller.Claims, in),
		CreatedAt:     s.cfg.Now().UTC(),
	}
	if err := req.Validate(s.cfg.MaxDuration); err != nil {
		return req, nil, invalidInput(err)
	}
	return req, names, nil
}

// Review records an approver's verdict and, when it completes the decision,
// approves (and grants) or denies the request. Requesters never review their
// own requests, and the verdict binds to the hash the reviewer was shown.
func (s *Service) Review(ctx context.Context, reviewer Identity, id, verdict, requestHash, comment string) (store.Request, error) {
	r, err := s.cfg.Store.GetRequest(ctx, id)
	if err != nil {
		return r, err
	}
	if verdict != store.VerdictApprove && verdict != store.VerdictDeny {
		return r, fmt.Errorf("%w: verdict %q: use approve or deny", ErrInvalid, verdict)
	}
	if err := checkText("comment", comment, MaxCommentRunes, true); err != nil {
		return r, err
	}
	if reviewer.Pipeline {
		return r, fmt.Errorf("%w: pipelines cannot review requests", ErrForbidden)
	}
	if s.isRequester(reviewer, r) {
		return r, fmt.Errorf("%w: %s cannot review their own request", ErrForbidden, reviewer.Subject)
	}
	groups := s.cfg.Policy.GroupsOf(reviewer.Subject, reviewer.Groups)
	if !overlaps(groups, r.Decision.Groups) {
		return r, fmt.Errorf("%w: %s is in none of the approver groups %s", ErrForbidden, reviewer.Subject, strings.Join(r.Decision.Groups, ", "))
	}
	if requestHash == "" {
		return r, fmt.Errorf("%w: missing request hash: approve exactly what you were shown", ErrInvalid)
	}
	// From here the verdict is recorded and acted on even if the reviewer
	// disconnects, so an approval never sits recorded but unapplied.
	ctx = context.WithoutCancel(ctx)
	if _, err := s.cfg.Store.AddApproval(ctx, store.Approval{
		RequestID: id, Approver: reviewer.Subject, Groups: reviewer.Groups, Verdict: verdict,
		Comment: comment, RequestHash: requestHash,
	}); err != nil {
		return r, fmt.Errorf("record %s: %w", verdict, err)
	}
	crashpoint.Hit("broker.approval_recorded")
	s.audit(ctx, id, verdict, reviewer.Subject, map[string]any{"comment": comment, "request_hash": requestHash})
	return s.settle(ctx, id)
}

// MaxCommentRunes bounds a review comment in characters, the same limit as
// the web UI's review form.
const MaxCommentRunes = 2000

// checkText rejects free text longer than maxRunes characters, or with a
// control character, a bidirectional format character or a line or
// paragraph separator. Such characters make text display differently from
// what it contains, and PostgreSQL cannot store NUL in a text column. With
// lineBreaks, tabs and line breaks (CR and LF) are allowed.
func checkText(field, value string, maxRunes int, lineBreaks bool) error {
	if n := utf8.RuneCountInString(value); n > maxRunes {
		return fmt.Errorf("%w: %s of %d characters is too long: use at most %d", ErrInvalid, field, n, maxRunes)
	}
	for _, r := range value {
		if lineBreaks && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("%w: %s %q contains the control character %U: send plain text without it",
				ErrInvalid, field, value, r)
		}
	}
	return nil
}

// settle applies the approvals so far to a pending request.
func (s *Service) settle(ctx context.Context, id string) (store.Request, error) {
	r, _, err := s.settlePending(ctx, id)
	return r, err
}

// settlePending is settle that also reports whether this call decided the
// request, as opposed to finding it decided already.
func (s *Service) settlePending(ctx context.Context, id string) (store.Request, bool, error) {
	r, err := s.cfg.Store.GetRequest(ctx, id)
	if err != nil || r.State != store.RequestPending {
		return r, false, err
	}
	r, err = s.applyApprovals(ctx, r)
	// A lost race returns no request at all, so only a state change counts.
	return r, r.State != "" && r.State != store.RequestPending, err
}

// applyApprovals evaluates the stored approvals of pending request r and
// moves it on when they decide it.
func (s *Service) applyApprovals(ctx context.Context, r store.Request) (store.Request, error) {
	id := r.ID
	approvals, err := s.cfg.Store.ListApprovals(ctx, id)
	if err != nil {
		return r, err
	}
	list := make([]policy.Approval, len(approvals))
	for i, a := range approvals {
		list[i] = policy.Approval{Approver: a.Approver, Groups: a.Groups, Verdict: a.Verdict, RequestHash: a.RequestHash}
	}
	state, reason := s.cfg.Policy.Evaluate(fromStoreDecision(r.Decision), s.requesterIdentities(r), r.Hash, list)
	switch state {
	case policy.StateApproved:
		approved, err := s.transition(ctx, id, []store.RequestState{store.RequestPending}, store.RequestApproved,
			store.RequestUpdate{Event: s.event("approved")})
		if err != nil {
			return approved, err
		}
		return s.activate(ctx, approved)
	case policy.StateDenied:
		return s.transition(ctx, id, []store.RequestState{store.RequestPending}, store.RequestDenied,
			store.RequestUpdate{EndedAt: s.cfg.Now(), Error: &reason, Event: s.event("denied")})
	}
	return r, nil
}

// activate grants every pair of an approved request through shared grants
// with one lease each, then marks the request active until its expiry.
//
// The work runs on a context detached from the caller's: a pipeline that
// disconnects mid-call must not leave a role in Azure that the store does
// not show as active. The lease is counted from the approval, so an
// approval that could not be activated in time (after a crash, say) lapses
// instead of granting a fresh full window on a later restart.
func (s *Service) activate(ctx context.Context, r store.Request) (store.Request, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), activateTimeout)
	defer cancel()
	now := s.cfg.Now()
	// Normally activation follows the approval at once and the window
	// starts now; only a late activation counts from the approval.
	approvedAt := r.UpdatedAt
	if approvedAt.IsZero() || now.Sub(approvedAt) < time.Minute {
		approvedAt = now
	}
	expires := approvedAt.Add(r.Duration)
	if !expires.After(now.Add(time.Minute)) {
		msg := fmt.Sprintf("approved at %s but not activated before its window ended; request again", approvedAt.Format(time.RFC3339))
		s.log.WarnContext(ctx, "approval lapsed", "request_id", r.ID, "approved_at", approvedAt)
		return s.transition(ctx, r.ID, []store.RequestState{store.RequestApproved}, store.RequestGrantFailed,
			store.RequestUpdate{EndedAt: now, Error: &msg})
	}
	var failure error
	for _, p := range r.Pairs {
		scope, err := access.ParseResourceID(p.Scope)
		if err != nil {
			failure = err
			break
		}
		acq, err := s.cfg.Store.AcquireGrant(ctx, store.AcquireParams{
			RequestID: r.ID, PrincipalID: r.Principal.ID, PrincipalType: r.Principal.Type,
			RoleID: p.RoleID, Scope: p.Scope, Backend: r.Backend, LeaseExpiresAt: expires,
			AssignmentName: access.AssignmentName(r.ID, r.Principal.ID, p.RoleID, scope),
		})
		if err != nil {
			failure = fmt.Errorf("acquire grant for %s at %s: %w", p.RoleID, p.Scope, err)
			break
		}
		if acq.Create {
			crashpoint.Hit("broker.intent_committed")
			if err := s.createGrant(ctx, r, acq.Grant); err != nil {
				failure = err
				break
			}
		}
	}
	if failure != nil {
		s.log.ErrorContext(ctx, "grant failed", "request_id", r.ID, "error", failure)
		// Two activations of one request can overlap (a restarted replica's
		// reconcile and the approving replica, say), and they share the
		// request's leases. Only the one that moves the request on may end
		// them: releasing after the other made it active would leave an
		// active request with no lease, which no sweep ever ends.
		msg := failure.Error()
		failed, err := s.transition(ctx, r.ID, []store.RequestState{store.RequestApproved}, store.RequestGrantFailed,
			store.RequestUpdate{EndedAt: s.cfg.Now(), Error: &msg})
		if errors.Is(err, store.ErrConflict) {
			return s.activatedElsewhere(ctx, r.ID, fmt.Errorf("grant: %w", failure))
		}
		if err != nil {
			return failed, fmt.Errorf("grant: %w (and %w)", failure, err)
		}
		s.releaseAll(ctx, r.ID)
		return failed, fmt.Errorf("grant: %w", failure)
	}
	active, err := s.transition(ctx, r.ID, []store.RequestState{store.RequestApproved}, store.RequestActive,
		store.RequestUpdate{GrantedAt: now, ExpiresAt: expires, Event: s.event("granted")})
	if errors.Is(err, store.ErrConflict) {
		return s.activatedElsewhere(ctx, r.ID, err)
	}
	if err == nil {
		s.audit(ctx, r.ID, "grant", s.cfg.ReplicaID, map[string]any{"expires_at": expires})
	}
	return active, err
}

// activatedElsewhere ends an activation that lost the race to move request
// id on. When the winner made the request active, that is success for this
// caller too. Otherwise it returns err with the request as stored.
func (s *Service) activatedElsewhere(ctx context.Context, id string, err error) (store.Request, error) {
	current, getErr := s.cfg.Store.GetRequest(ctx, id)
	if getErr != nil {
		return current, errors.Join(err, getErr)
	}
	if current.State == store.RequestActive {
		return current, nil
	}
	return current, err
}

// createGrant makes the Azure object of a grant whose intent is committed.
func (s *Service) createGrant(ctx context.Context, r store.Request, g store.Grant) error {
	lg := s.toLifecycleGrant(g)
	req := access.Request{ID: r.ID, Principal: access.Principal{ID: r.Principal.ID, Type: r.Principal.Type},
		Justification: r.Justification, Duration: r.Duration}
	if err := s.cfg.Engine.Backend(g.Backend).Grant(ctx, req, &lg); err != nil {
		msg := err.Error()
		_, _ = s.cfg.Store.MarkGrant(ctx, g.ID, []store.GrantState{store.GrantIntent}, store.GrantGrantFailed,
			store.GrantUpdate{LastError: &msg})
		return fmt.Errorf("create grant %s: %w", g.AssignmentName, err)
	}
	crashpoint.Hit("broker.grant_created")
	id, pre := lg.AssignmentID, lg.PreExisting
	_, err := s.cfg.Store.MarkGrant(ctx, g.ID, []store.GrantState{store.GrantIntent}, store.GrantActive,
		store.GrantUpdate{AssignmentID: &id, PreExisting: &pre, GrantedAt: s.cfg.Now()})
	if errors.Is(err, store.ErrConflict) {
		now, getErr := s.cfg.Store.GetGrant(ctx, g.ID)
		if getErr == nil && now.State == store.GrantActive {
			// A concurrent activation of the same request created it first.
			return nil
		}
		// The last lease ended while Azure was creating the object. Its
		// revoke may have run before this PUT landed, so remove what was
		// just made here rather than trust the sweeper to see it.
		s.log.WarnContext(ctx, "grant released while being created", "grant_id", g.ID, "request_id", r.ID)
		if !lg.PreExisting {
			s.removeOrphan(ctx, r, g, lg)
		}
		return fmt.Errorf("grant %s was released while being created", g.AssignmentName)
	}
	return err
}

// removeOrphan deletes an Azure object created for a grant that was
// released meanwhile, and verifies it is gone. A failure is logged loudly:
// the store no longer holds anything that would retry it.
func (s *Service) removeOrphan(ctx context.Context, r store.Request, g store.Grant, lg lifecycle.Grant) {
	backend := s.cfg.Engine.Backend(g.Backend)
	req := access.Request{ID: r.ID, Principal: access.Principal{ID: r.Principal.ID, Type: r.Principal.Type}}
	err := backend.Remove(ctx, req, &lg)
	if err == nil {
		var exists bool
		if exists, err = backend.Exists(ctx, lg); err == nil && exists {
			err = errors.New("still present after delete")
		}
	}
	if err != nil {
		s.log.ErrorContext(ctx, "remove grant created after its release failed: it may still give access",
			"grant_id", g.ID, "request_id", r.ID, "assignment_name", g.AssignmentName, "scope", g.Scope, "error", err)
		s.audit(ctx, r.ID, "revoke_failed", s.cfg.ReplicaID, map[string]any{"grant_id": g.ID, "assignment": g.AssignmentName, "error": err.Error()})
		return
	}
	s.audit(ctx, r.ID, "revoke", s.cfg.ReplicaID, map[string]any{"grant_id": g.ID, "assignment": g.AssignmentName, "orphan": true})
}

// releaseAll ends every active lease of a request and revokes the grants
// that no other request holds.
func (s *Service) releaseAll(ctx context.Context, requestID string) {
	leases, err := s.cfg.Store.ListLeases(ctx, store.LeaseFilter{RequestID: requestID})
	if err != nil {
		s.log.ErrorContext(ctx, "list leases failed", "request_id", requestID, "error", err)
		return
	}
	for _, l := range leases {
		if l.State != store.LeaseActive {
			continue
		}
		s.release(ctx, l)
	}
}

// release ends one lease and, when it was the grant's last, revokes it.
func (s *Service) release(ctx context.Context, l store.Lease) {
	rel, err := s.cfg.Store.ReleaseLease(ctx, l.ID)
	if errors.Is(err, store.ErrConflict) {
		return // another replica released it first
	}
	if err != nil {
		s.log.ErrorContext(ctx, "release lease failed", "lease_id", l.ID, "request_id", l.RequestID, "error", err)
		return
	}
	if rel.Revoke {
		crashpoint.Hit("broker.lease_released")
		s.revokeGrant(ctx, rel.Grant)
	}
}

// Cancel withdraws a pending request, or ends an active one early. Only the
// requester or an admin may do it.
func (s *Service) Cancel(ctx context.Context, caller Identity, id string) (store.Request, error) {
	r, err := s.cfg.Store.GetRequest(ctx, id)
	if err != nil {
		return r, err
	}
	if !caller.Admin && !strings.EqualFold(caller.Subject, r.Requester) {
		return r, fmt.Errorf("%w: only the requester or an admin may cancel request %s", ErrForbidden, id)
	}
	if r.State == store.RequestPending {
		return s.transition(ctx, id, []store.RequestState{store.RequestPending}, store.RequestCancelled,
			store.RequestUpdate{EndedAt: s.cfg.Now()})
	}
	return s.end(ctx, caller, r, "cancel")
}

// Revoke ends an active request now. Admins only.
func (s *Service) Revoke(ctx context.Context, caller Identity, id string) (store.Request, error) {
	if !caller.Admin {
		return store.Request{}, fmt.Errorf("%w: revoking another's grant needs an admin", ErrForbidden)
	}
	r, err := s.cfg.Store.GetRequest(ctx, id)
	if err != nil {
		return r, err
	}
	return s.end(ctx, caller, r, "revoke")
}

func (s *Service) end(ctx context.Context, caller Identity, r store.Request, why string) (store.Request, error) {
	if r.State != store.RequestActive {
		return r, fmt.Errorf("%w: request %s is %s, not active", ErrConflict, r.ID, r.State)
	}
	ctx = context.WithoutCancel(ctx) // finish the revoke whatever the caller does
	s.audit(ctx, r.ID, why, caller.Subject, nil)
	s.releaseAll(ctx, r.ID)
	return s.finishRequest(ctx, r.ID)
}

// finishAttempts bounds the tries of finishRequest when another caller
// moves the same request on between its read and its write.
const finishAttempts = 3

// finishRequest moves an active request whose leases all ended to revoked,
// or to revoke_failed while one of its grants has not gone away yet. Two
// callers ending one request (a cancel and a sweep, say) may each see half
// of the other's work, so a lost transition reads the request again rather
// than leave it unfinished.
func (s *Service) finishRequest(ctx context.Context, id string) (store.Request, error) {
	var r store.Request
	var err error
	for range finishAttempts {
		r, err = s.finishRequestOnce(ctx, id)
		if !errors.Is(err, store.ErrConflict) {
			return r, err
		}
	}
	return r, err
}

func (s *Service) finishRequestOnce(ctx context.Context, id string) (store.Request, error) {
	leases, err := s.cfg.Store.ListLeases(ctx, store.LeaseFilter{RequestID: id})
	if err != nil {
		return store.Request{}, err
	}
	pending, deferred := "", false
	for _, l := range leases {
		if l.State == store.LeaseActive {
			return s.cfg.Store.GetRequest(ctx, id) // still held
		}
		g, err := s.cfg.Store.GetGrant(ctx, l.GrantID)
		if err != nil {
			return store.Request{}, err
		}
		switch g.State {
		case store.GrantRevokeFailed:
			pending = g.AssignmentName
		case store.GrantRevoking:
			// A scheduled PIM retry, or a revoke in flight elsewhere: the
			// request stays revoking until that attempt ends.
			deferred = true
		}
	}
	r, err := s.cfg.Store.GetRequest(ctx, id)
	if err != nil || r.State.Terminal() {
		return r, err // finished by another caller
	}
	if r.State == store.RequestActive {
		if r, err = s.transition(ctx, id, []store.RequestState{store.RequestActive}, store.RequestRevoking, store.RequestUpdate{}); err != nil {
			return r, err
		}
	}
	if pending == "" && deferred {
		return r, nil
	}
	if pending != "" {
		if r.State == store.RequestRevokeFailed {
			return r, nil
		}
		msg := "revoke of " + pending + " has not succeeded yet; the sweeper retries it"
		return s.transition(ctx, id, []store.RequestState{store.RequestRevoking}, store.RequestRevokeFailed,
			store.RequestUpdate{Error: &msg})
	}
	done, err := s.transition(ctx, id, []store.RequestState{store.RequestRevoking, store.RequestRevokeFailed},
		store.RequestRevoked, store.RequestUpdate{EndedAt: s.cfg.Now(), Event: s.event("revoked")})
	if err == nil {
		s.audit(ctx, id, "revoked", s.cfg.ReplicaID, nil)
	}
	return done, err
}

// Extend sets an active request's total duration to total, counted from
// when it was granted. The new total must be longer than the current one and
// within the policy rule's maximum and the broker's; the leases move with it.
func (s *Service) Extend(ctx context.Context, caller Identity, id string, total time.Duration) (store.Request, error) {
	r, err := s.cfg.Store.GetRequest(ctx, id)
	if err != nil {
		return r, err
	}
	if !caller.Admin && !strings.EqualFold(caller.Subject, r.Requester) {
		return r, fmt.Errorf("%w: only the requester or an admin may extend request %s", ErrForbidden, id)
	}
	if r.State != store.RequestActive {
		return r, fmt.Errorf("%w: request %s is %s; only an active request can be extended", ErrConflict, id, r.State)
	}
	limit := s.cfg.MaxDuration
	if m := r.Decision.MaxDuration; m > 0 && m < limit {
		limit = m
	}
	switch {
	case total > limit:
		return r, fmt.Errorf("%w: duration %s exceeds the maximum of %s set by rule %s", ErrInvalid, total, limit, r.Decision.RuleID)
	case total <= r.ExpiresAt.Sub(r.GrantedAt):
		return r, fmt.Errorf("%w: duration %s is not longer than the current %s", ErrInvalid, total, r.ExpiresAt.Sub(r.GrantedAt))
	}
	extended, err := s.cfg.Store.ExtendRequest(ctx, id, r.GrantedAt.Add(total))
	if err != nil {
		return extended, err // the store's error names the request
	}
	s.audit(ctx, id, "extend", caller.Subject, map[string]any{"duration": total.String(), "expires_at": extended.ExpiresAt})
	s.log.InfoContext(ctx, "request extended", "request_id", id, "expires_at", extended.ExpiresAt)
	return extended, nil
}

func (s *Service) transition(ctx context.Context, id string, from []store.RequestState, to store.RequestState, u store.RequestUpdate) (store.Request, error) {
	r, err := s.cfg.Store.TransitionRequest(ctx, id, from, to, u)
	if err != nil {
		return r, fmt.Errorf("request %s to %s: %w", id, to, err)
	}
	if len(from) != 1 || from[0] != to {
		s.log.InfoContext(ctx, "request state changed", "request_id", id, "state", to)
	}
	return r, nil
}

// audit appends an event to the store's chain. A failed append is logged
// with the event, so the record is not lost from the logs either.
func (s *Service) audit(ctx context.Context, requestID, event, actor string, detail any) {
	data, err := json.Marshal(detail)
	if err != nil || detail == nil {
		data = []byte("{}")
	}
	if _, err := s.cfg.Store.AppendAudit(ctx, store.AuditEvent{RequestID: requestID, Event: event, Actor: actor, Detail: data}); err != nil {
		s.log.ErrorContext(ctx, "audit append failed", "request_id", requestID, "event", event, "actor", actor,
			"detail", string(data), "error", err)
	}
}

// notify sends an event that comes with no request state change, such
// as revoke_failed, through the Notify hook.
func (s *Service) notify(ctx context.Context, event string, r store.Request) {
	if s.cfg.Notify != nil {
		s.cfg.Notify(ctx, event, r)
	}
}

// event returns name for a RequestUpdate.Event or Request.CreateEvent when
// notifications are on, and "" otherwise, so that without sinks no event
// message is written that nothing would expand.
func (s *Service) event(name string) string {
	if s.cfg.Notify == nil {
		return ""
	}
	return name
}

func (s *Service) toLifecycleGrant(g store.Grant) lifecycle.Grant {
	scope, _ := access.ParseResourceID(g.Scope)
	return lifecycle.Grant{
		Pair:             access.Pair{RoleID: g.RoleID, Scope: scope},
		RoleDefinitionID: lifecycle.RoleDefinitionID(scope, g.RoleID),
		AssignmentName:   g.AssignmentName,
		AssignmentID:     g.AssignmentID,
		PreExisting:      g.PreExisting,
		Backend:          g.Backend,
	}
}

// isRequester reports whether the reviewer is the requester under any of
// their names, or the principal that would receive the role.
func (s *Service) isRequester(reviewer Identity, r store.Request) bool {
	theirs := s.requesterIdentities(r)
	if policy.IsRequester(reviewer.Subject, theirs) {
		return true
	}
	oid := reviewer.Claims["oid"]
	return oid != "" && strings.EqualFold(oid, r.Principal.ID)
}

// requesterIdentities lists every name the requester is known by: the token
// subject, the GitHub actor and triggering actor of the run, and the
// principal.
func (s *Service) requesterIdentities(r store.Request) []string {
	ids := []string{r.Requester}
	// A re-run keeps the original actor and names who re-ran it in
	// triggering_actor; both are requesters.
	for _, claim := range []string{"actor", "triggering_actor"} {
		if v := r.Claims[claim]; v != "" {
			ids = append(ids, "github:"+v)
		}
	}
	return append(ids, "principal:"+r.Principal.ID)
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if strings.EqualFold(x, y) {
				return true
			}
		}
	}
	return false
}
