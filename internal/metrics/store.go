package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elevate-dev/elevate/internal/store"
)

// scrapeTimeout bounds the store reads of one scrape.
const scrapeTimeout = 5 * time.Second

// maxRevokeStarts bounds the in-memory start times of revokes in flight.
const maxRevokeStarts = 10000

// instrumentedStore updates m on the store calls that change state.
type instrumentedStore struct {
	store.Store
	m *Metrics

	mu sync.Mutex
	// revokeStarts records when each grant entered revoking, by grant id.
	// It is memory only: a revoke that a restart interrupts, or that
	// another replica started, is not timed.
	revokeStarts map[string]time.Time
}

// InstrumentStore returns st with every state change counted in m. The
// broker's Service uses the returned store, so its core stays free of
// metrics calls.
func (m *Metrics) InstrumentStore(st store.Store) store.Store {
	return &instrumentedStore{Store: st, m: m, revokeStarts: map[string]time.Time{}}
}

func (s *instrumentedStore) CreateRequest(ctx context.Context, r store.Request) (store.Request, bool, error) {
	stored, created, err := s.Store.CreateRequest(ctx, r)
	if err == nil && created {
		s.m.requests.WithLabelValues(stored.Decision.Outcome, s.m.ruleLabel(stored.Decision.RuleID)).Inc()
	}
	return stored, created, err
}

func (s *instrumentedStore) TransitionRequest(ctx context.Context, id string, from []store.RequestState,
	to store.RequestState, u store.RequestUpdate) (store.Request, error) {
	r, err := s.Store.TransitionRequest(ctx, id, from, to, u)
	if err == nil && to.Terminal() {
		s.m.finished.WithLabelValues(string(to)).Inc()
	}
	return r, err
}

func (s *instrumentedStore) ReleaseLease(ctx context.Context, leaseID string) (store.Release, error) {
	rel, err := s.Store.ReleaseLease(ctx, leaseID)
	if err == nil && rel.Revoke {
		s.startRevoke(rel.Grant.ID, rel.Grant.UpdatedAt)
	}
	return rel, err
}

func (s *instrumentedStore) MarkGrant(ctx context.Context, id string, from []store.GrantState,
	to store.GrantState, u store.GrantUpdate) (store.Grant, error) {
	g, err := s.Store.MarkGrant(ctx, id, from, to, u)
	if err != nil {
		return g, err
	}
	switch to {
	case store.GrantActive:
		if !g.GrantedAt.IsZero() && !g.CreatedAt.IsZero() {
			s.m.grantLatency.Observe(g.GrantedAt.Sub(g.CreatedAt).Seconds())
		}
	case store.GrantRevoking:
		s.startRevoke(g.ID, g.UpdatedAt)
	case store.GrantRevoked:
		s.finishRevoke(ctx, g)
	}
	return g, nil
}

func (s *instrumentedStore) startRevoke(grantID string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.revokeStarts) >= maxRevokeStarts {
		clear(s.revokeStarts)
	}
	s.revokeStarts[grantID] = at
}

// finishRevoke observes the revoke latency and the sweeper lag of a grant
// whose removal was verified. An adopted grant has no VerifiedAt, because
// nothing was deleted, and is not observed.
func (s *instrumentedStore) finishRevoke(ctx context.Context, g store.Grant) {
	s.mu.Lock()
	start, ok := s.revokeStarts[g.ID]
	delete(s.revokeStarts, g.ID)
	s.mu.Unlock()
	if g.VerifiedAt.IsZero() {
		return
	}
	if ok {
		s.m.revokeLatency.Observe(g.VerifiedAt.Sub(start).Seconds())
	}
	leases, err := s.Store.ListLeases(ctx, store.LeaseFilter{GrantID: g.ID})
	if err != nil {
		s.m.log.WarnContext(ctx, "metrics: list leases failed; sweeper lag not observed", "grant_id", g.ID, "error", err)
		return
	}
	var expiry time.Time
	for _, l := range leases {
		if l.ExpiresAt.After(expiry) {
			expiry = l.ExpiresAt
		}
	}
	// A grant revoked before its last lease expired was cancelled or
	// revoked by an admin, which is not sweeper work.
	if !expiry.IsZero() && !g.VerifiedAt.Before(expiry) {
		s.m.sweeperLag.Observe(g.VerifiedAt.Sub(expiry).Seconds())
	}
}

// stateCollector reads the gauges of current state from the store on each
// scrape.
type stateCollector struct {
	store store.Store
	log   *slog.Logger
}

var (
	activeLeasesDesc = prometheus.NewDesc(Namespace+"_active_leases",
		"Active leases on active grants, read from the store at scrape time.", nil, nil)
	activeGrantsDesc = prometheus.NewDesc(Namespace+"_active_grants",
		"Grants in state active, read from the store at scrape time.", nil, nil)
	revokeFailedDesc = prometheus.NewDesc(Namespace+"_revoke_failed_grants",
		"Grants in state revoke_failed: access that may remain. Alert when above zero.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- activeLeasesDesc
	ch <- activeGrantsDesc
	ch <- revokeFailedDesc
}

// Collect reads the store. A failed read turns its metrics into errors,
// which the handler logs while it still serves the other metrics.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()

	active, err := c.store.ActiveGrants(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(activeGrantsDesc, err)
		ch <- prometheus.NewInvalidMetric(activeLeasesDesc, err)
	} else {
		ch <- prometheus.MustNewConstMetric(activeGrantsDesc, prometheus.GaugeValue, float64(len(active)))
		c.collectLeases(ctx, ch, active)
	}

	grants, err := c.store.NonTerminalGrants(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(revokeFailedDesc, err)
		return
	}
	failed := 0
	for _, g := range grants {
		if g.State == store.GrantRevokeFailed {
			failed++
		}
	}
	ch <- prometheus.MustNewConstMetric(revokeFailedDesc, prometheus.GaugeValue, float64(failed))
}

// collectLeases counts the active leases of the active grants, one query
// per grant. The 4,000 role assignments an Azure subscription allows bound
// the grants per subscription.
func (c *stateCollector) collectLeases(ctx context.Context, ch chan<- prometheus.Metric, active []store.Grant) {
	leases := 0
	for _, g := range active {
		ls, err := c.store.ListLeases(ctx, store.LeaseFilter{GrantID: g.ID})
		if err != nil {
			ch <- prometheus.NewInvalidMetric(activeLeasesDesc, err)
			return
		}
		for _, l := range ls {
			if l.State == store.LeaseActive {
				leases++
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(activeLeasesDesc, prometheus.GaugeValue, float64(leases))
}
