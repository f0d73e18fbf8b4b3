// Package store keeps the broker's durable state: requests, approvals,
// grants and their leases, the audit chain and the notification outbox.
//
// The store is the source of truth for what Elevate has granted. The broker
// commits an intent here before any Azure call, and every state change is a
// conditional update (UPDATE ... WHERE state IN (...)), so two broker
// replicas can never both grant or both revoke the same thing. Two backends
// implement Store: SQLite for one broker process (OpenSQLite) and PostgreSQL
// for several replicas that share one database (OpenPostgres).
package store

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/elevate-dev/elevate/internal/crashpoint"
)

// Sentinel errors. Every error a Store returns for these cases wraps one of
// them, so callers test with errors.Is and map them to HTTP status or exit
// codes at the edge.
var (
	// ErrNotFound means no row has the id or key given.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the row exists but is not in a state that allows the
	// change, usually because another caller or replica changed it first.
	ErrConflict = errors.New("conflict")
	// ErrDuplicate means a row with the same unique key exists already.
	ErrDuplicate = errors.New("duplicate")
	// ErrInvalid means the caller passed an invalid argument, such as a
	// transition that the state machine does not allow.
	ErrInvalid = errors.New("invalid argument")
)

// Store is the broker's storage. Implementations are safe for concurrent use
// by many goroutines, and the PostgreSQL one by many processes.
type Store interface {
	// CreateRequest inserts r in state pending, filling ID, CreatedAt,
	// UpdatedAt and Version. A request with the same requester and
	// idempotency key returns the stored one with created false, or
	// ErrConflict when its hash differs from r.Hash.
	CreateRequest(ctx context.Context, r Request) (stored Request, created bool, err error)
	GetRequest(ctx context.Context, id string) (Request, error)
	// ListRequests returns requests newest first, one page at a time.
	ListRequests(ctx context.Context, f RequestFilter) (RequestPage, error)
	// TransitionRequest moves request id from one of the states in from to
	// state to and applies u, in one conditional update. It returns
	// ErrConflict when the request is not in from, and ErrInvalid when the
	// state machine has no edge from a state in from to to.
	TransitionRequest(ctx context.Context, id string, from []RequestState, to RequestState, u RequestUpdate) (Request, error)

	// ExtendRequest moves the expiry of an active request and its active
	// leases later, in one transaction. It returns ErrConflict when the
	// request is not active, has expired, has a lease a sweeper claimed, or
	// the new expiry is not later than the current one.
	ExtendRequest(ctx context.Context, id string, expiresAt time.Time) (Request, error)

	// AddApproval records one reviewer's verdict on a pending request. It
	// returns ErrDuplicate when the reviewer has one already, and ErrConflict
	// when the request is no longer pending or its hash differs from
	// a.RequestHash, because then the reviewer saw something else.
	AddApproval(ctx context.Context, a Approval) (Approval, error)
	// ListApprovals returns the approvals of a request, oldest first.
	ListApprovals(ctx context.Context, requestID string) ([]Approval, error)

	// AcquireGrant finds or creates the live grant for one principal, role
	// and scope and adds a lease on it for the request, in one transaction.
	// See Acquisition for when the caller must create the Azure object.
	AcquireGrant(ctx context.Context, p AcquireParams) (Acquisition, error)
	GetGrant(ctx context.Context, id string) (Grant, error)
	// MarkGrant moves grant id from a state in from to state to and applies
	// u, like TransitionRequest.
	MarkGrant(ctx context.Context, id string, from []GrantState, to GrantState, u GrantUpdate) (Grant, error)
	// ReleaseLease ends an active lease. When it was the grant's last active
	// lease, the grant moves to revoking in the same transaction and the
	// result sets Revoke, so the caller deletes it. Releasing a released lease
	// returns ErrConflict, so only one caller proceeds.
	ReleaseLease(ctx context.Context, leaseID string) (Release, error)
	// ListLeases returns the leases of a request or of a grant.
	ListLeases(ctx context.Context, f LeaseFilter) ([]Lease, error)
	// ClaimExpired reserves up to limit active leases whose expiry is at or
	// before now for owner, until now+claimFor. A lease reserved by one
	// caller is not returned to another until that reservation ends.
	ClaimExpired(ctx context.Context, now time.Time, limit int, owner string, claimFor time.Duration) ([]Lease, error)
	// ClaimRetries reserves up to limit grants in revoking or revoke_failed
	// whose next attempt is due, counts the attempt and moves their next
	// attempt to now+claimFor, so another replica retries only if this one
	// fails to report back.
	ClaimRetries(ctx context.Context, now time.Time, limit int, owner string, claimFor time.Duration) ([]Grant, error)
	// StrandedRequests returns up to limit ids of requests that hold no
	// active lease yet are not finished: revoking or revoke_failed, or
	// active past their expiry at now, and unchanged since quietSince. A
	// replica that died between ending the leases and moving the request
	// on leaves them so.
	StrandedRequests(ctx context.Context, now, quietSince time.Time, limit int) ([]string, error)
	// NonTerminalGrants returns every grant that is not revoked or
	// grant_failed, for reconciliation with Azure at start-up.
	NonTerminalGrants(ctx context.Context) ([]Grant, error)
	// ActiveGrants returns the grants in state active.
	ActiveGrants(ctx context.Context) ([]Grant, error)

	// AppendAudit appends one event to the hash chain and returns it with
	// Seq, Time, PrevHash and Hash filled.
	AppendAudit(ctx context.Context, e AuditEvent) (AuditEvent, error)
	// AuditRange returns up to limit events with seq >= fromSeq, in order.
	AuditRange(ctx context.Context, fromSeq int64, limit int) ([]AuditEvent, error)
	// AuditHead returns the seq and hash of the last event.
	AuditHead(ctx context.Context) (AuditHead, error)

	// Enqueue stores a notification for delivery, due now.
	Enqueue(ctx context.Context, kind string, payload json.RawMessage) (OutboxMessage, error)
	// EnqueueOnce stores a message with the caller's id, due now, unless
	// a message with that id exists already, delivered or not. Then it
	// changes nothing and returns created false, so a caller that derives
	// the id from its input can repeat the call without a second message.
	EnqueueOnce(ctx context.Context, id, kind string, payload json.RawMessage) (created bool, err error)
	// ClaimDue reserves up to limit undelivered messages that are due,
	// counts the attempt and moves their next attempt to now+claimFor.
	ClaimDue(ctx context.Context, now time.Time, limit int, claimFor time.Duration) ([]OutboxMessage, error)
	// MarkDelivered records the delivery of message id.
	MarkDelivered(ctx context.Context, id string) error
	// MarkFailed records a failed delivery and when to try again.
	MarkFailed(ctx context.Context, id string, cause string, next time.Time) error

	// Migrations returns the schema migrations applied, in order.
	Migrations(ctx context.Context) ([]Migration, error)
	Ping(ctx context.Context) error
	Close() error
}

// Options configure a store. The zero value is ready to use.
type Options struct {
	// Now returns the current time. It defaults to time.Now, and tests
	// inject a fake clock. The store truncates every time to microseconds,
	// the precision of PostgreSQL timestamps.
	Now func() time.Time
	// RevokeClaim is how long ReleaseLease reserves a grant it moves to
	// revoking for the releasing caller. After it, ClaimRetries hands the
	// grant to any replica, so a revoke survives a crashed releaser.
	// Default 5 minutes.
	RevokeClaim time.Duration
	// Logger receives migration and retry logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultRevokeClaim is the default of Options.RevokeClaim.
const DefaultRevokeClaim = 5 * time.Minute

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	// The crashpoints test build may run the clock fast; see crashpoint.Clock.
	o.Now = crashpoint.Clock(o.Now)
	if o.RevokeClaim <= 0 {
		o.RevokeClaim = DefaultRevokeClaim
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// utc returns t in UTC truncated to microseconds, the precision both
// backends store, so a value read back equals the value written.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}
