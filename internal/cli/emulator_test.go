package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the command goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestEmulatorCommandPrintsExports(t *testing.T) {
	dir := t.TempDir()
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"emulator", "--state-dir", dir, "--propagation-delay", "20ms"},
			Streams{Out: &out, ErrOut: &errOut, Getenv: func(string) string { return "" }})
	}()

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Serving until interrupted") {
		if time.Now().After(deadline) {
			t.Fatalf("no start banner after 10 s; stdout %q, stderr %q", out.String(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("exit code: got %d; want %d; stderr %q", code, ExitOK, errOut.String())
	}

	text := out.String()
	for _, want := range []string{
		"export AZURE_TENANT_ID=3b5f0e4a-8c1d-4e2f-9a7b-6c5d4e3f2a10",
		"export AZURE_CLIENT_ID=0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02",
		"export AZURE_CLIENT_SECRET=demo-pipeline-secret",
		"export AZURE_AUTHORITY_HOST=https://127.0.0.1:",
		"export ELEVATE_ARM_ENDPOINT=https://127.0.0.1:",
		"export ELEVATE_CA_FILE=" + filepath.Join(dir, "ca.pem"),
		"export ELEVATE_VAULT_SUFFIX=vault.localhost:",
		"export SSL_CERT_FILE=" + filepath.Join(dir, "ca.pem"),
		"Admin token:",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("stdout lacks %q; got:\n%s", want, text)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err != nil {
		t.Errorf("ca.pem: %v", err)
	}
	for _, want := range []string{"emulator started", "emulator stopped"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks log %q; got %q", want, errOut.String())
		}
	}
}

func TestEmulatorCommandRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	badSeed := filepath.Join(dir, "seed.yaml")
	if err := os.WriteFile(badSeed, []byte("tenant:\n  id: x\n  colour: blue\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"non-loopback address", []string{"emulator", "--addr", "0.0.0.0:0"}, "loopback"},
		{"unknown seed field", []string{"emulator", "--seed", badSeed}, "colour"},
		{"missing seed file", []string{"emulator", "--seed", filepath.Join(dir, "none.yaml")}, "none.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut syncBuffer
			code := Main(context.Background(), tc.args, Streams{Out: &out, ErrOut: &errOut})
			if code != ExitUsage {
				t.Errorf("exit code: got %d; want %d", code, ExitUsage)
			}
			if !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("stderr: got %q; want it to mention %q", errOut.String(), tc.want)
			}
		})
	}
}
