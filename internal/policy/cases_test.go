package policy

import (
	"strings"
	"testing"
)

func TestExampleCasesPass(t *testing.T) {
	p, err := Load("../../examples/policy/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := LoadCases("../../examples/policy/cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 10 {
		t.Errorf("example cases: got %d; want at least 10", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if failures := c.Run(p); len(failures) > 0 {
				t.Errorf("case at line %d: got failures %q; want none", c.Line, failures)
			}
		})
	}
}

func TestCaseRunReportsMismatches(t *testing.T) {
	p := mustParse(t, testPolicy)
	cases, err := ParseCases([]byte(`
cases:
  - name: wrong rule and state
    input:
      requester: {repository: contoso/app, ref: refs/heads/main, environment: production}
      pairs: [{role: Owner, scope: ` + subScope + `}]
      duration: 10m
      ticket: INC-1
      time: 2025-03-04T10:00:00Z
    approvals:
      - {approver: user:alice@contoso.example, verdict: approve}
    want:
      outcome: require
      rule: pipeline-vault
      approvals: 1
      approval_state: approved
`))
	if err != nil {
		t.Fatal(err)
	}
	failures := cases[0].Run(p)
	for _, want := range []string{
		`rule got "owner"; want "pipeline-vault"`,
		`approvals got "2"; want "1"`,
		`approval state got "pending"; want "approved"`,
	} {
		if !strings.Contains(strings.Join(failures, "\n"), want) {
			t.Errorf("failures: got %q; want one containing %q", failures, want)
		}
	}
	if cases[0].Line != 3 {
		t.Errorf("case line: got %d; want 3", cases[0].Line)
	}
}

func TestParseCasesRejects(t *testing.T) {
	const okInput = "    input: {time: 2025-03-04T10:00:00Z, duration: 1m}\n"
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"no cases", "cases: []\n", "no cases"},
		{"unknown case field", "cases:\n  - name: a\n    expect: {}\n", "line 3: field expect not found in a case"},
		{"missing name", "cases:\n  - want: {outcome: deny, rule: r}\n" + okInput, "name is missing"},
		{"bad time", "cases:\n  - name: a\n    input: {time: tuesday}\n    want: {outcome: deny, rule: r}\n", "not RFC 3339"},
		{"bad outcome", "cases:\n  - name: a\n" + okInput + "    want: {outcome: allow, rule: r}\n", `want.outcome "allow"`},
		{"missing rule", "cases:\n  - name: a\n" + okInput + "    want: {outcome: deny}\n", "want.rule is missing"},
		{"approvals without state", "cases:\n  - name: a\n" + okInput +
			"    approvals: [{approver: user:a@x, verdict: approve}]\n    want: {outcome: deny, rule: r}\n", "no want.approval_state"},
		{"bad verdict", "cases:\n  - name: a\n" + okInput +
			"    approvals: [{approver: user:a@x, verdict: yes}]\n    want: {outcome: deny, rule: r, approval_state: approved}\n", `verdict "yes"`},
		{"duplicate name", "cases:\n  - name: a\n" + okInput + "    want: {outcome: deny, rule: r}\n  - name: a\n" + okInput +
			"    want: {outcome: deny, rule: r}\n", `case name "a" is used twice`},
		{"bad role", "cases:\n  - name: a\n    input: {time: 2025-03-04T10:00:00Z, pairs: [{role: '', scope: /x}]}\n    want: {outcome: deny, rule: r}\n",
			"pair role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCases([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseCases error: got %v; want one containing %q", err, tt.want)
			}
		})
	}
}
