package broker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/crashpoint"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/store"
)

// sweepConcurrency bounds the leases one sweep ends at the same time.
const sweepConcurrency = 16

// claimFor is how long a replica reserves the expired leases it claimed.
// Another replica takes them over only after that, if this one died.
const claimFor = 30 * time.Second

// Run reconciles the store with Azure once, then sweeps until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	s.Reconcile(ctx)
	return s.Sweep(ctx)
}

// Sweep runs the work of SweepOnce every SweepInterval until ctx ends. A
// server that reports readiness calls Reconcile first itself, then Sweep.
//
// The repair work that settleDue paces (stalled approvals, undecided and
// stranded requests) runs in a loop of its own, so that a slow pass over
// many requests never delays the end of an expired lease.
func (s *Service) Sweep(ctx context.Context) error {
	s.log.InfoContext(ctx, "sweeper started", "interval", s.cfg.SweepInterval)
	defer s.log.Info("sweeper stopped")
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.every(ctx, s.repairOnce) })
	s.every(ctx, s.sweepLeases)
	return nil
}

// every calls fn every SweepInterval, the first time at once, until ctx
// ends.
func (s *Service) every(ctx context.Context, fn func(context.Context) int) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		fn(ctx)
		timer.Reset(s.cfg.SweepInterval)
	}
}

// SweepOnce ends expired leases, retries due revokes, expires requests
// whose approval deadline passed and, every settleInterval, repairs what
// dead replicas left unfinished. It returns how many items it handled.
func (s *Service) SweepOnce(ctx context.Context) int {
	return s.sweepLeases(ctx) + s.repairOnce(ctx)
}

// repairOnce runs the repairs when settleDue reports them due.
func (s *Service) repairOnce(ctx context.Context) int {
	start := s.cfg.Now()
	if !s.settleDue(start) {
		return 0
	}
	handled := s.settleStalled(ctx) + s.finishStranded(ctx)
	if handled > 0 {
		s.log.InfoContext(ctx, "repairs done", "handled", handled, "elapsed", s.cfg.Now().Sub(start))
	}
	return handled
}

// sweepLeases ends expired leases, retries due revokes and expires
// requests whose approval deadline passed.
func (s *Service) sweepLeases(ctx context.Context) int {
	start := s.cfg.Now()
	handled := 0
	leases, err := s.cfg.Store.ClaimExpired(ctx, start, 200, s.cfg.ReplicaID, claimFor)
	if err != nil {
		s.log.ErrorContext(ctx, "claim expired leases failed", "error", err)
	}
	// Leases end concurrently, so a burst of expiries is not revoked one
	// Azure round trip after another. Two leases of one request may finish
	// it at once; the conditional transitions let one win.
	var wg sync.WaitGroup
	sem := make(chan struct{}, sweepConcurrency)
	for _, l := range leases {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.release(ctx, l)
			if _, err := s.finishRequest(ctx, l.RequestID); err != nil && !errors.Is(err, store.ErrConflict) {
				s.log.ErrorContext(ctx, "finish request failed", "request_id", l.RequestID, "error", err)
			}
		}()
		handled++
	}
	wg.Wait()
	// The claim must outlast one revoke attempt, which with ARM's own
	// retries can take longer than RetryBase, or a second replica claims
	// the grant and deletes it too.
	grants, err := s.cfg.Store.ClaimRetries(ctx, start, 100, s.cfg.ReplicaID, claimFor)
	if err != nil {
		s.log.ErrorContext(ctx, "claim revoke retries failed", "error", err)
	}
	for _, g := range grants {
		s.revokeGrant(ctx, g)
		s.finishRequestsOf(ctx, g)
		handled++
	}
	handled += s.expirePending(ctx)
	if handled > 0 {
		s.log.InfoContext(ctx, "sweep done", "handled", handled, "elapsed", s.cfg.Now().Sub(start))
	}
	return handled
}

// revokeGrant removes a grant in state revoking or revoke_failed from Azure,
// verifies the removal and records the outcome. A failure schedules a retry
// with backoff; past MaxRevokeAttempts it is logged as an error on every
// attempt and retried every RetryMax.
func (s *Service) revokeGrant(ctx context.Context, g store.Grant) {
	log := s.log.With("grant_id", g.ID, "assignment_name", g.AssignmentName, "scope", g.Scope, "attempt", g.Attempts)
	from := []store.GrantState{store.GrantRevoking, store.GrantRevokeFailed}
	if g.PreExisting {
		// Adopted, never ours to delete.
		_, err := s.cfg.Store.MarkGrant(ctx, g.ID, from, store.GrantRevoked, store.GrantUpdate{RevokedAt: s.cfg.Now()})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			log.ErrorContext(ctx, "mark adopted grant released failed", "error", err)
		}
		return
	}
	lg := s.toLifecycleGrant(g)
	backend := s.cfg.Engine.Backend(g.Backend)
	req := access.Request{ID: g.RequestID, Principal: access.Principal{ID: g.PrincipalID, Type: g.PrincipalType}}
	err := backend.Remove(ctx, req, &lg)
	if err == nil {
		var exists bool
		exists, err = backend.Exists(ctx, lg)
		if err == nil && exists {
			err = errors.New("still present after delete")
		}
	}
	if err == nil {
		crashpoint.Hit("broker.revoke_verified")
		now := s.cfg.Now()
		if _, err := s.cfg.Store.MarkGrant(ctx, g.ID, from, store.GrantRevoked,
			store.GrantUpdate{RevokedAt: now, VerifiedAt: now}); err != nil && !errors.Is(err, store.ErrConflict) {
			log.ErrorContext(ctx, "mark grant revoked failed", "error", err)
			return
		}
		log.InfoContext(ctx, "grant revoked and verified")
		s.audit(ctx, g.RequestID, "revoke", s.cfg.ReplicaID, map[string]any{"grant_id": g.ID, "assignment": g.AssignmentName})
		return
	}
	var later *lifecycle.RemoveLater
	if errors.As(err, &later) {
		// Not a failure: PIM removes nothing in the first five minutes.
		// The grant stays revoking until the retry, or until PIM ends it.
		msg := err.Error()
		log.InfoContext(ctx, "PIM removal deferred", "retry_at", later.At, "ends_at", later.EndsAt)
		s.audit(ctx, g.RequestID, "revoke_deferred", s.cfg.ReplicaID, map[string]any{"grant_id": g.ID,
			"assignment": g.AssignmentName, "retry_at": later.At, "ends_at": later.EndsAt})
		if _, err := s.cfg.Store.MarkGrant(ctx, g.ID, from, store.GrantRevoking,
			store.GrantUpdate{LastError: &msg, NextAttemptAt: later.At.Add(time.Second)}); err != nil && !errors.Is(err, store.ErrConflict) {
			log.ErrorContext(ctx, "record deferred removal failed", "error", err)
		}
		return
	}
	msg := err.Error()
	next := s.cfg.Now().Add(s.retryDelay(g.Attempts))
	if g.Attempts >= s.cfg.MaxRevokeAttempts {
		log.ErrorContext(ctx, "revoke keeps failing: the grant may still give access", "error", err, "next_attempt", next)
		s.audit(ctx, g.RequestID, "revoke_failed", s.cfg.ReplicaID, map[string]any{"grant_id": g.ID, "assignment": g.AssignmentName, "error": msg})
		if g.Attempts == s.cfg.MaxRevokeAttempts { // notify once, when the sweeper gives up
			s.notify(ctx, "revoke_failed", store.Request{ID: g.RequestID, Error: msg})
		}
	} else {
		log.WarnContext(ctx, "revoke failed, will retry", "error", err, "next_attempt", next)
	}
	if _, err := s.cfg.Store.MarkGrant(ctx, g.ID, from, store.GrantRevokeFailed,
		store.GrantUpdate{LastError: &msg, NextAttemptAt: next}); err != nil && !errors.Is(err, store.ErrConflict) {
		log.ErrorContext(ctx, "record revoke failure failed", "error", err)
	}
}

// retryDelay is the capped exponential backoff after attempt attempts.
func (s *Service) retryDelay(attempts int) time.Duration {
	d := s.cfg.RetryBase
	for i := 0; i < attempts && d < s.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, s.cfg.RetryMax)
}

// finishRequestsOf settles the requests whose leases pointed at g.
func (s *Service) finishRequestsOf(ctx context.Context, g store.Grant) {
	leases, err := s.cfg.Store.ListLeases(ctx, store.LeaseFilter{GrantID: g.ID})
	if err != nil {
		s.log.ErrorContext(ctx, "list leases of grant failed", "grant_id", g.ID, "error", err)
		return
	}
	seen := map[string]bool{}
	for _, l := range leases {
		if seen[l.RequestID] {
			continue
		}
		seen[l.RequestID] = true
		if _, err := s.finishRequest(ctx, l.RequestID); err != nil && !errors.Is(err, store.ErrConflict) {
			s.log.ErrorContext(ctx, "finish request failed", "request_id", l.RequestID, "error", err)
		}
	}
}

// expirePending moves pending requests past their approval deadline to
// expired, so a late approval can grant nothing.
func (s *Service) expirePending(ctx context.Context) int {
	now := s.cfg.Now()
	n := 0
	for _, r := range s.requestsIn(ctx, store.RequestPending) {
		if r.ApprovalDeadline.IsZero() || now.Before(r.ApprovalDeadline) {
			continue
		}
		msg := "no decision before the approval deadline"
		if _, err := s.transition(ctx, r.ID, []store.RequestState{store.RequestPending}, store.RequestExpired,
			store.RequestUpdate{EndedAt: now, Error: &msg}); err == nil {
			s.audit(ctx, r.ID, "expired", s.cfg.ReplicaID, nil)
			n++
		}
	}
	return n
}

// settleInterval is how often a sweeper re-applies the stored approvals of
// pending requests, in settleStalled.
const settleInterval = 30 * time.Second

// settleDue reports whether settleStalled should run at now, and if so
// moves the next run settleInterval on.
func (s *Service) settleDue(now time.Time) bool {
	s.settleMu.Lock()
	defer s.settleMu.Unlock()
	if now.Before(s.nextSettle) {
		return false
	}
	s.nextSettle = now.Add(settleInterval)
	return true
}

// settleStalled re-applies the stored approvals of every pending request.
// Review stores an approval and then acts on it; a replica that dies or
// loses the database in between leaves a request pending with enough
// approvals, and the reviewer's retry is rejected as a duplicate. This
// finds such requests, and likewise auto-approved or denied requests whose
// creator died before acting on the outcome, and approved requests never
// granted. It returns how many left the state they were found in.
func (s *Service) settleStalled(ctx context.Context) int {
	now := s.cfg.Now()
	n := 0
	for _, r := range s.requestsIn(ctx, store.RequestPending) {
		if r.Decision.Outcome != store.OutcomeNeedsApproval {
			if s.finishUndecided(ctx, r, now) {
				n++
			}
			continue
		}
		if !r.ApprovalDeadline.IsZero() && !now.Before(r.ApprovalDeadline) {
			continue // expirePending ends these
		}
		got, decided, err := s.settlePending(ctx, r.ID)
		if err != nil && !errors.Is(err, store.ErrConflict) {
			s.log.ErrorContext(ctx, "settle pending request failed", "request_id", r.ID, "error", err)
		}
		if decided {
			s.log.InfoContext(ctx, "settled a request its approvals had decided", "request_id", r.ID, "state", got.State)
			n++
		}
	}
	return n + s.resumeApproved(ctx, activateTimeout)
}

// finishUndecided acts on the policy outcome of a pending request that
// needs no approval. Create stores such a request and then acts on the
// outcome, so its replica may have died in between. It reports whether
// the request left pending.
func (s *Service) finishUndecided(ctx context.Context, r store.Request, now time.Time) bool {
	if now.Sub(r.CreatedAt) < activateTimeout {
		return false // Create may still be acting on it
	}
	s.log.WarnContext(ctx, "finishing a request its creator left undecided", "request_id", r.ID, "outcome", r.Decision.Outcome)
	got, err := s.applyDecision(ctx, r)
	if err != nil && !errors.Is(err, store.ErrConflict) {
		s.log.ErrorContext(ctx, "finish undecided request failed", "request_id", r.ID, "error", err)
	}
	return got.State != "" && got.State != store.RequestPending
}

// requestsIn returns up to store.MaxListLimit requests in state, or none
// when the listing fails, which it logs.
func (s *Service) requestsIn(ctx context.Context, state store.RequestState) []store.Request {
	page, err := s.cfg.Store.ListRequests(ctx, store.RequestFilter{States: []store.RequestState{state}, Limit: store.MaxListLimit})
	if err != nil {
		s.log.ErrorContext(ctx, "list requests failed", "state", state, "error", err)
		return nil
	}
	return page.Requests
}

// resumeApproved activates approved requests that have waited at least
// minAge since their approval: the replica that approved one died before
// granting it. The age keeps it from racing a live activation, which ends
// within activateTimeout, and activate lets a late approval lapse. It returns
// how many it activated or failed.
func (s *Service) resumeApproved(ctx context.Context, minAge time.Duration) int {
	now := s.cfg.Now()
	n := 0
	for _, r := range s.requestsIn(ctx, store.RequestApproved) {
		if now.Sub(r.UpdatedAt) < minAge {
			continue
		}
		s.log.WarnContext(ctx, "activating a request approved but never granted", "request_id", r.ID, "approved_at", r.UpdatedAt)
		got, err := s.activate(ctx, r)
		if err != nil && !errors.Is(err, store.ErrConflict) {
			s.log.ErrorContext(ctx, "activate approved request failed", "request_id", r.ID, "error", err)
		}
		if got.State != "" && got.State != store.RequestApproved {
			n++
		}
	}
	return n
}

// strandedBatch bounds the stranded requests one sweep finishes.
const strandedBatch = 100

// finishStranded finishes requests whose leases all ended but which a dead
// replica never moved on: their grants are revoked (or still being
// revoked), yet the API would show them active or revoking for good. It
// returns how many it finished.
func (s *Service) finishStranded(ctx context.Context) int {
	// A request that changed within the claim time may be in the middle
	// of being finished by a live replica, so it is left to that replica.
	now := s.cfg.Now()
	ids, err := s.cfg.Store.StrandedRequests(ctx, now, now.Add(-claimFor), strandedBatch)
	if err != nil {
		s.log.ErrorContext(ctx, "list stranded requests failed", "error", err)
		return 0
	}
	n := 0
	for _, id := range ids {
		r, err := s.finishRequest(ctx, id)
		if err != nil && !errors.Is(err, store.ErrConflict) {
			s.log.ErrorContext(ctx, "finish stranded request failed", "request_id", id, "error", err)
			continue
		}
		if r.State.Terminal() {
			s.log.InfoContext(ctx, "finished a request a replica left unfinished", "request_id", id, "state", r.State)
			n++
		}
	}
	return n
}

// Reconcile brings the store and Azure into agreement after a crash: grants
// left as intents are created (if a lease still holds them) or removed,
// pending requests whose stored approvals decide them are settled, and
// approved requests that never became active are activated.
func (s *Service) Reconcile(ctx context.Context) {
	grants, err := s.cfg.Store.NonTerminalGrants(ctx)
	if err != nil {
		s.log.ErrorContext(ctx, "reconcile: list grants failed", "error", err)
		return
	}
	fixed := 0
	for _, g := range grants {
		if g.State != store.GrantIntent {
			continue // active grants wait for expiry; revoking ones for ClaimRetries
		}
		leases, err := s.cfg.Store.ListLeases(ctx, store.LeaseFilter{GrantID: g.ID})
		if err != nil {
			s.log.ErrorContext(ctx, "reconcile: list leases failed", "grant_id", g.ID, "error", err)
			continue
		}
		held := false
		for _, l := range leases {
			held = held || l.State == store.LeaseActive
		}
		r, err := s.cfg.Store.GetRequest(ctx, g.RequestID)
		if err != nil {
			s.log.ErrorContext(ctx, "reconcile: read request failed", "request_id", g.RequestID, "error", err)
			continue
		}
		if held {
			// PUT is idempotent on the deterministic name, so creating again
			// finds what a crashed replica may have made.
			if err := s.createGrant(ctx, r, g); err != nil {
				s.log.ErrorContext(ctx, "reconcile: create grant failed", "grant_id", g.ID, "error", err)
			}
		} else {
			if _, err := s.cfg.Store.MarkGrant(ctx, g.ID, []store.GrantState{store.GrantIntent}, store.GrantRevoking, store.GrantUpdate{}); err == nil {
				g.State = store.GrantRevoking
				s.revokeGrant(ctx, g)
			}
		}
		fixed++
	}
	fixed += s.settleStalled(ctx)
	fixed += s.finishStranded(ctx)
	// At start, resume every approved request: one this replica was
	// granting when it died would otherwise wait activateTimeout. Another
	// replica may be granting it at this moment, which activate tolerates.
	fixed += s.resumeApproved(ctx, 0)
	s.log.InfoContext(ctx, "reconcile done", "fixed", fixed)
}
