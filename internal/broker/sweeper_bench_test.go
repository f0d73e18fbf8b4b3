package broker

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/store"
)

// Sizes of the sweeper lag benchmark. The cohort is the burst of leases
// that expire during the measurement, and the seeded leases stay active.
const (
	lagCohort      = 200
	seedBatch      = 1000
	seedFirstIndex = 1_000_000 // principal index of the first seeded lease, far from the cohort's
)

// BenchmarkSweeperLag measures the delay from lease expiry to verified
// revoke, and the memory of the process, while N other leases are active:
// 1,000 and 10,000, and 100,000 with ELEVATE_EVIDENCE=long.
//
// The N leases are written with store.Seeder in transactions of 1,000, so
// the store holds what N Creates would leave (request, grant and lease
// rows, all active for an hour) without N Azure calls. Their role
// assignments do not exist in the emulator. Then a
// cohort of 200 requests goes through Service.Create against the emulator,
// with leases that expire 10 ms apart, while Sweep runs at its default
// interval. The lag of each is the grant's verified_at minus the lease's
// expires_at, both on the Service's clock, which runs at real speed from a
// moved start.
//
// Reported per run: p50-ms and p99-ms of the lag; idle-sweep-ms, the
// median time of a SweepOnce that finds nothing to do, which grows with N
// if a sweeper query scans the active rows; create-per-s of the cohort's
// Creates; rss-MiB, VmRSS of the test process (broker, emulator and
// store), and heap-MiB, the Go heap in use, both read after the burst with
// all N leases still active.
func BenchmarkSweeperLag(b *testing.B) {
	sizes := []int{1_000, 10_000}
	if longEvidence() {
		sizes = append(sizes, 100_000)
	}
	for _, kind := range []string{"sqlite", "postgres"} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/leases=%d", kind, n), func(b *testing.B) {
				for b.Loop() {
					m := sweeperLag(b, kind, n)
					b.ReportMetric(m.p50.Seconds()*1000, "p50-ms")
					b.ReportMetric(m.p99.Seconds()*1000, "p99-ms")
					b.ReportMetric(m.idleSweep.Seconds()*1000, "idle-sweep-ms")
					b.ReportMetric(m.createRate, "create-per-s")
					b.ReportMetric(float64(m.rss)/(1<<20), "rss-MiB")
					b.ReportMetric(float64(m.heap)/(1<<20), "heap-MiB")
				}
			})
		}
	}
}

// lagFigures are the results of one sweeper lag run.
type lagFigures struct {
	p50, p99   time.Duration
	idleSweep  time.Duration
	createRate float64 // cohort Creates per second
	rss, heap  int64   // bytes
}

// sweeperLag runs one lag measurement with n seeded leases, as
// BenchmarkSweeperLag describes.
func sweeperLag(b *testing.B, kind string, n int) lagFigures {
	ctx := context.Background()
	var offset atomic.Int64 // added to the real time, in nanoseconds
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	st := benchStore(b, kind, now)
	srv := startHAEmulator(b, lagCohort, lagCohort+10)
	svc := serviceOn(b, st, emulatorARM(b, srv, srv.Client()), now, "lag")

	seedStart := time.Now()
	seedActiveLeases(b, st, n, now().Add(time.Hour))
	b.Logf("seeded %d active leases on %s in %s", n, kind, time.Since(seedStart).Round(time.Millisecond))

	var f lagFigures
	f.idleSweep = idleSweepTime(ctx, svc)

	// The cohort expires 10 ms apart, from 5 minutes after creation.
	start := now()
	ids := make([]string, lagCohort)
	createStart := time.Now()
	for i := range lagCohort {
		in := readerFor(i, "")
		in.Duration = (5*time.Minute + time.Duration(i)*10*time.Millisecond).String()
		r, err := svc.Create(ctx, pipeline, in)
		if err != nil {
			b.Fatalf("create cohort lease %d: %v", i, err)
		}
		if r.State != store.RequestActive {
			b.Fatalf("cohort request %d: state %s, want active", i, r.State)
		}
		ids[i] = r.ID
	}
	f.createRate = float64(lagCohort) / time.Since(createStart).Seconds()

	// Jump to 200 ms before the first expiry and let the sweeper run.
	offset.Store(int64(start.Add(5 * time.Minute).Add(-200 * time.Millisecond).Sub(now())))
	sweepCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		_ = svc.Sweep(sweepCtx)
		close(done)
	}()
	defer func() {
		stop()
		<-done
	}()

	var lags []time.Duration
	deadline := time.Now().Add(2 * time.Minute)
	for _, id := range ids {
		for {
			lag, ok := revokeLag(b, st, id)
			if ok {
				lags = append(lags, lag)
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("request %s not revoked after 2 minutes", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	slices.Sort(lags)
	f.p50, f.p99 = lags[len(lags)/2], lags[len(lags)*99/100]

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f.heap = int64(ms.HeapInuse)
	f.rss = residentBytes(b)
	return f
}

// seedActiveLeases stores n active Reader requests on the resource group,
// each for its own principal and ending at expires, through store.Seeder
// in batches of seedBatch.
func seedActiveLeases(b *testing.B, st store.Store, n int, expires time.Time) {
	b.Helper()
	seeder, ok := st.(store.Seeder)
	if !ok {
		b.Fatalf("store %T does not implement store.Seeder", st)
	}
	scope, err := access.ParseResourceID(rg)
	if err != nil {
		b.Fatal(err)
	}
	for from := 0; from < n; from += seedBatch {
		batch := make([]store.ActiveSeed, 0, min(seedBatch, n-from))
		for i := from; i < from+cap(batch); i++ {
			id := uuid.NewString()
			principal := targetPrincipal(seedFirstIndex + i)
			batch = append(batch, store.ActiveSeed{
				Request: store.Request{
					ID:            id,
					Requester:     pipeline.Subject,
					Claims:        map[string]string{"repository": "contoso/payments"},
					Principal:     store.Principal{ID: principal, Type: access.PrincipalServicePrincipal},
					Pairs:         []store.Pair{{RoleID: readerRole, Scope: rg}},
					Justification: "seeded for the sweeper lag benchmark",
					Duration:      time.Hour,
					Hash:          fmt.Sprintf("%064x", i),
					Backend:       "rbac",
					Decision:      store.Decision{Outcome: store.OutcomeAutoApprove, RuleID: "reader-auto"},
					ExpiresAt:     expires,
				},
				AssignmentNames: []string{access.AssignmentName(id, principal, readerRole, scope)},
			})
		}
		if _, err := seeder.SeedActive(context.Background(), batch); err != nil {
			b.Fatalf("seed leases %d to %d: %v", from, from+len(batch)-1, err)
		}
	}
}

// idleSweepTime returns the median duration of 15 SweepOnce calls that
// find nothing to do: the cost of the sweeper's queries alone.
func idleSweepTime(ctx context.Context, svc *Service) time.Duration {
	times := make([]time.Duration, 15)
	for i := range times {
		start := time.Now()
		svc.SweepOnce(ctx)
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	return times[len(times)/2]
}

// revokeLag returns how long after its lease expired the grant of request
// id was verified gone, once it was.
func revokeLag(b *testing.B, st store.Store, id string) (time.Duration, bool) {
	leases, err := st.ListLeases(context.Background(), store.LeaseFilter{RequestID: id})
	if err != nil || len(leases) != 1 {
		b.Fatalf("leases of %s: %d, %v", id, len(leases), err)
	}
	g, err := st.GetGrant(context.Background(), leases[0].GrantID)
	if err != nil {
		b.Fatal(err)
	}
	if g.VerifiedAt.IsZero() {
		return 0, false
	}
	return g.VerifiedAt.Sub(leases[0].ExpiresAt), true
}

// residentBytes reads VmRSS of this process from /proc/self/status.
func residentBytes(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Logf("read /proc/self/status: %v", err)
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
