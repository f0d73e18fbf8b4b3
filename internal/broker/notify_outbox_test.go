package broker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/notify"
	"github.com/elevate-dev/elevate/internal/store"
)

// interruptingStore fails the first failEnqueue calls of EnqueueOnce, an
// expansion cut short, and the first failDelivered calls of MarkDelivered,
// a dispatcher that dies after its work and before it records it.
type interruptingStore struct {
	store.Store
	mu            sync.Mutex
	failEnqueue   int
	failDelivered int
}

var errInterrupted = errors.New("injected store failure")

func (s *interruptingStore) EnqueueOnce(ctx context.Context, id, kind string, payload json.RawMessage) (bool, error) {
	s.mu.Lock()
	fail := s.failEnqueue > 0
	s.failEnqueue--
	s.mu.Unlock()
	if fail {
		return false, errInterrupted
	}
	return s.Store.EnqueueOnce(ctx, id, kind, payload)
}

func (s *interruptingStore) MarkDelivered(ctx context.Context, id string) error {
	s.mu.Lock()
	fail := s.failDelivered > 0
	s.failDelivered--
	s.mu.Unlock()
	if fail {
		return errInterrupted
	}
	return s.Store.MarkDelivered(ctx, id)
}

// notifyHarness is a harness whose Service writes request events, with a
// dispatcher that expands them on st and posts to a loopback webhook.
type notifyHarness struct {
	*harness
	hook       *hookRecorder
	dispatcher *notify.Dispatcher
	config     notify.Config
}

func newNotifyHarness(t *testing.T, wrap func(store.Store) store.Store) *notifyHarness {
	t.Helper()
	h := newHarness(t)
	hook := &hookRecorder{}
	srv := httptest.NewServer(hook)
	t.Cleanup(srv.Close)
	cfg := notify.Config{Sinks: []notify.SinkConfig{{Name: "ops", Type: notify.TypeWebhook, URL: srv.URL, SecretEnv: "HOOK_SECRET"}},
		RetryBase: time.Second, RetryMax: 10 * time.Second, Timeout: 5 * time.Second}
	if err := cfg.CheckAndSetDefaults(); err != nil {
		t.Fatalf("notify config: %v", err)
	}
	st := wrap(h.store)
	notifier := notify.NewNotifier(notify.NotifierOptions{Store: st, Config: cfg, Now: h.clock.Now})
	// New only checks the Config, so turning notifications on afterwards
	// is the same as passing Notify to New.
	h.svc.cfg.Notify = notifier.Notify
	getenv := func(name string) string {
		if name == "HOOK_SECRET" {
			return "hook-key"
		}
		return ""
	}
	d, err := notify.NewDispatcher(notify.DispatcherOptions{Store: st, Config: cfg, Now: h.clock.Now,
		Getenv: getenv, ClaimFor: time.Minute, Expand: notifier.Expand})
	if err != nil {
		t.Fatalf("new dispatcher: %v", err)
	}
	return &notifyHarness{harness: h, hook: hook, dispatcher: d, config: cfg}
}

// deliverAll runs the dispatcher until no message is due, moving the
// clock past every retry and claim in between.
func (h *notifyHarness) deliverAll(t *testing.T) {
	t.Helper()
	for range 20 {
		if h.dispatcher.DeliverOnce(context.Background()) > 0 {
			continue
		}
		h.clock.Advance(time.Hour)
		if h.dispatcher.DeliverOnce(context.Background()) == 0 {
			return
		}
	}
	t.Fatal("outbox still has due messages after 20 rounds")
}

// received returns the Idempotency-Key and the decoded body of each delivery.
func (h *notifyHarness) received(t *testing.T) ([]string, []notify.WebhookBody) {
	t.Helper()
	bodies, heads := h.hook.snapshot()
	keys := make([]string, len(bodies))
	notes := make([]notify.WebhookBody, len(bodies))
	for i, b := range bodies {
		if err := json.Unmarshal(b, &notes[i]); err != nil {
			t.Fatalf("decode delivery %d: %v", i, err)
		}
		keys[i] = heads[i].Get(notify.HeaderIdempotencyKey)
	}
	return keys, notes
}

func TestInterruptedExpansionNotifiesOnce(t *testing.T) {
	h := newNotifyHarness(t, func(st store.Store) store.Store {
		return &interruptingStore{Store: st, failEnqueue: 1}
	})
	ctx := context.Background()
	r, err := h.svc.Create(ctx, pipeline, vaultRequest("interrupted"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if r.State != store.RequestActive {
		t.Fatalf("state: got %s; want active", r.State)
	}

	// The first expansion fails its enqueue, so nothing is posted until
	// the event's retry is due.
	if got := h.dispatcher.DeliverOnce(ctx); got != 1 {
		t.Fatalf("first batch: got %d messages; want the granted event", got)
	}
	if got := h.dispatcher.DeliverOnce(ctx); got != 0 {
		t.Errorf("batch before the retry: got %d messages; want none", got)
	}
	if bodies, _ := h.hook.snapshot(); len(bodies) != 0 {
		t.Errorf("deliveries before the retry: got %d; want 0", len(bodies))
	}
	h.clock.Advance(h.config.RetryBase)
	h.deliverAll(t)

	keys, notes := h.received(t)
	if len(notes) != 1 {
		t.Fatalf("deliveries: got %d; want 1", len(notes))
	}
	if notes[0].Event != notify.EventGranted {
		t.Errorf("event: got %q; want %q", notes[0].Event, notify.EventGranted)
	}
	if notes[0].Request.ID != r.ID {
		t.Errorf("request id: got %s; want %s", notes[0].Request.ID, r.ID)
	}
	if notes[0].Request.State != string(store.RequestActive) {
		t.Errorf("request state: got %q; want active", notes[0].Request.State)
	}
	if keys[0] != notes[0].ID {
		t.Errorf("Idempotency-Key: got %q; want the body's id %q", keys[0], notes[0].ID)
	}
}

func TestRequestLifeNotifiesEachEventOnce(t *testing.T) {
	// One enqueue fails and one event's expansion is not recorded, so the
	// dispatcher expands that event again.
	h := newNotifyHarness(t, func(st store.Store) store.Store {
		return &interruptingStore{Store: st, failEnqueue: 1, failDelivered: 1}
	})
	ctx := context.Background()
	r, err := h.svc.Create(ctx, pipeline, readerRequest("life"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if r.State != store.RequestPending {
		t.Fatalf("state: got %s; want pending", r.State)
	}
	// A retry of the create finds the stored request and adds no event.
	if _, err := h.svc.Create(ctx, pipeline, readerRequest("life")); err != nil {
		t.Fatalf("retried Create: %v", err)
	}
	h.deliverAll(t)
	if _, err := h.svc.Review(ctx, approver, r.ID, store.VerdictApprove, r.Hash, "ok"); err != nil {
		t.Fatalf("approve: %v", err)
	}
	h.deliverAll(t)
	h.clock.Advance(11 * time.Minute)
	h.svc.SweepOnce(ctx)
	got, err := h.store.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestRevoked {
		t.Fatalf("state after expiry: got %s; want revoked", got.State)
	}
	h.deliverAll(t)

	keys, notes := h.received(t)
	var events []string
	for _, n := range notes {
		if n.Request.ID != r.ID {
			t.Errorf("delivery for request %s; want only %s", n.Request.ID, r.ID)
		}
		events = append(events, n.Event)
	}
	// The dispatcher posts the notifications of one batch in parallel, so
	// approved and granted may arrive in either order.
	slices.Sort(events)
	want := []string{notify.EventApproved, notify.EventGranted, notify.EventRequest, notify.EventRevoked}
	if !slices.Equal(events, want) {
		t.Errorf("events: got %v; want %v, each once", events, want)
	}
	slices.Sort(keys)
	if len(slices.Compact(keys)) != len(notes) {
		t.Errorf("Idempotency-Keys: got %v; want each delivery to have its own", keys)
	}
}

func TestNoEventsWithoutNotifications(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	r, err := h.svc.Create(ctx, pipeline, readerRequest("quiet"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := h.svc.Review(ctx, approver, r.ID, store.VerdictApprove, r.Hash, "ok"); err != nil {
		t.Fatalf("approve: %v", err)
	}
	msgs, err := h.store.ClaimDue(ctx, h.clock.Now().Add(time.Hour), 100, time.Minute)
	if err != nil {
		t.Fatalf("claim due: %v", err)
	}
	if len(msgs) != 0 {
		t.Errorf("outbox: got %d messages, first of kind %q; want none without notifications", len(msgs), msgs[0].Kind)
	}
}
