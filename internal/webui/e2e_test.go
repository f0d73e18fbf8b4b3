package webui

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/elevate-dev/elevate/internal/broker"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// chromiumPath is where Debian's chromium package installs the browser.
const chromiumPath = "/usr/bin/chromium"

// Users the end-to-end test signs in as, added to the emulator's seed.
const (
	e2eApproverOID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c03" // approver@contoso.example, in the demo seed
	e2eAdminOID    = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c09"
)

var e2ePolicy = `version: 1
groups:
  platform-admins:
    - user:approver@contoso.example
rules:
  - id: storage-read-needs-admin
    match:
      requester: {repository: contoso/payments}
      roles: [Reader]
    outcome: require
    require: {approvals: 1, groups: [platform-admins]}
    max_duration: 1h
`

// e2eEnv is a broker with the UI and the emulator behind it, on loopback.
type e2eEnv struct {
	emu       *emulator.Server
	srv       *broker.Server
	rg        string
	principal emulator.Principal
}

func startE2E(t *testing.T) *e2eEnv {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	seed := emulator.DefaultSeed()
	seed.Principals = append(seed.Principals, emulator.Principal{ObjectID: e2eAdminOID,
		DisplayName: "admin@contoso.example", Type: emulator.PrincipalUser, Groups: []string{"elevate-admins"}})
	emu, err := emulator.Start(ctx, emulator.Config{Seed: seed, Logger: quiet})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { emu.Close() })
	env := &e2eEnv{emu: emu, rg: fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-elevate-demo", seed.Subscriptions[0].ID)}
	for _, p := range seed.Principals {
		if p.DisplayName == "elevate-pipeline" {
			env.principal = p
		}
	}
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(e2ePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := broker.ServerConfig{
		Listen:       "127.0.0.1:0",
		TLS:          broker.TLSConfig{Mode: broker.TLSModeDev, DevCertFile: filepath.Join(dir, "broker.pem")},
		Storage:      broker.StorageConfig{SQLite: filepath.Join(dir, "elevate.db")},
		Policy:       policyFile,
		PipelineAuth: broker.PipelineAuthConfig{Issuer: emu.GitHubIssuer(), Audience: "https://elevate.test"},
		ApproverAuth: broker.ApproverAuthConfig{AdminGroups: []string{"elevate-admins"}},
		UI:           broker.UIConfig{Enabled: true, Issuer: emu.OIDCIssuer(), ClientID: "elevate-ui"},
		ReplicaID:    "e2e",
	}
	brokerEnv := map[string]string{
		"AZURE_TENANT_ID":      emu.TenantID(),
		"AZURE_CLIENT_ID":      env.principal.AppID,
		"AZURE_CLIENT_SECRET":  env.principal.ClientSecret,
		"AZURE_AUTHORITY_HOST": emu.URL() + "/",
		"ELEVATE_ARM_ENDPOINT": emu.URL(),
		"ELEVATE_VAULT_SUFFIX": emu.VaultSuffix(),
		"ELEVATE_CA_FILE":      emu.CAFile(),
	}
	env.srv, err = broker.NewServer(ctx, cfg, broker.ServerOptions{
		Getenv: func(k string) string { return brokerEnv[k] }, Logger: quiet, UI: New,
		EngineOptions: lifecycle.Options{BackoffBase: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- env.srv.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("broker stopped with an error: %v", err)
		}
	})
	return env
}

// request files a Reader request as the payments pipeline, started by the
// GitHub account actor.
func (e *e2eEnv) request(t *testing.T, actor, justification string) string {
	t.Helper()
	caller := broker.Identity{Subject: "repo:contoso/payments:environment:production", Pipeline: true,
		Claims: map[string]string{"repository": "contoso/payments", "environment": "production", "ref": "refs/heads/main",
			"workflow": "deploy", "actor": actor, "run_id": "4242", "sha": "3f786850e387550fdab836ed7e6dc881de23001b"}}
	r, err := e.srv.Service().Create(context.Background(), caller, broker.CreateInput{
		Roles: []string{"Reader"}, Scopes: []string{e.rg}, PrincipalID: e.principal.ObjectID,
		Duration: "30m", Justification: justification,
		Metadata: map[string]string{"run_url": "https://github.com/contoso/payments/actions/runs/4242"},
	})
	if err != nil {
		t.Fatalf("create request: %v", err)
	}
	if r.State != "pending" {
		t.Fatalf("request state = %s; want pending", r.State)
	}
	return r.ID
}

// browser starts headless Chromium with the flags that keep it off the
// network except for the loopback servers of the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("ELEVATE_REQUIRE_CHROMIUM") == "1" {
			t.Fatalf("ELEVATE_REQUIRE_CHROMIUM=1 but %s is missing: apt-get install -y chromium", chromiumPath)
		}
		t.Skipf("%s is missing; apt-get install -y chromium to run the browser test", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The emulator and the broker serve self-signed loopback
		// certificates made for this test.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	return ctx
}

// screenshotDir is where the test saves page screenshots: the directory
// in ELEVATE_UI_SCREENSHOTS (docs/ui when refreshing the docs), else a
// temporary directory.
func screenshotDir(t *testing.T) string {
	if dir := os.Getenv("ELEVATE_UI_SCREENSHOTS"); dir != "" {
		return dir
	}
	return t.TempDir()
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatalf("write screenshot %s: %v", name, err)
	}
}

// text returns the text of the first element that matches a CSS selector.
func text(t *testing.T, ctx context.Context, selector string) string {
	t.Helper()
	got, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(selector)))
	if err != nil {
		t.Fatalf("read text of %s: %v", selector, err)
	}
	return strings.TrimSpace(got)
}

func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func signIn(t *testing.T, ctx context.Context, base, objectID string) {
	t.Helper()
	step(t, ctx, "sign in as "+objectID,
		chromedp.Navigate(base+"/"),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.Click(chromedp.ID("user-"+objectID)),
		chromedp.WaitVisible(chromedp.ID("nav-pending")),
	)
}

func TestBrowserReviewFlow(t *testing.T) {
	ctx := browser(t)
	env := startE2E(t)
	shots := screenshotDir(t)
	base := env.srv.URL()
	id := env.request(t, "octocat", "Read the storage account to debug the nightly export (INC-2041)")
	own := env.request(t, "approver@contoso.example", "Started by the approver themselves")

	// The approver signs in through the emulator's provider, and the page
	// lists both pending requests.
	signIn(t, ctx, base, e2eApproverOID)
	step(t, ctx, "pending page", chromedp.WaitVisible(chromedp.ID("request-"+id)))
	if got, want := text(t, ctx, "#signed-in-as"), "user:approver@contoso.example"; got != want {
		t.Errorf("signed in as %q; want %q", got, want)
	}
	screenshot(t, ctx, shots, "pending.png")

	// The approver's own request has its buttons disabled with the reason,
	// and the server refuses it even when the button is enabled by hand.
	if got := text(t, ctx, "#own-request-"+own); !strings.Contains(got, "you are its requester") {
		t.Errorf("own request notice = %q; want it to say why", got)
	}
	disabled, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.getElementById(%q).disabled`, "approve-"+own)))
	if err != nil {
		t.Fatalf("read approve button: %v", err)
	}
	if !disabled {
		t.Errorf("approve button of own request enabled; want disabled")
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.getElementById(%q).disabled = false`, "approve-"+own))); err != nil {
		t.Fatalf("enable approve button: %v", err)
	}
	step(t, ctx, "forced self-approval",
		chromedp.Click(chromedp.ID("approve-"+own)),
		chromedp.WaitVisible(chromedp.ID("error-message")),
	)
	if got := text(t, ctx, "#error-message"); !strings.Contains(got, "you are its requester") {
		t.Errorf("self-approval refusal = %q; want it to say why", got)
	}
	screenshot(t, ctx, shots, "self-approval-refused.png")

	// Approve the other request: it is granted and becomes active.
	step(t, ctx, "approve",
		chromedp.Navigate(base+"/"),
		chromedp.SendKeys(chromedp.ID("comment-"+id), "ok for the export fix"),
		chromedp.Click(chromedp.ID("approve-"+id)),
		chromedp.WaitVisible(chromedp.CSS("#request-"+id+" .state-active")),
	)
	if got := text(t, ctx, "#request-"+id+" .state"); got != "active" {
		t.Errorf("state after approval = %q; want active", got)
	}
	screenshot(t, ctx, shots, "request.png")

	// The admin signs in, watches the grant count down and revokes it.
	step(t, ctx, "sign out", chromedp.Click(chromedp.CSS("form.who button")), chromedp.WaitVisible(chromedp.ID("sign-in")))
	signIn(t, ctx, base, e2eAdminOID)
	step(t, ctx, "active page",
		chromedp.Navigate(base+"/active"),
		chromedp.WaitVisible(chromedp.ID("active-"+id)),
	)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("time.countdown").textContent.indexOf("expires at") < 0`,
		chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		t.Fatalf("countdown script did not run: %v", err)
	}
	if got := text(t, ctx, "time.countdown"); !regexp.MustCompile(`^(29m[0-9]+s|30m0s) left$`).MatchString(got) {
		t.Errorf("countdown = %q; want about 29m59s left", got)
	}
	screenshot(t, ctx, shots, "active.png")
	step(t, ctx, "revoke",
		chromedp.Click(chromedp.ID("revoke-"+id)),
		chromedp.WaitVisible(chromedp.CSS("#request-"+id+" .state-revoked")),
	)
	if n := len(env.emu.RoleAssignments()); n != 1 {
		t.Errorf("role assignments after revoke = %d; want 1, the standing delegation", n)
	}

	// History shows it revoked, with its audit trail.
	step(t, ctx, "history page", chromedp.Navigate(base+"/history"), chromedp.WaitVisible(chromedp.ID("history-"+id)))
	if got := text(t, ctx, "#history-"+id+" .state"); got != "revoked" {
		t.Errorf("history state = %q; want revoked", got)
	}
	if got := text(t, ctx, "#history-"+id+" .role"); got != "Reader" {
		t.Errorf("history role = %q; want the role's name, Reader", got)
	}
	screenshot(t, ctx, shots, "history.png")
	step(t, ctx, "audit page", chromedp.Navigate(base+"/requests/"+id+"/audit"), chromedp.WaitVisible(chromedp.CSS("table.audit")))
	trail := text(t, ctx, "table.audit")
	for _, event := range []string{"request", "decision", "approve", "grant", "revoke", "revoked"} {
		if !strings.Contains(trail, event) {
			t.Errorf("audit trail lacks event %q", event)
		}
	}
	screenshot(t, ctx, shots, "audit.png")
	step(t, ctx, "dashboard", chromedp.Navigate(base+"/dashboard"), chromedp.WaitVisible(chromedp.CSS("svg.chart")))
	if got := text(t, ctx, "#stat-elevations"); got != "1" {
		t.Errorf("elevations = %q; want 1", got)
	}
	screenshot(t, ctx, shots, "dashboard.png")
}
