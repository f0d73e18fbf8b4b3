package policy

import (
	"os"
	"testing"
)

// FuzzParse checks that Parse returns an error instead of panicking on any
// input, and that a policy it accepts decides a request without panicking.
func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile("../../examples/policy/policy.yaml"); err == nil {
		f.Add(example)
	}
	f.Add([]byte(testPolicy))
	f.Add([]byte(minimalRule))
	f.Add([]byte("version: 1\nrules:\n  - id: a\n    outcome: deny\n    match:\n      condition: 'request.pairs.all(p, p.scope.startsWith(\"/\"))'\n"))
	f.Add([]byte("version: 1\nrules: &a [*a]\n"))
	f.Add([]byte("version: 1\ngroups: {g: [user:x]}\nrules:\n  - {id: r, outcome: require, max_duration: 1m, require: {approvals: 1, groups: [g]}}\n"))

	in := pipelineInput()
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		d := p.Decide(in)
		if d.RuleID == "" {
			t.Errorf("decision without rule id: %+v", d)
		}
		p.Evaluate(d, RequesterIdentities(in), "h", []Approval{{Approver: "user:x", Verdict: VerdictApprove, RequestHash: "h"}})
	})
}
