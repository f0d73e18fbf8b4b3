package broker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/metrics"
	"github.com/elevate-dev/elevate/internal/notify"
)

// hookRecorder is a loopback webhook that keeps what it receives.
type hookRecorder struct {
	mu     sync.Mutex
	bodies [][]byte
	heads  []http.Header
}

func (h *hookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.bodies = append(h.bodies, body)
	h.heads = append(h.heads, r.Header.Clone())
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookRecorder) snapshot() ([][]byte, []http.Header) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.bodies...), append([]http.Header(nil), h.heads...)
}

func TestServerNotifiesAndServesMetrics(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	emu, err := emulator.Start(context.Background(), emulator.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	hooks, audit := &hookRecorder{}, &hookRecorder{}
	hookSrv, auditSrv := httptest.NewServer(hooks), httptest.NewServer(audit)
	t.Cleanup(hookSrv.Close)
	t.Cleanup(auditSrv.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	cfg := ServerConfig{
		TLS:          TLSConfig{Mode: TLSModeDev, DevCertFile: filepath.Join(t.TempDir(), "dev.pem")},
		Storage:      StorageConfig{SQLite: filepath.Join(t.TempDir(), "elevate.db")},
		Policy:       "../../examples/broker/policy.yaml",
		PipelineAuth: PipelineAuthConfig{Issuer: emu.GitHubIssuer(), Audience: url},
		ApproverAuth: ApproverAuthConfig{StaticTokens: staticTokens()},
		UI:           UIConfig{BaseURL: "https://elevate.contoso.example"},
		Notify: notify.Config{
			Sinks:        []notify.SinkConfig{{Name: "ops", Type: notify.TypeWebhook, URL: hookSrv.URL, SecretEnv: "HOOK_SECRET"}},
			AuditStream:  &notify.AuditStreamConfig{URL: auditSrv.URL, Source: "https://elevate.contoso.example"},
			PollInterval: 10 * time.Millisecond,
		},
		Metrics: metrics.Config{Listen: "127.0.0.1:0"},
	}
	azureEnv := emulatorEnv(emu)
	getenv := func(k string) string {
		if k == "HOOK_SECRET" {
			return "hook-key"
		}
		return azureEnv(k)
	}
	s, err := NewServer(context.Background(), cfg, ServerOptions{Getenv: getenv, Logger: quiet, Listener: ln,
		EngineOptions: lifecycle.Options{BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond}})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}}}
	claims := map[string]any{"aud": url, "sub": pipeline.Subject, "repository": "contoso/payments", "environment": "production"}
	c, err := brokerclient.New(url, func(context.Context) (string, error) { return emu.MintGitHubToken(claims) }, httpClient)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "broker ready", func() bool { return c.Ready(ctx) == nil })
	d, err := c.Create(ctx, brokerclient.CreateInput{Roles: []string{"Key Vault Secrets Officer"}, Scopes: []string{vaultID},
		PrincipalID: pipelineOID, Duration: "5m", Justification: "rotate", IdempotencyKey: "n1"})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	// The auto-approved request is granted, and the webhook hears of it.
	waitUntil(t, "granted notification", func() bool { bodies, _ := hooks.snapshot(); return len(bodies) >= 1 })
	bodies, heads := hooks.snapshot()
	var note notify.WebhookBody
	if err := json.Unmarshal(bodies[0], &note); err != nil {
		t.Fatalf("decode notification: %v", err)
	}
	if note.Event != notify.EventGranted || note.Request.ID != d.Request.ID {
		t.Errorf("notification: got %s for %s; want granted for %s", note.Event, note.Request.ID, d.Request.ID)
	}
	if note.Request.URL != "https://elevate.contoso.example/requests/"+d.Request.ID {
		t.Errorf("notification url: got %q; want the UI request page", note.Request.URL)
	}
	if len(note.Request.Rows) != 1 || note.Request.Rows[0].RoleName != "Key Vault Secrets Officer" {
		t.Errorf("rows: got %+v; want one row with the role name resolved", note.Request.Rows)
	}
	h := heads[0]
	if !notify.Verify([]byte("hook-key"), h.Get(notify.HeaderTimestamp), bodies[0], h.Get(notify.HeaderSignature)) {
		t.Errorf("notification signature does not verify")
	}

	// Every audit event of the request is streamed, in order.
	waitUntil(t, "audit events", func() bool { b, _ := audit.snapshot(); return len(b) >= 3 })
	events, _ := audit.snapshot()
	var last int64
	for i, raw := range events {
		var ev notify.CloudEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatalf("decode audit event %d: %v", i, err)
		}
		if ev.Data.Seq <= last || ev.Source != "https://elevate.contoso.example" {
			t.Errorf("audit event %d: got seq %d source %s; want after %d from the configured source", i, ev.Data.Seq, ev.Source, last)
		}
		last = ev.Data.Seq
	}

	// The separate metrics listener shows the request and the API call.
	// The delivered counter moves just after the receiver responds.
	var text string
	waitUntil(t, "delivery counted", func() bool {
		text = scrapeMetrics(t, "http://"+s.MetricsAddr()+"/metrics")
		return strings.Contains(text, `elevate_notifications_delivered_total{sink="ops"}`)
	})
	for _, want := range []string{
		`elevate_requests_total{outcome="auto_approve",rule_id="pipeline-rotates-own-secret"} 1`,
		`elevate_api_request_duration_seconds_count{code="201",route="POST /v1/requests"} 1`,
		`elevate_active_grants 1`,
		`elevate_notifications_delivered_total{sink="ops"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics: got no line %q; want it", want)
		}
	}
}

func scrapeMetrics(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// waitUntil polls cond every 10 ms for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConfigParsesNotifyAndMetrics(t *testing.T) {
	base := "tls: dev\npolicy: p.yaml\npipeline_auth: {audience: https://b}\n"
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"sections accepted", `
ui: {base_url: "https://elevate.contoso.example"}
metrics: {listen: "127.0.0.1:9464"}
notify:
  retry_base: 2s
  sinks:
    - {name: ops, type: slack, url_env: SLACK_URL, groups: [platform]}
  audit_stream: {url: "https://siem.contoso.example/elevate"}
`, ""},
		{"unknown notify field", "notify: {sinks: [{name: a, type: slack, url_env: A, channel: x}]}\n", "field channel not found"},
		{"invalid sink", "notify: {sinks: [{name: a, type: email, url: https://h}]}\n", `invalid type "email"`},
		{"invalid metrics listen", "metrics: {listen: nope}\n", "invalid metrics.listen"},
		{"plain http base url", "ui: {base_url: 'http://elevate'}\n", "invalid ui.base_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseServerConfig([]byte(base+tt.yaml), nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("parse: got %v; want nil", err)
				}
				if !cfg.Metrics.Enabled || cfg.Notify.MaxAttempts != notify.DefaultMaxAttempts || cfg.Notify.RetryBase != 2*time.Second {
					t.Errorf("config: got metrics %+v notify %+v; want metrics enabled and notify defaults set", cfg.Metrics, cfg.Notify)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parse: got %v; want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
