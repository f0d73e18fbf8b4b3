package lifecycle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// Names from the emulator's demo seed.
const (
	demoSubscription = "9d2c6e1f-4a3b-4c5d-8e7f-0a1b2c3d4e50"
	demoGroup        = "/subscriptions/" + demoSubscription + "/resourceGroups/rg-elevate-demo"
	vaultScope       = demoGroup + "/providers/Microsoft.KeyVault/vaults/kv-elevate-demo"
	storageScope     = demoGroup + "/providers/Microsoft.Storage/storageAccounts/stelevatedemo"
	demoVault        = "kv-elevate-demo"
	demoSecret       = "app-db-password"
	pipelineName     = "elevate-pipeline"

	roleSecretsOfficer = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
	roleReader         = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
)

// testRetry keeps the SDK's own retries fast. Two retries (three tries) per
// call leave room for the engine's retries to be exercised, and the
// MaxRetryDelay of 2s lets a `Retry-After: 1` be honoured instead of ending
// the retries.
var testRetry = policy.RetryOptions{MaxRetries: 2, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 2 * time.Second}

// fastOptions are engine options scaled down so that every wait in a test
// takes milliseconds.
func fastOptions() lifecycle.Options {
	return lifecycle.Options{
		PrincipalWait:    3 * time.Second,
		EffectiveTimeout: 5 * time.Second,
		RevokeAttempts:   4,
		VerifyTimeout:    3 * time.Second,
		BackoffBase:      5 * time.Millisecond,
		BackoffMax:       40 * time.Millisecond,
		RevokeTimeout:    15 * time.Second,
	}
}

// testEnv is one emulator with a pipeline session connected to it the way
// the CLI connects: environment, CA file, client-secret credential, RBAC.
type testEnv struct {
	srv    *emulator.Server
	seed   emulator.Seed
	env    azure.Environment
	client *http.Client
	cred   azcore.TokenCredential
	rbac   *azure.RBAC
	caller azure.Caller
	rec    *recorder
	dir    string
}

// startEnv starts an emulator with cfg; a zero cfg.Seed means the demo seed.
func startEnv(tb testing.TB, cfg emulator.Config) *testEnv {
	tb.Helper()
	ctx := context.Background()
	if cfg.Seed.Tenant.ID == "" {
		cfg.Seed = emulator.DefaultSeed()
	}
	srv, err := emulator.Start(ctx, cfg)
	if err != nil {
		tb.Fatalf("start emulator: %v", err)
	}
	tb.Cleanup(func() { _ = srv.Close() })

	pipeline := seedPrincipal(tb, cfg.Seed, pipelineName)
	env := azure.Environment{
		ARMEndpoint:   srv.URL(),
		AuthorityHost: srv.URL() + "/",
		VaultSuffix:   srv.VaultSuffix(),
		CAFile:        srv.CAFile(),
	}
	if err := env.CheckAndSetDefaults(); err != nil {
		tb.Fatalf("environment: %v", err)
	}
	base, err := env.HTTPClient()
	if err != nil {
		tb.Fatalf("HTTP client: %v", err)
	}
	// Cleanups run last-in first-out, so the client lets go of its
	// connections before the emulator shuts down. Shutdown otherwise waits
	// 5s for a dialled but never used connection.
	tb.Cleanup(base.CloseIdleConnections)
	rec := &recorder{next: base.Transport}
	client := &http.Client{Transport: rec}
	vars := map[string]string{
		"AZURE_TENANT_ID":     srv.TenantID(),
		"AZURE_CLIENT_ID":     pipeline.AppID,
		"AZURE_CLIENT_SECRET": pipeline.ClientSecret,
	}
	cred, _, err := azure.NewCredential(env, client, azure.CredentialConfig{
		Kind:   azure.CredentialSecret,
		Getenv: func(k string) string { return vars[k] },
	})
	if err != nil {
		tb.Fatalf("credential: %v", err)
	}
	retry := testRetry
	rbac, err := azure.NewRBAC(cred, env.ARMOptions(client, &retry))
	if err != nil {
		tb.Fatalf("RBAC client: %v", err)
	}
	caller, err := azure.WhoAmI(ctx, cred, env)
	if err != nil {
		tb.Fatalf("sign in: %v", err)
	}
	return &testEnv{srv: srv, seed: cfg.Seed, env: env, client: client, cred: cred,
		rbac: rbac, caller: caller, rec: rec, dir: tb.TempDir()}
}

func seedPrincipal(tb testing.TB, seed emulator.Seed, name string) emulator.Principal {
	tb.Helper()
	for _, p := range seed.Principals {
		if p.DisplayName == name {
			return p
		}
	}
	tb.Fatalf("seed has no principal %q", name)
	return emulator.Principal{}
}

// vault opens the demo vault's data plane as the pipeline.
func (te *testEnv) vault(tb testing.TB) *azure.Vault {
	tb.Helper()
	url, err := te.env.VaultURL(demoVault)
	if err != nil {
		tb.Fatalf("vault URL: %v", err)
	}
	retry := testRetry
	v, err := azure.NewVault(url, te.cred, te.env.ClientOptions(te.client, &retry))
	if err != nil {
		tb.Fatalf("vault client: %v", err)
	}
	return v
}

// run is one engine with its audit log and captured debug logs.
type run struct {
	engine    *lifecycle.Engine
	auditPath string
	logs      *syncBuffer
}

// newRun builds an engine as the pipeline, logging JSON at debug level.
func (te *testEnv) newRun(tb testing.TB, opts lifecycle.Options) *run {
	tb.Helper()
	path := filepath.Join(te.dir, uuid.NewString()+".jsonl")
	log, err := audit.Open(path)
	if err != nil {
		tb.Fatalf("open audit log: %v", err)
	}
	tb.Cleanup(func() { _ = log.Close() })
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	engine := lifecycle.New(lifecycle.Config{
		ARM: te.rbac, Audit: log, CallerID: te.caller.ObjectID, Logger: logger, Options: opts,
	})
	return &run{engine: engine, auditPath: path, logs: logs}
}

// request builds a request of the pipeline for itself.
func (te *testEnv) request(tb testing.TB, pairs ...access.Pair) access.Request {
	tb.Helper()
	return access.Request{
		ID:            uuid.NewString(),
		Principal:     access.Principal{ID: te.caller.ObjectID, Type: access.PrincipalServicePrincipal},
		Pairs:         pairs,
		Justification: "lifecycle test",
		Duration:      time.Minute,
		CreatedAt:     time.Now().UTC(),
	}
}

// roles resolves the role GUIDs of pairs into the map Run takes.
func (r *run) roles(tb testing.TB, pairs []access.Pair) map[string]lifecycle.Role {
	tb.Helper()
	var refs []access.RoleRef
	for _, p := range pairs {
		ref, err := access.ParseRoleRef(p.RoleID)
		if err != nil {
			tb.Fatalf("role ref %q: %v", p.RoleID, err)
		}
		refs = append(refs, ref)
	}
	roles, err := r.engine.ResolveRoles(context.Background(), refs, "/subscriptions/"+demoSubscription)
	if err != nil {
		tb.Fatalf("resolve roles: %v", err)
	}
	out := make(map[string]lifecycle.Role, len(roles))
	for _, role := range roles {
		out[role.GUID] = role
	}
	return out
}

// records reads the audit log after checking its hash chain.
func (r *run) records(tb testing.TB) []audit.Record {
	tb.Helper()
	if _, err := audit.VerifyFile(r.auditPath); err != nil {
		tb.Fatalf("audit.VerifyFile(%s): %v", r.auditPath, err)
	}
	data, err := os.ReadFile(r.auditPath)
	if err != nil {
		tb.Fatalf("read audit log: %v", err)
	}
	return decodeRecords(tb, data)
}

func pair(tb testing.TB, roleID, scope string) access.Pair {
	tb.Helper()
	id, err := access.ParseResourceID(scope)
	if err != nil {
		tb.Fatalf("parse scope %q: %v", scope, err)
	}
	return access.Pair{RoleID: roleID, Scope: id}
}

// temporaryAssignments returns the live assignments the request created,
// found by the description Elevate writes on them.
func (te *testEnv) temporaryAssignments(requestID string) []emulator.RoleAssignment {
	var out []emulator.RoleAssignment
	for _, a := range te.srv.RoleAssignments() {
		if strings.HasPrefix(a.Description, "elevate request "+requestID) {
			out = append(out, a)
		}
	}
	return out
}

// setFaults installs fault rules and fails the test on a bad rule.
func (te *testEnv) setFaults(tb testing.TB, rules ...emulator.FaultRule) {
	tb.Helper()
	if err := te.srv.SetFaults(emulator.FaultConfig{Seed: 1, Rules: rules}); err != nil {
		tb.Fatalf("set faults: %v", err)
	}
}

// funcAction is an action whose work is a test function.
type funcAction struct {
	name string
	run  func(ctx context.Context) (lifecycle.ActionResult, error)
}

func (a funcAction) Name() string { return a.name }

func (a funcAction) Run(ctx context.Context) (lifecycle.ActionResult, error) { return a.run(ctx) }

// noopAction succeeds at once.
var noopAction = funcAction{name: "noop", run: func(context.Context) (lifecycle.ActionResult, error) {
	return lifecycle.ActionResult{}, nil
}}

// exchange is one request the recorder saw, with the status of its
// response (0 when the connection failed).
type exchange struct {
	Method string
	Host   string
	Path   string
	Body   string
	Status int
	Sent   time.Time
}

// recorder is an http.RoundTripper that passes every request on and keeps a
// log of them, and counts how many role assignment PUTs were in flight at
// once.
type recorder struct {
	next http.RoundTripper

	mu          sync.Mutex
	log         []exchange
	putInFlight int
	putMax      int
}

var assignmentPath = regexp.MustCompile(`(?i)/providers/Microsoft\.Authorization/roleAssignments/[0-9a-f-]+$`)

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := exchange{Method: req.Method, Host: req.URL.Host, Path: req.URL.Path, Sent: time.Now()}
	if req.Body != nil && req.Method == http.MethodPut {
		data, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		ex.Body = string(data)
		req.Body = io.NopCloser(bytes.NewReader(data))
	}
	isPut := req.Method == http.MethodPut && assignmentPath.MatchString(req.URL.Path)
	if isPut {
		r.mu.Lock()
		r.putInFlight++
		r.putMax = max(r.putMax, r.putInFlight)
		r.mu.Unlock()
	}
	resp, err := r.next.RoundTrip(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	if isPut {
		r.putInFlight--
	}
	if resp != nil {
		ex.Status = resp.StatusCode
	}
	r.log = append(r.log, ex)
	return resp, err
}

// matching returns the recorded exchanges with method (any when "") whose
// path matches the regexp.
func (r *recorder) matching(method, path string) []exchange {
	re := regexp.MustCompile(path)
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []exchange
	for _, ex := range r.log {
		if (method == "" || ex.Method == method) && re.MatchString(ex.Path) {
			out = append(out, ex)
		}
	}
	return out
}

func (r *recorder) maxPutsInFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.putMax
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = nil
	r.putMax = 0
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
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

// events lists the event and outcome of each record, as "event:outcome".
func events(records []audit.Record) []string {
	out := make([]string, len(records))
	for i, r := range records {
		out[i] = fmt.Sprintf("%s:%s", r.Event, r.Outcome)
	}
	return out
}

func decodeRecords(tb testing.TB, data []byte) []audit.Record {
	tb.Helper()
	var out []audit.Record
	for i, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var r audit.Record
		if err := json.Unmarshal(line, &r); err != nil {
			tb.Fatalf("audit line %d: %v", i+1, err)
		}
		out = append(out, r)
	}
	return out
}
