package policy

import (
	"strings"
	"testing"
)

const hash = "sha256:abc"

func approve(approver string, groups ...string) Approval {
	return Approval{Approver: approver, Groups: groups, Verdict: VerdictApprove, RequestHash: hash}
}

func TestEvaluateApprovals(t *testing.T) {
	p := mustParse(t, testPolicy)
	owner := Decision{Outcome: OutcomeRequire, RuleID: "owner", Approvals: 2, Groups: []string{"platform-admins"}}
	eachGroup := Decision{Outcome: OutcomeRequire, RuleID: "two-groups", Approvals: 1,
		Groups: []string{"platform-admins", "security-reviewers"}, EachGroup: true}
	requester := []string{"user:frank@contoso.example", "github:frank-gh", "principal:3f0d9a52-6c1e-4b8a-a7d4-2e9c5b1f0a83"}

	tests := []struct {
		name       string
		decision   Decision
		requester  []string
		approvals  []Approval
		wantState  string
		wantReason string
	}{
		{"no approvals pending", owner, requester, nil, StatePending, "0 of 2 approvals from platform-admins"},
		{"two members approve", owner, requester,
			[]Approval{approve("user:alice@contoso.example"), approve("user:bob@contoso.example")}, StateApproved, "2 of 2"},
		{"duplicate approval counts once", owner, requester,
			[]Approval{approve("user:alice@contoso.example"), approve("USER:Alice@Contoso.Example ")}, StatePending, "1 of 2"},
		{"member through group claim", owner, requester,
			[]Approval{approve("user:alice@contoso.example"), approve("user:grace@contoso.example", "Platform-Admins-Claim")}, StateApproved, "2 of 2"},
		{"non member not counted", owner, requester,
			[]Approval{approve("user:alice@contoso.example"), approve("user:carol@contoso.example")}, StatePending,
			"user:carol@contoso.example (not in platform-admins)"},
		{"self approval refused", owner, []string{"user:alice@contoso.example"},
			[]Approval{approve("User:ALICE@contoso.example"), approve("user:bob@contoso.example")}, StatePending,
			"user:alice@contoso.example (the requester)"},
		{"actor identity refused", owner, []string{"github:alice@contoso.example"},
			[]Approval{approve("user:alice@contoso.example"), approve("user:bob@contoso.example")}, StatePending, "(the requester)"},
		{"principal identity refused", owner, []string{"principal:user-object-1"},
			[]Approval{approve("principal:USER-OBJECT-1", "platform-admins-claim"), approve("user:bob@contoso.example")}, StatePending, "(the requester)"},
		{"stale hash not counted", owner, requester,
			[]Approval{approve("user:alice@contoso.example"), {Approver: "user:bob@contoso.example", Verdict: VerdictApprove, RequestHash: "sha256:old"}},
			StatePending, "approved a different version"},
		{"eligible deny denies", owner, requester,
			[]Approval{approve("user:alice@contoso.example"), approve("user:bob@contoso.example"),
				{Approver: "user:bob@contoso.example", Verdict: VerdictDeny, RequestHash: hash}}, StateDenied, "user:bob@contoso.example denied"},
		{"outsider deny ignored", owner, requester,
			[]Approval{approve("user:alice@contoso.example"), approve("user:bob@contoso.example"),
				{Approver: "user:mallory@contoso.example", Verdict: VerdictDeny, RequestHash: hash}}, StateApproved, "not in platform-admins"},
		{"self deny ignored", owner, []string{"user:alice@contoso.example"},
			[]Approval{{Approver: "user:alice@contoso.example", Verdict: VerdictDeny, RequestHash: hash}}, StatePending, "(the requester)"},
		{"stale deny ignored", owner, requester,
			[]Approval{{Approver: "user:bob@contoso.example", Verdict: VerdictDeny, RequestHash: "sha256:old"}}, StatePending, "0 of 2"},
		{"unknown verdict ignored", owner, requester,
			[]Approval{{Approver: "user:bob@contoso.example", Verdict: "lgtm", RequestHash: hash}}, StatePending, `verdict "lgtm"`},
		{"each group needs both", eachGroup, requester,
			[]Approval{approve("user:alice@contoso.example")}, StatePending, "platform-admins 1 of 1, security-reviewers 0 of 1"},
		{"each group both approve", eachGroup, requester,
			[]Approval{approve("user:alice@contoso.example"), approve("user:carol@contoso.example")}, StateApproved, "security-reviewers 1 of 1"},
		{"one person fills one group", eachGroup, requester,
			[]Approval{approve("user:bob@contoso.example")}, StatePending, "0 of 1"},
		{"overlap member moves groups", eachGroup, requester,
			[]Approval{approve("user:bob@contoso.example"), approve("user:alice@contoso.example")}, StateApproved, "platform-admins 1 of 1, security-reviewers 1 of 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, reason := p.Evaluate(tt.decision, tt.requester, hash, tt.approvals)
			if state != tt.wantState {
				t.Errorf("state: got %q; want %q (reason %q)", state, tt.wantState, reason)
			}
			if !strings.Contains(reason, tt.wantReason) {
				t.Errorf("reason: got %q; want it to contain %q", reason, tt.wantReason)
			}
		})
	}
}

func TestEvaluateOtherOutcomes(t *testing.T) {
	p := mustParse(t, testPolicy)
	tests := []struct {
		name      string
		decision  Decision
		hash      string
		wantState string
		wantIn    string
	}{
		{"deny stays denied", Decision{Outcome: OutcomeDeny, RuleID: "deny-forks", Message: "forks get nothing"}, hash, StateDenied, "forks get nothing"},
		{"auto approve approved", Decision{Outcome: OutcomeAutoApprove, RuleID: "pipeline-vault"}, hash, StateApproved, "pipeline-vault"},
		{"break glass needs review", Decision{Outcome: OutcomeAutoApprove, RuleID: "glass", BreakGlass: true}, hash, StateApproved, "reviewers must check"},
		{"unknown outcome denied", Decision{Outcome: "maybe", RuleID: "x"}, hash, StateDenied, `outcome "maybe" is unknown`},
		{"require without groups denied", Decision{Outcome: OutcomeRequire, RuleID: "x", Approvals: 1}, hash, StateDenied, "0 groups"},
		{"empty hash stays pending", Decision{Outcome: OutcomeRequire, RuleID: "owner", Approvals: 1, Groups: []string{"platform-admins"}}, "", StatePending, "hash is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			approvals := []Approval{{Approver: "user:alice@contoso.example", Verdict: VerdictApprove, RequestHash: ""}}
			state, reason := p.Evaluate(tt.decision, nil, tt.hash, approvals)
			if state != tt.wantState {
				t.Errorf("state: got %q; want %q (reason %q)", state, tt.wantState, reason)
			}
			if !strings.Contains(reason, tt.wantIn) {
				t.Errorf("reason: got %q; want it to contain %q", reason, tt.wantIn)
			}
		})
	}
}

func TestGroupsOf(t *testing.T) {
	p := mustParse(t, testPolicy)
	tests := []struct {
		name    string
		subject string
		claims  []string
		want    string
	}{
		{"listed in two groups", "user:bob@contoso.example", nil, "platform-admins,security-reviewers"},
		{"case and space ignored", "  USER:Carol@Contoso.Example", nil, "security-reviewers"},
		{"member through claim", "user:zed@contoso.example", []string{"other", "platform-admins-claim"}, "platform-admins"},
		{"github login member", "github:erin-gh", nil, "on-call"},
		{"stranger in no group", "user:mallory@contoso.example", []string{"everyone"}, ""},
		{"empty subject no group", "", nil, ""},
		{"claim is not a subject", "group:platform-admins-claim", nil, "platform-admins"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(p.GroupsOf(tt.subject, tt.claims), ","); got != tt.want {
				t.Errorf("GroupsOf(%q, %q): got %q; want %q", tt.subject, tt.claims, got, tt.want)
			}
		})
	}
}

func TestRequesterIdentities(t *testing.T) {
	in := Input{Requester: map[string]string{"sub": "repo:contoso/app:ref:refs/heads/main", "actor": "octocat"}, Principal: "p-1"}
	got := strings.Join(RequesterIdentities(in), " ")
	want := "repo:contoso/app:ref:refs/heads/main github:octocat principal:p-1"
	if got != want {
		t.Errorf("RequesterIdentities: got %q; want %q", got, want)
	}
	if got := RequesterIdentities(Input{}); len(got) != 0 {
		t.Errorf("RequesterIdentities of empty input: got %q; want none", got)
	}
}
