// Package policy decides Elevate access requests by a YAML policy and
// evaluates the approvals given to them.
//
// A policy has a version, named groups of approvers and an ordered list of
// rules. Decide walks the rules in order and the first rule whose match
// conditions all hold makes the decision: deny, auto_approve, or require a
// number of approvals from named groups. A request that no rule matches is
// denied by the rule id "default-deny". Parse compiles every CEL condition
// and rejects the policy when one does not compile. A condition that fails
// at evaluation time denies the request.
//
// Group members are subjects written as "kind:value":
//
//	user:alice@contoso.example   a person, as the broker's sign-in names them
//	group:<claim>                anyone whose groups claim contains <claim>
//	github:<login>               a GitHub account, compared with the actor claim
//	principal:<object id>        an Entra object id, compared with Input.Principal
//
// Subjects and group claims compare case-insensitively.
package policy

import (
	"fmt"
	"os"
	"time"
)

// Outcomes of a Decision.
const (
	OutcomeDeny        = "deny"
	OutcomeAutoApprove = "auto_approve"
	OutcomeRequire     = "require"
)

// Rule ids of decisions that no rule of the policy made.
const (
	// DefaultDenyRuleID marks the deny of a request that no rule matched.
	DefaultDenyRuleID = "default-deny"
	// InvalidRequestRuleID marks the deny of a request that cannot be
	// decided at all, such as one without pairs or without a time.
	InvalidRequestRuleID = "invalid-request"
)

// maxPolicySize caps the policy file so a wrong path (a log, a binary) fails
// fast. It is an estimate far above any hand-written policy.
const maxPolicySize = 1 << 20

// defaultCELCostLimit bounds the work of one condition evaluation, in CEL
// cost units (roughly one per operation). The value is an estimate that
// leaves room for list macros over a request's pairs and metadata.
const defaultCELCostLimit = 100_000

// Policy is a parsed and compiled policy. It is safe for concurrent use
// because nothing changes it after Parse.
type Policy struct {
	breakGlassPrefix string
	// groups maps a group name to its members, lowercased.
	groups map[string][]string
	rules  []*rule
	// approverGroups lists, sorted, every group that a require rule names.
	// Break-glass decisions notify them.
	approverGroups []string
	// shortestMax is the smallest max_duration of any granting rule, and a
	// break-glass grant never lasts longer.
	shortestMax time.Duration
}

// Pair is one role with one scope, as the request lists it.
type Pair struct {
	// RoleID is a role definition GUID or a full role definition id.
	RoleID string
	// RoleName is the role's display name, used only when RoleID is empty
	// and the name is a built-in role.
	RoleName string
	// Scope is the Azure resource id that the role applies to.
	Scope string
}

// Input contains the facts about one request that Decide uses.
type Input struct {
	// Requester contains the requester's claims: sub, repository, ref,
	// environment, workflow, actor and any others the token carries.
	Requester map[string]string
	// RequesterGroups contains the requester's groups claim values, matched
	// against "group:" members.
	RequesterGroups []string
	// Principal is the Entra object id that receives the roles.
	Principal     string
	PrincipalType string
	Pairs         []Pair
	Duration      time.Duration
	Justification string
	Ticket        string
	// Reason is the break-glass reason. Metadata["reason"] is used when
	// Reason is empty.
	Reason   string
	Metadata map[string]string
	// Now is the time of the decision. Time windows and the CEL variable
	// now use it. A zero Now is an invalid request.
	Now time.Time
}

// Decision is the policy's verdict on one request. RuleID always names the
// rule that made it, or is DefaultDenyRuleID or InvalidRequestRuleID.
type Decision struct {
	Outcome string
	RuleID  string
	// Message explains a deny. Other outcomes may carry the rule's message.
	Message string
	// Approvals is the number of approvals needed from members of Groups,
	// or from each of Groups when EachGroup is set.
	Approvals int
	Groups    []string
	EachGroup bool
	// MaxDuration is the longest grant the rule allows. For break-glass it
	// is already shortened to the policy's shortest maximum.
	MaxDuration   time.Duration
	RequireTicket bool
	BreakGlass    bool
	// ReviewRequired marks a break-glass grant that reviewers must look at
	// afterwards, and NotifyGroups lists the groups to notify.
	ReviewRequired bool
	NotifyGroups   []string
}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	data, err := readLimited(path, maxPolicySize)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// Parse parses and compiles a policy. Unknown fields, bad patterns, unknown
// groups and CEL conditions that do not compile are errors that name the
// line and, where there is one, the rule id.
func Parse(data []byte) (*Policy, error) {
	if len(data) > maxPolicySize {
		return nil, fmt.Errorf("policy is %d bytes, more than the maximum of %d", len(data), maxPolicySize)
	}
	file, root, err := decodeStrict[policyFile](data)
	if err != nil {
		return nil, err
	}
	env, err := newConditionEnv()
	if err != nil {
		return nil, err
	}
	c := &compiler{root: root, env: env}
	return c.compile(file)
}

// readLimited reads at most limit bytes of the file at path and fails when
// the file is larger.
func readLimited(path string, limit int64) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.Size() > limit {
		return nil, fmt.Errorf("file %s is %d bytes, more than the maximum of %d", path, info.Size(), limit)
	}
	return os.ReadFile(path)
}
