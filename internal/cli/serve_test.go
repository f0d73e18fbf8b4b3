package cli

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/emulator"
)

func TestServeStartsAndStops(t *testing.T) {
	srv, err := emulator.Start(context.Background(), emulator.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	dir := t.TempDir()
	policy, err := filepath.Abs("../../examples/broker/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "elevate.yaml")
	yaml := "listen: 127.0.0.1:0\ntls: dev\npolicy: " + policy + "\nstorage: {sqlite: " + filepath.Join(dir, "e.db") +
		"}\npipeline_auth: {issuer: " + srv.GitHubIssuer() + ", audience: https://broker.test}\n"
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"AZURE_TENANT_ID": srv.TenantID(), "AZURE_CLIENT_ID": "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02",
		"AZURE_CLIENT_SECRET": "demo-pipeline-secret", "AZURE_AUTHORITY_HOST": srv.URL() + "/",
		"ELEVATE_ARM_ENDPOINT": srv.URL(), "ELEVATE_CA_FILE": srv.CAFile(),
	}
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--config", config}, Streams{Out: &out, ErrOut: &errOut, Getenv: func(k string) string { return env[k] }})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errOut.String(), "reconcile done") {
		if time.Now().After(deadline) {
			t.Fatalf("no reconcile after 10 s; stderr %s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("serve: exit %d; want %d; stderr %s", code, ExitOK, errOut.String())
	}
	for _, want := range []string{"broker started", "cert_file=", "sweeper stopped", "broker stopped"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
		}
	}
}

func TestServeConfigErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("tls: dev\npolicy: p.yaml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing config flag", []string{"serve"}, "missing --config"},
		{"config not found", []string{"serve", "--config", "/nonexistent/elevate.yaml"}, "read broker config"},
		{"config invalid", []string{"serve", "--config", bad}, "missing pipeline_auth.audience"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut syncBuffer
			code := Main(context.Background(), tc.args, Streams{Out: &out, ErrOut: &errOut, Getenv: func(string) string { return "" }})
			if code != ExitUsage {
				t.Errorf("exit = %d; want %d", code, ExitUsage)
			}
			if !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tc.want)
			}
		})
	}
}
