package broker

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// emulatorEnv is the environment that signs the broker in to the emulator
// as the demo pipeline identity, the one the seed lets grant.
func emulatorEnv(srv *emulator.Server) func(string) string {
	vars := map[string]string{
		"AZURE_TENANT_ID":      srv.TenantID(),
		"AZURE_CLIENT_ID":      "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02",
		"AZURE_CLIENT_SECRET":  "demo-pipeline-secret",
		"AZURE_AUTHORITY_HOST": srv.URL() + "/",
		"ELEVATE_ARM_ENDPOINT": srv.URL(),
		"ELEVATE_VAULT_SUFFIX": srv.VaultSuffix(),
		"ELEVATE_CA_FILE":      srv.CAFile(),
	}
	return func(k string) string { return vars[k] }
}

func TestServerServesAndShutsDown(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := emulator.Start(context.Background(), emulator.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	cfg := ServerConfig{
		TLS:          TLSConfig{Mode: TLSModeDev, DevCertFile: filepath.Join(t.TempDir(), "dev.pem")},
		Storage:      StorageConfig{SQLite: filepath.Join(t.TempDir(), "elevate.db")},
		Policy:       "../../examples/broker/policy.yaml",
		PipelineAuth: PipelineAuthConfig{Issuer: srv.GitHubIssuer(), Audience: url},
		ApproverAuth: ApproverAuthConfig{StaticTokens: staticTokens()},
	}
	s, err := NewServer(context.Background(), cfg, ServerOptions{Getenv: emulatorEnv(srv), Logger: quiet, Listener: ln,
		EngineOptions: lifecycle.Options{BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond}})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if s.URL() != url {
		t.Errorf("URL = %s; want %s", s.URL(), url)
	}
	if s.DevCertFile() != cfg.TLS.DevCertFile {
		t.Errorf("DevCertFile = %q; want %q", s.DevCertFile(), cfg.TLS.DevCertFile)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}}}
	tokenOf := func(claims map[string]any) brokerclient.TokenFunc {
		return func(context.Context) (string, error) { return srv.MintGitHubToken(claims) }
	}
	pipelineClaims := map[string]any{"aud": url, "sub": pipeline.Subject, "repository": "contoso/payments", "environment": "production"}
	c, err := brokerclient.New(url, tokenOf(pipelineClaims), httpClient)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Ready(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("broker not ready after 10 s: %v", c.Ready(ctx))
		}
		time.Sleep(10 * time.Millisecond)
	}
	d, err := c.Create(ctx, brokerclient.CreateInput{Roles: []string{"Key Vault Secrets Officer"}, Scopes: []string{vaultID},
		PrincipalID: pipelineOID, Duration: "5m", Justification: "rotate", IdempotencyKey: "s1"})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if d.Request.State != brokerclient.StateActive {
		t.Errorf("state = %s; want active", d.Request.State)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v; want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return 10 s after cancel")
	}
	if err := s.Store().Ping(context.Background()); err == nil {
		t.Errorf("store still open after Run returned")
	}
	// The grant outlives the process: only expiry or a revoke ends it.
	n := 0
	for _, a := range srv.RoleAssignments() {
		if a.PrincipalID == pipelineOID {
			n++
		}
	}
	if n < 2 {
		t.Errorf("assignments of the pipeline = %d; want the delegation and the grant", n)
	}
}

func TestNewServerRejectsBadCredential(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := emulator.Start(context.Background(), emulator.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	env := emulatorEnv(srv)
	wrong := func(k string) string {
		if k == "AZURE_CLIENT_SECRET" {
			return "wrong-secret"
		}
		return env(k)
	}
	cfg := ServerConfig{TLS: TLSConfig{Mode: TLSModeDev}, Policy: "../../examples/broker/policy.yaml",
		Storage: StorageConfig{SQLite: filepath.Join(t.TempDir(), "e.db")}, PipelineAuth: PipelineAuthConfig{Audience: "https://b"}}
	_, err = NewServer(context.Background(), cfg, ServerOptions{Getenv: wrong, Logger: quiet, Listener: nil})
	if err == nil {
		t.Fatal("NewServer with a wrong client secret succeeded; want a sign-in error")
	}
}
