package azure

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/elevate-dev/elevate/internal/emulator"
)

func newTestGraph(t *testing.T, s *emulator.Server, app, secret string) *Graph {
	t.Helper()
	g, err := NewGraph(s.GraphEndpoint(), secretCredential(t, s, app, secret), emulatorOptions(s))
	if err != nil {
		t.Fatalf("NewGraph: %v", err)
	}
	return g
}

func TestNewGraphEndpoint(t *testing.T) {
	for _, endpoint := range []string{"http://graph.microsoft.com", "graph.microsoft.com", "https://"} {
		if _, err := NewGraph(endpoint, nil, policy.ClientOptions{}); err == nil {
			t.Errorf("NewGraph(%q): got no error; want an invalid endpoint error", endpoint)
		}
	}
}

func TestGraphDirectoryObject(t *testing.T) {
	s, _ := startEmulator(t)
	g := newTestGraph(t, s, runnerApp, runnerSecret)
	tests := []struct {
		name, id, typ string
		err           error
	}{
		{"service principal", runnerOID, DirectoryServicePrincipal, nil},
		{"group", groupOID, DirectoryGroup, nil},
		{"user", "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c03", DirectoryUser, nil},
		{"missing object", "99999999-9999-4999-8999-999999999999", "", ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := g.DirectoryObject(context.Background(), tc.id)
			if !errors.Is(err, tc.err) {
				t.Fatalf("error: got %v; want %v", err, tc.err)
			}
			if got.Type != tc.typ {
				t.Errorf("type: got %q; want %q", got.Type, tc.typ)
			}
		})
	}
	denied := newTestGraph(t, s, pipelineApp, "demo-pipeline-secret") // no Graph app roles
	if _, err := denied.DirectoryObject(context.Background(), runnerOID); !errors.Is(err, ErrForbidden) {
		t.Errorf("caller without app role: got %v; want ErrForbidden", err)
	}
}

func TestGraphActivateAndDeactivate(t *testing.T) {
	s, clock := startEmulator(t)
	g := newTestGraph(t, s, runnerApp, runnerSecret)
	ctx := context.Background()

	e, err := g.FindEligibility(ctx, runnerOID, globalReader, "/")
	if err != nil {
		t.Fatalf("FindEligibility: %v", err)
	}
	if e.Scope != "/" || !e.End.IsZero() {
		t.Errorf("eligibility: got scope %q end %v; want / and permanent", e.Scope, e.End)
	}
	got, err := g.Request(ctx, DirectoryScheduleRequest{Action: "selfActivate", PrincipalID: runnerOID, RoleDefinitionID: globalReader,
		Duration: time.Hour, Justification: "audit"})
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if got.Status != StatusProvisioned || got.Duration != time.Hour || got.ID == "" {
		t.Errorf("request: got %+v; want Provisioned for 1h with an id", got)
	}
	read, err := g.GetRequest(ctx, got.ID)
	if err != nil || read.ID != got.ID {
		t.Errorf("GetRequest: got %+v, %v; want the same request", read, err)
	}
	in, err := g.ActiveInstance(ctx, runnerOID, globalReader, "/")
	if err != nil || in.AssignmentType != "Activated" {
		t.Fatalf("ActiveInstance: got %+v, %v; want an Activated instance", in, err)
	}

	deactivate := DirectoryScheduleRequest{Action: "selfDeactivate", PrincipalID: runnerOID, RoleDefinitionID: globalReader}
	if _, err := g.Request(ctx, deactivate); !errors.Is(err, ErrDurationTooShort) {
		t.Errorf("early deactivation: got %v; want ErrDurationTooShort", err)
	}
	clock.Advance(6 * time.Minute)
	if got, err := g.Request(ctx, deactivate); err != nil || got.Status != StatusRevoked {
		t.Errorf("deactivation: got %+v, %v; want Revoked", got, err)
	}
	if _, err := g.ActiveInstance(ctx, runnerOID, globalReader, "/"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ActiveInstance after deactivation: got %v; want ErrNotFound", err)
	}
}

func TestGraphRequestFailures(t *testing.T) {
	s, _ := startEmulator(t)
	g := newTestGraph(t, s, runnerApp, runnerSecret)
	tests := []struct {
		name    string
		request DirectoryScheduleRequest
		kind    error
		message string
	}{
		{"over maximum", DirectoryScheduleRequest{Action: "selfActivate", PrincipalID: runnerOID, RoleDefinitionID: appAdmin,
			Duration: 3 * time.Hour, Justification: "x"}, ErrPolicyViolation, "exceeds the role's maximum (Expiration_EndUser_Assignment)"},
		{"missing justification", DirectoryScheduleRequest{Action: "selfActivate", PrincipalID: runnerOID, RoleDefinitionID: appAdmin,
			Duration: time.Hour}, ErrPolicyViolation, "justification is required"},
		{"not eligible", DirectoryScheduleRequest{Action: "selfActivate", PrincipalID: runnerOID, RoleDefinitionID: "e8611ab8-c189-46e8-94e1-60213ab1f814",
			Duration: time.Hour, Justification: "x"}, ErrNotEligible, "eligible"},
		{"group self activation", DirectoryScheduleRequest{Action: "selfActivate", PrincipalID: groupOID, RoleDefinitionID: globalReader,
			Duration: time.Hour, Justification: "x"}, ErrInvalid, "is a group"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.Request(context.Background(), tc.request)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("error: got %v; want %v", err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("message: got %q; want it to contain %q", err.Error(), tc.message)
			}
		})
	}
	if _, err := g.GetRequest(context.Background(), "99999999-9999-4999-8999-999999999999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown request: got %v; want ErrNotFound", err)
	}
	if _, err := g.FindEligibility(context.Background(), groupOID, appAdmin, "/"); !errors.Is(err, ErrNotEligible) {
		t.Errorf("FindEligibility without eligibility: got %v; want ErrNotEligible", err)
	}
}

func TestGraphCancelPendingRequest(t *testing.T) {
	seed := pimTestSeed()
	seed.RolePolicies = append(seed.RolePolicies, emulator.SeedRolePolicy{DirectoryScopeID: "/", RoleDefinitionID: globalReader,
		MaximumDuration: "PT1H", RequireApproval: true})
	s, err := emulator.Start(context.Background(), emulator.Config{Seed: seed, StateDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	g := newTestGraph(t, s, runnerApp, runnerSecret)
	ctx := context.Background()
	got, err := g.Request(ctx, DirectoryScheduleRequest{Action: "selfActivate", PrincipalID: runnerOID, RoleDefinitionID: globalReader,
		Duration: 30 * time.Minute})
	if err != nil || got.Status != StatusPendingApproval {
		t.Fatalf("Request: got %+v, %v; want PendingApproval", got, err)
	}
	if err := g.CancelRequest(ctx, got.ID); err != nil {
		t.Fatalf("CancelRequest: %v", err)
	}
	if read, err := g.GetRequest(ctx, got.ID); err != nil || read.Status != StatusCanceled {
		t.Errorf("after cancel: got %q, %v; want Canceled", read.Status, err)
	}
	if err := g.CancelRequest(ctx, got.ID); !errors.Is(err, ErrInvalid) {
		t.Errorf("second cancel: got %v; want ErrInvalid", err)
	}
}

func TestGraphPolicyRead(t *testing.T) {
	s, _ := startEmulator(t)
	g := newTestGraph(t, s, runnerApp, runnerSecret)
	ctx := context.Background()
	tests := []struct {
		name string
		role string
		want RolePolicy
	}{
		{"seeded maximum and justification", appAdmin, RolePolicy{MaxDuration: 2 * time.Hour, JustificationRequired: true,
			AdminMaxDuration: 180 * 24 * time.Hour}},
		{"seeded sign-in rules", userAdmin, RolePolicy{MaxDuration: 4 * time.Hour, TicketRequired: true, MFARequired: true,
			ApprovalRequired: true, AuthenticationContext: "c2", AdminMaxDuration: 30 * 24 * time.Hour, AdminJustificationRequired: true}},
		{"default policy", globalReader, RolePolicy{MaxDuration: 8 * time.Hour, JustificationRequired: true, AdminMaxDuration: 180 * 24 * time.Hour}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := g.Policy(ctx, tc.role)
			if err != nil {
				t.Fatalf("Policy: %v", err)
			}
			if got.ID == "" || got.RoleDefinitionID != tc.role || got.Scope != "/" {
				t.Errorf("policy id %q role %q scope %q; want an id, role %s and scope /", got.ID, got.RoleDefinitionID, got.Scope, tc.role)
			}
			got.ID, got.Name, got.Scope, got.RoleDefinitionID = "", "", "", ""
			if got != tc.want {
				t.Errorf("policy: got %+v; want %+v", got, tc.want)
			}
		})
	}
	if _, err := g.Policy(ctx, "99999999-9999-4999-8999-999999999999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown role: got %v; want ErrNotFound", err)
	}
	denied := newTestGraph(t, s, pipelineApp, "demo-pipeline-secret") // no Graph app roles
	if _, err := denied.Policy(ctx, appAdmin); !errors.Is(err, ErrForbidden) {
		t.Errorf("caller without app role: got %v; want ErrForbidden", err)
	}
}

func TestGraphAuthContextRejected(t *testing.T) {
	seed := pimTestSeed()
	seed.RolePolicies = append(seed.RolePolicies, emulator.SeedRolePolicy{DirectoryScopeID: "/", RoleDefinitionID: globalReader,
		RequireAuthenticationContext: "c3"})
	s, err := emulator.Start(context.Background(), emulator.Config{Seed: seed, StateDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	g := newTestGraph(t, s, runnerApp, runnerSecret)
	_, err = g.Request(context.Background(), DirectoryScheduleRequest{Action: "selfActivate", PrincipalID: runnerOID,
		RoleDefinitionID: globalReader, Duration: time.Hour, Justification: "x"})
	var pe *PolicyError
	if !errors.As(err, &pe) || strings.Join(pe.Rules, ",") != AuthenticationContextRule {
		t.Fatalf("activation without acrs: got %v; want a PolicyError for %s", err, AuthenticationContextRule)
	}
	for _, want := range []string{"AuthenticationContext_EndUser_Assignment", `"c3"`, "workload identity"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q: want it to contain %q", err.Error(), want)
		}
	}
}

func TestGraphListRequests(t *testing.T) {
	s, _ := startEmulator(t)
	g := newTestGraph(t, s, runnerApp, runnerSecret)
	ctx := context.Background()
	made, err := g.Request(ctx, DirectoryScheduleRequest{Action: "selfActivate", PrincipalID: runnerOID, RoleDefinitionID: globalReader,
		Duration: time.Hour, Justification: "elevate request 1: list me"})
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	got, err := g.ListRequests(ctx, runnerOID, globalReader, "/")
	if err != nil {
		t.Fatalf("ListRequests: %v", err)
	}
	if len(got) != 1 || got[0].ID != made.ID || got[0].Justification != "elevate request 1: list me" || got[0].Action != "selfActivate" {
		t.Errorf("requests: got %+v; want the one made, with its justification and action", got)
	}
	if other, err := g.ListRequests(ctx, runnerOID, appAdmin, "/"); err != nil || len(other) != 0 {
		t.Errorf("requests for another role: got %d, %v; want none", len(other), err)
	}
}
