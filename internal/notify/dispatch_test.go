package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

const testSecret = "s3cret-signing-key"

// startDispatcher runs a dispatcher until the test ends or stop is called.
func startDispatcher(t *testing.T, o DispatcherOptions) (stop func()) {
	t.Helper()
	d, err := NewDispatcher(o)
	if err != nil {
		t.Fatalf("new dispatcher: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.Run(ctx) })
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// enqueueNote stores a notification of the hostile request for sink.
func enqueueNote(t *testing.T, st store.Store, sink string) store.OutboxMessage {
	t.Helper()
	payload, err := json.Marshal(hostileNotification(t, EventRequest))
	if err != nil {
		t.Fatal(err)
	}
	payload = []byte(strings.Replace(string(payload), `"sink":"s"`, fmt.Sprintf("%q:%q", "sink", sink), 1))
	m, err := st.Enqueue(context.Background(), KindNotification, payload)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return m
}

func webhookSink(name, envName string) SinkConfig {
	return SinkConfig{Name: name, Type: TypeWebhook, URLEnv: envName, SecretEnv: "SECRET"}
}

func envOf(rc *receiver) func(string) string {
	return func(k string) string {
		return map[string]string{"HOOK_URL": rc.URL, "SECRET": testSecret}[k]
	}
}

func TestWebhookSignedAndIdempotent(t *testing.T) {
	st := openStore(t)
	rc := newReceiver(t, func(n int, _ []byte) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	m := enqueueNote(t, st, "hook")
	obs := newCounter()
	startDispatcher(t, DispatcherOptions{Store: st, Config: fastConfig(t, webhookSink("hook", "HOOK_URL")),
		Getenv: envOf(rc), Observer: obs})
	waitFor(t, "delivery", func() bool { return len(rc.succeeded()) == 1 })

	calls := rc.all()
	if len(calls) != 3 {
		t.Errorf("calls: got %d; want 3 (two 500s, then 200)", len(calls))
	}
	for i, c := range calls {
		if got := c.header.Get(HeaderIdempotencyKey); got != m.ID {
			t.Errorf("call %d Idempotency-Key: got %q; want the message id %q", i, got, m.ID)
		}
		ts := c.header.Get(HeaderTimestamp)
		if !Verify([]byte(testSecret), ts, c.body, c.header.Get(HeaderSignature)) {
			t.Errorf("call %d: signature %q does not verify over %q.body", i, c.header.Get(HeaderSignature), ts)
		}
		if Verify([]byte("other key"), ts, c.body, c.header.Get(HeaderSignature)) {
			t.Errorf("call %d: signature verifies with the wrong key", i)
		}
	}
	var body WebhookBody
	if err := json.Unmarshal(calls[2].body, &body); err != nil || body.ID != m.ID {
		t.Errorf("body id: got %q, %v; want %q", body.ID, err, m.ID)
	}
	if got := obs.get(obs.failed, "hook"); got != 2 {
		t.Errorf("failures counted: got %d; want 2", got)
	}
	waitFor(t, "delivered counted", func() bool { return obs.get(obs.delivered, "hook") == 1 })
}

func TestTimeoutThenDelivered(t *testing.T) {
	st := openStore(t)
	rc := newReceiver(t, func(n int, _ []byte) int {
		if n == 1 {
			return -1 // hang past the 100 ms timeout
		}
		return http.StatusNoContent
	})
	m := enqueueNote(t, st, "hook")
	startDispatcher(t, DispatcherOptions{Store: st, Config: fastConfig(t, webhookSink("hook", "HOOK_URL")),
		Getenv: envOf(rc)})
	waitFor(t, "delivery after a timeout", func() bool { return len(rc.succeeded()) == 1 })
	if got := rc.succeeded()[0].header.Get(HeaderIdempotencyKey); got != m.ID {
		t.Errorf("Idempotency-Key: got %q; want %q", got, m.ID)
	}
}

func TestDeadAfterMaxAttempts(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		wantCalls int
	}{
		{"server error retried to max", http.StatusBadGateway, 4},
		{"client error dead at once", http.StatusBadRequest, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t)
			rc := newReceiver(t, func(int, []byte) int { return tt.status })
			enqueueNote(t, st, "hook")
			obs := newCounter()
			stop := startDispatcher(t, DispatcherOptions{Store: st, Config: fastConfig(t, webhookSink("hook", "HOOK_URL")),
				Getenv: envOf(rc), Observer: obs})
			waitFor(t, "dead letter", func() bool { return obs.get(obs.dead, "hook") == 1 })
			stop()
			if got := len(rc.all()); got != tt.wantCalls {
				t.Errorf("calls: got %d; want %d", got, tt.wantCalls)
			}
			// A dead message is never due again.
			due, err := st.ClaimDue(context.Background(), time.Now().Add(24*time.Hour), 10, time.Minute)
			if err != nil || len(due) != 0 {
				t.Errorf("due a day later: got %d messages, %v; want none", len(due), err)
			}
		})
	}
}

func TestUnknownSinkDeadLettered(t *testing.T) {
	st := openStore(t)
	enqueueNote(t, st, "removed-sink")
	obs := newCounter()
	startDispatcher(t, DispatcherOptions{Store: st, Config: fastConfig(t), Observer: obs})
	waitFor(t, "dead letter", func() bool { return obs.get(obs.dead, "removed-sink") == 1 })
}

func TestRestartLosesNothing(t *testing.T) {
	st := openStore(t)
	const total = 30
	var mu sync.Mutex
	seen := map[string]int{}
	rc := newReceiver(t, func(n int, body []byte) int {
		var b WebhookBody
		_ = json.Unmarshal(body, &b)
		mu.Lock()
		seen[b.ID]++
		mu.Unlock()
		if n%4 == 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	ids := map[string]bool{}
	for range total {
		ids[enqueueNote(t, st, "hook").ID] = true
	}
	cfg := fastConfig(t, webhookSink("hook", "HOOK_URL"))
	// Claims cut short by the stop count as attempts too, and this test is
	// about restarts, not dead letters.
	cfg.MaxAttempts = 100
	// A small batch and a short claim make the first dispatcher stop with
	// messages claimed but not delivered.
	opts := DispatcherOptions{Store: st, Config: cfg, Getenv: envOf(rc), BatchSize: 4, Parallelism: 2, Logger: testLogger(t),
		ClaimFor: 50 * time.Millisecond}
	stop := startDispatcher(t, opts)
	waitFor(t, "some deliveries", func() bool { return len(rc.succeeded()) >= total/3 })
	stop()
	if got := len(rc.succeeded()); got >= total {
		t.Fatalf("first dispatcher delivered %d of %d; want it stopped midway", got, total)
	}

	startDispatcher(t, opts)
	waitFor(t, "every message delivered", func() bool {
		delivered := map[string]bool{}
		for _, c := range rc.succeeded() {
			delivered[c.header.Get(HeaderIdempotencyKey)] = true
		}
		return len(delivered) == total
	})
	for _, c := range rc.succeeded() {
		if key := c.header.Get(HeaderIdempotencyKey); !ids[key] {
			t.Errorf("delivered key %q; want one of the enqueued ids", key)
		}
	}
}

func TestResolveNamesMissingVariable(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"url variable empty", map[string]string{"SECRET": "k"}, "HOOK_URL is empty"},
		{"secret variable empty", map[string]string{"HOOK_URL": "https://h.example/x"}, "SECRET is empty"},
		{"url variable invalid", map[string]string{"HOOK_URL": "ftp://h", "SECRET": "k"}, `scheme "ftp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewDispatcher(DispatcherOptions{Store: openStore(t),
				Config: fastConfig(t, webhookSink("hook", "HOOK_URL")), Getenv: func(k string) string { return tt.env[k] }})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error: got %v; want one containing %q", err, tt.want)
			}
		})
	}
}

func TestRetryDelayCapped(t *testing.T) {
	d := &Dispatcher{o: DispatcherOptions{Config: Config{RetryBase: time.Second, RetryMax: 5 * time.Second}}}
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second,
		4: 5 * time.Second, 40: 5 * time.Second} {
		if got := d.retryDelay(attempts); got != want {
			t.Errorf("retryDelay(%d): got %s; want %s", attempts, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{now.Add(time.Minute).Format(http.TimeFormat), time.Minute},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q): got %s; want %s", tt.in, got, tt.want)
		}
	}
}
