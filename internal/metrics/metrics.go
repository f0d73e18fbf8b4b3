// Package metrics exposes the broker's Prometheus metrics: request
// outcomes, active leases, grant and revoke latency, sweeper lag, failed
// revocations, API latency and notification delivery.
//
// Counters and histograms are updated by an instrumented store.Store
// (InstrumentStore), so the broker's core needs no metrics calls. Gauges of
// current state are read from the store on each scrape, so every replica
// of a shared database reports the same values.
package metrics

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/elevate-dev/elevate/internal/store"
)

// Namespace prefixes every metric name.
const Namespace = "elevate"

// maxRuleIDs bounds the rule_id label. Rule ids come from the policy file,
// so they are few. A policy with generated rules must still not create
// unbounded series, so ids beyond the cap are counted as "other".
const maxRuleIDs = 200

// Config is the metrics: section of the broker configuration.
type Config struct {
	// Enabled serves /metrics. Default false.
	Enabled bool `yaml:"enabled"`
	// Listen, when set, serves /metrics over plain HTTP on this address
	// instead of on the API's TLS listener, for example 127.0.0.1:9464.
	// It implies Enabled.
	Listen string `yaml:"listen"`
}

// CheckAndSetDefaults rejects an invalid listen address.
func (c *Config) CheckAndSetDefaults() error {
	if c.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("invalid metrics.listen %q: use host:port such as 127.0.0.1:9464", c.Listen)
	}
	c.Enabled = true
	return nil
}

// Options configure Metrics.
type Options struct {
	// Store is read on each scrape for the gauges. Required.
	Store  store.Store
	Logger *slog.Logger
}

// Metrics holds the broker's collectors in their own registry.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	requests      *prometheus.CounterVec
	finished      *prometheus.CounterVec
	grantLatency  prometheus.Histogram
	revokeLatency prometheus.Histogram
	sweeperLag    prometheus.Histogram
	apiLatency    *prometheus.HistogramVec
	delivered     *prometheus.CounterVec
	failures      *prometheus.CounterVec
	deadLetters   *prometheus.CounterVec

	mu      sync.Mutex
	ruleIDs map[string]bool
}

// latencyBuckets span the Azure calls behind a grant or revoke, seconds.
var latencyBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// New returns Metrics with every collector registered, plus the Go runtime
// and process collectors.
func New(o Options) *Metrics {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m := &Metrics{reg: prometheus.NewRegistry(), log: o.Logger, ruleIDs: map[string]bool{}}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "requests_total",
		Help: "Requests created, by policy outcome (deny, auto_approve, needs_approval) and rule id."},
		[]string{"outcome", "rule_id"})
	m.finished = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "requests_finished_total",
		Help: "Requests that reached a terminal state, by state."}, []string{"state"})
	m.grantLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace,
		Name: "grant_duration_seconds", Buckets: latencyBuckets,
		Help: "Seconds from a grant's committed intent to the grant being active in Azure."})
	m.revokeLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace,
		Name: "revoke_duration_seconds", Buckets: latencyBuckets,
		Help: "Seconds from a grant entering revoking to its verified removal, retries included."})
	m.sweeperLag = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace,
		Name: "sweeper_lag_seconds", Buckets: latencyBuckets,
		Help: "Seconds from the expiry of a grant's last lease to its verified revoke."})
	m.apiLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace,
		Name: "api_request_duration_seconds", Buckets: prometheus.DefBuckets,
		Help: "Latency of broker HTTP calls, by route pattern and status code."}, []string{"route", "code"})
	m.delivered = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
		Name: "notifications_delivered_total", Help: "Notifications and audit events delivered, by sink."},
		[]string{"sink"})
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
		Name: "notification_failures_total", Help: "Failed delivery attempts, by sink."}, []string{"sink"})
	m.deadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
		Name: "notification_dead_letters_total", Help: "Messages given up on after max attempts or a permanent error, by sink."},
		[]string{"sink"})
	m.reg.MustRegister(m.requests, m.finished, m.grantLatency, m.revokeLatency, m.sweeperLag, m.apiLatency,
		m.delivered, m.failures, m.deadLetters,
		&stateCollector{store: o.Store, log: o.Logger},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text and OpenMetrics
// formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelError),
		// A failed store read drops its gauges and keeps the rest.
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	})
}

// Registry returns the registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// NotificationDelivered counts a delivered message. With the two methods
// below it implements notify.Observer.
func (m *Metrics) NotificationDelivered(sink string) { m.delivered.WithLabelValues(sink).Inc() }

// NotificationFailed counts a failed delivery attempt.
func (m *Metrics) NotificationFailed(sink string) { m.failures.WithLabelValues(sink).Inc() }

// NotificationDead counts a message given up on.
func (m *Metrics) NotificationDead(sink string) { m.deadLetters.WithLabelValues(sink).Inc() }

// ruleLabel returns id as a label value, or "other" once maxRuleIDs
// distinct ids are in use. An empty id (the default deny) is "default".
func (m *Metrics) ruleLabel(id string) string {
	if id == "" {
		return "default"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ruleIDs[id] {
		return id
	}
	if len(m.ruleIDs) >= maxRuleIDs {
		return "other"
	}
	m.ruleIDs[id] = true
	return id
}
