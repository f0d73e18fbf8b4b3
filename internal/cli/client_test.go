package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/brokerclient"
)

// liveBroker is the demo's emulator and broker on loopback, for tests of
// the client commands.
type liveBroker struct {
	*brokerDemo
}

func startLiveBroker(t *testing.T) *liveBroker {
	t.Helper()
	var errOut syncBuffer
	d := &brokerDemo{streams: Streams{Out: &errOut, ErrOut: &errOut, Getenv: func(string) string { return "" }}}
	d.out = &errOut
	stop, err := d.start(context.Background(), t.TempDir(), demoOptions{})
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(stop)
	return &liveBroker{d}
}

// run runs one command line with env as the environment.
func (b *liveBroker) run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, Streams{Out: &out, ErrOut: &errOut, Getenv: func(k string) string { return env[k] }})
	return code, out.String(), errOut.String()
}

// request creates a request as the pipeline and returns its id.
func (b *liveBroker) request(t *testing.T, role, scope string, extra ...string) brokerclient.RequestDetail {
	t.Helper()
	args := append([]string{"request", "--role", role, "--scope", scope, "--principal-id", b.principal.ObjectID,
		"--justification", "test " + t.Name(), "--output", "json", "--idempotency-key", t.Name() + role}, extra...)
	code, out, errOut := b.run(t, b.pipelineEnv, args...)
	if code != ExitOK {
		t.Fatalf("elevate request: exit %d; stderr %s", code, errOut)
	}
	var d brokerclient.RequestDetail
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("decode request output %q: %v", out, err)
	}
	return d
}

func TestRequestCommandOutcomes(t *testing.T) {
	b := startLiveBroker(t)
	auto := b.request(t, "Key Vault Secrets Officer", b.vaultID)
	if auto.Request.State != brokerclient.StateActive {
		t.Errorf("auto-approved state = %s; want active", auto.Request.State)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"policy denial exits 3", []string{"--role", "Owner", "--scope", b.rgID}, ExitDenied, "denied"},
		{"wait times out", []string{"--role", "Reader", "--scope", b.rgID, "--wait", "--timeout", "200ms", "--poll-interval", "20ms"}, ExitFailure, "still pending"},
		{"missing principal", []string{"--role", "Reader", "--scope", b.rgID}, ExitUsage, "missing --principal-id"},
		{"bad duration", []string{"--role", "Reader", "--scope", b.rgID, "--duration", "1m"}, ExitUsage, "duration"},
		{"unknown role name", []string{"--role", "No Such Role", "--scope", b.rgID}, ExitUsage, "No Such Role"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"request", "--justification", "x"}, tc.args...)
			if tc.name != "missing principal" {
				args = append(args, "--principal-id", b.principal.ObjectID)
			}
			code, out, errOut := b.run(t, b.pipelineEnv, args...)
			if code != tc.code {
				t.Errorf("exit = %d; want %d; stdout %s; stderr %s", code, tc.code, out, errOut)
			}
			if !strings.Contains(out+errOut, tc.want) {
				t.Errorf("output lacks %q; stdout %s; stderr %s", tc.want, out, errOut)
			}
		})
	}
}

func TestRequestWaitsForApproval(t *testing.T) {
	b := startLiveBroker(t)
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		var out, errOut syncBuffer
		code := Main(context.Background(), []string{"request", "--role", "Reader", "--scope", b.rgID,
			"--principal-id", b.principal.ObjectID, "--justification", "wait for me", "--wait",
			"--timeout", "20s", "--poll-interval", "20ms", "--idempotency-key", "wait-1"},
			Streams{Out: &out, ErrOut: &errOut, Getenv: func(k string) string { return b.pipelineEnv[k] }})
		done <- result{code, out.String(), errOut.String()}
	}()

	// Find the pending request and approve it the way a reviewer would.
	var id string
	deadline := time.Now().Add(10 * time.Second)
	for id == "" {
		if time.Now().After(deadline) {
			t.Fatal("no pending request after 10 s")
		}
		code, out, _ := b.run(t, b.approverEnv, "requests", "list", "--state", "pending", "--output", "json")
		var page brokerclient.RequestList
		if code == ExitOK && json.Unmarshal([]byte(out), &page) == nil && len(page.Requests) == 1 {
			id = page.Requests[0].ID
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, out, errOut := b.run(t, b.approverEnv, "approve", id, "--comment", "go ahead")
	if code != ExitOK {
		t.Fatalf("approve: exit %d; stderr %s", code, errOut)
	}
	if !strings.Contains(out, "| Reader |") || !strings.Contains(out, "it is now active") {
		t.Errorf("approve output lacks the table or the new state:\n%s", out)
	}
	r := <-done
	if r.code != ExitOK {
		t.Fatalf("request --wait: exit %d; stderr %s", r.code, r.err)
	}
	if !strings.Contains(r.out, "Request "+id+": active") {
		t.Errorf("request output lacks the active state:\n%s", r.out)
	}
	if !strings.Contains(r.err, "is pending; waiting up to 20s") {
		t.Errorf("request stderr lacks the wait notice:\n%s", r.err)
	}
}

func TestDenyCommandExitsDenied(t *testing.T) {
	b := startLiveBroker(t)
	d := b.request(t, "Reader", b.rgID)
	if code, _, errOut := b.run(t, b.approverEnv, "deny", d.Request.ID); code != ExitUsage || !strings.Contains(errOut, "missing --comment") {
		t.Errorf("deny without comment: exit %d, stderr %q; want %d and missing --comment", code, errOut, ExitUsage)
	}
	if code, out, errOut := b.run(t, b.approverEnv, "deny", d.Request.ID, "--comment", "not now"); code != ExitOK || !strings.Contains(out, "it is now denied") {
		t.Fatalf("deny: exit %d; stdout %s; stderr %s", code, out, errOut)
	}
	// A later wait of the pipeline gets the denial.
	code, _, errOut := b.run(t, b.pipelineEnv, "request", "--role", "Reader", "--scope", b.rgID, "--principal-id", b.principal.ObjectID,
		"--justification", "test "+t.Name(), "--idempotency-key", t.Name()+"Reader", "--wait")
	if code != ExitDenied {
		t.Errorf("request --wait after deny: exit %d; want %d; stderr %s", code, ExitDenied, errOut)
	}
}

func TestStatusListRevokeCommands(t *testing.T) {
	b := startLiveBroker(t)
	d := b.request(t, "Key Vault Secrets Officer", b.vaultID, "--duration", "10m")
	id := d.Request.ID

	code, out, errOut := b.run(t, b.approverEnv, "status", id)
	if code != ExitOK || !strings.Contains(out, "Request "+id+": active") || !strings.Contains(out, "| Key Vault Secrets Officer |") {
		t.Errorf("status: exit %d; stdout %s; stderr %s", code, out, errOut)
	}
	code, out, _ = b.run(t, b.approverEnv, "requests", "list", "--state", "active")
	if code != ExitOK || !strings.Contains(out, id) || !strings.HasPrefix(out, "ID") {
		t.Errorf("requests list: exit %d; stdout %s", code, out)
	}
	code, _, errOut = b.run(t, b.adminEnv, "extend", id)
	if code != ExitUsage || !strings.Contains(errOut, "--duration") {
		t.Errorf("extend without --duration: exit %d, stderr %q; want %d", code, errOut, ExitUsage)
	}
	code, out, errOut = b.run(t, b.adminEnv, "extend", id, "--duration", "12m")
	if code != ExitOK || !strings.Contains(out, "Request "+id+": active") {
		t.Errorf("extend: exit %d; stdout %s; stderr %s", code, out, errOut)
	}
	code, _, errOut = b.run(t, b.approverEnv, "revoke", id)
	if code != ExitFailure || !strings.Contains(errOut, "403 forbidden") {
		t.Errorf("non-admin revoke: exit %d, stderr %q; want %d and 403", code, errOut, ExitFailure)
	}
	code, _, errOut = b.run(t, b.adminEnv, "revoke", "--plan", "plan.json", id)
	if code != ExitUsage {
		t.Errorf("revoke with --plan and an id: exit %d; want %d; stderr %s", code, ExitUsage, errOut)
	}
	code, out, errOut = b.run(t, b.adminEnv, "revoke", id)
	if code != ExitOK || !strings.Contains(out, "Request "+id+": revoked") {
		t.Errorf("admin revoke: exit %d; stdout %s; stderr %s", code, out, errOut)
	}
	if n := b.assignmentsLeft(); n != 0 {
		t.Errorf("assignments after revoke = %d; want 0", n)
	}
}

func TestClientFlagErrors(t *testing.T) {
	b := startLiveBroker(t)
	noToken := map[string]string{"ELEVATE_BROKER_URL": b.broker.URL()}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"missing broker URL", map[string]string{}, []string{"status", "x"}, ExitUsage, "missing --broker"},
		{"missing token", noToken, []string{"status", "x"}, ExitUsage, "missing broker token"},
		{"plain http elsewhere", map[string]string{"ELEVATE_BROKER_TOKEN": "t"}, []string{"status", "x", "--broker", "http://elevate.example"}, ExitUsage, "only sent over https"},
		{"bad output", b.approverEnv, []string{"status", "x", "-o", "yaml"}, ExitUsage, "invalid --output"},
		{"untrusted certificate", map[string]string{"ELEVATE_BROKER_URL": b.broker.URL(), "ELEVATE_BROKER_TOKEN": "t"}, []string{"status", "x"}, ExitFailure, "certificate"},
		{"unknown request", b.approverEnv, []string{"status", "8a1f7c1e-0000-4000-8000-000000000000"}, ExitFailure, "404 not_found"},
		{"wrong token", map[string]string{"ELEVATE_BROKER_URL": b.broker.URL(), "ELEVATE_BROKER_CA_FILE": b.broker.DevCertFile(),
			"ELEVATE_BROKER_TOKEN": "guess"}, []string{"requests", "list"}, ExitFailure, "401 unauthorized"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := b.run(t, tc.env, tc.args...)
			if code != tc.code {
				t.Errorf("exit = %d; want %d; stdout %s; stderr %s", code, tc.code, out, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q lacks %q", errOut, tc.want)
			}
			if strings.Contains(errOut, "guess") {
				t.Errorf("stderr repeats the token: %s", errOut)
			}
		})
	}
}

func TestDemoBrokerEndToEnd(t *testing.T) {
	var out, errOut syncBuffer
	code := Main(context.Background(), []string{"demo", "--broker"},
		Streams{Out: &out, ErrOut: &errOut, Getenv: func(string) string { return "" }})
	if code != ExitOK {
		t.Fatalf("demo --broker: exit %d; stdout %s; stderr %s", code, out.String(), errOut.String())
	}
	for _, want := range []string{
		"active (rule pipeline-rotates-own-secret, auto_approve)",
		"pending (rule storage-read-needs-admin, needs_approval)",
		"it is now active",
		"ended by admin revoke: revoked",
		"ended by pipeline cancel: revoked",
		"Verified: no temporary role assignment remains; audit chain intact",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDemoPolicyMatchesExample(t *testing.T) {
	example, err := os.ReadFile("../../examples/broker/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(example, demoBrokerPolicy) {
		t.Errorf("demo_broker_policy.yaml differs from examples/broker/policy.yaml; copy the example over it")
	}
}
