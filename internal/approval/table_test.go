package approval

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

const vaultScope = "/subscriptions/00000000-0000-0000-0000-000000000001" +
	"/resourceGroups/rg-app/providers/Microsoft.KeyVault/vaults/kv-app"

// hostileTable puts names that try to break out of their cell into every
// kind of field.
func hostileTable() Table {
	return Table{
		RequestID:     "6f1c1a52-8d8e-4c3e-9a51-6b7d0c2f4e10",
		PrincipalID:   "11111111-2222-3333-4444-555555555555",
		PrincipalType: "ServicePrincipal",
		PrincipalName: "deploy-bot @org/team",
		Duration:      15 * time.Minute,
		Justification: "Rotate password\n| injected | row |\n# Heading",
		Ticket:        "CHG-1234",
		Metadata: access.Metadata{
			Repository: "contoso/orders", Workflow: "rotate <img src=x onerror=alert(1)>",
			RunID: "42", RunAttempt: "1", RunURL: "https://github.com/contoso/orders/actions/runs/42",
			Commit: "0123456789abcdef0123456789abcdef01234567", Ref: "refs/heads/main",
			Environment: "production", Actor: "@octocat",
		},
		Backend: "rbac",
		Rows: []Row{
			{
				RoleName: "Key Vault Secrets User", RoleID: "4633458b-17de-408a-b874-0445c86b69e6",
				ResourceName: "kv-app", ResourceType: "Microsoft.KeyVault/vaults", ResourceID: vaultScope,
			},
			{
				RoleName: "x | y", RoleID: "aaaaaaaa-0000-0000-0000-000000000001",
				ResourceName: "</td><script>alert(1)</script>", ResourceType: "[a](https://evil)",
				ResourceID: vaultScope, Warning: "line one\nline two\r\n\ttabbed",
			},
			{
				RoleName: "", RoleID: "bbbbbbbb-0000-0000-0000-000000000002",
				ResourceName: "🚀 team \u202egnp.exe", ResourceType: "![img](https://evil/x.png)",
				ResourceID: vaultScope, Warning: "role name lookup failed: 403 Forbidden",
			},
		},
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatalf("write golden file: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file; got:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestTableMarkdownGolden(t *testing.T) {
	md := hostileTable().Markdown()
	checkGolden(t, "hostile.md", []byte(md))
	if err := checkMarkdownShape(md, 3); err != nil {
		t.Error(err)
	}
}

func TestTableJSONGolden(t *testing.T) {
	out, err := hostileTable().JSON()
	if err != nil {
		t.Fatalf("JSON: %v", err)
	}
	checkGolden(t, "hostile.json", out)
}

func TestTableJSONEmptyRows(t *testing.T) {
	out, err := Table{RequestID: "r"}.JSON()
	if err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if !bytes.Contains(out, []byte(`"rows": []`)) {
		t.Errorf("got %s; want an empty rows array", out)
	}
}

func TestNewTableFromRequest(t *testing.T) {
	scope := access.MustParseResourceID(vaultScope)
	req := access.Request{
		ID:            "6f1c1a52-8d8e-4c3e-9a51-6b7d0c2f4e10",
		Principal:     access.Principal{ID: "11111111-2222-3333-4444-555555555555", Type: access.PrincipalUser},
		Pairs:         []access.Pair{{RoleID: "4633458b-17de-408a-b874-0445c86b69e6", Scope: scope}},
		Justification: "why",
		Duration:      time.Hour,
		Metadata:      access.Metadata{Ticket: "CHG-1"},
	}
	table := NewTable(req, "rbac")
	want := Row{
		RoleName: req.Pairs[0].RoleID, RoleID: req.Pairs[0].RoleID,
		ResourceName: "kv-app", ResourceType: "Microsoft.KeyVault/vaults", ResourceID: vaultScope,
	}
	if len(table.Rows) != 1 || table.Rows[0] != want {
		t.Errorf("rows: got %+v; want [%+v]", table.Rows, want)
	}
	if table.Ticket != "CHG-1" {
		t.Errorf("ticket: got %q; want %q", table.Ticket, "CHG-1")
	}
	if !strings.Contains(table.Markdown(), "| Duration | 1h |") {
		t.Errorf("markdown has no 1h duration row:\n%s", table.Markdown())
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{15 * time.Minute, "15m"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{90 * time.Second, "1m30s"},
		{time.Hour + time.Second, "1h0m1s"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.in); got != tt.want {
			t.Errorf("formatDuration(%v): got %q; want %q", tt.in, got, tt.want)
		}
	}
}
