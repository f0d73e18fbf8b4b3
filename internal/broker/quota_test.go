package broker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/store"
)

// countedARM reports a fixed number of role assignments per subscription
// and counts how often it was asked.
type countedARM struct {
	*mapARM
	mu    sync.Mutex
	used  int
	err   error
	calls int
}

func (c *countedARM) CountAssignments(context.Context, string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return c.used, c.err
}

// TestQuotaCheckUsesCachedCount fills a subscription to one assignment
// below its quota. The first request passes, the second is denied before
// approval with the figures named, and both used one count. A new count is
// taken once the cached one is older than a minute.
func TestQuotaCheckUsesCachedCount(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)}
	arm := &countedARM{mapARM: newMapARM(), used: lifecycle.DefaultAssignmentLimit - 1}
	svc := serviceOn(t, openSQLite(t, clock.Now), arm, clock.Now, "replica-a")

	first, err := svc.Create(ctx, pipeline, readerFor(0, "q1"))
	if err != nil || first.State != store.RequestActive {
		t.Fatalf("first request: got %s, %v; want active", first.State, err)
	}
	second, err := svc.Create(ctx, pipeline, readerFor(1, "q2"))
	if err != nil {
		t.Fatalf("second request: %v", err)
	}
	if second.State != store.RequestDenied {
		t.Fatalf("second request: got %s; want denied by the quota check", second.State)
	}
	if !strings.Contains(second.Error, "assignment quota") || !strings.Contains(second.Error, "0 left, request needs 1") {
		t.Errorf("denial: got %q; want the quota check with the figures", second.Error)
	}
	if arm.calls != 1 {
		t.Errorf("counts taken for two requests within a minute: got %d; want 1", arm.calls)
	}

	clock.Advance(quotaTTL)
	arm.used = 10
	third, err := svc.Create(ctx, pipeline, readerFor(2, "q3"))
	if err != nil || third.State != store.RequestActive {
		t.Fatalf("request after a new count: got %s, %v; want active", third.State, err)
	}
	if arm.calls != 2 {
		t.Errorf("counts taken after the cache aged: got %d; want 2", arm.calls)
	}
}

// TestQuotaCountFailureWarns makes the count fail: the request goes on with
// a warning in its pre-flight, and the next request counts again.
func TestQuotaCountFailureWarns(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)}
	arm := &countedARM{mapARM: newMapARM(), err: errors.New("injected: 503 from ARM")}
	svc := serviceOn(t, openSQLite(t, clock.Now), arm, clock.Now, "replica-a")

	r, err := svc.Create(ctx, pipeline, readerFor(0, "w1"))
	if err != nil || r.State != store.RequestActive {
		t.Fatalf("request with the count failing: got %s, %v; want active", r.State, err)
	}
	var warned bool
	for _, c := range r.Decision.Preflight {
		warned = warned || (c.Name == lifecycle.CheckQuota && c.Warning && strings.Contains(c.Detail, "could not count"))
	}
	if !warned {
		t.Errorf("pre-flight: got %+v; want a quota warning", r.Decision.Preflight)
	}
	if _, err := svc.Create(ctx, pipeline, readerFor(1, "w2")); err != nil {
		t.Fatal(err)
	}
	if arm.calls != 2 {
		t.Errorf("counts after a failed count: got %d; want 2 (a failure is not cached)", arm.calls)
	}
}

// TestDeniedRequestMakesNoAzureCall creates a request no policy rule
// matches: it is denied without counting assignments.
func TestDeniedRequestMakesNoAzureCall(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)}
	arm := &countedARM{mapARM: newMapARM()}
	svc := serviceOn(t, openSQLite(t, clock.Now), arm, clock.Now, "replica-a")
	in := readerFor(0, "denied")
	in.Scopes = []string{rg[:strings.Index(rg, "/resourceGroups/")]}
	r, err := svc.Create(ctx, pipeline, in)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != store.RequestDenied {
		t.Fatalf("state: got %s; want denied", r.State)
	}
	if arm.calls != 0 {
		t.Errorf("assignment counts for a denied request: got %d; want 0", arm.calls)
	}
}
