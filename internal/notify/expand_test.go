package notify

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// testClock is a settable clock for a store and a dispatcher.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// flakyStore fails the first failDelivered calls of MarkDelivered and the
// first failEnqueue calls of EnqueueOnce, as a crash or a lost database
// connection would, and records the ids it was asked to mark delivered.
type flakyStore struct {
	store.Store
	mu            sync.Mutex
	failDelivered int
	failEnqueue   int
	delivered     []string
}

var errInjected = errors.New("injected store failure")

func (s *flakyStore) MarkDelivered(ctx context.Context, id string) error {
	s.mu.Lock()
	s.delivered = append(s.delivered, id)
	fail := s.failDelivered > 0
	s.failDelivered--
	s.mu.Unlock()
	if fail {
		return errInjected
	}
	return s.Store.MarkDelivered(ctx, id)
}

func (s *flakyStore) EnqueueOnce(ctx context.Context, id, kind string, payload json.RawMessage) (bool, error) {
	s.mu.Lock()
	fail := s.failEnqueue > 0
	s.failEnqueue--
	s.mu.Unlock()
	if fail {
		return false, errInjected
	}
	return s.Store.EnqueueOnce(ctx, id, kind, payload)
}

// eventFixture is a store on a test clock with one request whose creation
// wrote a request event, and two webhook sinks on one receiver.
type eventFixture struct {
	clock    *testClock
	store    store.Store
	request  store.Request
	receiver *receiver
	config   Config
}

func newEventFixture(t *testing.T) *eventFixture {
	t.Helper()
	clock := &testClock{now: time.Now().UTC()}
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "elevate.db"), store.Options{Now: clock.Now})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	in := sampleRequest("event", "platform")
	in.CreateEvent = EventRequest
	r, _, err := st.CreateRequest(context.Background(), in)
	if err != nil {
		t.Fatalf("create request: %v", err)
	}
	return &eventFixture{clock: clock, store: st, request: r, receiver: newReceiver(t, nil),
		config: fastConfig(t, webhookSink("a", "HOOK_URL"), webhookSink("b", "HOOK_URL"))}
}

// dispatcher returns a dispatcher on st that expands events with a
// Notifier on st.
func (f *eventFixture) dispatcher(t *testing.T, st store.Store, obs Observer) *Dispatcher {
	t.Helper()
	n := NewNotifier(NotifierOptions{Store: st, Config: f.config, Now: f.clock.Now})
	d, err := NewDispatcher(DispatcherOptions{Store: st, Config: f.config, Getenv: envOf(f.receiver),
		Now: f.clock.Now, ClaimFor: time.Minute, Observer: obs, Expand: n.Expand, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("new dispatcher: %v", err)
	}
	return d
}

// deliveredKeys returns the Idempotency-Key of each successful call, sorted.
func deliveredKeys(rc *receiver) []string {
	var keys []string
	for _, c := range rc.succeeded() {
		keys = append(keys, c.header.Get(HeaderIdempotencyKey))
	}
	slices.Sort(keys)
	return keys
}

func wantKeys(eventID string) []string {
	keys := []string{NotificationID(eventID, "a"), NotificationID(eventID, "b")}
	slices.Sort(keys)
	return keys
}

func TestExpandTwiceEnqueuesOnce(t *testing.T) {
	f := newEventFixture(t)
	ctx := context.Background()
	n := NewNotifier(NotifierOptions{Store: f.store, Config: f.config})
	ev := store.EventPayload{RequestID: f.request.ID, Event: EventApproved, State: store.RequestApproved,
		Time: f.clock.Now()}
	const eventID = "7e0c2a54-1b3d-4f6e-8a9b-0c1d2e3f4a5b"
	for i := range 2 {
		if err := n.Expand(ctx, eventID, ev); err != nil {
			t.Fatalf("expand %d: %v", i+1, err)
		}
	}

	var notes []Notification
	for _, note := range queued(t, f.store) {
		// The store also holds the request event from the creation.
		if note.Event == EventApproved {
			notes = append(notes, note)
		}
	}
	if got := sinkNames(notes); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("sinks after two expansions: got %v; want [a b]", got)
	}
	for _, note := range notes {
		if note.Request.State != string(store.RequestApproved) {
			t.Errorf("sink %s state: got %q; want the event's state approved", note.Sink, note.Request.State)
		}
		if !note.Time.Equal(ev.Time) {
			t.Errorf("sink %s time: got %s; want the event's time %s", note.Sink, note.Time, ev.Time)
		}
	}
}

func TestEventExpandedAgainAfterCrash(t *testing.T) {
	f := newEventFixture(t)
	ctx := context.Background()
	// The first MarkDelivered is the event's, so this models a dispatcher
	// that dies after the expansion and before it records it.
	flaky := &flakyStore{Store: f.store, failDelivered: 1}
	d := f.dispatcher(t, flaky, nil)

	if got := d.DeliverOnce(ctx); got != 1 {
		t.Fatalf("first batch: got %d messages; want the event", got)
	}
	if got := d.DeliverOnce(ctx); got != 2 {
		t.Fatalf("second batch: got %d messages; want one notification per sink", got)
	}
	// After the claim runs out the event is claimed and expanded again.
	f.clock.Advance(2 * time.Minute)
	if got := d.DeliverOnce(ctx); got != 1 {
		t.Fatalf("batch after the claim ran out: got %d messages; want the event again", got)
	}
	f.clock.Advance(time.Hour)
	if got := d.DeliverOnce(ctx); got != 0 {
		t.Errorf("last batch: got %d messages; want none", got)
	}

	flaky.mu.Lock()
	eventID := flaky.delivered[0]
	flaky.mu.Unlock()
	if got, want := deliveredKeys(f.receiver), wantKeys(eventID); !slices.Equal(got, want) {
		t.Errorf("deliveries: got keys %v; want %v, one per sink", got, want)
	}
	if got := len(f.receiver.all()); got != 2 {
		t.Errorf("calls: got %d; want 2", got)
	}
}

func TestEventExpansionRetried(t *testing.T) {
	f := newEventFixture(t)
	ctx := context.Background()
	flaky := &flakyStore{Store: f.store, failEnqueue: 1}
	obs := newCounter()
	d := f.dispatcher(t, flaky, obs)

	// The enqueue for sink a fails, the one for b succeeds, and the event
	// waits for its retry.
	if got := d.DeliverOnce(ctx); got != 1 {
		t.Fatalf("first batch: got %d messages; want the event", got)
	}
	if got := obs.get(obs.failed, ExpandSinkName); got != 1 {
		t.Errorf("failed expansions: got %d; want 1", got)
	}
	if got := d.DeliverOnce(ctx); got != 1 {
		t.Fatalf("second batch: got %d messages; want the notification for b", got)
	}
	f.clock.Advance(f.config.RetryBase)
	if got := d.DeliverOnce(ctx); got != 1 {
		t.Fatalf("batch at the retry time: got %d messages; want the event", got)
	}
	if got := d.DeliverOnce(ctx); got != 1 {
		t.Fatalf("batch after the retry: got %d messages; want the notification for a", got)
	}
	f.clock.Advance(time.Hour)
	if got := d.DeliverOnce(ctx); got != 0 {
		t.Errorf("last batch: got %d messages; want none", got)
	}

	flaky.mu.Lock()
	eventID := flaky.delivered[1] // after the notification for b
	flaky.mu.Unlock()
	if got, want := deliveredKeys(f.receiver), wantKeys(eventID); !slices.Equal(got, want) {
		t.Errorf("deliveries: got keys %v; want %v, one per sink", got, want)
	}
}

func TestEventWithoutSinksDead(t *testing.T) {
	f := newEventFixture(t)
	obs := newCounter()
	d, err := NewDispatcher(DispatcherOptions{Store: f.store, Config: fastConfig(t), Now: f.clock.Now,
		Observer: obs, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("new dispatcher: %v", err)
	}
	if got := d.DeliverOnce(context.Background()); got != 1 {
		t.Fatalf("batch: got %d messages; want the event", got)
	}
	if got := obs.get(obs.dead, ExpandSinkName); got != 1 {
		t.Errorf("dead events: got %d; want 1", got)
	}
	f.clock.Advance(time.Hour)
	if got := d.DeliverOnce(context.Background()); got != 0 {
		t.Errorf("batch after an hour: got %d messages; want none", got)
	}
}
