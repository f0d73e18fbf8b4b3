package lifecycle_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// Scopes and roles of the PIM test tenant, on top of the demo seed.
const (
	pipelineOID  = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801"
	pimGroupOID  = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c05"
	otherSPOID   = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c03"
	roleKVReader = "21090545-7ca7-4776-b22c-e363652d74d2"
	roleContrib  = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	roleKVUser   = "4633458b-17de-408a-b874-0445c86b69e6"

	entraGlobalReader = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
	entraAppAdmin     = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
	entraUserAdmin    = "fe930be7-5e62-47db-91af-98c3a49a38b1"
	entraGroupsAdmin  = "fdd7a751-b60b-444a-984c-02652fe8fa1c"

	// approverOID is the demo seed's user.
	approverOID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c03"

	// tenantRoot is the ARM scope entra-role pairs carry: the tenant root
	// management group of the demo tenant.
	tenantRoot = "/providers/Microsoft.Management/managementGroups/3b5f0e4a-8c1d-4e2f-9a7b-6c5d4e3f2a10"
)

// pimBase is the emulated time PIM tests start at.
var pimBase = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// pimTestSeed is the demo tenant where the pipeline holds eligibilities
// with one role management policy per case:
//
//	Reader at the vault:                  eligible, default policy
//	Key Vault Secrets Officer at storage: eligible, approval required
//	Key Vault Secrets User at the group:  eligible, PT1H, justification and ticket
//	Key Vault Reader at the group:        eligible, MFA required
//	Contributor at the group:             a group is eligible
//	Entra Global Reader at "/":           eligible
//	Key Vault Secrets User at the vault:  the pipeline and the approver user
//	                                      eligible, authentication context c1
//	Entra User Administrator at "/":      eligible, PT1H, ticket, approval,
//	                                      authentication context c1
//	Entra Groups Administrator at "/":    assignments up to PT2H
func pimTestSeed() emulator.Seed {
	seed := emulator.DefaultSeed()
	for i := range seed.Principals {
		if seed.Principals[i].ObjectID == pipelineOID {
			seed.Principals[i].GraphAppRoles = []string{"RoleManagement.ReadWrite.Directory", "Directory.Read.All"}
		}
	}
	seed.Principals = append(seed.Principals,
		emulator.Principal{ObjectID: pimGroupOID, DisplayName: "pim-group", Type: emulator.PrincipalGroup},
		emulator.Principal{ObjectID: otherSPOID, AppID: "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c04", DisplayName: "other-app", Type: emulator.PrincipalServicePrincipal},
	)
	seed.Eligibilities = []emulator.SeedEligibility{
		{PrincipalID: pipelineOID, Scope: vaultScope, RoleName: "Reader"},
		{PrincipalID: pipelineOID, Scope: storageScope, RoleDefinitionID: roleSecretsOfficer},
		{PrincipalID: pipelineOID, Scope: demoGroup, RoleDefinitionID: roleKVUser},
		{PrincipalID: pipelineOID, Scope: demoGroup, RoleDefinitionID: roleKVReader},
		{PrincipalID: pimGroupOID, Scope: demoGroup, RoleDefinitionID: roleContrib},
		{PrincipalID: pipelineOID, DirectoryScopeID: "/", RoleDefinitionID: entraGlobalReader},
		{PrincipalID: pipelineOID, Scope: vaultScope, RoleDefinitionID: roleKVUser},
		{PrincipalID: approverOID, Scope: vaultScope, RoleDefinitionID: roleKVUser},
		{PrincipalID: pipelineOID, DirectoryScopeID: "/", RoleDefinitionID: entraUserAdmin},
	}
	seed.RolePolicies = []emulator.SeedRolePolicy{
		{Scope: storageScope, RoleDefinitionID: roleSecretsOfficer, MaximumDuration: "PT4H", RequireApproval: true},
		{Scope: demoGroup, RoleDefinitionID: roleKVUser, MaximumDuration: "PT1H", RequireJustification: true, RequireTicket: true},
		{Scope: demoGroup, RoleDefinitionID: roleKVReader, RequireMFA: true},
		{Scope: vaultScope, RoleDefinitionID: roleKVUser, RequireAuthenticationContext: "c1"},
		{DirectoryScopeID: "/", RoleDefinitionID: entraUserAdmin, MaximumDuration: "PT1H", RequireTicket: true, RequireApproval: true,
			RequireAuthenticationContext: "c1"},
		{DirectoryScopeID: "/", RoleDefinitionID: entraGroupsAdmin, AdminMaximumDuration: "PT2H", AdminRequireJustification: true},
	}
	return seed
}

// emuClock is one emulated time shared by the emulator and the engine.
// After advances it by d at once, so every engine wait is instant and
// moves the emulator's view of time the same way.
type emuClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *emuClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *emuClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *emuClock) After(d time.Duration) <-chan time.Time {
	c.Advance(max(d, 0))
	ch := make(chan time.Time, 1)
	ch <- c.Now()
	return ch
}

// pimEnv is an emulator on an emulated clock with the pipeline's PIM and
// Graph clients.
type pimEnv struct {
	*testEnv
	clock *emuClock
	pim   *azure.PIM
	graph *azure.Graph
}

func startPIMEnv(t *testing.T) *pimEnv {
	t.Helper()
	clock := &emuClock{t: pimBase}
	te := startEnv(t, emulator.Config{Seed: pimTestSeed(), Now: clock.Now})
	retry := testRetry
	pim, err := azure.NewPIM(te.cred, te.env.ARMOptions(te.client, &retry))
	if err != nil {
		t.Fatalf("PIM client: %v", err)
	}
	graph, err := azure.NewGraph(te.srv.GraphEndpoint(), te.cred, te.env.ClientOptions(te.client, &retry))
	if err != nil {
		t.Fatalf("Graph client: %v", err)
	}
	return &pimEnv{testEnv: te, clock: clock, pim: pim, graph: graph}
}

// pimConfig returns the backends' configuration for this emulator.
func (pe *pimEnv) pimConfig(approvalWait time.Duration) lifecycle.PIMConfig {
	return lifecycle.PIMConfig{PIM: pe.pim, Graph: pe.graph, ApprovalWait: approvalWait}
}

// newPIMRun builds an engine on the emulated clock with the PIM backends.
func (pe *pimEnv) newPIMRun(t *testing.T, cfg lifecycle.PIMConfig) *run {
	t.Helper()
	path := filepath.Join(pe.dir, uuid.NewString()+".jsonl")
	log, err := audit.Open(path)
	if err != nil {
		t.Fatalf("open audit log: %v", err)
	}
	t.Cleanup(func() { _ = log.Close() })
	engine := lifecycle.New(lifecycle.Config{
		ARM: pe.rbac, Audit: log, CallerID: pe.caller.ObjectID, Clock: pe.clock, Options: fastOptions(),
	})
	if err := engine.AddPIM(cfg); err != nil {
		t.Fatalf("AddPIM: %v", err)
	}
	return &run{engine: engine, auditPath: path, logs: &syncBuffer{}}
}

// pimRequest is a request of the pipeline for itself on the emulated clock.
func (pe *pimEnv) pimRequest(t *testing.T, d time.Duration, pairs ...access.Pair) access.Request {
	t.Helper()
	req := pe.request(t, pairs...)
	req.Duration = d
	req.CreatedAt = pe.clock.Now()
	req.Metadata.Ticket = "CHG-7"
	return req
}

// routed chooses backend for every pair of req and routes the engine.
func routed(t *testing.T, r *run, req access.Request, backend string) []lifecycle.Choice {
	t.Helper()
	choices, err := r.engine.ChooseBackends(context.Background(), req, backend)
	if err != nil {
		t.Fatalf("ChooseBackends(%s): %v", backend, err)
	}
	if err := r.engine.Route(req, choices); err != nil {
		t.Fatalf("Route: %v", err)
	}
	return choices
}

// armActive reports whether the principal holds an active PIM assignment
// of the role at scope.
func (pe *pimEnv) armActive(t *testing.T, scope, principal, role string) bool {
	t.Helper()
	_, err := pe.pim.ActiveInstance(context.Background(), scope, principal, "/subscriptions/"+demoSubscription+"/providers/Microsoft.Authorization/roleDefinitions/"+role)
	if err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatalf("ActiveInstance: %v", err)
	}
	return err == nil
}

// entraActive reports whether the principal holds the Entra role at "/".
func (pe *pimEnv) entraActive(t *testing.T, principal, role string) bool {
	t.Helper()
	_, err := pe.graph.ActiveInstance(context.Background(), principal, role, "/")
	if err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Graph ActiveInstance: %v", err)
	}
	return err == nil
}

// recordsOf returns the records with the event.
func recordsOf(records []audit.Record, event string) []audit.Record {
	var out []audit.Record
	for _, r := range records {
		if r.Event == event {
			out = append(out, r)
		}
	}
	return out
}

// azureSelfActivate is a SelfActivate request for d from start.
func azureSelfActivate(roleID, eligibilityID string, d time.Duration, start time.Time) azure.ScheduleRequest {
	return azure.ScheduleRequest{
		RequestType: azure.RequestSelfActivate, PrincipalID: pipelineOID, RoleDefinitionID: roleID,
		LinkedEligibilityID: eligibilityID, Justification: "by hand", Start: start, Duration: d,
	}
}
