package evidence

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// armWriteLatency is the emulated latency of a role assignment PUT or
// DELETE, the same assumed ARM write time that BenchmarkGrant in
// internal/lifecycle uses, not a measured one.
const armWriteLatency = 200 * time.Millisecond

// curvePairs are the request sizes of the cost curve.
var curvePairs = []int{1, 10, 25, 50, 100, 150, 200}

// BenchmarkGrantCurve extends BenchmarkGrant's measurement to 200 pairs:
// one operation grants N pairs, each at its own storage account, with the
// default concurrency bound, then revokes and verifies them. It reports
// the grant phase alone as grant-ms/op.
func BenchmarkGrantCurve(b *testing.B) {
	seed, scopes := seedWith(curvePairs[len(curvePairs)-1], "")
	srv := startEmulator(b, emulator.Config{Seed: seed})
	if err := srv.SetFaults(emulator.FaultConfig{Seed: 1, Rules: []emulator.FaultRule{
		{Method: http.MethodPut, Path: `roleAssignments/`, Latency: armWriteLatency},
		{Method: http.MethodDelete, Path: `roleAssignments/`, Latency: armWriteLatency},
	}}); err != nil {
		b.Fatal(err)
	}
	sess := connect(b, srv)
	engine, _ := sess.engine(b, filepath.Join(b.TempDir(), "audit.jsonl"), nil, fastOptions())
	roleMap := roles(b, engine, roleReader)
	for _, n := range curvePairs {
		b.Run(fmt.Sprintf("pairs=%d", n), func(b *testing.B) {
			benchmarkCurve(b, sess, engine, roleMap, pairs(b, roleReader, scopes[:n]...))
		})
	}
}

func benchmarkCurve(b *testing.B, sess *session, engine *lifecycle.Engine, roleMap map[string]lifecycle.Role, ps []access.Pair) {
	ctx := context.Background()
	var granting time.Duration
	for b.Loop() {
		req := access.Request{ID: uuid.NewString(), Pairs: ps, Justification: "grant curve", Duration: time.Minute,
			Principal: access.Principal{ID: sess.caller.ObjectID, Type: access.PrincipalServicePrincipal}}
		grants := lifecycle.PlanGrants(req, roleMap)
		start := time.Now()
		if err := engine.GrantAll(ctx, req, grants); err != nil {
			b.Fatalf("GrantAll: %v", err)
		}
		granting += time.Since(start)
		if err := engine.RevokeAll(ctx, req, grants); err != nil {
			b.Fatalf("RevokeAll: %v", err)
		}
	}
	b.ReportMetric(float64(granting.Milliseconds())/float64(b.N), "grant-ms/op")
	b.ReportMetric(float64(len(ps)), "pairs")
}
