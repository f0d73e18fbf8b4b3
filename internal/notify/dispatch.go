package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// DeadUntil is the next attempt time of a dead message. The outbox has no
// dead state, so a dead message stays undelivered with this far-future
// time and a last_error that starts with "dead:", where an operator can
// find it with SQL.
var DeadUntil = time.Date(9999, time.January, 1, 0, 0, 0, 0, time.UTC)

// AuditSinkName names the audit stream in logs and metrics.
const AuditSinkName = "audit_stream"

// ExpandSinkName names the expansion of event messages into notifications
// in logs and metrics.
const ExpandSinkName = "event_expansion"

// Defaults of DispatcherOptions.
const (
	DefaultBatchSize   = 50
	DefaultParallelism = 8
)

// Observer counts delivery outcomes, by sink name. The metrics package
// implements it.
type Observer interface {
	NotificationDelivered(sink string)
	NotificationFailed(sink string)
	NotificationDead(sink string)
}

// DispatcherOptions configure a Dispatcher.
type DispatcherOptions struct {
	Store store.Store
	// Config is the notify: section, checked by CheckAndSetDefaults.
	Config Config
	// Getenv reads the variables that url_env and secret_env name.
	// Default: none set, so only inline URLs and no secrets.
	Getenv func(string) string
	// Client posts the messages. Default: a client with Config.Timeout.
	Client   *http.Client
	Now      func() time.Time
	Logger   *slog.Logger
	Observer Observer
	// BatchSize is the most messages claimed at once. Default 50.
	BatchSize int
	// Parallelism is the most notifications posted at once. Audit events
	// are posted one at a time, in order. Default 8.
	Parallelism int
	// ClaimFor is how long a claimed message is reserved for this
	// dispatcher. After it, another dispatcher may deliver the message
	// again. Default 10 × Config.Timeout.
	ClaimFor time.Duration
	// Expand turns an event message (kind store.KindEvent) into
	// notification messages. The broker sets it to Notifier.Expand. When
	// it is nil, an event message is dead at once, because no sink is
	// configured.
	Expand func(ctx context.Context, eventID string, ev store.EventPayload) error
}

// Dispatcher delivers the outbox: notifications to their sinks and audit
// events to the audit stream.
type Dispatcher struct {
	o     DispatcherOptions
	log   *slog.Logger
	sinks map[string]resolvedSink
	audit *endpoint

	// mu guards hold and skipped, the in-memory state of in-order audit
	// delivery.
	mu sync.Mutex
	// hold stops audit events after seq holdSeq until holdUntil, because
	// event holdSeq failed and is waiting for its retry.
	holdSeq   int64
	holdUntil time.Time
	// skipped counts the claims of each held audit message that did not
	// try a delivery, so they do not count towards MaxAttempts.
	skipped map[string]int
}

type resolvedSink struct {
	cfg SinkConfig
	ep  endpoint
}

// NewDispatcher reads the URLs and secrets of every sink and returns a
// Dispatcher. A variable named in the configuration but unset or empty is
// an error that names the variable.
func NewDispatcher(o DispatcherOptions) (*Dispatcher, error) {
	if o.Store == nil {
		return nil, errors.New("notify dispatcher: missing store")
	}
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Config.Timeout}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Parallelism <= 0 {
		o.Parallelism = DefaultParallelism
	}
	if o.ClaimFor <= 0 {
		o.ClaimFor = 10 * o.Config.Timeout
	}
	d := &Dispatcher{o: o, log: o.Logger, sinks: map[string]resolvedSink{}, skipped: map[string]int{}}
	for _, s := range o.Config.Sinks {
		ep, err := resolve(o.Getenv, "notify.sinks "+s.Name, s.URL, s.URLEnv, s.SecretEnv)
		if err != nil {
			return nil, err
		}
		d.sinks[s.Name] = resolvedSink{cfg: s, ep: ep}
	}
	if a := o.Config.AuditStream; a != nil {
		ep, err := resolve(o.Getenv, "notify.audit_stream", a.URL, a.URLEnv, a.SecretEnv)
		if err != nil {
			return nil, err
		}
		d.audit = &ep
	}
	return d, nil
}

// resolve reads an endpoint's URL and secret. Errors name the variable,
// never its value.
func resolve(getenv func(string) string, what, rawURL, urlEnv, secretEnv string) (endpoint, error) {
	ep := endpoint{url: rawURL}
	if urlEnv != "" {
		ep.url = getenv(urlEnv)
		if ep.url == "" {
			return ep, fmt.Errorf("%s: environment variable %s is empty: set it to the webhook URL", what, urlEnv)
		}
		if err := checkURL(ep.url); err != nil {
			return ep, fmt.Errorf("%s: %s: %w", what, urlEnv, err)
		}
	}
	if secretEnv != "" {
		secret := getenv(secretEnv)
		if secret == "" {
			return ep, fmt.Errorf("%s: environment variable %s is empty: set it to the signing key", what, secretEnv)
		}
		ep.secret = []byte(secret)
	}
	return ep, nil
}

// Run delivers due messages every PollInterval until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.log.InfoContext(ctx, "notification dispatcher started", "sinks", len(d.sinks),
		"audit_stream", d.audit != nil, "interval", d.o.Config.PollInterval)
	defer d.log.Info("notification dispatcher stopped")
	timer := time.NewTimer(0)
	defer timer.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		start := d.o.Now()
		n, expanded := d.deliverBatch(ctx)
		if n > 0 {
			d.log.InfoContext(ctx, "notifications handled", "messages", n, "elapsed", d.o.Now().Sub(start))
		}
		// The notifications of an expanded event are due now, so claim
		// them at once rather than after a poll interval.
		if expanded {
			timer.Reset(0)
		} else {
			timer.Reset(d.o.Config.PollInterval)
		}
	}
	return nil
}

// DeliverOnce claims one batch of due messages and tries each once. It
// returns how many messages it claimed. The notifications of an event
// message that it expands are due in the next batch.
func (d *Dispatcher) DeliverOnce(ctx context.Context) int {
	n, _ := d.deliverBatch(ctx)
	return n
}

// deliverBatch is DeliverOnce that also reports whether an event message
// was expanded.
func (d *Dispatcher) deliverBatch(ctx context.Context) (int, bool) {
	msgs, err := d.o.Store.ClaimDue(ctx, d.o.Now(), d.o.BatchSize, d.o.ClaimFor)
	if err != nil {
		if ctx.Err() == nil {
			d.log.ErrorContext(ctx, "claim due notifications failed", "error", err)
		}
		return 0, false
	}
	var notes, audits []store.OutboxMessage
	for _, m := range msgs {
		if m.Kind == KindAudit {
			audits = append(audits, m)
		} else {
			notes = append(notes, m)
		}
	}
	var wg sync.WaitGroup
	var expanded atomic.Bool
	wg.Go(func() { d.deliverAudit(ctx, audits) })
	limit := make(chan struct{}, d.o.Parallelism)
	for _, m := range notes {
		limit <- struct{}{}
		wg.Go(func() {
			defer func() { <-limit }()
			if m.Kind == KindEvent {
				if d.expandEvent(ctx, m) {
					expanded.Store(true)
				}
				return
			}
			d.deliverNotification(ctx, m)
		})
	}
	wg.Wait()
	return len(msgs), expanded.Load()
}

// expandEvent enqueues the notifications of event message m through
// Expand and marks m delivered. A failure is retried with the backoff of
// a failed post. It reports whether m was expanded.
func (d *Dispatcher) expandEvent(ctx context.Context, m store.OutboxMessage) bool {
	if d.o.Expand == nil {
		d.dead(ctx, m, ExpandSinkName, errors.New("no notification sink is configured any more"))
		return false
	}
	var ev store.EventPayload
	if err := json.Unmarshal(m.Payload, &ev); err != nil {
		d.dead(ctx, m, ExpandSinkName, fmt.Errorf("decode event: %w", err))
		return false
	}
	if ev.RequestID == "" || ev.Event == "" {
		d.dead(ctx, m, ExpandSinkName, fmt.Errorf("invalid event payload %s: missing request_id or event", m.Payload))
		return false
	}
	err := d.o.Expand(ctx, m.ID, ev)
	if err == nil {
		recordCtx, cancel := recordContext(ctx)
		defer cancel()
		err := d.o.Store.MarkDelivered(recordCtx, m.ID)
		switch {
		case errors.Is(err, store.ErrConflict):
			// Another dispatcher claimed the event after this claim ran
			// out and expanded it to the same notification ids.
			d.log.InfoContext(ctx, "event expanded by another dispatcher as well", "message_id", m.ID,
				"request_id", ev.RequestID, "event", ev.Event)
		case err != nil:
			// The claim runs out and the event is expanded again, to
			// the same notification ids, so nothing is sent twice.
			d.log.ErrorContext(ctx, "record event expansion failed", "message_id", m.ID,
				"request_id", ev.RequestID, "event", ev.Event, "error", err)
		}
		return true
	}
	if ctx.Err() != nil {
		// Shutting down: the claim runs out and another run retries.
		return false
	}
	d.retry(ctx, m, ExpandSinkName, err, m.Attempts, nil)
	return false
}

// deliverNotification posts one notification message and records the
// outcome.
func (d *Dispatcher) deliverNotification(ctx context.Context, m store.OutboxMessage) {
	if m.Kind != KindNotification {
		d.dead(ctx, m, "", fmt.Errorf("unknown message kind %q", m.Kind))
		return
	}
	var n Notification
	if err := json.Unmarshal(m.Payload, &n); err != nil {
		d.dead(ctx, m, "", fmt.Errorf("decode payload: %w", err))
		return
	}
	sink, ok := d.sinks[n.Sink]
	if !ok {
		d.dead(ctx, m, n.Sink, fmt.Errorf("sink %q is not configured any more", n.Sink))
		return
	}
	body, contentType, err := render(m.ID, n, sink.cfg)
	if err != nil {
		d.dead(ctx, m, n.Sink, fmt.Errorf("render %s message: %w", sink.cfg.Type, err))
		return
	}
	d.attempt(ctx, m, n.Sink, sink.ep, contentType, body, 0)
}

func render(id string, n Notification, s SinkConfig) ([]byte, string, error) {
	switch s.Type {
	case TypeSlack:
		body, err := renderSlack(n, s.Format)
		return body, "application/json", err
	case TypeTeams:
		body, err := renderTeams(n)
		return body, "application/json", err
	default:
		body, err := renderWebhook(id, n)
		return body, "application/json", err
	}
}

// attempt posts body once and records delivery, a retry or a dead
// message. skipped is how many claims of m tried no delivery. It returns
// the next attempt time after a failure that will be retried, else zero.
func (d *Dispatcher) attempt(ctx context.Context, m store.OutboxMessage, sink string, ep endpoint,
	contentType string, body []byte, skipped int) time.Time {
	reqCtx, cancel := context.WithTimeout(ctx, d.o.Config.Timeout)
	err := post(reqCtx, d.o.Client, ep, m.ID, contentType, body, d.o.Now())
	cancel()
	if err == nil {
		recordCtx, cancel := recordContext(ctx)
		defer cancel()
		if err := d.o.Store.MarkDelivered(recordCtx, m.ID); err != nil {
			// The claim runs out and the message is sent again: the
			// receiver gets the same Idempotency-Key twice.
			d.log.ErrorContext(ctx, "record notification delivery failed", "message_id", m.ID, "sink", sink, "error", err)
		}
		d.observe(sink, Observer.NotificationDelivered)
		return time.Time{}
	}
	if ctx.Err() != nil {
		// Shutting down: the claim runs out and another run retries.
		return time.Time{}
	}
	var de *deliveryError
	errors.As(err, &de)
	return d.retry(ctx, m, sink, err, m.Attempts-skipped, de)
}

// retry counts a failed attempt at m and either records when to try
// again, after the backoff or the receiver's Retry-After, or gives up on
// m after a permanent error or MaxAttempts attempts. attempts counts the
// attempts so far and de, when not nil, is the post's error. It returns
// the next attempt time, or zero when m is dead.
func (d *Dispatcher) retry(ctx context.Context, m store.OutboxMessage, sink string, err error,
	attempts int, de *deliveryError) time.Time {
	d.observe(sink, Observer.NotificationFailed)
	if (de != nil && de.permanent) || attempts >= d.o.Config.MaxAttempts {
		d.dead(ctx, m, sink, err)
		return time.Time{}
	}
	delay := d.retryDelay(attempts)
	if de != nil && de.retryAfter > delay {
		delay = min(de.retryAfter, d.o.Config.RetryMax)
	}
	next := d.o.Now().Add(delay)
	d.log.WarnContext(ctx, "notification delivery failed, will retry", "message_id", m.ID, "sink", sink,
		"kind", m.Kind, "attempt", attempts, "max_attempts", d.o.Config.MaxAttempts, "delay", delay, "error", err)
	recordCtx, cancel := recordContext(ctx)
	defer cancel()
	if err := d.o.Store.MarkFailed(recordCtx, m.ID, err.Error(), next); err != nil {
		d.log.ErrorContext(ctx, "record notification failure failed", "message_id", m.ID, "error", err)
	}
	return next
}

// retryDelay is the capped exponential backoff after attempts attempts:
// RetryBase, then doubling up to RetryMax.
func (d *Dispatcher) retryDelay(attempts int) time.Duration {
	delay := d.o.Config.RetryBase
	for i := 1; i < attempts && delay < d.o.Config.RetryMax; i++ {
		delay *= 2
	}
	return min(delay, d.o.Config.RetryMax)
}

// dead gives up on m: it stays in the outbox with the next attempt at
// DeadUntil, and the error is logged and counted.
func (d *Dispatcher) dead(ctx context.Context, m store.OutboxMessage, sink string, cause error) {
	d.log.ErrorContext(ctx, "notification dead: giving up, it will not be sent", "message_id", m.ID,
		"sink", sink, "kind", m.Kind, "attempts", m.Attempts, "error", cause)
	recordCtx, cancel := recordContext(ctx)
	defer cancel()
	if err := d.o.Store.MarkFailed(recordCtx, m.ID, "dead: "+cause.Error(), DeadUntil); err != nil {
		d.log.ErrorContext(ctx, "record dead notification failed", "message_id", m.ID, "error", err)
	}
	d.observe(sink, Observer.NotificationDead)
}

// recordContext returns a context for recording an outcome in the store.
// It outlives ctx, so a shutdown during a delivery does not lose the
// outcome of a post that already happened.
func recordContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), enqueueTimeout)
}

func (d *Dispatcher) observe(sink string, f func(Observer, string)) {
	if d.o.Observer != nil {
		f(d.o.Observer, sink)
	}
}

// deliverAudit posts audit events one at a time in seq order. After a
// failure, later events wait until the failed one's retry, so the stream
// stays in order. A dead event is skipped, which leaves a gap in the
// prev_hash chain that the receiver can detect.
func (d *Dispatcher) deliverAudit(ctx context.Context, msgs []store.OutboxMessage) {
	type item struct {
		m   store.OutboxMessage
		seq int64
	}
	items := make([]item, 0, len(msgs))
	for _, m := range msgs {
		seq, err := auditSeq(m.Payload)
		if err != nil || d.audit == nil {
			if err == nil {
				err = errors.New("notify.audit_stream is not configured any more")
			}
			d.dead(ctx, m, AuditSinkName, err)
			continue
		}
		items = append(items, item{m, seq})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].seq < items[j].seq })
	for _, it := range items {
		if ctx.Err() != nil {
			return
		}
		if until, held := d.heldUntil(it.seq); held {
			d.skip(ctx, it.m, until)
			continue
		}
		d.mu.Lock()
		skipped := d.skipped[it.m.ID]
		d.mu.Unlock()
		next := d.attempt(ctx, it.m, AuditSinkName, *d.audit, ContentTypeCloudEvents, it.m.Payload, skipped)
		d.mu.Lock()
		if next.IsZero() {
			delete(d.skipped, it.m.ID)
			if d.holdSeq == it.seq {
				d.holdSeq, d.holdUntil = 0, time.Time{}
			}
		} else {
			d.holdSeq, d.holdUntil = it.seq, next
		}
		d.mu.Unlock()
	}
}

// heldUntil reports whether audit event seq must wait for an earlier one,
// and until when.
func (d *Dispatcher) heldUntil(seq int64) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.holdSeq == 0 || seq <= d.holdSeq {
		return time.Time{}, false
	}
	now := d.o.Now()
	if now.After(d.holdUntil.Add(d.o.ClaimFor)) {
		// The held event's retry is overdue here, so another dispatcher
		// has it or it is stuck; waiting longer would stop the stream.
		d.log.Warn("audit stream: releasing the hold on an overdue event", "seq", d.holdSeq)
		d.holdSeq, d.holdUntil = 0, time.Time{}
		return time.Time{}, false
	}
	// A hold that has passed still waits one poll, so held messages are
	// not claimed again in a tight loop.
	until := d.holdUntil
	if floor := now.Add(d.o.Config.PollInterval); until.Before(floor) {
		until = floor
	}
	return until, true
}

// skip defers a held audit message to the retry time of the event it waits
// for, without a delivery attempt.
func (d *Dispatcher) skip(ctx context.Context, m store.OutboxMessage, until time.Time) {
	d.mu.Lock()
	d.skipped[m.ID]++
	d.mu.Unlock()
	if err := d.o.Store.MarkFailed(ctx, m.ID, "waiting for an earlier audit event", until); err != nil {
		d.log.ErrorContext(ctx, "defer audit event failed", "message_id", m.ID, "error", err)
	}
}
