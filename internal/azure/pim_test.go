package azure

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/elevate-dev/elevate/internal/emulator"
)

// Ids of the demo tenant and of the PIM principals these tests add.
const (
	tenantID       = "3b5f0e4a-8c1d-4e2f-9a7b-6c5d4e3f2a10"
	subscriptionID = "9d2c6e1f-4a3b-4c5d-8e7f-0a1b2c3d4e50"
	demoRG         = "/subscriptions/" + subscriptionID + "/resourceGroups/rg-elevate-demo"
	pipelineOID    = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801" // RBAC Administrator at demoRG
	pipelineApp    = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02"
	runnerOID      = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c01"
	runnerApp      = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c02"
	runnerSecret   = "runner-secret"
	groupOID       = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c05"
	globalReader   = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
	appAdmin       = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
	userAdmin      = "fe930be7-5e62-47db-91af-98c3a49a38b1"
	roleDefPrefix  = "/subscriptions/" + subscriptionID + "/providers/Microsoft.Authorization/roleDefinitions/"
)

// testClock is the emulator's clock, moved by the tests.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// pimTestSeed gives a runner with no standing access an eligibility per
// policy case, and a group one eligibility.
func pimTestSeed() emulator.Seed {
	seed := emulator.DefaultSeed()
	seed.Principals = append(seed.Principals,
		emulator.Principal{ObjectID: runnerOID, AppID: runnerApp, DisplayName: "ci-runner", Type: emulator.PrincipalServicePrincipal,
			ClientSecret: runnerSecret, GraphAppRoles: []string{"RoleManagement.ReadWrite.Directory", "Directory.Read.All"}},
		emulator.Principal{ObjectID: groupOID, DisplayName: "pim-group", Type: emulator.PrincipalGroup})
	seed.Eligibilities = []emulator.SeedEligibility{
		{PrincipalID: runnerOID, Scope: demoRG, RoleName: "Contributor"},
		{PrincipalID: runnerOID, Scope: demoRG, RoleName: "Reader"},
		{PrincipalID: runnerOID, Scope: demoRG, RoleName: "Key Vault Secrets Officer"},
		{PrincipalID: runnerOID, Scope: demoRG, RoleName: "Key Vault Reader"},
		{PrincipalID: groupOID, Scope: demoRG, RoleName: "Contributor"},
		{PrincipalID: pipelineOID, Scope: demoRG, RoleName: "Key Vault Secrets Officer"},
		{PrincipalID: runnerOID, DirectoryScopeID: "/", RoleDefinitionID: globalReader},
		{PrincipalID: runnerOID, DirectoryScopeID: "/", RoleDefinitionID: appAdmin},
		{PrincipalID: runnerOID, Scope: demoRG, RoleName: "Key Vault Secrets User"},
		{PrincipalID: runnerOID, DirectoryScopeID: "/", RoleDefinitionID: userAdmin},
	}
	seed.RolePolicies = []emulator.SeedRolePolicy{
		{Scope: demoRG, RoleName: "Reader", MaximumDuration: "PT1H", RequireJustification: true, RequireApproval: true},
		{Scope: demoRG, RoleName: "Key Vault Secrets Officer", MaximumDuration: "PT1H", RequireJustification: true, RequireTicket: true},
		{Scope: demoRG, RoleName: "Key Vault Reader", RequireMFA: true},
		{DirectoryScopeID: "/", RoleDefinitionID: appAdmin, MaximumDuration: "PT2H", RequireJustification: true},
		{Scope: demoRG, RoleName: "Key Vault Secrets User", RequireAuthenticationContext: "c1"},
		{DirectoryScopeID: "/", RoleDefinitionID: userAdmin, MaximumDuration: "PT4H", RequireMFA: true, RequireTicket: true,
			RequireApproval: true, RequireAuthenticationContext: "c2", AdminMaximumDuration: "P30D", AdminRequireJustification: true},
	}
	return seed
}

// startEmulator starts the emulator on an emulated clock.
func startEmulator(t *testing.T) (*emulator.Server, *testClock) {
	t.Helper()
	clock := &testClock{t: time.Now().UTC().Truncate(time.Second)}
	s, err := emulator.Start(context.Background(), emulator.Config{Seed: pimTestSeed(), Now: clock.Now, StateDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, clock
}

func emulatorOptions(s *emulator.Server) policy.ClientOptions {
	return policy.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: s.URL() + "/",
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: s.URL(), Audience: DefaultARMAudience},
			},
		},
		Transport: s.Client(),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}
}

// secretCredential signs in at the emulator's token endpoint.
func secretCredential(t *testing.T, s *emulator.Server, app, secret string) azcore.TokenCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(tenantID, app, secret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: emulatorOptions(s), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatalf("NewClientSecretCredential: %v", err)
	}
	return cred
}

func newTestPIM(t *testing.T, s *emulator.Server, app, secret string) *PIM {
	t.Helper()
	p, err := NewPIM(secretCredential(t, s, app, secret), &arm.ClientOptions{ClientOptions: emulatorOptions(s)})
	if err != nil {
		t.Fatalf("NewPIM: %v", err)
	}
	return p
}

// activation returns a SelfActivate request for the runner.
func activation(t *testing.T, p *PIM, role string, d time.Duration, justification string) ScheduleRequest {
	t.Helper()
	e, err := p.FindEligibility(context.Background(), demoRG, runnerOID, roleDefPrefix+role)
	if err != nil {
		t.Fatalf("FindEligibility: %v", err)
	}
	return ScheduleRequest{RequestType: RequestSelfActivate, PrincipalID: runnerOID, RoleDefinitionID: roleDefPrefix + role,
		LinkedEligibilityID: e.ID, Duration: d, Justification: justification}
}

const (
	roleContributor = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	roleReader      = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	roleOwner       = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
	roleKVOfficer   = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
	roleKVReader    = "21090545-7ca7-4776-b22c-e363652d74d2"
	roleKVUser      = "4633458b-17de-408a-b874-0445c86b69e6"
)

func TestPIMActivateAndDeactivate(t *testing.T) {
	s, clock := startEmulator(t)
	p := newTestPIM(t, s, runnerApp, runnerSecret)
	ctx := context.Background()

	got, err := p.Request(ctx, demoRG, "1a000000-0000-4000-8000-000000000001", activation(t, p, roleContributor, time.Hour, "deploy"))
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if got.Status != StatusProvisioned {
		t.Errorf("status: got %q; want %q", got.Status, StatusProvisioned)
	}
	if got.Duration != time.Hour {
		t.Errorf("duration: got %v; want 1h", got.Duration)
	}
	in, err := p.ActiveInstance(ctx, demoRG, runnerOID, roleContributor)
	if err != nil {
		t.Fatalf("ActiveInstance: %v", err)
	}
	if in.AssignmentType != "Activated" || in.RoleAssignmentID == "" {
		t.Errorf("instance: got type %q, role assignment %q; want Activated with a role assignment id", in.AssignmentType, in.RoleAssignmentID)
	}
	read, err := p.GetRequest(ctx, demoRG, got.Name)
	if err != nil || read.Status != StatusProvisioned {
		t.Errorf("GetRequest: got %+v, %v; want Provisioned", read, err)
	}

	deactivate := ScheduleRequest{RequestType: RequestSelfDeactivate, PrincipalID: runnerOID, RoleDefinitionID: roleDefPrefix + roleContributor}
	_, err = p.Request(ctx, demoRG, "1a000000-0000-4000-8000-000000000002", deactivate)
	if !errors.Is(err, ErrDurationTooShort) {
		t.Errorf("early deactivation: got %v; want ErrDurationTooShort", err)
	}
	clock.Advance(6 * time.Minute)
	got, err = p.Request(ctx, demoRG, "1a000000-0000-4000-8000-000000000003", deactivate)
	if err != nil || got.Status != StatusRevoked {
		t.Fatalf("deactivation: got %+v, %v; want Revoked", got, err)
	}
	if _, err := p.ActiveInstance(ctx, demoRG, runnerOID, roleContributor); !errors.Is(err, ErrNotFound) {
		t.Errorf("ActiveInstance after deactivation: got %v; want ErrNotFound", err)
	}
}

func TestPIMAssignmentEndsAtScheduleEnd(t *testing.T) {
	s, clock := startEmulator(t)
	p := newTestPIM(t, s, runnerApp, runnerSecret)
	ctx := context.Background()
	if _, err := p.Request(ctx, demoRG, "1b000000-0000-4000-8000-000000000001", activation(t, p, roleContributor, 10*time.Minute, "x")); err != nil {
		t.Fatalf("Request: %v", err)
	}
	clock.Advance(9 * time.Minute)
	if _, err := p.ActiveInstance(ctx, demoRG, runnerOID, roleContributor); err != nil {
		t.Errorf("ActiveInstance before the end: %v", err)
	}
	clock.Advance(time.Minute)
	if _, err := p.ActiveInstance(ctx, demoRG, runnerOID, roleContributor); !errors.Is(err, ErrNotFound) {
		t.Errorf("ActiveInstance at the end: got %v; want ErrNotFound", err)
	}
	for _, a := range s.RoleAssignments() {
		if a.PrincipalID == runnerOID {
			t.Errorf("role assignment %s still live after the schedule end", a.Name)
		}
	}
}

func TestPIMPolicyFailures(t *testing.T) {
	s, _ := startEmulator(t)
	p := newTestPIM(t, s, runnerApp, runnerSecret)
	ctx := context.Background()
	officer := activation(t, p, roleKVOfficer, 2*time.Hour, "x")
	officer.TicketNumber, officer.TicketSystem = "CHG-1", "ServiceNow"
	tests := []struct {
		name    string
		request ScheduleRequest
		kind    error
		rules   []string
		message string
	}{
		{"over maximum, policy unreadable", officer, ErrPolicyViolation, []string{"ExpirationRule"},
			"duration 2h exceeds the role's maximum (Expiration_EndUser_Assignment)"},
		{"missing ticket", activation(t, p, roleKVOfficer, time.Hour, "x"), ErrPolicyViolation, []string{"TicketingRule"}, "ticket number"},
		{"missing justification", activation(t, p, roleContributor, time.Hour, ""), ErrInvalid, []string{"JustificationRule"}, "justification is required"},
		{"mfa for a workload", activation(t, p, roleKVReader, time.Hour, "x"), ErrPolicyViolation, []string{"MfaRule"}, "workload identity"},
		{"not eligible", ScheduleRequest{RequestType: RequestSelfActivate, PrincipalID: runnerOID, RoleDefinitionID: roleDefPrefix + roleOwner,
			LinkedEligibilityID: "x", Duration: time.Hour, Justification: "x"}, ErrNotEligible, []string{"EligibilityRule"}, "eligible"},
		{"too short", activation(t, p, roleContributor, 4*time.Minute, "x"), ErrDurationTooShort, nil, "at least 5m"},
		{"admin assign without right", ScheduleRequest{RequestType: RequestAdminAssign, PrincipalID: groupOID,
			RoleDefinitionID: roleDefPrefix + roleReader, Duration: time.Hour}, ErrForbidden, nil, "AuthorizationFailed"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := "1c000000-0000-4000-8000-00000000000" + string(rune('0'+i))
			_, err := p.Request(ctx, demoRG, name, tc.request)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("error: got %v; want %v", err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("message: got %q; want it to contain %q", err.Error(), tc.message)
			}
			var pe *PolicyError
			if tc.rules != nil && (!errors.As(err, &pe) || strings.Join(pe.Rules, ",") != strings.Join(tc.rules, ",")) {
				t.Errorf("rules: got %v; want %v", pe, tc.rules)
			}
		})
	}
}

func TestPIMExpirationMessageNamesMaximum(t *testing.T) {
	s, _ := startEmulator(t)
	p := newTestPIM(t, s, pipelineApp, "demo-pipeline-secret") // may read the policy
	e, err := p.FindEligibility(context.Background(), demoRG, pipelineOID, roleDefPrefix+roleKVOfficer)
	if err != nil {
		t.Fatalf("FindEligibility: %v", err)
	}
	_, err = p.Request(context.Background(), demoRG, "1f000000-0000-4000-8000-000000000001", ScheduleRequest{
		RequestType: RequestSelfActivate, PrincipalID: pipelineOID, RoleDefinitionID: e.RoleDefinitionID, LinkedEligibilityID: e.ID,
		Duration: 2 * time.Hour, Justification: "x", TicketNumber: "CHG-1", TicketSystem: "ServiceNow"})
	want := "duration 2h exceeds the role's maximum of 1h (Expiration_EndUser_Assignment); request at most 1h"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error: got %v; want it to contain %q", err, want)
	}
}

func TestPIMPendingApprovalThenCancel(t *testing.T) {
	s, _ := startEmulator(t)
	p := newTestPIM(t, s, runnerApp, runnerSecret)
	ctx := context.Background()
	name := "1d000000-0000-4000-8000-000000000001"
	got, err := p.Request(ctx, demoRG, name, activation(t, p, roleReader, 30*time.Minute, "read"))
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if got.Status != StatusPendingApproval || got.ApprovalID == "" {
		t.Errorf("request: got status %q approval %q; want PendingApproval with an approval id", got.Status, got.ApprovalID)
	}
	if err := p.CancelRequest(ctx, demoRG, name); err != nil {
		t.Fatalf("CancelRequest: %v", err)
	}
	got, err = p.GetRequest(ctx, demoRG, name)
	if err != nil || got.Status != StatusCanceled {
		t.Errorf("after cancel: got %q, %v; want Canceled", got.Status, err)
	}
	if err := p.CancelRequest(ctx, demoRG, name); !errors.Is(err, ErrInvalid) {
		t.Errorf("second cancel: got %v; want ErrInvalid", err)
	}
	if _, err := p.GetRequest(ctx, demoRG, "1d000000-0000-4000-8000-0000000000ff"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown request: got %v; want ErrNotFound", err)
	}
}

func TestPIMExistingAssignment(t *testing.T) {
	s, _ := startEmulator(t)
	p := newTestPIM(t, s, runnerApp, runnerSecret)
	ctx := context.Background()
	req := activation(t, p, roleContributor, time.Hour, "x")
	if _, err := p.Request(ctx, demoRG, "1e000000-0000-4000-8000-000000000001", req); err != nil {
		t.Fatalf("first Request: %v", err)
	}
	_, err := p.Request(ctx, demoRG, "1e000000-0000-4000-8000-000000000002", req)
	if !errors.Is(err, ErrAssignmentExists) {
		t.Errorf("second activation: got %v; want ErrAssignmentExists", err)
	}
}

func TestPIMPolicyRead(t *testing.T) {
	s, _ := startEmulator(t)
	p := newTestPIM(t, s, pipelineApp, "demo-pipeline-secret") // holds */read at the resource group
	ctx := context.Background()
	tests := []struct {
		name string
		role string
		want RolePolicy
	}{
		{"seeded ticket policy", roleKVOfficer, RolePolicy{MaxDuration: time.Hour, JustificationRequired: true, TicketRequired: true,
			AdminMaxDuration: 180 * 24 * time.Hour}},
		{"seeded approval policy", roleReader, RolePolicy{MaxDuration: time.Hour, JustificationRequired: true, ApprovalRequired: true,
			AdminMaxDuration: 180 * 24 * time.Hour}},
		{"default policy", roleContributor, RolePolicy{MaxDuration: 8 * time.Hour, JustificationRequired: true, AdminMaxDuration: 180 * 24 * time.Hour}},
		{"seeded authentication context", roleKVUser, RolePolicy{MaxDuration: 8 * time.Hour, AuthenticationContext: "c1",
			AdminMaxDuration: 180 * 24 * time.Hour}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.Policy(ctx, demoRG, tc.role) // a bare GUID is qualified by the client
			if err != nil {
				t.Fatalf("Policy: %v", err)
			}
			if got.ID == "" || !sameRole(got.RoleDefinitionID, tc.role) {
				t.Errorf("policy id %q role %q; want an id and role %s", got.ID, got.RoleDefinitionID, tc.role)
			}
			got.ID, got.Name, got.Scope, got.RoleDefinitionID = "", "", "", ""
			if got != tc.want {
				t.Errorf("policy: got %+v; want %+v", got, tc.want)
			}
		})
	}
	if _, err := newTestPIM(t, s, runnerApp, runnerSecret).Policy(ctx, demoRG, roleReader); !errors.Is(err, ErrForbidden) {
		t.Errorf("policy read without */read: got %v; want ErrForbidden", err)
	}
}

func TestRolePolicyCheck(t *testing.T) {
	pol := RolePolicy{MaxDuration: time.Hour, JustificationRequired: true, TicketRequired: true, MFARequired: false,
		AdminMaxDuration: 24 * time.Hour, AdminExpirationRequired: true}
	self := func(d time.Duration, just, ticket string) ScheduleRequest {
		return ScheduleRequest{RequestType: RequestSelfActivate, Duration: d, Justification: just, TicketNumber: ticket, TicketSystem: ticket}
	}
	tests := []struct {
		name  string
		pol   RolePolicy
		req   ScheduleRequest
		rules string
		kind  error
	}{
		{"within all rules", pol, self(time.Hour, "x", "T-1"), "", nil},
		{"over maximum", pol, self(2*time.Hour, "x", "T-1"), "ExpirationRule", ErrPolicyViolation},
		{"self without expiration", pol, self(0, "x", "T-1"), "ExpirationRule", ErrPolicyViolation},
		{"missing justification and ticket", pol, self(time.Hour, "", ""), "JustificationRule,TicketingRule", ErrPolicyViolation},
		{"mfa required", RolePolicy{MaxDuration: time.Hour, MFARequired: true}, self(time.Hour, "", ""), "MfaRule", ErrPolicyViolation},
		{"authentication context required", RolePolicy{MaxDuration: time.Hour, AuthenticationContext: "c1"}, self(time.Hour, "", ""),
			"AuthenticationContextRule", ErrPolicyViolation},
		{"admin ignores authentication context", RolePolicy{AdminMaxDuration: time.Hour, AuthenticationContext: "c1"},
			ScheduleRequest{RequestType: RequestAdminAssign, Duration: time.Hour}, "", nil},
		{"under five minutes", pol, self(4*time.Minute, "x", "T-1"), "", ErrDurationTooShort},
		{"admin permanent refused", pol, ScheduleRequest{RequestType: RequestAdminAssign}, "ExpirationRule", ErrPolicyViolation},
		{"admin within maximum", pol, ScheduleRequest{RequestType: RequestAdminAssign, Duration: 2 * time.Hour}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.pol.Check(tc.req)
			if tc.kind == nil {
				if err != nil {
					t.Fatalf("Check: got %v; want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.kind) {
				t.Fatalf("Check: got %v; want %v", err, tc.kind)
			}
			var pe *PolicyError
			if tc.rules != "" && (!errors.As(err, &pe) || strings.Join(pe.Rules, ",") != tc.rules) {
				t.Errorf("rules: got %v; want %s", err, tc.rules)
			}
		})
	}
}

func TestISODurationRoundTrip(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"PT8H", 8 * time.Hour, true},
		{"P90D", 90 * 24 * time.Hour, true},
		{"PT1H30M", 90 * time.Minute, true},
		{"PT0.5S", 500 * time.Millisecond, true},
		{"P1Y", 0, false},
		{"PT", 0, false},
		{"", 0, false},
		{"PTxH", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseISODuration(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("got %v, %v; want %v, ok %v", got, err, tc.want, tc.ok)
			}
		})
	}
	for _, d := range []time.Duration{time.Hour, 90 * time.Minute, 5*time.Minute + 30*time.Second} {
		if back, err := parseISODuration(formatISODuration(d)); err != nil || back != d {
			t.Errorf("round trip of %v via %q: got %v, %v", d, formatISODuration(d), back, err)
		}
	}
}

func TestPIMAuthContextRejected(t *testing.T) {
	s, _ := startEmulator(t)
	p := newTestPIM(t, s, runnerApp, runnerSecret)
	req := activation(t, p, roleKVUser, time.Hour, "needs c1")
	_, err := p.Request(context.Background(), demoRG, "1e000000-0000-4000-8000-0000000000ac", req)
	if !errors.Is(err, ErrPolicyViolation) {
		t.Fatalf("activation without acrs: got %v; want ErrPolicyViolation", err)
	}
	var pe *PolicyError
	if !errors.As(err, &pe) || strings.Join(pe.Rules, ",") != AuthenticationContextRule {
		t.Errorf("rules: got %v; want %s", err, AuthenticationContextRule)
	}
	for _, want := range []string{"AuthenticationContext_EndUser_Assignment", `"c1"`, "workload identity", "RoleAssignmentRequestAcrsValidationFailed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q: want it to contain %q", err.Error(), want)
		}
	}
}
