package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
)

// defaultCaseHash is the request hash of a case that sets none. Approvals
// in the case are bound to it unless they name another hash.
const defaultCaseHash = "sha256:case"

// Case is one table test of a policy: an input, the decision it should
// get and, optionally, approvals and the approval state they should give.
type Case struct {
	Name string
	// Line is the case's line in its file.
	Line        int
	input       Input
	requestHash string
	approvals   []Approval
	want        caseWant
}

type caseFile struct {
	Cases []caseSpec `yaml:"cases"`
}

type caseSpec struct {
	Name      string         `yaml:"name"`
	Input     caseInput      `yaml:"input"`
	Approvals []caseApproval `yaml:"approvals"`
	Want      caseWant       `yaml:"want"`
}

type caseInput struct {
	Requester       map[string]string `yaml:"requester"`
	RequesterGroups []string          `yaml:"requester_groups"`
	Principal       string            `yaml:"principal"`
	PrincipalType   string            `yaml:"principal_type"`
	Pairs           []casePair        `yaml:"pairs"`
	Duration        duration          `yaml:"duration"`
	Justification   string            `yaml:"justification"`
	Ticket          string            `yaml:"ticket"`
	Reason          string            `yaml:"reason"`
	Metadata        map[string]string `yaml:"metadata"`
	// Time is the decision time in RFC 3339, such as 2025-03-04T10:00:00Z.
	Time        string `yaml:"time"`
	RequestHash string `yaml:"request_hash"`
}

type casePair struct {
	// Role is a role definition GUID or id, or a built-in role name.
	Role  string `yaml:"role"`
	Scope string `yaml:"scope"`
}

type caseApproval struct {
	Approver    string   `yaml:"approver"`
	Groups      []string `yaml:"groups"`
	Verdict     string   `yaml:"verdict"`
	RequestHash string   `yaml:"request_hash"`
}

type caseWant struct {
	Outcome         string   `yaml:"outcome"`
	Rule            string   `yaml:"rule"`
	MessageContains string   `yaml:"message_contains"`
	Approvals       int      `yaml:"approvals"`
	Groups          []string `yaml:"groups"`
	MaxDuration     duration `yaml:"max_duration"`
	BreakGlass      bool     `yaml:"break_glass"`
	ApprovalState   string   `yaml:"approval_state"`
}

// LoadCases reads and parses the case file at path.
func LoadCases(path string) ([]Case, error) {
	data, err := readLimited(path, maxPolicySize)
	if err != nil {
		return nil, fmt.Errorf("read policy cases: %w", err)
	}
	cases, err := ParseCases(data)
	if err != nil {
		return nil, fmt.Errorf("policy cases %s: %w", path, err)
	}
	return cases, nil
}

// ParseCases parses a case file: a "cases" list whose entries have a name,
// an input, a want block and optional approvals. Unknown fields are errors.
func ParseCases(data []byte) ([]Case, error) {
	file, root, err := decodeStrict[caseFile](data)
	if err != nil {
		return nil, err
	}
	if len(file.Cases) == 0 {
		return nil, fmt.Errorf("line %d: the file has no cases; add a cases list", lineOf(root))
	}
	var out []Case
	for i, spec := range file.Cases {
		line := lineOf(root, "cases", i)
		c, err := buildCase(spec, line)
		if err != nil {
			return nil, fmt.Errorf("line %d: case %q: %w", line, spec.Name, err)
		}
		if slices.ContainsFunc(out, func(o Case) bool { return o.Name == c.Name }) {
			return nil, fmt.Errorf("line %d: case name %q is used twice", line, c.Name)
		}
		out = append(out, c)
	}
	return out, nil
}

func buildCase(s caseSpec, line int) (Case, error) {
	if strings.TrimSpace(s.Name) == "" {
		return Case{}, fmt.Errorf("name is missing")
	}
	now, err := time.Parse(time.RFC3339, s.Input.Time)
	if err != nil {
		return Case{}, fmt.Errorf("input.time %q is not RFC 3339, such as 2025-03-04T10:00:00Z", s.Input.Time)
	}
	if err := checkWant(s); err != nil {
		return Case{}, err
	}

	c := Case{Name: s.Name, Line: line, want: s.Want, requestHash: s.Input.RequestHash}
	if c.requestHash == "" {
		c.requestHash = defaultCaseHash
	}
	c.input = Input{
		Requester: s.Input.Requester, RequesterGroups: s.Input.RequesterGroups,
		Principal: s.Input.Principal, PrincipalType: s.Input.PrincipalType,
		Duration: time.Duration(s.Input.Duration), Justification: s.Input.Justification,
		Ticket: s.Input.Ticket, Reason: s.Input.Reason, Metadata: s.Input.Metadata, Now: now,
	}
	for _, p := range s.Input.Pairs {
		pair, err := casePairOf(p)
		if err != nil {
			return Case{}, err
		}
		c.input.Pairs = append(c.input.Pairs, pair)
	}
	for _, a := range s.Approvals {
		if a.Verdict != VerdictApprove && a.Verdict != VerdictDeny {
			return Case{}, fmt.Errorf("approval by %q: verdict %q is invalid; want %s or %s", a.Approver, a.Verdict, VerdictApprove, VerdictDeny)
		}
		hash := a.RequestHash
		if hash == "" {
			hash = c.requestHash
		}
		c.approvals = append(c.approvals, Approval{Approver: a.Approver, Groups: a.Groups, Verdict: a.Verdict, RequestHash: hash})
	}
	return c, nil
}

func checkWant(s caseSpec) error {
	switch s.Want.Outcome {
	case OutcomeDeny, OutcomeAutoApprove, OutcomeRequire:
	default:
		return fmt.Errorf("want.outcome %q is invalid; want %s, %s or %s", s.Want.Outcome, OutcomeDeny, OutcomeAutoApprove, OutcomeRequire)
	}
	if s.Want.Rule == "" {
		return fmt.Errorf("want.rule is missing; name the rule id expected to decide")
	}
	switch s.Want.ApprovalState {
	case "", StatePending, StateApproved, StateDenied:
	default:
		return fmt.Errorf("want.approval_state %q is invalid; want %s, %s or %s", s.Want.ApprovalState, StatePending, StateApproved, StateDenied)
	}
	if len(s.Approvals) > 0 && s.Want.ApprovalState == "" {
		return fmt.Errorf("the case lists approvals but no want.approval_state")
	}
	return nil
}

// casePairOf turns a case pair into a Pair. A built-in role name fills
// both RoleName and RoleID, as a resolved request would.
func casePairOf(p casePair) (Pair, error) {
	ref, err := access.ParseRoleRef(p.Role)
	if err != nil {
		return Pair{}, fmt.Errorf("pair role: %w", err)
	}
	if ref.GUID != "" {
		return Pair{RoleID: ref.GUID, Scope: p.Scope}, nil
	}
	guid, _ := access.BuiltinRoleGUID(ref.Name)
	return Pair{RoleID: guid, RoleName: ref.Name, Scope: p.Scope}, nil
}

// Run decides the case by p and returns one line per expectation that does
// not hold. An empty result means the case passes.
func (c Case) Run(p *Policy) []string {
	d := p.Decide(c.input)
	var failures []string
	check := func(field string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			failures = append(failures, fmt.Sprintf("%s got %q; want %q", field, fmt.Sprint(got), fmt.Sprint(want)))
		}
	}

	check("outcome", d.Outcome, c.want.Outcome)
	check("rule", d.RuleID, c.want.Rule)
	if c.want.MessageContains != "" && !strings.Contains(d.Message, c.want.MessageContains) {
		failures = append(failures, fmt.Sprintf("message %q does not contain %q", d.Message, c.want.MessageContains))
	}
	if c.want.Approvals != 0 {
		check("approvals", d.Approvals, c.want.Approvals)
	}
	if c.want.Groups != nil {
		check("groups", d.Groups, c.want.Groups)
	}
	if c.want.MaxDuration != 0 {
		check("max_duration", d.MaxDuration, time.Duration(c.want.MaxDuration))
	}
	check("break_glass", d.BreakGlass, c.want.BreakGlass)
	if c.want.ApprovalState != "" {
		state, reason := p.Evaluate(d, RequesterIdentities(c.input), c.requestHash, c.approvals)
		if state != c.want.ApprovalState {
			failures = append(failures, fmt.Sprintf("approval state got %q; want %q (%s)", state, c.want.ApprovalState, reason))
		}
	}
	if len(failures) > 0 && d.Message != "" && c.want.Outcome != d.Outcome {
		failures = append(failures, "decision message: "+d.Message)
	}
	return failures
}
