package keyvault

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// fixtureDir holds the Key Vault REST examples copied from the Azure REST API
// specifications. It sits in shared/ beside the repository root, in CI too.
const fixtureDir = "../../../../shared/fixtures/azure/keyvault/2026-04-01"

// optionalFields may appear in the emulator's responses although an example
// leaves them out. The azsecrets models define each of them.
var optionalFields = map[string]bool{
	"recoverableDays": true,
	"recoveryLevel":   true,
	"tags":            true,
	"contentType":     true,
	"nbf":             true,
	"exp":             true,
}

type restExample struct {
	Parameters  map[string]json.RawMessage `json:"parameters"`
	Responses   map[string]struct{ Body json.RawMessage }
	OperationID string `json:"operationId"`
}

func TestFixtureResponseShapes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		if os.Getenv("ELEVATE_REQUIRE_FIXTURES") != "" {
			t.Fatalf("no fixtures in %s, and ELEVATE_REQUIRE_FIXTURES is set", fixtureDir)
		}
		t.Skipf("no fixtures in %s: the shared fixtures are not checked out beside the repository", fixtureDir)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), "-example.json"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var example restExample
			if err := json.Unmarshal(raw, &example); err != nil {
				t.Fatalf("parse %s: %v", file, err)
			}
			env := newTestEnv(t)
			resp := replayExample(t, env, example)
			want, ok := example.Responses["200"]
			if !ok {
				t.Fatalf("example has no 200 response")
			}
			if resp.Status != 200 {
				t.Fatalf("status: got %d; want 200 (%s)", resp.Status, resp.Raw)
			}
			var wantBody any
			if err := json.Unmarshal(want.Body, &wantBody); err != nil {
				t.Fatal(err)
			}
			var gotBody any
			if err := json.Unmarshal(resp.Raw, &gotBody); err != nil {
				t.Fatal(err)
			}
			for _, problem := range compareShapes("$", gotBody, wantBody) {
				t.Error(problem)
			}
		})
	}
}

// replayExample seeds what the example's request needs and sends it.
func replayExample(t *testing.T, env *testEnv, example restExample) apiResponse {
	t.Helper()
	param := func(key string) string {
		var s string
		if raw, ok := example.Parameters[key]; ok {
			if err := json.Unmarshal(raw, &s); err != nil {
				var n json.Number
				if json.Unmarshal(raw, &n) == nil {
					return n.String()
				}
			}
		}
		return s
	}
	name := param("secret-name")
	query := "?api-version=" + url.QueryEscape(param("api-version"))
	seed := func() SecretVersion {
		v, err := env.svc.SetSecret(testVault, name, "seeded-value", nil)
		if err != nil {
			t.Fatalf("seed %q: %v", name, err)
		}
		return v
	}

	switch example.OperationID {
	case "SetSecret":
		return env.do(t, "PUT", testVault, "/secrets/"+name+query, "officer", []byte(example.Parameters["parameters"]))
	case "GetSecret":
		// The version id cannot be chosen, so the seeded one stands in.
		v := seed()
		return env.do(t, "GET", testVault, "/secrets/"+name+"/"+v.Version+query, "officer", nil)
	case "UpdateSecret":
		v := seed()
		return env.do(t, "PATCH", testVault, "/secrets/"+name+"/"+v.Version+query, "officer", []byte(example.Parameters["parameters"]))
	case "DeleteSecret":
		seed()
		return env.do(t, "DELETE", testVault, "/secrets/"+name+query, "officer", nil)
	case "GetSecretVersions":
		seed()
		seed()
		return env.do(t, "GET", testVault, "/secrets/"+name+"/versions"+query+"&maxresults="+param("maxresults"), "officer", nil)
	}
	t.Skipf("no replay for operation %q", example.OperationID)
	return apiResponse{}
}

// compareShapes compares two decoded JSON values by field names and JSON
// types, recursively. Array elements are compared with the first expected
// element. It returns one line per difference.
func compareShapes(path string, got, want any) []string {
	if jsonType(got) != jsonType(want) {
		return []string{fmt.Sprintf("%s: got %s; want %s", path, jsonType(got), jsonType(want))}
	}
	var problems []string
	switch w := want.(type) {
	case map[string]any:
		g := got.(map[string]any)
		for _, key := range sortedKeys(w) {
			gv, ok := g[key]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s.%s: missing; want %s", path, key, jsonType(w[key])))
				continue
			}
			problems = append(problems, compareShapes(path+"."+key, gv, w[key])...)
		}
		for _, key := range sortedKeys(g) {
			if _, ok := w[key]; !ok && !optionalFields[key] {
				problems = append(problems, fmt.Sprintf("%s.%s: present; want absent", path, key))
			}
		}
	case []any:
		g := got.([]any)
		if len(w) > 0 {
			if len(g) == 0 {
				return []string{fmt.Sprintf("%s: got empty array; want elements", path)}
			}
			for i, element := range g {
				problems = append(problems, compareShapes(fmt.Sprintf("%s[%d]", path, i), element, w[0])...)
			}
		}
	}
	return problems
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestCompareShapesFindsDifferences(t *testing.T) {
	want := map[string]any{"id": "x", "attributes": map[string]any{"created": 1.0}, "value": []any{"a"}}
	tests := []struct {
		name string
		got  any
		want int
	}{
		{"same shape", map[string]any{"id": "y", "attributes": map[string]any{"created": 2.0}, "value": []any{"b", "c"}}, 0},
		{"optional field allowed", map[string]any{"id": "y", "tags": map[string]any{}, "attributes": map[string]any{"created": 2.0}, "value": []any{"b"}}, 0},
		{"missing field", map[string]any{"attributes": map[string]any{"created": 2.0}, "value": []any{"b"}}, 1},
		{"extra field", map[string]any{"id": "y", "kid": "k", "attributes": map[string]any{"created": 2.0}, "value": []any{"b"}}, 1},
		{"nested type differs", map[string]any{"id": "y", "attributes": map[string]any{"created": "2"}, "value": []any{"b"}}, 1},
		{"element type differs", map[string]any{"id": "y", "attributes": map[string]any{"created": 2.0}, "value": []any{1.0}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := compareShapes("$", tt.got, want); len(got) != tt.want {
				t.Errorf("differences: got %d %v; want %d", len(got), got, tt.want)
			}
		})
	}
}
