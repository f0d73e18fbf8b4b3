package broker

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/emulator"
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
