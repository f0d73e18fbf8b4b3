package lifecycle_test

import (
	"context"
	"strings"
	"testing"

	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// TestPreflightLocksKeepsScopeOrder checks three scopes at once, one of
// them under a CanNotDelete lock: each scope gets one check, in the
// order the pairs name them, and only the locked one fails.
func TestPreflightLocksKeepsScopeOrder(t *testing.T) {
	seed := emulator.DefaultSeed()
	seed.Locks = append(seed.Locks, emulator.Lock{Scope: storageScope, Name: "keep-storage", Level: emulator.LockCanNotDelete})
	te := startEnv(t, emulator.Config{Seed: seed})
	r := te.newRun(t, fastOptions())
	req := te.request(t, pair(t, roleReader, vaultScope), pair(t, roleReader, storageScope),
		pair(t, roleSecretsOfficer, vaultScope), pair(t, roleReader, demoGroup))

	checks := r.engine.PreflightLocks(context.Background(), req)
	want := []struct {
		scope string
		ok    bool
	}{{vaultScope, true}, {storageScope, false}, {demoGroup, true}}
	if len(checks) != len(want) {
		t.Fatalf("checks: got %d; want %d, one per scope", len(checks), len(want))
	}
	for i, w := range want {
		c := checks[i]
		if c.Name != lifecycle.CheckLocks || !strings.EqualFold(c.Scope, w.scope) || c.OK != w.ok {
			t.Errorf("check %d: got %s at %s ok=%v (%s); want locks at %s ok=%v", i, c.Name, c.Scope, c.OK, c.Detail, w.scope, w.ok)
		}
	}
	if !strings.Contains(checks[1].Detail, "keep-storage") {
		t.Errorf("locked scope's detail: got %q; want the lock's name", checks[1].Detail)
	}
}
