package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// armReadURL is a cheap authenticated ARM read for fault tests.
func armReadURL(s *Server) string {
	return s.URL() + demoRG + "?api-version=2021-04-01"
}

func TestFaultStatusAndRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		rule       FaultRule
		wantStatus int
		wantRetry  string
		wantCode   string
	}{
		{"throttled with retry-after", FaultRule{Path: "/resourceGroups/", Status: 429, RetryAfter: 7}, 429, "7", "SubscriptionRequestsThrottled"},
		{"unavailable with retry-after", FaultRule{Method: "GET", Status: 503, RetryAfter: 2}, 503, "2", "ServiceUnavailable"},
		{"internal error without retry-after", FaultRule{Status: 500, RetryAfter: 2}, 500, "", "InternalServerError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{Faults: FaultConfig{Rules: []FaultRule{tc.rule}}})
			status, h, body := doRaw(t, s, "GET", armReadURL(s), "", "")
			if status != tc.wantStatus {
				t.Errorf("status: got %d; want %d", status, tc.wantStatus)
			}
			if got := h.Get("Retry-After"); got != tc.wantRetry {
				t.Errorf("Retry-After: got %q; want %q", got, tc.wantRetry)
			}
			if !strings.Contains(body, `"code":"`+tc.wantCode+`"`) {
				t.Errorf("body: got %s; want code %s", body, tc.wantCode)
			}
		})
	}
}

func TestFaultDropClosesConnection(t *testing.T) {
	s := startServer(t, Config{Faults: FaultConfig{Rules: []FaultRule{{Path: "^/subscriptions/", Drop: true}}}})
	req, _ := http.NewRequest("GET", armReadURL(s), nil)
	resp, err := s.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got status %d; want a transport error from the dropped connection", resp.StatusCode)
	}
}

func TestFaultTimesLimitsMatches(t *testing.T) {
	s := startServer(t, Config{Faults: FaultConfig{Rules: []FaultRule{{Status: 503, Times: 2}}}})
	var got []int
	for range 4 {
		status, _, _ := doRaw(t, s, "GET", armReadURL(s), "", "")
		got = append(got, status)
	}
	want := []int{503, 503, 401, 401} // unauthenticated once the faults stop
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statuses: got %v; want %v", got, want)
	}
}

func TestFaultRateReplaysWithSeed(t *testing.T) {
	cfg := FaultConfig{Seed: 42, Rules: []FaultRule{{Status: 500, Rate: 0.5}}}
	s := startServer(t, Config{Faults: cfg})
	run := func() string {
		var b strings.Builder
		for range 24 {
			status, _, _ := doRaw(t, s, "GET", armReadURL(s), "", "")
			if status == 500 {
				b.WriteByte('F')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	first := run()
	if err := s.SetFaults(cfg); err != nil {
		t.Fatal(err)
	}
	second := run()
	if first != second {
		t.Errorf("replay: got %s then %s; want the same sequence", first, second)
	}
	if !strings.Contains(first, "F") || !strings.Contains(first, ".") {
		t.Errorf("sequence %s: want both faults and passes at rate 0.5", first)
	}
}

func TestFaultLatencyDelaysResponse(t *testing.T) {
	// A latency far longer than the client's deadline shows the delay
	// without measuring time.
	s := startServer(t, Config{Faults: FaultConfig{Rules: []FaultRule{{Latency: time.Minute}}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", armReadURL(s), nil)
	resp, err := s.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got status %d; want the client deadline to expire first", resp.StatusCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error: got %v; want context.DeadlineExceeded", err)
	}
}

func TestFaultConfigRejectsBadRules(t *testing.T) {
	tests := []struct {
		name string
		rule FaultRule
	}{
		{"unsupported status", FaultRule{Status: 404}},
		{"bad path regexp", FaultRule{Path: "(", Status: 500}},
		{"rate above one", FaultRule{Status: 500, Rate: 1.5}},
		{"rule without effect", FaultRule{Path: "x"}},
	}
	s := startServer(t, Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.SetFaults(FaultConfig{Rules: []FaultRule{tc.rule}}); err == nil {
				t.Errorf("SetFaults: got nil error; want one")
			}
		})
	}
}

func TestAdminFaultsEndpoint(t *testing.T) {
	s := startServer(t, Config{})
	url := s.URL() + "/_emulator/faults"
	if status, _, _ := doRaw(t, s, "GET", url, "wrong", ""); status != 401 {
		t.Errorf("wrong admin token: got %d; want 401", status)
	}
	body := `{"seed":1,"rules":[{"path":"resourceGroups","status":429,"retryAfter":3,"latency":"5ms"}]}`
	if status, _, got := doRaw(t, s, "PUT", url, s.AdminToken(), body); status != 200 {
		t.Fatalf("PUT faults: got %d %s; want 200", status, got)
	}
	status, _, got := doRaw(t, s, "GET", url, s.AdminToken(), "")
	var cfg FaultConfig
	if status != 200 || json.Unmarshal([]byte(got), &cfg) != nil || len(cfg.Rules) != 1 || cfg.Rules[0].Latency != 5*time.Millisecond {
		t.Errorf("GET faults: got %d %s; want the rule back with 5ms latency", status, got)
	}
	if status, h, _ := doRaw(t, s, "GET", armReadURL(s), "", ""); status != 429 || h.Get("Retry-After") != "3" {
		t.Errorf("faulted request: got %d Retry-After %q; want 429 and 3", status, h.Get("Retry-After"))
	}
	// The admin API is never faulted, so a test can always turn faults off.
	if status, _, _ := doRaw(t, s, "PUT", url, s.AdminToken(), `{"rules":[]}`); status != 200 {
		t.Errorf("clear faults: got %d; want 200", status)
	}
	if status, _, got := doRaw(t, s, "GET", s.URL()+"/_emulator/state", s.AdminToken(), ""); status != 200 || strings.Contains(got, demoSecret) {
		t.Errorf("state: got %d; want 200 without client secrets", status)
	}
	if status, _, _ := doRaw(t, s, "PUT", url, s.AdminToken(), `{"rules":[{"status":404}]}`); status != 400 {
		t.Errorf("invalid rule: got %d; want 400", status)
	}
}
