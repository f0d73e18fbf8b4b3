package lifecycle_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// armWriteLatency is the emulated latency of a role assignment PUT or
// DELETE: an assumed ARM write time, not a measured one.
const armWriteLatency = 200 * time.Millisecond

// BenchmarkGrant grants and revokes N pairs, each at its own scope, with
// every role assignment write delayed by armWriteLatency. The concurrency
// sub-benchmarks compare the earlier default bound of 8 with the current
// default.
func BenchmarkGrant(b *testing.B) {
	seed, scopes := seedWithStorageAccounts(50)
	te := startEnv(b, emulator.Config{Seed: seed})
	te.setFaults(b,
		emulator.FaultRule{Method: http.MethodPut, Path: `roleAssignments/`, Latency: armWriteLatency},
		emulator.FaultRule{Method: http.MethodDelete, Path: `roleAssignments/`, Latency: armWriteLatency})
	for _, n := range []int{1, 10, 50} {
		for _, concurrency := range []int{8, lifecycle.DefaultConcurrency} {
			b.Run(fmt.Sprintf("pairs=%d/concurrency=%d", n, concurrency), func(b *testing.B) {
				benchmarkGrant(b, te, scopes[:n], concurrency)
			})
		}
	}
}

func benchmarkGrant(b *testing.B, te *testEnv, scopes []string, concurrency int) {
	opts := fastOptions()
	opts.Concurrency = concurrency
	r := te.newRun(b, opts)
	var pairs []access.Pair
	for _, s := range scopes {
		pairs = append(pairs, pair(b, roleReader, s))
	}
	roles := r.roles(b, pairs)
	ctx := context.Background()
	for b.Loop() {
		req := te.request(b, pairs...)
		grants := lifecycle.PlanGrants(req, roles)
		if err := r.engine.GrantAll(ctx, req, grants); err != nil {
			b.Fatalf("GrantAll: %v", err)
		}
		if err := r.engine.RevokeAll(ctx, req, grants); err != nil {
			b.Fatalf("RevokeAll: %v", err)
		}
	}
	b.ReportMetric(float64(len(scopes)), "pairs")
}
