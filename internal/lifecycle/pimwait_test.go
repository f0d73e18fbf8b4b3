package lifecycle_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// scaledClock is emuClock whose waits also take real time, one
// thousandth of the emulated wait, as a real clock's would at scale.
type scaledClock struct{ *emuClock }

func (c scaledClock) After(d time.Duration) <-chan time.Time {
	time.Sleep(d / 1000)
	return c.emuClock.After(d)
}

// TestPIMWaitDoesNotUseRevokeTimeout activates a role for a command that
// ends at once. PIM rejects the deactivation for five minutes, so the
// revoke waits longer than the revoke timeout. That timeout bounds the
// revoke's own work, so the wait must not fail it.
func TestPIMWaitDoesNotUseRevokeTimeout(t *testing.T) {
	pe := startPIMEnv(t)
	path := filepath.Join(pe.dir, uuid.NewString()+".jsonl")
	log, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close() })
	opts := fastOptions()
	opts.RevokeTimeout = 100 * time.Millisecond // the five-minute wait takes 300 ms here
	engine := lifecycle.New(lifecycle.Config{ARM: pe.rbac, Audit: log, CallerID: pe.caller.ObjectID,
		Clock: scaledClock{pe.clock}, Options: opts})
	if err := engine.AddPIM(pe.pimConfig(0)); err != nil {
		t.Fatal(err)
	}
	r := &run{engine: engine, auditPath: path, logs: &syncBuffer{}}
	req := pe.pimRequest(t, 10*time.Minute, pair(t, roleReader, vaultScope))
	routed(t, r, req, lifecycle.BackendPIMActivate)
	noop := funcAction{name: "noop", run: func(context.Context) (lifecycle.ActionResult, error) {
		return lifecycle.ActionResult{}, nil
	}}
	if _, err := engine.Run(context.Background(), req, r.roles(t, req.Pairs), noop, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if pe.armActive(t, vaultScope, pipelineOID, roleReader) {
		t.Error("active after Run: got true; want the activation ended")
	}
}
