package broker

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/store"
)

// benchPrincipals is how many distinct principals the throughput
// benchmarks rotate through, so that requests in flight do not share one
// grant.
const benchPrincipals = 64

// benchStore opens the store a benchmark runs on: "sqlite" or "postgres".
func benchStore(b *testing.B, kind string, now func() time.Time) store.Store {
	b.Helper()
	if kind == "postgres" {
		return openPostgres(b, postgresSchema(b), now)
	}
	return openSQLite(b, now)
}

// BenchmarkBrokerLifecycle measures whole requests: Create (policy
// auto-approves Reader), grant through ARM, then an admin Revoke that
// deletes and verifies, against the emulator with no added latency. It
// reports requests per second, in-process and through the HTTP API.
func BenchmarkBrokerLifecycle(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		for _, via := range []string{"service", "http"} {
			b.Run(kind+"/"+via, func(b *testing.B) {
				srv := startHAEmulator(b, benchPrincipals, 0)
				st := benchStore(b, kind, time.Now)
				svc := serviceOn(b, st, emulatorARM(b, srv, srv.Client()), time.Now, "bench")
				do := serviceLifecycle(svc)
				if via == "http" {
					do = httpLifecycle(b, svc, srv)
				}
				ctx := context.Background()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if err := do(ctx, i); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			})
		}
	}
}

// lifecycleFunc runs request i from creation to verified revoke.
type lifecycleFunc func(ctx context.Context, i int) error

func serviceLifecycle(svc *Service) lifecycleFunc {
	return func(ctx context.Context, i int) error {
		r, err := svc.Create(ctx, pipeline, readerFor(i%benchPrincipals, ""))
		if err != nil {
			return err
		}
		if r.State != store.RequestActive {
			return fmt.Errorf("request %d: state %s, want active", i, r.State)
		}
		r, err = svc.Revoke(ctx, admin, r.ID)
		if err == nil && r.State != store.RequestRevoked {
			err = fmt.Errorf("request %d: state %s after revoke, want revoked", i, r.State)
		}
		return err
	}
}

// httpLifecycle serves svc's API on loopback and drives it with the
// broker client, as a pipeline and an admin would.
func httpLifecycle(b *testing.B, svc *Service, srv *emulator.Server) lifecycleFunc {
	auth, err := NewAuthenticator(AuthConfig{
		Pipeline: PipelineAuthConfig{Issuer: srv.GitHubIssuer(), Audience: testAudience},
		Approver: ApproverAuthConfig{StaticTokens: staticTokens()},
		Client:   srv.Client(),
	})
	if err != nil {
		b.Fatal(err)
	}
	api := NewAPI(svc, auth, APIOptions{Ready: func() bool { return true }, RatePerSecond: 1e6, RateBurst: 1e6})
	ts := httptest.NewServer(api.Handler())
	b.Cleanup(ts.Close)
	token, err := srv.MintGitHubToken(map[string]any{"aud": testAudience, "sub": pipeline.Subject, "repository": "contoso/payments",
		"environment": "production", "ref": "refs/heads/main", "actor": "octocat"})
	if err != nil {
		b.Fatal(err)
	}
	pc, err := brokerclient.New(ts.URL, func(context.Context) (string, error) { return token, nil }, nil)
	if err != nil {
		b.Fatal(err)
	}
	ac, err := brokerclient.New(ts.URL, func(context.Context) (string, error) { return adminToken, nil }, nil)
	if err != nil {
		b.Fatal(err)
	}
	return func(ctx context.Context, i int) error {
		r, err := pc.Create(ctx, brokerInput(readerFor(i%benchPrincipals, "")))
		if err != nil {
			return err
		}
		got, err := ac.Revoke(ctx, r.Request.ID)
		if err == nil && got.Request.State != brokerclient.StateRevoked {
			err = fmt.Errorf("request %d: state %s after revoke, want revoked", i, got.Request.State)
		}
		return err
	}
}

// BenchmarkBrokerReplicas measures the lifecycle throughput of one, two
// and three Services, each with its own connection pool on one PostgreSQL
// schema, with four callers per replica. All run in this process and share
// its cores and the emulator.
func BenchmarkBrokerReplicas(b *testing.B) {
	for replicas := 1; replicas <= 3; replicas++ {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			srv := startHAEmulator(b, benchPrincipals, 0)
			dsn := postgresSchema(b)
			var funcs []lifecycleFunc
			for r := range replicas {
				st := openPostgres(b, dsn, time.Now)
				svc := serviceOn(b, st, emulatorARM(b, srv, srv.Client()), time.Now, fmt.Sprintf("bench-%d", r))
				funcs = append(funcs, serviceLifecycle(svc))
			}
			callers := 4 * replicas
			ctx := context.Background()
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for c := range callers {
				wg.Go(func() {
					for {
						i := int(next.Add(1)) - 1
						if i >= b.N {
							return
						}
						// Caller c always uses principals c, c+callers, ...
						// so two callers never hold one pair at once.
						p := c + callers*(i/callers%(benchPrincipals/callers))
						if err := funcs[c%replicas](ctx, p); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkSweeperLag measures the delay from lease expiry to verified
// revoke, with 10,000 (and with ELEVATE_EVIDENCE=long 100,000) other
// active leases in the store. A cohort of 200 leases expires over two
// seconds of real time while Sweep runs at its default interval; the lag
// of each is the grant's verified_at minus the lease's expires_at, both on
// the Service's clock, which runs at real speed from a moved start.
//
// With 10,000 leases the grants are role assignments in the emulator. The
// emulator scans all assignments on each write, so for 100,000 the grants
// live in mapARM, an in-memory ARM below the Azure wire, instead. The
// benchmark also reports the resident memory of this process (VmRSS from
// /proc/self/status) with every lease active.
func BenchmarkSweeperLag(b *testing.B) {
	sizes := []int{10_000}
	if longEvidence() {
		sizes = append(sizes, 100_000)
	}
	for _, kind := range []string{"sqlite", "postgres"} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/leases=%d", kind, n), func(b *testing.B) {
				for b.Loop() {
					p50, p99, rss := sweeperLag(b, kind, n)
					b.ReportMetric(p50.Seconds()*1000, "p50-ms")
					b.ReportMetric(p99.Seconds()*1000, "p99-ms")
					b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
				}
			})
		}
	}
}

// sweeperLag runs one lag measurement; see BenchmarkSweeperLag.
func sweeperLag(b *testing.B, kind string, n int) (p50, p99 time.Duration, rss int64) {
	const cohort = 200
	ctx := context.Background()
	var offset atomic.Int64 // added to the real time, in nanoseconds
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	st := benchStore(b, kind, now)
	var arm lifecycle.ARM
	if n <= 10_000 {
		srv := startHAEmulator(b, n+cohort, n+cohort+10)
		arm = emulatorARM(b, srv, srv.Client())
	} else {
		arm = newMapARM()
	}
	svc := serviceOn(b, st, arm, now, "lag")

	// Background leases last an hour: the sweep must pass over them.
	createAll(b, svc, cohort, n, "1h")
	runtime.GC()
	rss = residentBytes(b)

	// The cohort expires 10 ms apart, from 5 minutes after creation.
	start := now()
	ids := make([]string, cohort)
	for i := range cohort {
		in := readerFor(i, "")
		in.Duration = (5*time.Minute + time.Duration(i)*10*time.Millisecond).String()
		r, err := svc.Create(ctx, pipeline, in)
		if err != nil {
			b.Fatalf("create cohort lease %d: %v", i, err)
		}
		ids[i] = r.ID
	}
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
	return lags[len(lags)/2], lags[len(lags)*99/100], rss
}

// createAll creates n requests for principals from, from+1, ... with the
// given duration, from four goroutines.
func createAll(b *testing.B, svc *Service, from, n int, duration string) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				in := readerFor(from+i, "")
				in.Duration = duration
				if _, err := svc.Create(context.Background(), pipeline, in); err != nil {
					b.Errorf("create background lease %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
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
