package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/crashpoint"
	"github.com/elevate-dev/elevate/internal/emulator"
)

// clockRate is how much faster than real time the broker processes of the
// crash and HA tests run their clocks: a 5 minute lease ends after 5 s.
const clockRate = 60

var crashBuild struct {
	once sync.Once
	path string
	err  error
}

// crashBinary builds elevate with the crashpoints tag once per test
// process. That build also reads the scaled clock variables.
func crashBinary(t testing.TB) string {
	t.Helper()
	crashBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "elevate-broker-crash-")
		if err != nil {
			crashBuild.err = err
			return
		}
		crashBuild.path = filepath.Join(dir, "elevate")
		out, err := exec.Command("go", "build", "-tags", "crashpoints", "-o", crashBuild.path,
			"github.com/elevate-dev/elevate/cmd/elevate").CombinedOutput()
		if err != nil {
			crashBuild.err = fmt.Errorf("go build -tags crashpoints: %w\n%s", err, out)
		}
	})
	if crashBuild.err != nil {
		t.Fatalf("build elevate: %v", crashBuild.err)
	}
	return crashBuild.path
}

// brokerAud is the audience of pipeline tokens in the broker processes.
// Reviewers sign in with the static tokens of the API tests.
const brokerAud = "elevate-broker-test"

// brokerProc is one `elevate serve` process of the crashpoints build,
// which a test starts, kills and starts again on the same configuration.
type brokerProc struct {
	t        testing.TB
	name     string
	dir      string
	url      string
	env      []string
	cmd      *exec.Cmd
	exited   chan struct{}
	stderrMu sync.Mutex
	stderr   bytes.Buffer
}

// newBrokerProc writes the configuration of a broker named name that
// stores in storage (a YAML mapping body such as "sqlite: /x.db").
func newBrokerProc(t testing.TB, srv *emulator.Server, name, storage, policyFile string, epoch time.Time) *brokerProc {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`listen: %s
tls: {mode: dev, dev_cert_file: %s}
storage: {%s}
policy: %s
pipeline_auth: {issuer: %s, audience: %s, allowed_repositories: [contoso/payments]}
approver_auth:
  static_tokens:
    %s: {subject: "%s"}
    %s: {subject: "%s", admin: true}
replica_id: %s
shutdown_timeout: 5s
rate_limit: {per_second: 1000, burst: 1000}
`, addr, filepath.Join(dir, "broker.pem"), storage, policyFile, srv.GitHubIssuer(), brokerAud,
		digest(approverToken), approver.Subject, digest(adminToken), admin.Subject, name)
	if err := os.WriteFile(filepath.Join(dir, "elevate.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + dir,
		"AZURE_TENANT_ID=" + srv.TenantID(), "AZURE_CLIENT_ID=" + brokerClientID, "AZURE_CLIENT_SECRET=" + brokerSecret,
		"AZURE_AUTHORITY_HOST=" + srv.URL() + "/", "ELEVATE_ARM_ENDPOINT=" + srv.URL(),
		"ELEVATE_VAULT_SUFFIX=" + srv.VaultSuffix(), "ELEVATE_CA_FILE=" + srv.CAFile(),
		crashpoint.EnvClockRate + "=" + fmt.Sprint(clockRate),
		crashpoint.EnvClockEpoch + "=" + epoch.Format(time.RFC3339Nano),
	}
	return &brokerProc{t: t, name: name, dir: dir, url: "https://" + addr, env: env}
}

// start runs the broker with extra environment, such as a crash point,
// and waits until it is ready. A broker told to crash may die before it
// is ready; start then returns without error.
func (b *brokerProc) start(extra ...string) {
	b.t.Helper()
	cmd := exec.Command(crashBinary(b.t), "serve", "--config", filepath.Join(b.dir, "elevate.yaml"))
	cmd.Env = append(append([]string{}, b.env...), extra...)
	cmd.Stderr = &lockedWriter{mu: &b.stderrMu, w: &b.stderr}
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("start broker %s: %v", b.name, err)
	}
	b.cmd, b.exited = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(b.exited)
	}()
	b.t.Cleanup(b.stop)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-b.exited:
			return
		default:
		}
		if c, err := b.client(adminToken); err == nil && c.Ready(context.Background()) == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.t.Fatalf("broker %s not ready after 30s; stderr:\n%s", b.name, b.logs())
}

// kill sends SIGKILL and waits for the process to end.
func (b *brokerProc) kill() {
	if b.cmd == nil || !b.running() {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.exited
}

// stop sends SIGTERM and waits up to 10 s before killing.
func (b *brokerProc) stop() {
	if b.cmd == nil || !b.running() {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		b.kill()
	}
}

func (b *brokerProc) running() bool {
	select {
	case <-b.exited:
		return false
	default:
		return true
	}
}

// waitExit waits up to d for the process to end and reports whether it did.
func (b *brokerProc) waitExit(d time.Duration) bool {
	select {
	case <-b.exited:
		return true
	case <-time.After(d):
		return false
	}
}

func (b *brokerProc) logs() string {
	b.stderrMu.Lock()
	defer b.stderrMu.Unlock()
	return b.stderr.String()
}

// crashed reports whether the broker announced a kill at point.
func (b *brokerProc) crashed(point string) bool {
	return strings.Contains(b.logs(), "crashpoint: "+point+" hit")
}

// client returns a client of the broker that presents token.
func (b *brokerProc) client(token string) (*brokerclient.Client, error) {
	return b.clientWith(func(context.Context) (string, error) { return token, nil })
}

// pipelineClient returns a client that sends a fresh GitHub Actions OIDC
// token of the contoso/payments production job with every call.
func (b *brokerProc) pipelineClient(srv *emulator.Server) (*brokerclient.Client, error) {
	return b.clientWith(func(context.Context) (string, error) {
		return srv.MintGitHubToken(map[string]any{
			"sub": pipeline.Subject, "aud": brokerAud, "repository": "contoso/payments",
			"repository_owner": "contoso", "environment": "production", "ref": "refs/heads/main",
			"actor": "octocat", "run_id": "4242", "run_attempt": "1", "workflow": "deploy",
			"sha": "3f786850e387550fdab836ed7e6dc881de23001b", "event_name": "push",
		})
	})
}

// clientWith returns a client that trusts the broker's current development
// certificate, which each start writes anew.
func (b *brokerProc) clientWith(token brokerclient.TokenFunc) (*brokerclient.Client, error) {
	pem, err := os.ReadFile(filepath.Join(b.dir, "broker.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in broker.pem")
	}
	httpClient := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	return brokerclient.New(b.url, token, httpClient)
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
