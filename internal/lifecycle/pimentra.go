package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/azure"
)

// entraBackend grants Microsoft Entra directory roles through Graph's
// roleManagement/directory/roleAssignmentScheduleRequests (v1.0). A pair's
// RoleID is the directory role's template id; its ARM scope only carries
// the pair through the request, and the grant applies at
// PIMConfig.DirectoryScope.
//
// Graph names requests itself (POST returns the id), so the grant keeps
// the request's path in AssignmentID, and Exists and Remove read it back.
type entraBackend struct {
	e     *Engine
	graph DirectoryClient
	cfg   *PIMConfig
}

// entraRequestPrefix starts the AssignmentID of an entra-role grant.
const entraRequestPrefix = "/roleManagement/directory/roleAssignmentScheduleRequests/"

// Grant activates the principal's eligibility (selfActivate) or assigns
// the role until the deadline (adminAssign), as EntraMode or the
// principal's eligibility decides.
func (b *entraBackend) Grant(ctx context.Context, req access.Request, g *Grant) error {
	e := b.e
	g.Backend = BackendEntraRole
	scope := b.cfg.DirectoryScope
	mode, err := b.mode(ctx, req, g.Pair.RoleID)
	if err != nil {
		return fmt.Errorf("%w: Entra role %s at %q: %w", ErrGrant, g.RoleName, scope, err)
	}
	start := e.clock.Now().UTC()
	dr := azure.DirectoryScheduleRequest{
		Action:           mode,
		PrincipalID:      req.Principal.ID,
		RoleDefinitionID: g.Pair.RoleID,
		DirectoryScopeID: scope,
		Justification:    justificationMarker(req.ID) + truncate(req.Justification, 400),
		Start:            start,
	}
	if mode == EntraSelfActivate {
		dr.Duration = req.Duration
	} else {
		dr.End = start.Add(req.Duration)
	}
	if req.Metadata.Ticket != "" {
		dr.TicketNumber, dr.TicketSystem = req.Metadata.Ticket, b.cfg.TicketSystem
	}

	out, err := b.graph.Request(ctx, dr)
	if errors.Is(err, azure.ErrAssignmentExists) {
		return b.adopt(ctx, req, g)
	}
	if err != nil {
		return fmt.Errorf("%w: Entra role %s at %q: %w", ErrGrant, g.RoleName, scope, err)
	}
	g.AssignmentID = entraRequestPrefix + out.ID
	label := fmt.Sprintf("%s request %s for Entra role %s at %q", mode, out.ID, g.RoleName, scope)
	status, err := e.awaitDecision(ctx, b.cfg.ApprovalWait, label, out.Status,
		func(ctx context.Context) (string, error) {
			r, err := b.graph.GetRequest(ctx, out.ID)
			return r.Status, err
		},
		func(ctx context.Context) error { return b.graph.CancelRequest(ctx, out.ID) })
	if err == nil {
		err = checkDecided(label, status)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrGrant, err)
	}
	inst, err := b.graph.ActiveInstance(ctx, req.Principal.ID, g.Pair.RoleID, scope)
	switch {
	case err == nil:
		g.EndsAt = inst.End
	case errors.Is(err, azure.ErrNotFound) && status == azure.StatusGranted:
		g.EndsAt = start.Add(req.Duration)
	default:
		// PIM granted the request, so the grant exists and ends at the
		// latest when the request asked it to.
		g.Created, g.GrantedAt, g.EndsAt = true, e.clock.Now(), start.Add(req.Duration)
		return fmt.Errorf("%w: read the active assignment %s made: %w", ErrGrant, label, err)
	}
	g.Created = true
	g.GrantedAt = e.clock.Now()
	e.log.InfoContext(ctx, "Entra role active", "request_id", req.ID, "graph_request_id", out.ID, "mode", mode, "ends_at", g.EndsAt)
	return nil
}

// mode returns the Graph action for the grant: the configured one, else
// selfActivate when the principal is the caller and eligible, else
// adminAssign. A self-activation for another principal or a group is
// rejected here, before Graph sees it.
func (b *entraBackend) mode(ctx context.Context, req access.Request, roleID string) (string, error) {
	mode := b.cfg.EntraMode
	if mode == "" {
		mode = EntraAdminAssign
		if strings.EqualFold(req.Principal.ID, b.e.callerID) {
			_, err := b.graph.FindEligibility(ctx, req.Principal.ID, roleID, b.cfg.DirectoryScope)
			switch {
			case err == nil:
				mode = EntraSelfActivate
			case !errors.Is(err, azure.ErrNotFound):
				return "", err
			}
		}
	}
	if mode == EntraSelfActivate {
		if err := b.e.selfActivation(req); err != nil {
			return "", err
		}
	}
	return mode, nil
}

// adopt takes over an active assignment of the Entra role that lasts the
// whole window.
func (b *entraBackend) adopt(ctx context.Context, req access.Request, g *Grant) error {
	inst, err := b.graph.ActiveInstance(ctx, req.Principal.ID, g.Pair.RoleID, b.cfg.DirectoryScope)
	if err != nil {
		return fmt.Errorf("%w: Entra role %s is already assigned but the assignment could not be read: %w", ErrGrant, g.RoleName, err)
	}
	if err := b.e.adoptWindow(req, g, inst); err != nil {
		return err
	}
	b.e.recordGrant(ctx, req, "adopt", "ok", *g, fmt.Sprintf(
		"Entra role already active for the principal at %q until %s, which covers the requested window; recorded as pre-existing and never removed by Elevate",
		b.cfg.DirectoryScope, endLabel(inst.End)))
	return nil
}

// Remove ends the grant with selfDeactivate or adminRemove, matching how
// it was made.
func (b *entraBackend) Remove(ctx context.Context, req access.Request, g *Grant) error {
	made, err := b.request(ctx, *g)
	if errors.Is(err, azure.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if slices.Contains(awaitingApproval, made.Status) {
		// A late approval must grant nothing.
		if err := b.graph.CancelRequest(ctx, made.ID); err != nil {
			return fmt.Errorf("cancel Entra request %s, still %s: %w; cancel it in the Entra admin center before an approver grants it",
				made.ID, made.Status, err)
		}
		b.e.recordGrant(ctx, req, "cancel", "ok", *g, fmt.Sprintf("canceled Entra request %s, still %s", made.ID, made.Status))
		return nil
	}
	inst, err := b.graph.ActiveInstance(ctx, made.PrincipalID, made.RoleDefinitionID, made.DirectoryScopeID)
	if errors.Is(err, azure.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	end := func(action string) func(context.Context, int) error {
		return func(ctx context.Context, _ int) error {
			_, err := b.graph.Request(ctx, azure.DirectoryScheduleRequest{
				Action: action, PrincipalID: made.PrincipalID, RoleDefinitionID: made.RoleDefinitionID,
				DirectoryScopeID: made.DirectoryScopeID, Start: b.e.clock.Now().UTC(),
				Justification: justificationMarker(req.ID) + "end of the elevation",
			})
			return err
		}
	}
	if strings.EqualFold(made.Action, EntraSelfActivate) {
		return b.e.deactivate(ctx, req, g, deactivation{
			label: fmt.Sprintf("the activation of Entra role %s at %q", g.RoleName, made.DirectoryScopeID),
			inst:  inst,
			send:  end("selfDeactivate"),
		})
	}
	return end("adminRemove")(ctx, 1)
}

// Exists reports whether the principal still holds the Entra role at the
// directory scope the grant's request named, or that request still waits
// for an approver and so may grant it later. A grant whose request was
// never accepted has no AssignmentID and does not exist.
func (b *entraBackend) Exists(ctx context.Context, g Grant) (bool, error) {
	made, err := b.request(ctx, g)
	if errors.Is(err, azure.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if slices.Contains(awaitingApproval, made.Status) {
		return true, nil
	}
	_, err = b.graph.ActiveInstance(ctx, made.PrincipalID, made.RoleDefinitionID, made.DirectoryScopeID)
	if errors.Is(err, azure.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// request reads back the Graph request that made g; ErrNotFound when g
// has none.
func (b *entraBackend) request(ctx context.Context, g Grant) (azure.DirectoryScheduleRequest, error) {
	id, ok := strings.CutPrefix(g.AssignmentID, entraRequestPrefix)
	if !ok || id == "" {
		return azure.DirectoryScheduleRequest{}, fmt.Errorf("Entra grant %s has no schedule request: %w", g.AssignmentName, azure.ErrNotFound)
	}
	return b.graph.GetRequest(ctx, id)
}

// FindEntraGrants fills in the Graph schedule request of each entra-role
// grant of req that has none, as when the runner died before it wrote the
// grant's audit record. A grant's request is the selfActivate or
// adminAssign request for the same principal, role and directory scope
// whose justification starts with the request's marker. Requests that
// granted nothing (Denied, Canceled, Failed) are skipped, and of several
// the newest wins. One still waiting for a PIM approver is canceled. It
// returns the number of grants it filled in.
func (e *Engine) FindEntraGrants(ctx context.Context, req access.Request, grants []Grant) (int, error) {
	b, ok := e.backends[BackendEntraRole].(*entraBackend)
	if !ok {
		return 0, nil
	}
	marker := justificationMarker(req.ID)
	found := 0
	for i := range grants {
		g := &grants[i]
		if g.Backend != BackendEntraRole || g.AssignmentID != "" || g.PreExisting {
			continue
		}
		requests, err := b.graph.ListRequests(ctx, req.Principal.ID, g.Pair.RoleID, b.cfg.DirectoryScope)
		if err != nil {
			return found, fmt.Errorf("find the Entra grant of role %s for request %s: %w", g.Pair.RoleID, req.ID, err)
		}
		var best *azure.DirectoryScheduleRequest
		for j := range requests {
			r := &requests[j]
			granting := strings.EqualFold(r.Action, EntraSelfActivate) || strings.EqualFold(r.Action, EntraAdminAssign)
			ended := r.Status == azure.StatusDenied || r.Status == azure.StatusCanceled || r.Status == azure.StatusFailed
			if !granting || ended || !strings.HasPrefix(strings.ToLower(r.Justification), marker) {
				continue
			}
			if best == nil || r.CreatedOn.After(best.CreatedOn) {
				best = r
			}
		}
		if best == nil {
			continue
		}
		// The runner that waited for this approval is gone, so cancel the
		// request before an approver grants it to no one's knowledge.
		if slices.Contains(awaitingApproval, best.Status) {
			if err := b.graph.CancelRequest(ctx, best.ID); err != nil {
				return found, fmt.Errorf("cancel the pending Entra request %s of request %s: %w", best.ID, req.ID, err)
			}
			e.recordGrant(ctx, req, "cancel", "ok", *g, fmt.Sprintf("canceled Entra request %s, still %s, found by its justification", best.ID, best.Status))
		}
		g.AssignmentID = entraRequestPrefix + best.ID
		found++
		e.log.InfoContext(ctx, "found Entra grant by its justification marker", "request_id", req.ID,
			"graph_request_id", best.ID, "role_id", g.Pair.RoleID, "status", best.Status)
	}
	return found, nil
}
