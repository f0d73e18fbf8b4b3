package broker

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/store"
)

func TestLockedScopeRefusedBeforeReview(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	seed := emulator.DefaultSeed()
	seed.Locks = append(seed.Locks, emulator.Lock{Scope: vaultID, Name: "keep-vault", Level: emulator.LockCanNotDelete})
	srv, err := emulator.Start(ctx, emulator.Config{Seed: seed, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	clock := &fakeClock{now: time.Now().UTC()}
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "broker.db"), store.Options{Now: clock.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{srv: srv, store: st, svc: newService(t, srv, st, clock, "replica-a"), clock: clock}

	r, err := h.svc.Create(ctx, pipeline, vaultRequest("locked"))
	if err != nil {
		t.Fatal(err)
	}
	if r.State != store.RequestDenied {
		t.Fatalf("state = %s; want denied: a lock would block the revoke", r.State)
	}
	if !strings.Contains(r.Decision.Message, "keep-vault") {
		t.Errorf("decision message %q: want it to name the lock", r.Decision.Message)
	}
	failed := 0
	for _, c := range r.Decision.Preflight {
		if !c.OK && !c.Warning {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("failed pre-flight checks stored = %d; want 1 (%+v)", failed, r.Decision.Preflight)
	}
	if n := h.liveAssignments(); n != 0 {
		t.Errorf("assignments = %d; want 0", n)
	}
}
