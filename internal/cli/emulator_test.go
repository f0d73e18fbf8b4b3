package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/github"
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

func TestParseGitHubJob(t *testing.T) {
	job, err := parseGitHubJob("repo=contoso/payments, environment=production,ref=refs/tags/v1,event=workflow_dispatch,actor=mona,workflow=deploy,sha=abc123")
	if err != nil {
		t.Fatal(err)
	}
	want := emulator.GitHubJob{Repository: "contoso/payments", Environment: "production", Ref: "refs/tags/v1",
		EventName: "workflow_dispatch", Actor: "mona", Workflow: "deploy", SHA: "abc123"}
	if job.Repository != want.Repository || job.Environment != want.Environment || job.Ref != want.Ref ||
		job.EventName != want.EventName || job.Actor != want.Actor || job.Workflow != want.Workflow || job.SHA != want.SHA {
		t.Errorf("parseGitHubJob = %+v; want %+v", job, want)
	}

	job, err = parseGitHubJob("repo=contoso/payments")
	if err != nil {
		t.Fatal(err)
	}
	if job.Ref != "refs/heads/main" || job.EventName != "push" || job.Actor != "octocat" || job.Environment != "" {
		t.Errorf("defaults = %+v; want ref refs/heads/main, event push, actor octocat, no environment", job)
	}
	if sub := emulator.GitHubSubject(job); sub != "repo:contoso/payments:ref:refs/heads/main" {
		t.Errorf("subject = %q; want the ref form", sub)
	}
}

func TestParseGitHubJobRejectsBadValues(t *testing.T) {
	tests := []struct {
		spec string
		want []string // each must appear in the error: the key and the fix
	}{
		{"environment=production", []string{"missing repo", "repo=OWNER/NAME"}},
		{"repo=payments", []string{`repo "payments"`, "repo=contoso/payments"}},
		{"repo=contoso/payments/extra", []string{"repo", "OWNER/NAME"}},
		{"repo=contoso/payments,branch=main", []string{`unknown key "branch"`, "repo, environment, ref"}},
		{"repo=contoso/payments,ref=main", []string{`ref "main"`, "refs/heads/BRANCH"}},
		{"repo=contoso/payments,environment=", []string{"empty value for environment", "leave the key out"}},
		{"repo=contoso/payments,repo=contoso/web", []string{`key "repo" given twice`}},
		{"repo=contoso/payments,production", []string{`"production" is not KEY=VALUE`, "environment=production"}},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			_, err := parseGitHubJob(tc.spec)
			if err == nil {
				t.Fatalf("parseGitHubJob(%q) succeeded; want an error", tc.spec)
			}
			for _, want := range append(tc.want, "--github-job") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}

	// The command rejects the value before it starts the emulator.
	var out, errOut syncBuffer
	code := Main(context.Background(), []string{"emulator", "--github-job", "repo=payments"}, Streams{Out: &out, ErrOut: &errOut})
	if code != ExitUsage || !strings.Contains(errOut.String(), "OWNER/NAME") {
		t.Errorf("emulator --github-job repo=payments: exit %d, stderr %q; want %d and the fix", code, errOut.String(), ExitUsage)
	}
}

func TestEmulatorCommandGitHubJobMintsTokens(t *testing.T) {
	dir := t.TempDir()
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"emulator", "--state-dir", dir,
			"--github-job", "repo=contoso/payments,environment=production", "--github-job", "repo=contoso/web,event=pull_request"},
			Streams{Out: &out, ErrOut: &errOut, Getenv: func(string) string { return "" }})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Serving until interrupted") {
		if time.Now().After(deadline) {
			t.Fatalf("no start banner after 10 s; stdout %q, stderr %q", out.String(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer func() {
		cancel()
		if code := <-done; code != ExitOK {
			t.Errorf("exit code: got %d; want %d; stderr %q", code, ExitOK, errOut.String())
		}
	}()

	text := out.String()
	if !regexp.MustCompile(`(?m)^export ELEVATE_EMULATOR_ADMIN_TOKEN=\S+$`).MatchString(text) {
		t.Errorf("stdout lacks the ELEVATE_EMULATOR_ADMIN_TOKEN export:\n%s", text)
	}
	urls := regexp.MustCompile(`(?m)^export ACTIONS_ID_TOKEN_REQUEST_URL='([^']+)'$`).FindAllStringSubmatch(text, -1)
	tokens := regexp.MustCompile(`(?m)^export ACTIONS_ID_TOKEN_REQUEST_TOKEN=(\S+)$`).FindAllStringSubmatch(text, -1)
	if len(urls) != 2 || len(tokens) != 2 {
		t.Fatalf("stdout has %d request URLs and %d request tokens; want 2 of each:\n%s", len(urls), len(tokens), text)
	}
	env := map[string]string{"ELEVATE_CA_FILE": filepath.Join(dir, "ca.pem")}
	httpClient, err := (&brokerOptions{}).httpClient(Streams{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	for i, wantSub := range []string{"repo:contoso/payments:environment:production", "repo:contoso/web:pull_request"} {
		src, ok := github.TokenSourceFromEnv(func(k string) string {
			return map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": urls[i][1], "ACTIONS_ID_TOKEN_REQUEST_TOKEN": tokens[i][1]}[k]
		}, httpClient)
		if !ok {
			t.Fatal("TokenSourceFromEnv found no token source in the printed exports")
		}
		src.Audience = "https://broker.example"
		raw, err := src.Token(ctx)
		if err != nil {
			t.Fatalf("job %d: request OIDC token: %v", i+1, err)
		}
		parts := strings.Split(raw, ".")
		if len(parts) != 3 {
			t.Fatalf("job %d: token %q is not a JWT", i+1, raw)
		}
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		if err := json.Unmarshal(payload, &claims); err != nil {
			t.Fatal(err)
		}
		if claims["sub"] != wantSub || claims["aud"] != "https://broker.example" || !strings.HasSuffix(claims["iss"].(string), "/github") {
			t.Errorf("job %d claims: sub %v, aud %v, iss %v; want sub %s, the requested audience and the /github issuer",
				i+1, claims["sub"], claims["aud"], claims["iss"], wantSub)
		}
	}
}
