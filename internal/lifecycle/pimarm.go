package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/azure"
)

// pimARM holds what the two ARM PIM backends share. Each grant's schedule
// request is named by the grant's deterministic AssignmentName, so a retry
// or a crash recovery reads the request it made.
type pimARM struct {
	e   *Engine
	pim PIMClient
	cfg *PIMConfig
}

// pimActivateBackend grants by activating the principal's eligible
// assignment (SelfActivate) and removes with SelfDeactivate.
type pimActivateBackend struct{ pimARM }

// pimAssignBackend grants a time-bound active assignment (AdminAssign) that
// Azure ends at the deadline by itself, and removes with AdminRemove.
type pimAssignBackend struct{ pimARM }

// Grant activates the eligibility linked to the pair, waits for a PIM
// approval up to ApprovalWait, and adopts an active assignment that covers
// the whole window.
func (b *pimActivateBackend) Grant(ctx context.Context, req access.Request, g *Grant) error {
	g.Backend = BackendPIMActivate
	if err := b.e.selfActivation(req); err != nil {
		return fmt.Errorf("%w: role %s at %s: %w", ErrGrant, g.RoleName, scopeLabel(*g), err)
	}
	scope := g.Pair.Scope.String()
	elig, err := b.pim.FindEligibility(ctx, scope, req.Principal.ID, g.RoleDefinitionID)
	if err != nil {
		return fmt.Errorf("%w: role %s at %s: %w", ErrGrant, g.RoleName, scope, err)
	}
	return b.request(ctx, req, g, azure.ScheduleRequest{
		RequestType:         azure.RequestSelfActivate,
		LinkedEligibilityID: elig.ID,
		Duration:            req.Duration,
	})
}

// Remove deactivates the activation, handling PIM's five minute minimum.
func (b *pimActivateBackend) Remove(ctx context.Context, req access.Request, g *Grant) error {
	if err := b.withdrawPending(ctx, req, g); err != nil {
		return err
	}
	scope := g.Pair.Scope.String()
	inst, err := b.pim.ActiveInstance(ctx, scope, req.Principal.ID, g.RoleDefinitionID)
	if errors.Is(err, azure.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return b.e.deactivate(ctx, req, g, deactivation{
		label: fmt.Sprintf("the activation of %s at %s", g.RoleName, scope),
		inst:  inst,
		send: func(ctx context.Context, try int) error {
			return b.remove(ctx, req, g, azure.RequestSelfDeactivate, try)
		},
	})
}

// Grant assigns the role until now plus the request duration.
func (b *pimAssignBackend) Grant(ctx context.Context, req access.Request, g *Grant) error {
	g.Backend = BackendPIMAssign
	start := b.e.clock.Now().UTC()
	return b.request(ctx, req, g, azure.ScheduleRequest{
		RequestType: azure.RequestAdminAssign,
		Start:       start,
		End:         start.Add(req.Duration),
	})
}

// Remove ends the assignment early with AdminRemove. PIM refuses to remove
// any assignment within five minutes of its start, as it does a
// deactivation, so the same retry or leave-to-expire rule applies.
func (b *pimAssignBackend) Remove(ctx context.Context, req access.Request, g *Grant) error {
	if err := b.withdrawPending(ctx, req, g); err != nil {
		return err
	}
	scope := g.Pair.Scope.String()
	inst, err := b.pim.ActiveInstance(ctx, scope, req.Principal.ID, g.RoleDefinitionID)
	if errors.Is(err, azure.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return b.e.deactivate(ctx, req, g, deactivation{
		label: fmt.Sprintf("the assignment of %s at %s", g.RoleName, scope),
		inst:  inst,
		send: func(ctx context.Context, try int) error {
			return b.remove(ctx, req, g, azure.RequestAdminRemove, try)
		},
	})
}

// request sends the grant's schedule request, waits for its decision and
// records the active instance, or adopts one that already exists.
func (b *pimARM) request(ctx context.Context, req access.Request, g *Grant, sr azure.ScheduleRequest) error {
	e := b.e
	scope := g.Pair.Scope.String()
	log := e.log.With("request_id", req.ID, "request_name", g.AssignmentName, "scope", scope, "role_id", g.Pair.RoleID, "backend", g.Backend)
	sr.PrincipalID = req.Principal.ID
	sr.RoleDefinitionID = g.RoleDefinitionID
	sr.Justification = justificationMarker(req.ID) + truncate(req.Justification, 400)
	if sr.Start.IsZero() {
		sr.Start = e.clock.Now().UTC()
	}
	if req.Metadata.Ticket != "" {
		sr.TicketNumber, sr.TicketSystem = req.Metadata.Ticket, b.cfg.TicketSystem
	}

	out, err := b.pim.Request(ctx, scope, g.AssignmentName, sr)
	if errors.Is(err, azure.ErrAssignmentExists) {
		return b.adopt(ctx, req, g)
	}
	if err != nil {
		return fmt.Errorf("%w: role %s at %s: %w", ErrGrant, g.RoleName, scope, err)
	}
	label := fmt.Sprintf("%s request %s for %s at %s", sr.RequestType, g.AssignmentName, g.RoleName, scope)
	status, err := e.awaitDecision(ctx, b.cfg.ApprovalWait, label, out.Status,
		func(ctx context.Context) (string, error) {
			r, err := b.pim.GetRequest(ctx, scope, g.AssignmentName)
			return r.Status, err
		},
		func(ctx context.Context) error { return b.pim.CancelRequest(ctx, scope, g.AssignmentName) })
	if err == nil {
		err = checkDecided(label, status)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrGrant, err)
	}

	inst, err := b.pim.ActiveInstance(ctx, scope, req.Principal.ID, g.RoleDefinitionID)
	switch {
	case err == nil:
		g.AssignmentID = orString(inst.RoleAssignmentID, inst.ID)
		g.EndsAt = inst.End
	case status == azure.StatusGranted && errors.Is(err, azure.ErrNotFound):
		// Granted means the schedule starts later; it has no instance yet.
		g.EndsAt = sr.End
	default:
		// PIM granted the request, so the grant exists and ends at the
		// latest when the request asked it to.
		g.Created, g.GrantedAt, g.EndsAt = true, e.clock.Now(), requestedEnd(sr)
		return fmt.Errorf("%w: read the active assignment %s made: %w", ErrGrant, label, err)
	}
	g.Created = true
	g.GrantedAt = e.clock.Now()
	log.InfoContext(ctx, "PIM assignment active", "status", status, "assignment_id", g.AssignmentID, "ends_at", g.EndsAt)
	return nil
}

// requestedEnd returns when the schedule of sr ends: its End, else its
// Start plus Duration, else zero for no expiration.
func requestedEnd(sr azure.ScheduleRequest) time.Time {
	switch {
	case !sr.End.IsZero():
		return sr.End
	case sr.Duration > 0:
		return sr.Start.Add(sr.Duration)
	}
	return time.Time{}
}

// adopt takes over an active assignment of the role that already exists,
// from PIM or a plain role assignment, when it lasts the whole window.
func (b *pimARM) adopt(ctx context.Context, req access.Request, g *Grant) error {
	e := b.e
	scope := g.Pair.Scope.String()
	inst, err := b.pim.ActiveInstance(ctx, scope, req.Principal.ID, g.RoleDefinitionID)
	if errors.Is(err, azure.ErrNotFound) {
		// Not a PIM assignment: a plain role assignment, which never ends.
		a, ferr := e.arm.FindAssignment(ctx, scope, g.RoleDefinitionID, req.Principal.ID)
		if ferr != nil {
			return fmt.Errorf("%w: role %s at %s exists but could not be read: %w", ErrGrant, g.RoleName, scope, ferr)
		}
		inst = azure.Instance{ID: a.ID, RoleAssignmentID: a.ID}
	} else if err != nil {
		return fmt.Errorf("%w: role %s at %s exists but could not be read: %w", ErrGrant, g.RoleName, scope, err)
	}
	if err := e.adoptWindow(req, g, inst); err != nil {
		return err
	}
	e.recordGrant(ctx, req, "adopt", "ok", *g, fmt.Sprintf(
		"role already active for the principal until %s, which covers the requested window; recorded as pre-existing and never removed by Elevate",
		endLabel(inst.End)))
	return nil
}

// remove sends an end request (SelfDeactivate or AdminRemove). Its name
// derives from the grant and the try, so the engine's retries of the same
// try read back a request that went through instead of failing on the
// name.
func (b *pimARM) remove(ctx context.Context, req access.Request, g *Grant, requestType string, try int) error {
	scope := g.Pair.Scope.String()
	name := requestName(*g, fmt.Sprintf("%s %d", requestType, try))
	if prev, err := b.pim.GetRequest(ctx, scope, name); err == nil {
		if prev.Status == azure.StatusRevoked || prev.Status == azure.StatusProvisioned {
			return nil
		}
	}
	_, err := b.pim.Request(ctx, scope, name, azure.ScheduleRequest{
		RequestType:      requestType,
		PrincipalID:      req.Principal.ID,
		RoleDefinitionID: g.RoleDefinitionID,
		Justification:    justificationMarker(req.ID) + "end of the elevation",
		Start:            b.e.clock.Now().UTC(),
	})
	return err
}

// withdrawPending cancels the grant's own schedule request while it still
// waits for a PIM approver, as one does whose runner died during the
// approval wait, so that a late approval grants nothing.
func (b *pimARM) withdrawPending(ctx context.Context, req access.Request, g *Grant) error {
	scope := g.Pair.Scope.String()
	r, err := b.pim.GetRequest(ctx, scope, g.AssignmentName)
	if errors.Is(err, azure.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !slices.Contains(awaitingApproval, r.Status) {
		return nil
	}
	if err := b.pim.CancelRequest(ctx, scope, g.AssignmentName); err != nil {
		return fmt.Errorf("cancel PIM request %s, still %s: %w; cancel it in the Azure portal before an approver grants it",
			g.AssignmentName, r.Status, err)
	}
	b.e.recordGrant(ctx, req, "cancel", "ok", *g, fmt.Sprintf("canceled PIM request %s, still %s", g.AssignmentName, r.Status))
	return nil
}

// Exists reports whether the principal still holds an active PIM
// assignment of the role at the scope made by this grant's request, or
// that request still waits for an approver and so may grant it later.
func (b *pimARM) Exists(ctx context.Context, g Grant) (bool, error) {
	scope := g.Pair.Scope.String()
	r, err := b.pim.GetRequest(ctx, scope, g.AssignmentName)
	if errors.Is(err, azure.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if slices.Contains(awaitingApproval, r.Status) {
		return true, nil
	}
	if _, err := b.pim.ActiveInstance(ctx, scope, r.PrincipalID, g.RoleDefinitionID); err != nil {
		if errors.Is(err, azure.ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
