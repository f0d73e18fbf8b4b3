package broker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/elevate-dev/elevate/internal/crashpoint"
	"github.com/elevate-dev/elevate/internal/metrics"
	"github.com/elevate-dev/elevate/internal/notify"
	"github.com/elevate-dev/elevate/internal/store"
)

// observability is the part of a Server that reports on it: Prometheus
// metrics and the notification and audit stream dispatcher. Both are
// optional, and every field is nil when its section is off.
type observability struct {
	metrics    *metrics.Metrics
	dispatcher *notify.Dispatcher
	metricsSrv *http.Server
	metricsLn  net.Listener
}

// observeStore wraps the store for metrics and the audit stream, and
// returns the store the Service must use and its Notify hook (nil without
// sinks). With sinks, the dispatcher expands the request events that the
// Service writes with its state changes. It runs before New because the
// Service takes both.
func (s *Server) observeStore(o ServerOptions) (store.Store, func(context.Context, string, store.Request), error) {
	st := s.store
	if s.cfg.Metrics.Enabled {
		s.obs.metrics = metrics.New(metrics.Options{Store: s.store, Logger: o.Logger})
		st = s.obs.metrics.InstrumentStore(st)
	}
	n := s.cfg.Notify
	if !n.Enabled() {
		return st, nil, nil
	}
	if a := n.AuditStream; a != nil {
		// s.url is set by listen, after this runs but before any event.
		st = notify.StreamAudit(st, func() string { return cmp.Or(a.Source, s.url) }, o.Logger)
	}
	var observer notify.Observer
	if s.obs.metrics != nil {
		observer = s.obs.metrics
	}
	// The outbox times its messages with the store's clock, which the
	// crashpoints test build may run fast, so the dispatcher must use the
	// same clock or it never finds a message due.
	now := crashpoint.Clock(o.Now)
	opts := notify.DispatcherOptions{Store: s.store, Config: n, Getenv: o.Getenv, Now: now, Logger: o.Logger,
		Observer: observer}
	var hook func(context.Context, string, store.Request)
	if len(n.Sinks) > 0 {
		notifier := notify.NewNotifier(notify.NotifierOptions{Store: s.store, Config: n, BaseURL: s.cfg.UI.BaseURL,
			Describe: s.describeRows, Now: now, Logger: o.Logger})
		hook, opts.Expand = notifier.Notify, notifier.Expand
	}
	var err error
	if s.obs.dispatcher, err = notify.NewDispatcher(opts); err != nil {
		return nil, nil, err
	}
	return st, hook, nil
}

// describeRows returns the approval table rows of r with role names, or
// nil, which makes notifications show role ids, when the lookup fails.
func (s *Server) describeRows(ctx context.Context, r store.Request) []notify.Row {
	if s.api == nil {
		return nil
	}
	t, err := s.api.table(ctx, r)
	if err != nil {
		s.log.WarnContext(ctx, "notification: role names not resolved; showing ids", "request_id", r.ID, "error", err)
		return nil
	}
	var table struct {
		Rows []struct {
			RoleName   string `json:"role_name"`
			RoleID     string `json:"role_id"`
			ResourceID string `json:"resource_id"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(t.json, &table); err != nil {
		s.log.WarnContext(ctx, "notification: decode approval table failed; showing ids", "request_id", r.ID, "error", err)
		return nil
	}
	rows := make([]notify.Row, len(table.Rows))
	for i, row := range table.Rows {
		rows[i] = notify.Row{RoleName: row.RoleName, RoleID: row.RoleID, Scope: row.ResourceID}
	}
	return rows
}

// mountMetrics times every API and UI call and serves /metrics, on the
// API listener or on metrics.listen over plain HTTP.
func (s *Server) mountMetrics() error {
	m := s.obs.metrics
	if m == nil {
		return nil
	}
	handler := s.http.Handler
	if s.cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", s.cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("listen on metrics.listen %s: %w", s.cfg.Metrics.Listen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.Handler())
		s.obs.metricsLn = ln
		s.obs.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second}
		s.http.Handler = m.Middleware(handler)
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.Handle("/", handler)
	s.http.Handler = m.Middleware(mux)
	return nil
}

// startObservability starts the dispatcher and the metrics listener, and
// returns the function that stops both and waits for them.
func (s *Server) startObservability(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if d := s.obs.dispatcher; d != nil {
		wg.Go(func() { _ = d.Run(ctx) })
	}
	if srv := s.obs.metricsSrv; srv != nil {
		s.log.Info("metrics listening", "url", "http://"+s.obs.metricsLn.Addr().String()+"/metrics")
		wg.Go(func() {
			if err := srv.Serve(s.obs.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("metrics listener failed", "error", err)
			}
		})
	}
	return func() {
		cancel()
		if srv := s.obs.metricsSrv; srv != nil {
			shutdownCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
			defer done()
			if err := srv.Shutdown(shutdownCtx); err != nil {
				s.log.Error("metrics listener shutdown failed", "error", err)
			}
		}
		wg.Wait()
	}
}

// MetricsAddr returns the address of the separate metrics listener, or ""
// when metrics are served on the API listener or not at all.
func (s *Server) MetricsAddr() string {
	if s.obs.metricsLn == nil {
		return ""
	}
	return s.obs.metricsLn.Addr().String()
}
