// Package lifecycle carries one elevation from request to verified removal:
// resolve names, grant every pair, wait until the grant is effective, run the
// action, revoke, verify the removal and audit each step. A grant that this
// package created is revoked before Run returns, whatever happened to the
// action or to the caller's context, or Run returns a RevokeError naming it.
// A grant it did not create is never touched.
package lifecycle

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/azure"
)

// ARM is the part of Azure Resource Manager the lifecycle uses; *azure.RBAC
// implements it against Azure or the emulator.
type ARM interface {
	CreateAssignment(ctx context.Context, a azure.Assignment) (azure.Assignment, error)
	GetAssignment(ctx context.Context, scope, name string) (azure.Assignment, error)
	DeleteAssignment(ctx context.Context, scope, name string) (bool, error)
	FindAssignment(ctx context.Context, scope, roleDefinitionID, principalID string) (azure.Assignment, error)
	GetRoleDefinition(ctx context.Context, scope, guid string) (azure.RoleDefinition, error)
	FindRoleDefinition(ctx context.Context, scope, name string) (azure.RoleDefinition, error)
	Permissions(ctx context.Context, scope string) (azure.Permissions, error)
	GetResource(ctx context.Context, id, apiVersion string) (azure.Resource, error)
	CountAssignments(ctx context.Context, subscriptionScope string) (int, error)
	Locks(ctx context.Context, scope string) ([]azure.Lock, error)
}

// Clock is the time source; tests may replace it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Reporter receives one line per lifecycle step for the progress display.
type Reporter interface {
	Step(msg string)
}

type discardReporter struct{}

func (discardReporter) Step(string) {}

// Options tune retries and deadlines. Zero fields take the documented default.
type Options struct {
	// Concurrency bounds parallel lookups, grants and revokes. Default 50,
	// so a request of up to 50 pairs grants in one round of ARM writes.
	// ARM's 2024 token-bucket limits allow a burst of 200 writes and 200
	// deletes per subscription and service principal (refill 10/s), so 50
	// leaves room for other work of the same identity, and the SDK retries
	// a 429 after its Retry-After.
	Concurrency int
	// PrincipalWait is how long PrincipalNotFound is retried, to cover Entra
	// replication of a new identity. Default 2m.
	PrincipalWait time.Duration
	// EffectiveTimeout bounds the wait for RBAC propagation. Default 5m.
	EffectiveTimeout time.Duration
	// RevokeAttempts is the number of delete attempts per grant. Default 6.
	RevokeAttempts int
	// VerifyTimeout bounds the read-back after delete. Default 2m.
	VerifyTimeout time.Duration
	// BackoffBase and BackoffMax shape capped exponential backoff with full
	// jitter. Defaults 500ms and 15s.
	BackoffBase, BackoffMax time.Duration
	// RevokeTimeout bounds the whole revoke phase, which runs on a context
	// detached from the caller's so that a cancelled job still cleans up.
	// Default 5m.
	RevokeTimeout time.Duration
	// DeferEarlyRemoval makes a PIM removal that Azure refuses within five
	// minutes of the start (ActiveDurationTooShort) return a *RemoveLater
	// error at once, instead of waiting in the call until it may retry or
	// the grant ends. The broker sets it, because its sweeper schedules
	// retries and must not hold a worker for minutes.
	DeferEarlyRemoval bool
}

// DefaultConcurrency is the default of Options.Concurrency.
const DefaultConcurrency = 50

func (o *Options) setDefaults() {
	setDuration := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.RevokeAttempts <= 0 {
		o.RevokeAttempts = 6
	}
	setDuration(&o.PrincipalWait, 2*time.Minute)
	setDuration(&o.EffectiveTimeout, 5*time.Minute)
	setDuration(&o.VerifyTimeout, 2*time.Minute)
	setDuration(&o.BackoffBase, 500*time.Millisecond)
	setDuration(&o.BackoffMax, 15*time.Second)
	setDuration(&o.RevokeTimeout, 5*time.Minute)
}

// Engine runs elevations. Build it with New.
type Engine struct {
	arm      ARM
	audit    *audit.Log
	clock    Clock
	log      *slog.Logger
	progress Reporter
	opts     Options
	backends map[string]Backend
	// callerID is the object id of the identity Elevate runs as; the
	// effectiveness probe only works when it is the principal.
	callerID string
}

// Config holds an Engine's dependencies.
type Config struct {
	ARM      ARM
	Audit    *audit.Log // required: no elevation runs without an audit log
	CallerID string
	Clock    Clock
	Logger   *slog.Logger
	Progress Reporter
	Options  Options
	// Backends adds grant backends by name; the rbac backend, over ARM, is
	// always present unless replaced here.
	Backends map[string]Backend
}

// New returns an Engine with defaults filled in.
func New(cfg Config) *Engine {
	e := &Engine{arm: cfg.ARM, audit: cfg.Audit, clock: cfg.Clock, log: cfg.Logger,
		progress: cfg.Progress, opts: cfg.Options, callerID: cfg.CallerID}
	if e.clock == nil {
		e.clock = realClock{}
	}
	if e.log == nil {
		e.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if e.progress == nil {
		e.progress = discardReporter{}
	}
	e.opts.setDefaults()
	e.backends = map[string]Backend{BackendRBAC: &rbacBackend{e: e, arm: cfg.ARM}}
	for name, b := range cfg.Backends {
		e.backends[name] = b
	}
	return e
}

// backoff returns the wait before retry number attempt (1-based): a random
// duration up to min(base*2^(attempt-1), max), so concurrent retries spread out.
func (e *Engine) backoff(attempt int) time.Duration {
	d := e.opts.BackoffBase
	for i := 1; i < attempt && d < e.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, e.opts.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends.
func (e *Engine) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-e.clock.After(d):
		return nil
	}
}
