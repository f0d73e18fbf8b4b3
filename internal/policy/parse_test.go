package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// minimalRule is a valid rule appended to policies that test other parts.
const minimalRule = `
rules:
  - id: ok
    outcome: auto_approve
    max_duration: 1h
`

func TestParseRejectsBadPolicies(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{
			name: "unknown top field",
			yaml: "version: 1\nrulez: []\n",
			want: []string{"line 2", "field rulez not found at the top level"},
		},
		{
			name: "unknown rule field",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: deny\n    colour: red\n",
			want: []string{"line 5", "field colour not found in a rule"},
		},
		{
			name: "unknown match field",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: deny\n    match:\n      role: [Owner]\n",
			want: []string{"line 6", "field role not found in match"},
		},
		{
			name: "unsupported version",
			yaml: "version: 2\n" + minimalRule,
			want: []string{"line 1", "version is 2; want 1"},
		},
		{
			name: "empty document",
			yaml: "",
			want: []string{"document is empty"},
		},
		{
			name: "second document",
			yaml: "version: 1\n---\nversion: 1\n",
			want: []string{"second document"},
		},
		{
			name: "duplicate rule id",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: deny\n  - id: a\n    outcome: deny\n",
			want: []string{"line 5", `rule id "a" is used twice`},
		},
		{
			name: "reserved rule id",
			yaml: "version: 1\nrules:\n  - id: default-deny\n    outcome: deny\n",
			want: []string{"line 3", "reserved"},
		},
		{
			name: "missing rule id",
			yaml: "version: 1\nrules:\n  - outcome: deny\n",
			want: []string{"line 3", `rule id "" is invalid`},
		},
		{
			name: "unknown outcome",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: allow\n",
			want: []string{"line 4", `rule "a"`, `outcome "allow" is invalid`},
		},
		{
			name: "granting rule without max",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: auto_approve\n",
			want: []string{`rule "a"`, "max_duration is missing"},
		},
		{
			name: "deny rule with max",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: deny\n    max_duration: 1h\n",
			want: []string{`rule "a"`, "deny rule grants nothing"},
		},
		{
			name: "require without block",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: require\n    max_duration: 1h\n",
			want: []string{"needs a require block"},
		},
		{
			name: "require unknown group",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: require\n    max_duration: 1h\n    require: {approvals: 1, groups: [ghosts]}\n",
			want: []string{"line 6", `names "ghosts", which is not a group`},
		},
		{
			name: "require zero approvals",
			yaml: "version: 1\ngroups: {g: [user:a@x]}\nrules:\n  - id: a\n    outcome: require\n    max_duration: 1h\n    require: {approvals: 0, groups: [g]}\n",
			want: []string{"require.approvals is 0"},
		},
		{
			name: "break glass with require",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: require\n    break_glass: true\n    max_duration: 1h\n",
			want: []string{"break-glass rule grants without approval"},
		},
		{
			name: "member without kind",
			yaml: "version: 1\ngroups:\n  admins: [alice@contoso.example]\n" + minimalRule,
			want: []string{"line 3", `member "alice@contoso.example" is invalid`},
		},
		{
			name: "group without members",
			yaml: "version: 1\ngroups:\n  admins: []\n" + minimalRule,
			want: []string{`group "admins" has no members`},
		},
		{
			name: "custom role name",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: deny\n    match:\n      roles: [Payments Operator]\n",
			want: []string{"line 6", "not a GUID or a built-in role name"},
		},
		{
			name: "scope that does not parse",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: deny\n    match:\n      scopes: [/subscription/abc]\n",
			want: []string{"line 6", `scope "/subscription/abc"`},
		},
		{
			name: "scope glob without slash",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: deny\n    match:\n      scopes: ['subscriptions/*']\n",
			want: []string{`must start with "/"`},
		},
		{
			name: "malformed claim glob",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: deny\n    match:\n      requester: {ref: 'refs/[heads'}\n",
			want: []string{"line 6", "not a valid glob"},
		},
		{
			name: "unknown time zone",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: deny\n    match:\n      time: {timezone: Mars/Olympus, hours: ['09:00-17:00']}\n",
			want: []string{`timezone "Mars/Olympus"`},
		},
		{
			name: "bad hours",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: deny\n    match:\n      time: {hours: ['9-17']}\n",
			want: []string{`hours "9-17" is invalid`},
		},
		{
			name: "bad day",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: deny\n    match:\n      time: {days: [funday]}\n",
			want: []string{`day "funday" is invalid`},
		},
		{
			name: "bad duration",
			yaml: "version: 1\nrules:\n  - id: a\n    outcome: auto_approve\n    max_duration: 2 days\n",
			want: []string{"line 5", `duration "2 days" is invalid`},
		},
		{
			name: "condition syntax error",
			yaml: "version: 1\nrules:\n  - id: cel-broken\n    outcome: deny\n    match:\n      condition: 'request.duration <'\n",
			want: []string{"line 6", `rule "cel-broken"`, "condition does not compile", "Syntax error"},
		},
		{
			name: "condition unknown variable",
			yaml: "version: 1\nrules:\n  - id: cel-var\n    outcome: deny\n    match:\n      condition: 'user.name == \"x\"'\n",
			want: []string{`rule "cel-var"`, "undeclared reference to 'user'"},
		},
		{
			name: "condition not bool",
			yaml: "version: 1\nrules:\n  - id: cel-int\n    outcome: deny\n    match:\n      condition: '1 + 2'\n",
			want: []string{`rule "cel-int"`, "condition returns int; want bool"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse: got no error; want one containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error: got %q; want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestParseAcceptsFullRule(t *testing.T) {
	p := mustParse(t, testPolicy)
	if got, want := len(p.rules), 9; got != want {
		t.Fatalf("rules: got %d; want %d", got, want)
	}
	if got, want := p.shortestMax.String(), "10m0s"; got != want {
		t.Errorf("shortest max duration: got %s; want %s", got, want)
	}
	if got, want := strings.Join(p.approverGroups, ","), "platform-admins,security-reviewers"; got != want {
		t.Errorf("approver groups: got %s; want %s", got, want)
	}
}

func TestLoadNamesPathInErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte("version: 1\nbogus: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("Load error: got %v; want one naming %s and line 2", err, path)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("Load of a missing file: got no error; want one")
	}
}

func TestLoadExamplePolicy(t *testing.T) {
	if _, err := Load("../../examples/policy/policy.yaml"); err != nil {
		t.Fatalf("Load example: got %v; want no error", err)
	}
}
