package access

import (
	"errors"
	"strings"
	"testing"
)

const (
	testSub = "00000000-0000-0000-0000-000000000001"
	subID   = "/subscriptions/" + testSub
	rgID    = subID + "/resourceGroups/rg-app"
	vaultID = rgID + "/providers/Microsoft.KeyVault/vaults/kv-app"
	dbID    = rgID + "/providers/Microsoft.Sql/servers/sql-app/databases/orders"
	mgID    = "/providers/Microsoft.Management/managementGroups/mg-platform"
)

func TestParseResourceIDAccepted(t *testing.T) {
	tests := []struct {
		name, in, str    string
		kind             ScopeKind
		sub, rg, nm, typ string
		provider         string
	}{
		{"subscription", subID, subID, Subscription, testSub, "", testSub, TypeSubscription, "Microsoft.Resources"},
		{"resource group", rgID, rgID, ResourceGroup, testSub, "rg-app", "rg-app", TypeResourceGroup, "Microsoft.Resources"},
		{"key vault", vaultID, vaultID, Resource, testSub, "rg-app", "kv-app", "Microsoft.KeyVault/vaults", "Microsoft.KeyVault"},
		{"nested sql database", dbID, dbID, Resource, testSub, "rg-app", "orders", "Microsoft.Sql/servers/databases", "Microsoft.Sql"},
		{"management group", mgID, mgID, ManagementGroup, "", "", "mg-platform", TypeManagementGroup, "Microsoft.Management"},
		{"trailing slash dropped", rgID + "/", rgID, ResourceGroup, testSub, "rg-app", "rg-app", TypeResourceGroup, "Microsoft.Resources"},
		{
			"lowercase keywords canonicalised",
			"/SUBSCRIPTIONS/" + testSub + "/resourcegroups/RG-App/PROVIDERS/microsoft.keyvault/Vaults/KV",
			subID + "/resourceGroups/RG-App/providers/microsoft.keyvault/Vaults/KV",
			Resource, testSub, "RG-App", "KV", "microsoft.keyvault/Vaults", "microsoft.keyvault",
		},
		{
			"subscription level resource",
			subID + "/providers/Microsoft.Security/pricings/VirtualMachines",
			subID + "/providers/Microsoft.Security/pricings/VirtualMachines",
			Resource, testSub, "", "VirtualMachines", "Microsoft.Security/pricings", "Microsoft.Security",
		},
		{
			"lowercase management group keywords",
			"/providers/microsoft.management/managementgroups/Root(1).x",
			"/providers/Microsoft.Management/managementGroups/Root(1).x",
			ManagementGroup, "", "", "Root(1).x", TypeManagementGroup, "Microsoft.Management",
		},
		{"unicode resource group", subID + "/resourceGroups/grüße_(1)", subID + "/resourceGroups/grüße_(1)",
			ResourceGroup, testSub, "grüße_(1)", "grüße_(1)", TypeResourceGroup, "Microsoft.Resources"},
		{"resource group of 90", subID + "/resourceGroups/" + strings.Repeat("r", 90), subID + "/resourceGroups/" + strings.Repeat("r", 90),
			ResourceGroup, testSub, strings.Repeat("r", 90), strings.Repeat("r", 90), TypeResourceGroup, "Microsoft.Resources"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ParseResourceID(tt.in)
			if err != nil {
				t.Fatalf("ParseResourceID(%q) error: %v", tt.in, err)
			}
			checks := []struct{ what, got, want string }{
				{"String", id.String(), tt.str},
				{"Key", id.Key(), strings.ToLower(tt.str)},
				{"Kind", id.Kind().String(), tt.kind.String()},
				{"SubscriptionID", id.SubscriptionID(), tt.sub},
				{"ResourceGroup", id.ResourceGroup(), tt.rg},
				{"Name", id.Name(), tt.nm},
				{"Type", id.Type(), tt.typ},
				{"Provider", id.Provider(), tt.provider},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: got %q; want %q", c.what, c.got, c.want)
				}
			}
		})
	}
}

func TestParseResourceIDRejected(t *testing.T) {
	tests := []struct {
		name, in, problem string
	}{
		{"empty", "", "is empty"},
		{"missing leading slash", "subscriptions/" + testSub, `must start with "/"`},
		{"only a slash", "/", "has no segments"},
		{"empty segment", "/subscriptions//resourceGroups/rg", "segment 2 is empty"},
		{"double slash at end", rgID + "//", "is empty"},
		{"odd segment count", "/subscriptions/" + testSub + "/resourceGroups", "has 3 segments"},
		{"non guid subscription", "/subscriptions/my-sub", `subscription id "my-sub" is not a GUID`},
		{"short guid subscription", "/subscriptions/0000000-0000-0000-0000-000000000001", "is not a GUID"},
		{"illegal resource group char", subID + "/resourceGroups/rg!x", `contains '!'`},
		{"resource group too long", subID + "/resourceGroups/" + strings.Repeat("r", 91), "91 characters"},
		{"resource group ending in period", subID + "/resourceGroups/rg.", "ends in a period"},
		{"dot dot segment", subID + "/resourceGroups/..", `relative path ".."`},
		{"dot dot in resource", rgID + "/providers/Microsoft.KeyVault/vaults/..", "relative path"},
		{"space inside", subID + "/resourceGroups/rg app", "whitespace"},
		{"leading space", " " + subID, "whitespace"},
		{"newline at end", subID + "\n", "whitespace"},
		{"tab inside", subID + "/resourceGroups/rg\tx", "whitespace"},
		{"control character", subID + "/resourceGroups/rg\x00", "control"},
		{"right to left override", subID + "/resourceGroups/rg\u202e", "format character"},
		{"query string", rgID + "?api-version=2022-04-01", "query string"},
		{"fragment", rgID + "#x", "fragment"},
		{"invalid utf8", subID + "/resourceGroups/\xff", "UTF-8"},
		{"role assignment as scope", rgID + "/providers/Microsoft.Authorization/roleAssignments/" + testSub, "Microsoft.Authorization"},
		{"lowercase authorization namespace", subID + "/providers/microsoft.authorization/roleDefinitions/" + testSub, "Microsoft.Authorization"},
		{"tenant role definition", "/providers/Microsoft.Authorization/roleDefinitions/" + testSub, "tenant-level"},
		{"extension resource", vaultID + "/providers/Microsoft.Insights/diagnosticSettings/d", "extension resource"},
		{"authorization extension", vaultID + "/providers/Microsoft.Authorization/locks/l", "extension resource"},
		{"management group extension", mgID + "/providers/Microsoft.Insights/x/y", "continues after"},
		{"management group illegal char", "/providers/Microsoft.Management/managementGroups/mg!", `contains '!'`},
		{"management group too long", "/providers/Microsoft.Management/managementGroups/" + strings.Repeat("m", 91), "91 characters"},
		{"unknown first keyword", "/tenants/" + testSub, `starts with "tenants"`},
		{"unknown keyword after sub", subID + "/resources/x", `"resources"`},
		{"provider without type", rgID + "/providers/Microsoft.KeyVault", "without a resource type"},
		{"namespace without dot", rgID + "/providers/KeyVault/vaults/kv", "not a namespace"},
		{"bad resource type", rgID + "/providers/Microsoft.KeyVault/va:ults/kv", "resource type"},
		{"provider odd count", rgID + "/providers/Microsoft.KeyVault/vaults", "has 7 segments"},
		{"bad resource name", rgID + "/providers/Microsoft.KeyVault/vaults/kv%2F", "contains '%'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ParseResourceID(tt.in)
			if err == nil {
				t.Fatalf("ParseResourceID(%q) = %q; want an error", tt.in, id)
			}
			if !errors.Is(err, ErrInvalidInput) {
				t.Errorf("errors.Is(err, ErrInvalidInput) = false for %v", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.problem) {
				t.Errorf("error %q does not contain %q", msg, tt.problem)
			}
			if !strings.Contains(msg, "example of a valid id: /subscriptions/") {
				t.Errorf("error %q has no example of a valid id", msg)
			}
			if !id.IsZero() {
				t.Errorf("got id %q with the error; want the zero value", id)
			}
		})
	}
}

func TestResourceIDParent(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"nested resource", dbID, rgID + "/providers/Microsoft.Sql/servers/sql-app", true},
		{"top level resource", vaultID, rgID, true},
		{"subscription level resource", subID + "/providers/Microsoft.Security/pricings/x", subID, true},
		{"resource group", rgID, subID, true},
		{"subscription", subID, "", false},
		{"management group", mgID, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, ok := MustParseResourceID(tt.in).Parent()
			if ok != tt.ok {
				t.Fatalf("ok: got %v; want %v", ok, tt.ok)
			}
			if parent.String() != tt.want {
				t.Errorf("parent: got %q; want %q", parent, tt.want)
			}
		})
	}
}

func TestResourceIDContains(t *testing.T) {
	tests := []struct {
		name, outer, inner string
		want               bool
	}{
		{"scope contains itself", rgID, rgID, true},
		{"subscription contains vault", subID, vaultID, true},
		{"resource group contains database", rgID, dbID, true},
		{"server contains database", rgID + "/providers/Microsoft.Sql/servers/sql-app", dbID, true},
		{"case differences ignored", strings.ToUpper(rgID[:14]) + rgID[14:], vaultID, true},
		{"prefix name is not parent", subID + "/resourceGroups/rg", subID + "/resourceGroups/rg2", false},
		{"prefix vault is not parent", vaultID[:len(vaultID)-3], vaultID, false},
		{"child does not contain parent", vaultID, rgID, false},
		{"other subscription", "/subscriptions/00000000-0000-0000-0000-000000000002", vaultID, false},
		{"management group only itself", mgID, subID, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MustParseResourceID(tt.outer).Contains(MustParseResourceID(tt.inner))
			if got != tt.want {
				t.Errorf("%s contains %s: got %v; want %v", tt.outer, tt.inner, got, tt.want)
			}
		})
	}
	if (ResourceID{}).Contains(MustParseResourceID(subID)) {
		t.Errorf("zero id contains a subscription: got true; want false")
	}
}

func TestResourceIDTextRoundTrip(t *testing.T) {
	id := MustParseResourceID(dbID)
	text, err := id.MarshalText()
	if err != nil {
		t.Fatalf("MarshalText: %v", err)
	}
	var back ResourceID
	if err := back.UnmarshalText(text); err != nil {
		t.Fatalf("UnmarshalText(%q): %v", text, err)
	}
	if back != id {
		t.Errorf("got %#v; want %#v", back, id)
	}
	if err := back.UnmarshalText([]byte("nope")); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("UnmarshalText(nope): got %v; want ErrInvalidInput", err)
	}
}
