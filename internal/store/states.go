package store

import (
	"fmt"
	"slices"
)

// RequestState is the stage of a request in its life:
//
//	pending -> approved | denied | expired | cancelled
//	approved -> active | grant_failed
//	active -> revoking -> revoked
//	revoking -> revoke_failed -> revoked
//	revoke_failed -> revoking (a retry)
//
// Terminal states (denied, expired, cancelled, revoked, grant_failed) never
// change. revoke_failed is not terminal because the sweeper retries it.
type RequestState string

// Request states.
const (
	RequestPending      RequestState = "pending"
	RequestApproved     RequestState = "approved"
	RequestDenied       RequestState = "denied"
	RequestExpired      RequestState = "expired"
	RequestCancelled    RequestState = "cancelled"
	RequestActive       RequestState = "active"
	RequestGrantFailed  RequestState = "grant_failed"
	RequestRevoking     RequestState = "revoking"
	RequestRevoked      RequestState = "revoked"
	RequestRevokeFailed RequestState = "revoke_failed"
)

// requestEdges lists the allowed transitions of a request.
var requestEdges = map[RequestState][]RequestState{
	RequestPending:      {RequestApproved, RequestDenied, RequestExpired, RequestCancelled},
	RequestApproved:     {RequestActive, RequestGrantFailed},
	RequestActive:       {RequestRevoking},
	RequestRevoking:     {RequestRevoked, RequestRevokeFailed},
	RequestRevokeFailed: {RequestRevoked, RequestRevoking},
}

// RequestStates lists every request state, for validation and tests.
var RequestStates = []RequestState{
	RequestPending, RequestApproved, RequestDenied, RequestExpired,
	RequestCancelled, RequestActive, RequestGrantFailed, RequestRevoking,
	RequestRevoked, RequestRevokeFailed,
}

// Terminal reports whether s never changes again.
func (s RequestState) Terminal() bool {
	return slices.Contains(RequestStates, s) && len(requestEdges[s]) == 0
}

// CanTransition reports whether the state machine allows from -> to.
func (s RequestState) CanTransition(to RequestState) bool {
	return slices.Contains(requestEdges[s], to)
}

// GrantState is the stage of a grant in its life:
//
//	intent -> active | grant_failed | revoking
//	active -> revoking
//	revoking -> revoked | revoke_failed | revoking (attempt recorded)
//	revoke_failed -> revoking | revoked | revoke_failed (attempt recorded)
//
// intent is the row committed before the Azure call. intent -> revoking
// happens when every lease ends before the create finished. Terminal
// states: revoked and grant_failed.
type GrantState string

// Grant states.
const (
	GrantIntent       GrantState = "intent"
	GrantActive       GrantState = "active"
	GrantRevoking     GrantState = "revoking"
	GrantRevoked      GrantState = "revoked"
	GrantRevokeFailed GrantState = "revoke_failed"
	GrantGrantFailed  GrantState = "grant_failed"
)

var grantEdges = map[GrantState][]GrantState{
	GrantIntent:       {GrantActive, GrantGrantFailed, GrantRevoking},
	GrantActive:       {GrantRevoking},
	GrantRevoking:     {GrantRevoked, GrantRevokeFailed, GrantRevoking},
	GrantRevokeFailed: {GrantRevoking, GrantRevoked, GrantRevokeFailed},
}

// GrantStates lists every grant state.
var GrantStates = []GrantState{
	GrantIntent, GrantActive, GrantRevoking, GrantRevoked,
	GrantRevokeFailed, GrantGrantFailed,
}

// liveGrantStates are the non-terminal grant states. The partial unique
// index grants_live in each schema lists the same states.
var liveGrantStates = []GrantState{GrantIntent, GrantActive, GrantRevoking, GrantRevokeFailed}

// Terminal reports whether s never changes again.
func (s GrantState) Terminal() bool {
	return slices.Contains(GrantStates, s) && len(grantEdges[s]) == 0
}

// CanTransition reports whether the state machine allows from -> to.
func (s GrantState) CanTransition(to GrantState) bool {
	return slices.Contains(grantEdges[s], to)
}

// checkEdges rejects an empty from list and any from -> to pair the state
// machine does not allow, so a caller bug fails loudly instead of as a
// conflict.
func checkEdges[S ~string](from []S, to S, allowed func(S, S) bool) error {
	if len(from) == 0 {
		return fmt.Errorf("transition to %q: no from state given: %w", to, ErrInvalid)
	}
	for _, f := range from {
		if !allowed(f, to) {
			return fmt.Errorf("transition %q -> %q is not allowed: %w", f, to, ErrInvalid)
		}
	}
	return nil
}
