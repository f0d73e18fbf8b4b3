package plan

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/approval"
)

func testRequest(t *testing.T) access.Request {
	t.Helper()
	scope := access.MustParseResourceID("/subscriptions/9d2c6e1f-4a3b-4c5d-8e7f-0a1b2c3d4e50/resourceGroups/rg-app/providers/Microsoft.KeyVault/vaults/kv-app")
	return access.Request{
		ID:            "0f8fad5b-d9cb-469f-a165-70867728950e",
		Principal:     access.Principal{ID: "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801", Type: "ServicePrincipal"},
		Pairs:         []access.Pair{{RoleID: "b86a8fe4-44ce-4948-aee5-eccb2c155cd7", Scope: scope}},
		Justification: "rotate the database password",
		Duration:      15 * time.Minute,
		Metadata:      access.Metadata{Repository: "contoso/payments", Ticket: "CHG-1"},
		CreatedAt:     time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC),
	}
}

func writeTestPlan(t *testing.T, validFor time.Duration) (string, Plan, string) {
	t.Helper()
	req := testRequest(t)
	pairs := []Pair{{
		RoleID: req.Pairs[0].RoleID, RoleName: "Key Vault Secrets Officer",
		Scope:          req.Pairs[0].Scope.String(),
		AssignmentName: access.AssignmentName(req.ID, req.Principal.ID, req.Pairs[0].RoleID, req.Pairs[0].Scope),
	}}
	p, err := New(req, pairs, approval.NewTable(req, "rbac"), nil, req.CreatedAt, validFor)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plan.json")
	hash, err := Write(path, p)
	if err != nil {
		t.Fatal(err)
	}
	return path, p, hash
}

func TestPlanRoundTrip(t *testing.T) {
	path, _, hash := writeTestPlan(t, time.Hour)
	p, err := Read(path)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if p.SHA256 != hash {
		t.Errorf("SHA256 = %q; want %q", p.SHA256, hash)
	}
	req, err := p.Check(testRequest(t).CreatedAt.Add(time.Minute), hash)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if req.Hash() != testRequest(t).Hash() {
		t.Errorf("request changed in the round trip")
	}
}

func TestPlanCheckRejects(t *testing.T) {
	path, _, hash := writeTestPlan(t, time.Hour)
	created := testRequest(t).CreatedAt
	p, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		now    time.Time
		expect string
		want   error
	}{
		{"expired", created.Add(2 * time.Hour), hash, ErrExpired},
		{"at the deadline", created.Add(time.Hour), hash, ErrExpired},
		{"other hash expected", created, strings.Repeat("a", 64), ErrMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := p.Check(tc.now, tc.expect); !errors.Is(err, tc.want) {
				t.Errorf("Check error = %v; want %v", err, tc.want)
			}
		})
	}
}

func TestPlanReadRejectsEdits(t *testing.T) {
	path, _, _ := writeTestPlan(t, time.Hour)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, from, to string
		want           error
	}{
		{"role changed", "b86a8fe4-44ce-4948-aee5-eccb2c155cd7", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", ErrTampered},
		{"duration changed", `"15m0s"`, `"8h0m0s"`, ErrTampered},
		{"validity extended", `"valid_until": "2026-12-01T10:00:00Z"`, `"valid_until": "2027-12-01T10:00:00Z"`, ErrTampered},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(data), tc.from) {
				t.Fatalf("plan has no %q to edit", tc.from)
			}
			edited := filepath.Join(t.TempDir(), "plan.json")
			if err := os.WriteFile(edited, []byte(strings.Replace(string(data), tc.from, tc.to, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Read(edited); !errors.Is(err, tc.want) {
				t.Errorf("Read error = %v; want %v", err, tc.want)
			}
		})
	}
}

// TestPlanCheckCatchesRehashedEdit edits the request and recomputes the file
// hash, as an attacker with write access to the artifact could: the approval
// hash and the --expect-hash from the gate still catch it.
func TestPlanCheckCatchesRehashedEdit(t *testing.T) {
	path, p, hash := writeTestPlan(t, time.Hour)
	p.Request.Duration = "8h0m0s"
	if _, err := Write(path, p); err != nil {
		t.Fatal(err)
	}
	edited, err := Read(path)
	if err != nil {
		t.Fatalf("Read of a re-hashed plan: %v", err)
	}
	if _, err := edited.Check(testRequest(t).CreatedAt, ""); !errors.Is(err, ErrMismatch) {
		t.Errorf("Check without expected hash error = %v; want ErrMismatch", err)
	}
	if _, err := edited.Check(testRequest(t).CreatedAt, hash); !errors.Is(err, ErrMismatch) {
		t.Errorf("Check with expected hash error = %v; want ErrMismatch", err)
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	for _, in := range []string{"", "{}", `{"schema":2}`, `{"schema":1,"unknown":true}`, `{"schema":1} {}`, "[]"} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) succeeded; want an error", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	dir := f.TempDir()
	req := access.Request{
		ID: "0f8fad5b-d9cb-469f-a165-70867728950e", Principal: access.Principal{ID: "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801", Type: "ServicePrincipal"},
		Pairs:    []access.Pair{{RoleID: "acdd72a7-3385-48ef-bd42-f606fba81ae7", Scope: access.MustParseResourceID("/subscriptions/9d2c6e1f-4a3b-4c5d-8e7f-0a1b2c3d4e50")}},
		Duration: time.Hour, Justification: "x", CreatedAt: time.Unix(0, 0).UTC(),
	}
	p, err := New(req, nil, approval.NewTable(req, "rbac"), nil, req.CreatedAt, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(dir, "seed.json")
	if _, err := Write(path, p); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"schema":1,"sha256":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		// A plan that parses must check without panicking.
		_, _ = p.Check(time.Unix(0, 0), "")
	})
}
