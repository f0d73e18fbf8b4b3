package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	azpolicy "github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/jackc/pgx/v5"

	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	elevatepolicy "github.com/elevate-dev/elevate/internal/policy"
	"github.com/elevate-dev/elevate/internal/store"
)

// postgresDSNVar names the DSN of a PostgreSQL database in which the tests
// create one schema each. Tests that need it skip when it is unset.
const postgresDSNVar = "ELEVATE_TEST_POSTGRES_DSN"

// evidenceVar set to "long" turns on the long versions of the HA, crash
// and scale tests.
const evidenceVar = "ELEVATE_EVIDENCE"

func longEvidence() bool { return os.Getenv(evidenceVar) == "long" }

// Role definition GUIDs of the built-in roles the HA policy names.
const (
	readerRole       = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	contributorRole  = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	secretsOfficer   = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
	keyVaultAdmin    = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
	brokerClientID   = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02"
	brokerSecret     = "demo-pipeline-secret"
	secondApprover   = "user:second@contoso.example"
	securityApprover = "user:sec@contoso.example"
)

// haPolicyYAML is the policy of the HA, crash and benchmark tests. Reader
// on the resource group is granted at once. Contributor needs one platform
// admin, Key Vault Secrets Officer two, and Key Vault Administrator one
// platform admin and one security reviewer.
var haPolicyYAML = `version: 1
groups:
  platform-admins: [user:approver@contoso.example, user:second@contoso.example]
  security: [user:sec@contoso.example]
rules:
  - id: reader-auto
    match:
      requester: {repository: contoso/payments}
      roles: [Reader]
      scopes: [` + rg + `]
    outcome: auto_approve
    max_duration: 1h
  - id: contributor-one-admin
    match:
      requester: {repository: contoso/payments}
      roles: [Contributor]
      scopes: [` + rg + `]
    outcome: require
    require: {approvals: 1, groups: [platform-admins]}
    max_duration: 1h
  - id: secrets-two-admins
    match:
      requester: {repository: contoso/payments}
      roles: [Key Vault Secrets Officer]
      scopes: [` + vaultID + `]
    outcome: require
    require: {approvals: 2, groups: [platform-admins]}
    max_duration: 1h
  - id: vault-admin-each-group
    match:
      requester: {repository: contoso/payments}
      roles: [Key Vault Administrator]
      scopes: [` + vaultID + `]
    outcome: require
    require: {approvals: 1, groups: [platform-admins, security], each_group: true}
    max_duration: 1h
`

// haPolicyFile writes haPolicyYAML to a file and returns its path.
func haPolicyFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(haPolicyYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func haPolicy(t testing.TB) *elevatepolicy.Policy {
	t.Helper()
	p, err := elevatepolicy.Parse([]byte(haPolicyYAML))
	if err != nil {
		t.Fatalf("parse HA policy: %v", err)
	}
	return p
}

// targetPrincipal returns the object id of the i-th extra service
// principal in haSeed, so that tests can create many distinct grants.
func targetPrincipal(i int) string {
	return fmt.Sprintf("7a000000-0000-4000-8000-%012x", i+1)
}

// haSeed is the demo tenant with n extra service principals, where the
// broker identity may assign any role to anyone in the subscription. The
// demo's narrow ABAC delegation covers only the pipeline itself.
func haSeed(n int) emulator.Seed {
	seed := emulator.DefaultSeed()
	seed.RoleAssignments = []emulator.SeedAssignment{{
		Name:          "e7d6c5b4-a392-4817-b6f5-e4d3c2b1a0aa",
		Scope:         "/subscriptions/" + subscription,
		RoleName:      "User Access Administrator",
		PrincipalID:   pipelineOID,
		PrincipalType: emulator.PrincipalServicePrincipal,
	}}
	for i := range n {
		seed.Principals = append(seed.Principals, emulator.Principal{
			ObjectID: targetPrincipal(i), AppID: fmt.Sprintf("7b000000-0000-4000-8000-%012x", i+1),
			DisplayName: fmt.Sprintf("target-%d", i),
			Type:        emulator.PrincipalServicePrincipal,
		})
	}
	return seed
}

// startHAEmulator starts the emulator with haSeed(principals).
func startHAEmulator(t testing.TB, principals, limit int) *emulator.Server {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := emulator.Start(context.Background(), emulator.Config{Seed: haSeed(principals), AssignmentLimit: limit, Logger: quiet})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// emulatorARM returns an ARM client of srv that signs in as the broker and
// sends every call through client.
func emulatorARM(t testing.TB, srv *emulator.Server, client *http.Client) lifecycle.ARM {
	t.Helper()
	env := azure.Environment{ARMEndpoint: srv.URL(), AuthorityHost: srv.URL() + "/", VaultSuffix: srv.VaultSuffix()}
	if err := env.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	retry := &azpolicy.RetryOptions{MaxRetries: 2, RetryDelay: 5 * time.Millisecond}
	cred, err := azidentity.NewClientSecretCredential(srv.TenantID(), brokerClientID, brokerSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: env.ClientOptions(client, retry), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	rbac, err := azure.NewRBAC(cred, env.ARMOptions(client, retry))
	if err != nil {
		t.Fatal(err)
	}
	return rbac
}

// serviceOn builds a Service on st that grants through arm.
func serviceOn(t testing.TB, st store.Store, arm lifecycle.ARM, now func() time.Time, replica string) *Service {
	t.Helper()
	engine := lifecycle.New(lifecycle.Config{ARM: arm, CallerID: pipelineOID,
		Options: lifecycle.Options{BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond}})
	svc, err := New(Config{Store: st, Policy: haPolicy(t), Engine: engine, ReplicaID: replica, Now: now,
		RetryBase: time.Second, RetryMax: 10 * time.Second, MaxRevokeAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// openSQLite opens a new SQLite store in a temporary directory.
func openSQLite(t testing.TB, now func() time.Time) store.Store {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "broker.db"), store.Options{Now: now, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("open SQLite store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// openPostgres opens a store on dsn, closed when the test ends.
func openPostgres(t testing.TB, dsn string, now func() time.Time) store.Store {
	t.Helper()
	st, err := store.OpenPostgres(context.Background(), dsn, store.Options{Now: now, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("open PostgreSQL store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// postgresSchema creates a schema with a random name in the database of
// ELEVATE_TEST_POSTGRES_DSN, drops it when the test ends, and returns a DSN
// whose search_path selects it. It skips the test without the variable.
func postgresSchema(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(postgresDSNVar)
	if dsn == "" {
		t.Skipf("%s is not set; set it to a PostgreSQL DSN to run this test", postgresDSNVar)
	}
	buf := make([]byte, 6)
	_, _ = rand.Read(buf) // crypto/rand.Read never returns an error since Go 1.24
	schema := "elevate_broker_" + hex.EncodeToString(buf)
	execPostgres(t, dsn, "CREATE SCHEMA "+schema)
	t.Cleanup(func() { execPostgres(t, dsn, "DROP SCHEMA "+schema+" CASCADE") })
	u, err := url.Parse(dsn)
	if err != nil || !strings.Contains(dsn, "://") {
		t.Fatalf("%s: want a postgres:// URL", postgresDSNVar)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func execPostgres(t testing.TB, dsn, stmt string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", postgresDSNVar, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		t.Errorf("%s: %v", stmt, err)
	}
}

// mapARM is an in-memory ARM for tests and scale benchmarks that do not
// need the Azure wire: role assignments live in a map with ARM's rules for
// names (PUT of an identical assignment is a no-op, another name for the
// same principal, role and scope is RoleAssignmentExists) and a DELETE of
// a missing assignment is no error. Latency, when set, delays every write.
type mapARM struct {
	mu          sync.Mutex
	assignments map[string]azure.Assignment // by lower-case assignment id
	byPair      map[string]string           // assignment id by pairKey
	creates     map[string]int              // PUTs that created, by id
	deletes     map[string]int              // DELETEs that removed, by id
	latency     time.Duration
}

func newMapARM() *mapARM {
	return &mapARM{assignments: map[string]azure.Assignment{}, byPair: map[string]string{},
		creates: map[string]int{}, deletes: map[string]int{}}
}

// pairKey identifies an assignment by scope, role and principal, which ARM
// compares without case.
func pairKey(scope, roleDefinitionID, principalID string) string {
	return strings.ToLower(scope + " " + roleDefinitionID + " " + principalID)
}

var mapRoles = map[string]string{
	readerRole: "Reader", contributorRole: "Contributor", secretsOfficer: "Key Vault Secrets Officer",
	keyVaultAdmin: "Key Vault Administrator",
}

func assignmentKey(scope, name string) string {
	return strings.ToLower(scope + "/providers/Microsoft.Authorization/roleAssignments/" + name)
}

func (m *mapARM) wait() {
	if m.latency > 0 {
		time.Sleep(m.latency)
	}
}

func (m *mapARM) CreateAssignment(_ context.Context, a azure.Assignment) (azure.Assignment, error) {
	m.wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	key := assignmentKey(a.Scope, a.Name)
	if got, ok := m.assignments[key]; ok {
		return got, nil
	}
	pair := pairKey(a.Scope, a.RoleDefinitionID, a.PrincipalID)
	if _, ok := m.byPair[pair]; ok {
		return azure.Assignment{}, fmt.Errorf("create %s: %w", key, azure.ErrAssignmentExists)
	}
	a.ID = a.Scope + "/providers/Microsoft.Authorization/roleAssignments/" + a.Name
	m.assignments[key] = a
	m.byPair[pair] = key
	m.creates[key]++
	return a, nil
}

func (m *mapARM) GetAssignment(_ context.Context, scope, name string) (azure.Assignment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := assignmentKey(scope, name)
	if strings.HasPrefix(name, "/") {
		key = strings.ToLower(name)
	}
	if a, ok := m.assignments[key]; ok {
		return a, nil
	}
	return azure.Assignment{}, fmt.Errorf("get %s: %w", key, azure.ErrNotFound)
}

func (m *mapARM) DeleteAssignment(_ context.Context, scope, name string) (bool, error) {
	m.wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	key := assignmentKey(scope, name)
	a, ok := m.assignments[key]
	if !ok {
		return false, nil
	}
	delete(m.assignments, key)
	delete(m.byPair, pairKey(a.Scope, a.RoleDefinitionID, a.PrincipalID))
	m.deletes[key]++
	return true, nil
}

func (m *mapARM) FindAssignment(_ context.Context, scope, roleDefinitionID, principalID string) (azure.Assignment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if key, ok := m.byPair[pairKey(scope, roleDefinitionID, principalID)]; ok {
		return m.assignments[key], nil
	}
	return azure.Assignment{}, fmt.Errorf("find assignment at %s: %w", scope, azure.ErrNotFound)
}

func (m *mapARM) GetRoleDefinition(_ context.Context, scope, guid string) (azure.RoleDefinition, error) {
	name, ok := mapRoles[strings.ToLower(guid)]
	if !ok {
		return azure.RoleDefinition{}, fmt.Errorf("role definition %s: %w", guid, azure.ErrNotFound)
	}
	id := scope + "/providers/Microsoft.Authorization/roleDefinitions/" + guid
	return azure.RoleDefinition{ID: id, GUID: guid, Name: name, Type: "BuiltInRole"}, nil
}

func (m *mapARM) FindRoleDefinition(ctx context.Context, scope, name string) (azure.RoleDefinition, error) {
	for guid, n := range mapRoles {
		if strings.EqualFold(n, name) {
			return m.GetRoleDefinition(ctx, scope, guid)
		}
	}
	return azure.RoleDefinition{}, fmt.Errorf("role definition %q: %w", name, azure.ErrNotFound)
}

func (m *mapARM) Permissions(context.Context, string) (azure.Permissions, error) {
	return azure.Permissions{Actions: []string{"*"}}, nil
}

func (m *mapARM) GetResource(_ context.Context, id, _ string) (azure.Resource, error) {
	return azure.Resource{ID: id}, nil
}

func (m *mapARM) CountAssignments(context.Context, string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.assignments), nil
}

func (m *mapARM) Locks(context.Context, string) ([]azure.Lock, error) { return nil, nil }

// ListAssignmentsAssignedTo serves only the CLI's delegation check, which
// the broker does not run.
func (m *mapARM) ListAssignmentsAssignedTo(context.Context, string, string) ([]azure.Assignment, error) {
	return nil, nil
}

// live returns the number of assignments that exist now.
func (m *mapARM) live() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.assignments)
}

// counts returns copies of the create and delete counts by assignment id.
func (m *mapARM) counts() (creates, deletes map[string]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	creates, deletes = map[string]int{}, map[string]int{}
	for k, v := range m.creates {
		creates[k] = v
	}
	for k, v := range m.deletes {
		deletes[k] = v
	}
	return creates, deletes
}

// wireCounter counts role assignment DELETEs on the Azure wire by path and
// response status: 200 removed an assignment, 204 found none.
type wireCounter struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen map[string][]int
}

func (w *wireCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := w.base.RoundTrip(r)
	if err == nil && r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/roleAssignments/") {
		w.mu.Lock()
		if w.seen == nil {
			w.seen = map[string][]int{}
		}
		key := strings.ToLower(r.URL.Path)
		w.seen[key] = append(w.seen[key], resp.StatusCode)
		w.mu.Unlock()
	}
	return resp, err
}

// deletes returns the statuses of the DELETEs sent so far, by path.
func (w *wireCounter) deletes() map[string][]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string][]int{}
	for k, v := range w.seen {
		out[k] = append([]int(nil), v...)
	}
	return out
}

// assignmentHistory reads every role assignment the emulator has held,
// deleted ones included, from its admin state endpoint.
func assignmentHistory(t testing.TB, srv *emulator.Server) []emulator.RoleAssignment {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL()+"/_emulator/state", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("read emulator state: %v", err)
	}
	defer resp.Body.Close()
	var state struct {
		RoleAssignments []emulator.RoleAssignment `json:"roleAssignments"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&state); err != nil {
		t.Fatalf("decode emulator state: %v", err)
	}
	var out []emulator.RoleAssignment
	for _, a := range state.RoleAssignments {
		if strings.HasPrefix(a.Description, "elevate request") {
			out = append(out, a)
		}
	}
	return out
}

// historyFindings checks the emulator's assignment history for grants made
// twice: two assignments with one name, or two live at once for one
// principal, role and scope. It returns one line per finding, and the
// number of temporary assignments still live.
func historyFindings(history []emulator.RoleAssignment) (findings []string, live int) {
	byName := map[string]int{}
	byKey := map[string][]emulator.RoleAssignment{}
	for _, a := range history {
		byName[strings.ToLower(a.ID)]++
		key := strings.ToLower(a.PrincipalID + " " + a.RoleDefinitionID + " " + a.Scope)
		byKey[key] = append(byKey[key], a)
		if a.DeletedOn.IsZero() {
			live++
		}
	}
	for id, n := range byName {
		if n > 1 {
			findings = append(findings, fmt.Sprintf("assignment %s created %d times", id, n))
		}
	}
	for key, list := range byKey {
		for i := range list {
			for j := i + 1; j < len(list); j++ {
				if overlap(list[i], list[j]) {
					findings = append(findings, fmt.Sprintf("%s live twice at once: %s and %s", key, list[i].Name, list[j].Name))
				}
			}
		}
	}
	return findings, live
}

// overlap reports whether two assignments were live at the same time.
func overlap(a, b emulator.RoleAssignment) bool {
	end := func(x emulator.RoleAssignment) time.Time {
		if x.DeletedOn.IsZero() {
			return time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		return x.DeletedOn
	}
	return a.CreatedOn.Before(end(b)) && b.CreatedOn.Before(end(a))
}

// readerFor is an auto-approved request for Reader on the resource group
// for the i-th extra principal.
func readerFor(i int, key string) CreateInput {
	return CreateInput{IdempotencyKey: key, Roles: []string{"Reader"}, Scopes: []string{rg},
		PrincipalID: targetPrincipal(i), Duration: "10m", Justification: "read the deployment state"}
}

// contributorFor is a request for Contributor on the resource group for
// the i-th extra principal, which needs one platform admin.
func contributorFor(i int, key string) CreateInput {
	in := readerFor(i, key)
	in.Roles = []string{"Contributor"}
	in.Justification = "redeploy the payments app"
	return in
}
