package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/broker"
	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/store"
)

// demoBrokerPolicy is examples/broker/policy.yaml, embedded so the demo
// runs from any directory; a test keeps the two files equal.
//
//go:embed demo_broker_policy.yaml
var demoBrokerPolicy []byte

// Identities of the broker demo. The approver is the member of
// platform-admins in the demo policy.
const (
	demoApprover = "user:approver@contoso.example"
	demoAdmin    = "user:admin@contoso.example"
)

// brokerDemo is the state of one `elevate demo --broker` run.
type brokerDemo struct {
	streams   Streams
	out       io.Writer // step output: stdout for text, stderr for json
	srv       *emulator.Server
	broker    *broker.Server
	principal emulator.Principal
	vaultID   string
	rgID      string

	pipelineEnv, approverEnv, adminEnv map[string]string
}

// demoSummary is the result of the broker demo, printed as JSON with
// --output json.
type demoSummary struct {
	BrokerURL       string              `json:"broker_url"`
	Requests        []demoRequestResult `json:"requests"`
	AssignmentsLeft int                 `json:"assignments_left"`
	AuditRecords    int64               `json:"audit_records"`
	AuditHead       string              `json:"audit_head"`
}

type demoRequestResult struct {
	ID      string `json:"id"`
	Role    string `json:"role"`
	Rule    string `json:"rule"`
	Granted string `json:"granted_by"`
	Ended   string `json:"ended_by"`
	State   string `json:"state"`
}

// runBrokerDemo starts the emulator and a broker on loopback, then walks
// two requests through the broker with the same client code the request,
// approve, revoke and cancel commands use.
func runBrokerDemo(ctx context.Context, streams Streams, o demoOptions) error {
	d := &brokerDemo{streams: streams, out: streams.Out}
	if o.Output == "json" {
		d.out = streams.ErrOut
	} else if o.Output != "text" {
		return &UsageError{fmt.Errorf("invalid --output %q: use text or json", o.Output)}
	}
	dir, err := os.MkdirTemp("", "elevate-broker-demo-")
	if err != nil {
		return fmt.Errorf("create demo directory: %w", err)
	}
	defer os.RemoveAll(dir)

	prog := newProgress(streams.ErrOut, streams.ErrIsTerminal)
	prog.Step("starting the Azure emulator and the broker")
	stop, err := d.start(ctx, dir, o)
	if err != nil {
		return err
	}
	defer stop()
	prog.Done()
	fmt.Fprintf(d.out, "Broker %s (SQLite in %s), signed in to the emulator as %s.\n\n", d.broker.URL(), dir, demoPrincipalName)

	summary, err := d.walk(ctx)
	if err != nil {
		return err
	}
	if o.UI {
		if err := d.serveUI(ctx); err != nil {
			return err
		}
	}
	if o.Output == "json" {
		enc := json.NewEncoder(streams.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(summary)
	}
	return nil
}

// start runs the emulator and the broker and returns the function that
// stops both.
func (d *brokerDemo) start(ctx context.Context, dir string, o demoOptions) (stop func(), err error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	seed := emulator.DefaultSeed()
	if d.srv, err = emulator.Start(ctx, emulator.Config{Seed: seed, PropagationDelay: o.PropagationDelay, Logger: quiet}); err != nil {
		return nil, fmt.Errorf("start emulator: %w", err)
	}
	stops := []func(){func() { d.srv.Close() }}
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	if d.principal, err = demoPrincipal(seed); err != nil {
		return nil, err
	}
	d.rgID = fmt.Sprintf("/subscriptions/%s/resourceGroups/%s", seed.Subscriptions[0].ID, demoResourceGroup)
	d.vaultID = d.rgID + "/providers/Microsoft.KeyVault/vaults/" + demoVault

	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, demoBrokerPolicy, 0o600); err != nil {
		return nil, fmt.Errorf("write demo policy: %w", err)
	}
	approverToken, adminToken := randomToken(), randomToken()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	url := "https://" + ln.Addr().String()
	cfg := broker.ServerConfig{
		TLS:          broker.TLSConfig{Mode: broker.TLSModeDev, DevCertFile: filepath.Join(dir, "broker.pem")},
		Storage:      broker.StorageConfig{SQLite: filepath.Join(dir, "elevate.db")},
		Policy:       policyFile,
		PipelineAuth: broker.PipelineAuthConfig{Issuer: d.srv.GitHubIssuer(), Audience: url, AllowedRepositories: []string{"contoso/payments"}},
		ApproverAuth: broker.ApproverAuthConfig{StaticTokens: map[string]broker.StaticIdentity{
			sha256Hex(approverToken): {Subject: demoApprover},
			sha256Hex(adminToken):    {Subject: demoAdmin, Admin: true},
		}},
		ReplicaID: "demo",
	}
	// The broker's own identity is the demo pipeline principal, the only
	// one the seed's delegation lets grant.
	brokerEnv := map[string]string{
		"AZURE_TENANT_ID":      d.srv.TenantID(),
		"AZURE_CLIENT_ID":      d.principal.AppID,
		"AZURE_CLIENT_SECRET":  d.principal.ClientSecret,
		"AZURE_AUTHORITY_HOST": d.srv.URL() + "/",
		"ELEVATE_ARM_ENDPOINT": d.srv.URL(),
		"ELEVATE_VAULT_SUFFIX": d.srv.VaultSuffix(),
		"ELEVATE_CA_FILE":      d.srv.CAFile(),
	}
	logger := quiet
	if d.streams.getenv("ELEVATE_LOG_LEVEL") != "" {
		logger = newLogger(d.streams)
	}
	ui, err := d.uiHook(o.UI, &cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	d.broker, err = broker.NewServer(ctx, cfg, broker.ServerOptions{
		Getenv: func(k string) string { return brokerEnv[k] }, Logger: logger, Listener: ln, UI: ui,
		EngineOptions: lifecycle.Options{BackoffBase: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond},
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("start broker: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- d.broker.Run(runCtx) }()
	stops = append(stops, func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintf(d.streams.ErrOut, "broker stopped with an error: %v\n", err)
		}
	})
	if err := d.setClients(url, approverToken, adminToken); err != nil {
		return nil, err
	}
	return stop, d.waitReady(ctx)
}

// setClients prepares the environments of the three callers: the pipeline
// inside an emulated GitHub Actions job, the approver and the admin.
func (d *brokerDemo) setClients(url, approverToken, adminToken string) error {
	requestURL, requestToken, err := d.srv.RegisterGitHubJob(emulator.GitHubJob{
		Repository: "contoso/payments", Ref: "refs/heads/main", Environment: "production",
		EventName: "push", Workflow: "deploy", RunID: "4242", Actor: "octocat",
		SHA: "3f786850e387550fdab836ed7e6dc881de23001b",
	})
	if err != nil {
		return err
	}
	common := map[string]string{
		"ELEVATE_BROKER_URL":     url,
		"ELEVATE_BROKER_CA_FILE": d.broker.DevCertFile(),
		"ELEVATE_CA_FILE":        d.srv.CAFile(),
	}
	with := func(extra map[string]string) map[string]string {
		env := map[string]string{}
		for k, v := range common {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}
	d.pipelineEnv = with(map[string]string{
		"ACTIONS_ID_TOKEN_REQUEST_URL": requestURL, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": requestToken,
		"GITHUB_REPOSITORY": "contoso/payments", "GITHUB_RUN_ID": "4242", "GITHUB_RUN_ATTEMPT": "1",
		"GITHUB_JOB": "deploy", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REF": "refs/heads/main",
	})
	d.approverEnv = with(map[string]string{"ELEVATE_BROKER_TOKEN": approverToken})
	d.adminEnv = with(map[string]string{"ELEVATE_BROKER_TOKEN": adminToken})
	return nil
}

// as returns the streams of one caller: its environment, and the demo's
// output for results.
func (d *brokerDemo) as(env map[string]string) Streams {
	s := d.streams
	s.Out = d.out
	s.Getenv = func(k string) string { return env[k] }
	return s
}

func (d *brokerDemo) client(env map[string]string) (*brokerclient.Client, error) {
	o := brokerOptions{Output: "text"}
	return o.client(d.as(env))
}

func (d *brokerDemo) waitReady(ctx context.Context) error {
	c, err := d.client(d.adminEnv)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.Ready(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("broker not ready after 30s: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// walk runs the scenario and checks its end state.
func (d *brokerDemo) walk(ctx context.Context) (demoSummary, error) {
	summary := demoSummary{BrokerURL: d.broker.URL()}
	d.say("1. The pipeline asks for Key Vault Secrets Officer on its vault; policy auto-approves.")
	first, err := d.request(ctx, "Key Vault Secrets Officer", d.vaultID, "rotate the payments database password")
	if err != nil {
		return summary, err
	}
	d.say("2. The pipeline asks for Reader on the resource group; policy needs one platform admin.")
	second, err := d.request(ctx, "Reader", d.rgID, "inspect the storage account settings")
	if err != nil {
		return summary, err
	}
	if err := d.expectStates(ctx, map[string]string{first: brokerclient.StateActive, second: brokerclient.StatePending}); err != nil {
		return summary, err
	}

	d.say("3. The approver reviews the table and approves the hash they were shown.")
	if err := d.cli(ctx, d.approverEnv, "approve", second, "--comment", "read-only, fine"); err != nil {
		return summary, err
	}
	if err := d.expectStates(ctx, map[string]string{first: brokerclient.StateActive, second: brokerclient.StateActive}); err != nil {
		return summary, err
	}
	if n := d.assignmentsLeft(); n != 2 {
		return summary, fmt.Errorf("%d temporary role assignments in the emulator; want 2 while both requests are active", n)
	}

	d.say("4. An admin revokes the first request; the pipeline cancels the second when done.")
	if err := d.cli(ctx, d.adminEnv, "revoke", first); err != nil {
		return summary, err
	}
	if err := d.cli(ctx, d.pipelineEnv, "cancel", second); err != nil {
		return summary, err
	}
	return d.verify(ctx, summary, []string{first, second}, []string{"admin revoke", "pipeline cancel"})
}

func (d *brokerDemo) say(line string) {
	fmt.Fprintf(d.out, "%s\n\n", line)
}

// request runs `elevate request` as the pipeline and returns the id.
func (d *brokerDemo) request(ctx context.Context, role, scope, why string) (string, error) {
	fmt.Fprintf(d.out, "$ elevate request --role %q --scope %s --duration 10m\n", role, scope)
	o := &brokerRequestOptions{
		broker: brokerOptions{Output: "text"}, Roles: []string{role}, Scopes: []string{scope},
		PrincipalID: d.principal.ObjectID, Duration: 10 * time.Minute, Justification: why, Ticket: "CHG-1042",
	}
	streams := d.as(d.pipelineEnv)
	r, err := submitRequest(ctx, streams, o)
	if err != nil {
		return "", err
	}
	if err := writeDetail(d.out, "text", r); err != nil {
		return "", err
	}
	fmt.Fprintln(d.out)
	if err := requestOutcome(r.Request, false); err != nil {
		return "", err
	}
	return r.Request.ID, nil
}

// cli runs one elevate command line as a caller, as a user would type it.
func (d *brokerDemo) cli(ctx context.Context, env map[string]string, args ...string) error {
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = a
		if strings.ContainsAny(a, " ,") {
			shown[i] = fmt.Sprintf("%q", a)
		}
	}
	fmt.Fprintf(d.out, "$ elevate %s\n", strings.Join(shown, " "))
	var errOut bytes.Buffer
	streams := d.as(env)
	streams.ErrOut = &errOut
	if code := Main(ctx, args, streams); code != ExitOK {
		return &exitError{code: code, err: fmt.Errorf("elevate %s exited %d: %s", args[0], code, strings.TrimSpace(errOut.String()))}
	}
	fmt.Fprintln(d.out)
	return nil
}

func (d *brokerDemo) expectStates(ctx context.Context, want map[string]string) error {
	c, err := d.client(d.adminEnv)
	if err != nil {
		return err
	}
	for id, state := range want {
		got, err := c.Get(ctx, id)
		if err != nil {
			return fmt.Errorf("get request %s: %w", id, err)
		}
		if got.Request.State != state {
			return fmt.Errorf("request %s is %s; want %s", id, got.Request.State, state)
		}
	}
	return nil
}

// assignmentsLeft counts the temporary role assignments in the emulator.
func (d *brokerDemo) assignmentsLeft() int {
	n := 0
	for _, a := range d.srv.RoleAssignments() {
		if strings.EqualFold(a.PrincipalID, d.principal.ObjectID) && strings.HasPrefix(a.Description, "elevate request") {
			n++
		}
	}
	return n
}

// verify checks that both requests ended, no temporary assignment remains
// and the broker's audit chain verifies, then prints the summary.
func (d *brokerDemo) verify(ctx context.Context, summary demoSummary, ids, endedBy []string) (demoSummary, error) {
	c, err := d.client(d.adminEnv)
	if err != nil {
		return summary, err
	}
	for i, id := range ids {
		got, err := c.Get(ctx, id)
		if err != nil {
			return summary, fmt.Errorf("get request %s: %w", id, err)
		}
		if got.Request.State != brokerclient.StateRevoked {
			return summary, fmt.Errorf("request %s is %s; want revoked", id, got.Request.State)
		}
		granted := "policy"
		if len(got.Approvals) > 0 {
			granted = got.Approvals[0].Approver
		}
		summary.Requests = append(summary.Requests, demoRequestResult{ID: id, Role: roleNameOf(got), Rule: got.Request.Decision.RuleID,
			Granted: granted, Ended: endedBy[i], State: got.Request.State})
	}
	summary.AssignmentsLeft = d.assignmentsLeft()
	if summary.AssignmentsLeft != 0 {
		return summary, fmt.Errorf("%d temporary role assignment(s) still exist in the emulator", summary.AssignmentsLeft)
	}
	head, err := store.VerifyStoredAudit(ctx, d.broker.Store())
	if err != nil {
		return summary, fmt.Errorf("verify the broker's audit chain: %w", err)
	}
	summary.AuditRecords, summary.AuditHead = head.Seq, head.Hash

	fmt.Fprintln(d.out, "Summary:")
	for _, r := range summary.Requests {
		fmt.Fprintf(d.out, "  %s  %-26s rule %-28s approved by %-30s ended by %s: %s\n",
			r.ID, r.Role, r.Rule, r.Granted, r.Ended, r.State)
	}
	fmt.Fprintf(d.out, "Verified: no temporary role assignment remains; audit chain intact (%d records, head %s).\n",
		summary.AuditRecords, prefixOf(summary.AuditHead, 12))
	return summary, nil
}

// roleNameOf reads the first row's role name from the table JSON.
func roleNameOf(d brokerclient.RequestDetail) string {
	var t struct {
		Rows []struct {
			RoleName string `json:"role_name"`
		} `json:"rows"`
	}
	if json.Unmarshal(d.Table, &t) != nil || len(t.Rows) == 0 {
		return "?"
	}
	return t.Rows[0].RoleName
}

func prefixOf(s string, n int) string {
	if len(s) < n {
		return s
	}
	return s[:n]
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error since Go 1.24
	return hex.EncodeToString(b)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
