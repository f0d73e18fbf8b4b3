package policy

import (
	"strings"
	"testing"
	"time"
)

func TestDecideMatchesRules(t *testing.T) {
	p := mustParse(t, testPolicy)
	tests := []struct {
		name        string
		edit        func(in *Input)
		wantOutcome string
		wantRule    string
	}{
		{"exact claims auto approve", func(in *Input) {}, OutcomeAutoApprove, "pipeline-vault"},
		{"glob ref matches release", func(in *Input) { in.Requester["ref"] = "refs/heads/release/2025.03" }, OutcomeAutoApprove, "pipeline-vault"},
		{"glob star stays in segment", func(in *Input) { in.Requester["ref"] = "refs/heads/release/a/b" }, OutcomeDeny, DefaultDenyRuleID},
		{"other ref falls to default", func(in *Input) { in.Requester["ref"] = "refs/heads/dev" }, OutcomeDeny, DefaultDenyRuleID},
		{"missing claim never matches", func(in *Input) { delete(in.Requester, "environment") }, OutcomeDeny, DefaultDenyRuleID},
		{"claims compare case sensitively", func(in *Input) { in.Requester["environment"] = "Production" }, OutcomeDeny, DefaultDenyRuleID},
		{"role by name matches", func(in *Input) { in.Pairs[0] = Pair{RoleName: "key vault secrets user", Scope: vaultApp} }, OutcomeAutoApprove, "pipeline-vault"},
		{"role by definition id", func(in *Input) {
			in.Pairs[0].RoleID = subScope + "/providers/Microsoft.Authorization/roleDefinitions/" + strings.ToUpper(readerGUID)
		}, OutcomeAutoApprove, "pipeline-vault"},
		{"role outside list", func(in *Input) { in.Pairs[0].RoleID = "b24988ac-6180-42a0-ab88-20f7382dd24c" }, OutcomeRequire, "two-groups"},
		{"scope prefix ignores case", func(in *Input) { in.Pairs[0].Scope = strings.ToUpper(vaultApp) }, OutcomeAutoApprove, "pipeline-vault"},
		{"scope prefix itself matches", func(in *Input) { in.Pairs[0].Scope = rgApp }, OutcomeAutoApprove, "pipeline-vault"},
		{"scope prefix boundary safe", func(in *Input) { in.Pairs[0].Scope = rgApp2 }, OutcomeDeny, DefaultDenyRuleID},
		{"scope above prefix", func(in *Input) { in.Pairs[0].Scope = subScope }, OutcomeDeny, DefaultDenyRuleID},
		{"every pair must match", func(in *Input) {
			in.Pairs = append(in.Pairs, Pair{RoleID: kvUserGUID, Scope: rgApp2})
		}, OutcomeDeny, DefaultDenyRuleID},
		{"all pairs inside prefix", func(in *Input) {
			in.Pairs = append(in.Pairs, Pair{RoleID: readerGUID, Scope: rgApp})
		}, OutcomeAutoApprove, "pipeline-vault"},
		{"scope glob matches", func(in *Input) {
			in.Requester["repository"] = "contoso/other"
			in.Pairs[0].Scope = subScope + "/resourceGroups/RG-data/providers/Microsoft.KeyVault/vaults/kv-glob-1"
		}, OutcomeAutoApprove, "vault-glob"},
		{"scope glob rejects other", func(in *Input) {
			in.Requester["repository"] = "contoso/other"
			in.Pairs[0].Scope = subScope + "/resourceGroups/data/providers/Microsoft.KeyVault/vaults/kv-glob-1"
		}, OutcomeDeny, DefaultDenyRuleID},
		{"first match wins", func(in *Input) { in.Requester["repository"] = "forks/app" }, OutcomeDeny, "deny-forks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := pipelineInput()
			tt.edit(&in)
			d := p.Decide(in)
			if d.Outcome != tt.wantOutcome {
				t.Errorf("outcome: got %q; want %q (message %q)", d.Outcome, tt.wantOutcome, d.Message)
			}
			if d.RuleID != tt.wantRule {
				t.Errorf("rule: got %q; want %q", d.RuleID, tt.wantRule)
			}
		})
	}
}

func TestDecideDeniesWithMessages(t *testing.T) {
	p := mustParse(t, testPolicy)
	tests := []struct {
		name     string
		edit     func(in *Input)
		wantRule string
		wantMsg  []string
	}{
		{"deny rule message", func(in *Input) { in.Requester["repository"] = "forks/x" }, "deny-forks", []string{"forks get nothing"}},
		{"default deny message", func(in *Input) { in.Requester["repository"] = "contoso/none" }, DefaultDenyRuleID, []string{"no rule"}},
		{"over max duration", func(in *Input) { in.Duration = 45 * time.Minute }, "pipeline-vault",
			[]string{"at most 10m (max_duration)", "asks for 45m"}},
		{"missing ticket", func(in *Input) { in.Pairs[0].RoleID = ownerGUID }, "owner",
			[]string{"requires a ticket (require_ticket: true)", "ticket is empty"}},
		{"no pairs", func(in *Input) { in.Pairs = nil }, InvalidRequestRuleID, []string{"no pairs"}},
		{"zero time", func(in *Input) { in.Now = time.Time{} }, InvalidRequestRuleID, []string{"Input.Now"}},
		{"zero duration", func(in *Input) { in.Duration = 0 }, InvalidRequestRuleID, []string{"not positive"}},
		{"unknown role", func(in *Input) { in.Pairs[0] = Pair{RoleName: "Payments Operator", Scope: vaultApp} }, InvalidRequestRuleID,
			[]string{"pair 1", "no role definition GUID"}},
		{"scope does not parse", func(in *Input) { in.Pairs[0].Scope = rgApp + "/../rg-other" }, InvalidRequestRuleID, []string{"pair 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := pipelineInput()
			tt.edit(&in)
			d := p.Decide(in)
			if d.Outcome != OutcomeDeny {
				t.Errorf("outcome: got %q; want %q", d.Outcome, OutcomeDeny)
			}
			if d.RuleID != tt.wantRule {
				t.Errorf("rule: got %q; want %q", d.RuleID, tt.wantRule)
			}
			for _, w := range tt.wantMsg {
				if !strings.Contains(d.Message, w) {
					t.Errorf("message: got %q; want it to contain %q", d.Message, w)
				}
			}
		})
	}
}

func TestDecideRequireCarriesGroups(t *testing.T) {
	p := mustParse(t, testPolicy)
	in := pipelineInput()
	in.Pairs[0].RoleID = ownerGUID
	in.Ticket = "INC-1"
	d := p.Decide(in)
	if d.Outcome != OutcomeRequire || d.RuleID != "owner" {
		t.Fatalf("decision: got %q by %q; want %q by %q (%s)", d.Outcome, d.RuleID, OutcomeRequire, "owner", d.Message)
	}
	if d.Approvals != 2 {
		t.Errorf("approvals: got %d; want 2", d.Approvals)
	}
	if got := strings.Join(d.Groups, ","); got != "platform-admins" {
		t.Errorf("groups: got %q; want %q", got, "platform-admins")
	}
	if d.MaxDuration != 2*time.Hour || !d.RequireTicket {
		t.Errorf("limits: got max %s, ticket %v; want 2h0m0s, true", d.MaxDuration, d.RequireTicket)
	}
}

func TestDecideConditions(t *testing.T) {
	p := mustParse(t, testPolicy)
	sunday := time.Date(2025, 3, 9, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		repo     string
		duration time.Duration
		now      time.Time
		metadata map[string]string
		want     string
		wantRule string
	}{
		{"duration condition true", "contoso/cel", 15 * time.Minute, weekday10, nil, OutcomeAutoApprove, "cel-duration"},
		{"duration condition false", "contoso/cel", 25 * time.Minute, weekday10, nil, OutcomeDeny, DefaultDenyRuleID},
		{"now condition false", "contoso/cel", 15 * time.Minute, sunday, nil, OutcomeDeny, DefaultDenyRuleID},
		{"metadata condition true", "contoso/meta", time.Minute, weekday10, map[string]string{"run_id": "42"}, OutcomeAutoApprove, "cel-metadata"},
		{"runtime error denies", "contoso/meta", time.Minute, weekday10, nil, OutcomeDeny, "cel-metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := pipelineInput()
			in.Requester["repository"] = tt.repo
			in.Duration, in.Now, in.Metadata = tt.duration, tt.now, tt.metadata
			d := p.Decide(in)
			if d.Outcome != tt.want {
				t.Errorf("outcome: got %q; want %q (message %q)", d.Outcome, tt.want, d.Message)
			}
			if d.RuleID != tt.wantRule {
				t.Errorf("rule: got %q; want %q", d.RuleID, tt.wantRule)
			}
		})
	}
}

func TestConditionErrorNamesRule(t *testing.T) {
	p := mustParse(t, testPolicy)
	in := pipelineInput()
	in.Requester["repository"] = "contoso/meta"
	d := p.Decide(in)
	for _, w := range []string{`rule "cel-metadata"`, "evaluate condition", "no such key", "denied"} {
		if !strings.Contains(d.Message, w) {
			t.Errorf("message: got %q; want it to contain %q", d.Message, w)
		}
	}
}

func TestConditionCostLimitDenies(t *testing.T) {
	p := mustParse(t, `
version: 1
cel_cost_limit: 1000
rules:
  - id: expensive
    match:
      condition: "[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, a + b + c > 0)))"
    outcome: auto_approve
    max_duration: 1h
`)
	d := p.Decide(pipelineInput())
	if d.Outcome != OutcomeDeny || d.RuleID != "expensive" {
		t.Fatalf("decision: got %q by %q; want %q by %q", d.Outcome, d.RuleID, OutcomeDeny, "expensive")
	}
	if !strings.Contains(d.Message, "cost limit") {
		t.Errorf("message: got %q; want it to mention the cost limit", d.Message)
	}
}

func TestConditionSeesRequestFields(t *testing.T) {
	p := mustParse(t, `
version: 1
rules:
  - id: fields
    match:
      condition: >-
        request.principal == 'p-1' && request.principal_type == 'ServicePrincipal' &&
        request.pairs.size() == 1 && request.pairs[0].role_id == '`+kvUserGUID+`' &&
        request.pairs[0].scope.endsWith('kv-app') && request.justification.startsWith('rotate') &&
        request.ticket == 'CHG-1' && request.reason == 'r' && requester.environment == 'production' &&
        now == timestamp('2025-03-04T10:00:00Z') && request.duration == duration('5m')
    outcome: auto_approve
    max_duration: 1h
`)
	in := pipelineInput()
	in.Principal, in.PrincipalType = "p-1", "ServicePrincipal"
	in.Justification, in.Ticket, in.Reason = "rotate key", "CHG-1", "r"
	d := p.Decide(in)
	if d.RuleID != "fields" || d.Outcome != OutcomeAutoApprove {
		t.Errorf("decision: got %q by %q; want %q by %q (%s)", d.Outcome, d.RuleID, OutcomeAutoApprove, "fields", d.Message)
	}
}

func TestTimeWindows(t *testing.T) {
	p := mustParse(t, testPolicy)
	tests := []struct {
		name string
		now  time.Time
		want string
	}{
		// Berlin is UTC+1 until 2025-03-30 and UTC+2 after.
		{"winter inside hours", time.Date(2025, 3, 28, 8, 30, 0, 0, time.UTC), "business-hours"},
		{"winter before nine", time.Date(2025, 3, 28, 7, 30, 0, 0, time.UTC), DefaultDenyRuleID},
		{"summer same utc inside", time.Date(2025, 3, 31, 7, 30, 0, 0, time.UTC), "business-hours"},
		{"summer end exclusive", time.Date(2025, 3, 31, 15, 0, 0, 0, time.UTC), DefaultDenyRuleID},
		{"winter last minute", time.Date(2025, 3, 28, 15, 59, 0, 0, time.UTC), "business-hours"},
		{"weekday in utc only", time.Date(2025, 3, 28, 23, 30, 0, 0, time.UTC), DefaultDenyRuleID},
		{"monday local sunday utc", time.Date(2025, 3, 30, 23, 30, 0, 0, time.UTC), DefaultDenyRuleID},
		{"saturday excluded", time.Date(2025, 3, 29, 10, 0, 0, 0, time.UTC), DefaultDenyRuleID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := pipelineInput()
			in.Requester["repository"] = "contoso/hours"
			in.Now = tt.now
			if got := p.Decide(in).RuleID; got != tt.want {
				t.Errorf("rule: got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestTimeWindowContains(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		window timeFile
		at     time.Time
		want   bool
	}{
		{"overnight after midnight", timeFile{Days: []string{"fri"}, Hours: []string{"22:00-06:00"}},
			time.Date(2025, 3, 8, 2, 0, 0, 0, time.UTC), true},
		{"overnight next night", timeFile{Days: []string{"fri"}, Hours: []string{"22:00-06:00"}},
			time.Date(2025, 3, 8, 23, 0, 0, 0, time.UTC), false},
		{"overnight before start", timeFile{Days: []string{"fri"}, Hours: []string{"22:00-06:00"}},
			time.Date(2025, 3, 7, 21, 59, 0, 0, time.UTC), false},
		{"range wraps over week", timeFile{Days: []string{"fri-mon"}},
			time.Date(2025, 3, 9, 12, 0, 0, 0, time.UTC), true},
		{"range excludes midweek", timeFile{Days: []string{"fri-mon"}},
			time.Date(2025, 3, 5, 12, 0, 0, 0, time.UTC), false},
		{"end of day 24:00", timeFile{Hours: []string{"18:00-24:00"}},
			time.Date(2025, 3, 5, 23, 59, 0, 0, time.UTC), true},
		// New York moves from UTC-5 to UTC-4 at 2025-03-09 02:00 local.
		{"new york before dst", timeFile{Timezone: "America/New_York", Hours: []string{"08:00-09:00"}},
			time.Date(2025, 3, 8, 13, 30, 0, 0, time.UTC), true},
		{"new york after dst", timeFile{Timezone: "America/New_York", Hours: []string{"08:00-09:00"}},
			time.Date(2025, 3, 10, 13, 30, 0, 0, time.UTC), false},
		{"new york skipped hour", timeFile{Timezone: "America/New_York", Hours: []string{"02:00-03:00"}},
			time.Date(2025, 3, 9, 2, 30, 0, 0, ny), false},
		{"new york repeated hour", timeFile{Timezone: "America/New_York", Hours: []string{"01:00-02:00"}},
			time.Date(2025, 11, 2, 6, 30, 0, 0, time.UTC), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := compileWindow(tt.window)
			if err != nil {
				t.Fatalf("compileWindow: %v", err)
			}
			if got := w.contains(tt.at); got != tt.want {
				t.Errorf("contains(%s): got %v; want %v", tt.at.In(w.loc), got, tt.want)
			}
		})
	}
}

func TestBreakGlass(t *testing.T) {
	p := mustParse(t, testPolicy)
	glass := func(edit func(in *Input)) Decision {
		in := pipelineInput()
		in.Requester = map[string]string{"sub": "user:erin@contoso.example"}
		in.Pairs = []Pair{{RoleID: ownerGUID, Scope: subScope}}
		in.Metadata = map[string]string{"mode": "glass"}
		in.Duration = 10 * time.Minute
		in.Justification = "BREAK-GLASS: INC-7 database down"
		edit(&in)
		return p.Decide(in)
	}
	tests := []struct {
		name        string
		edit        func(in *Input)
		wantOutcome string
		wantRule    string
		wantMsg     string
	}{
		{"prefix reason grants", func(in *Input) {}, OutcomeAutoApprove, "glass", ""},
		{"reason field grants", func(in *Input) { in.Justification, in.Reason = "db down", "INC-7" }, OutcomeAutoApprove, "glass", ""},
		{"metadata reason grants", func(in *Input) { in.Justification, in.Metadata["reason"] = "db down", "INC-7" }, OutcomeAutoApprove, "glass", ""},
		{"actor identity is member", func(in *Input) { in.Requester = map[string]string{"actor": "erin-gh"} }, OutcomeAutoApprove, "glass", ""},
		{"missing reason denied", func(in *Input) { in.Justification = "db down" }, OutcomeDeny, "glass", "requires a reason"},
		{"bare prefix denied", func(in *Input) { in.Justification = "BREAK-GLASS:  " }, OutcomeDeny, "glass", "requires a reason"},
		{"shortest max applies", func(in *Input) { in.Duration = 30 * time.Minute }, OutcomeDeny, "glass", "at most 10m"},
		{"non member falls through", func(in *Input) { in.Requester["sub"] = "user:mallory@contoso.example" }, OutcomeDeny, "owner", "requires a ticket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := glass(tt.edit)
			if d.Outcome != tt.wantOutcome || d.RuleID != tt.wantRule {
				t.Fatalf("decision: got %q by %q; want %q by %q (%s)", d.Outcome, d.RuleID, tt.wantOutcome, tt.wantRule, d.Message)
			}
			if !strings.Contains(d.Message, tt.wantMsg) {
				t.Errorf("message: got %q; want it to contain %q", d.Message, tt.wantMsg)
			}
		})
	}

	t.Run("grant carries review fields", func(t *testing.T) {
		d := glass(func(in *Input) {})
		if !d.BreakGlass || !d.ReviewRequired {
			t.Errorf("flags: got break glass %v, review %v; want true, true", d.BreakGlass, d.ReviewRequired)
		}
		if d.MaxDuration != 10*time.Minute {
			t.Errorf("max duration: got %s; want 10m0s", d.MaxDuration)
		}
		if got, want := strings.Join(d.NotifyGroups, ","), "platform-admins,security-reviewers"; got != want {
			t.Errorf("notify groups: got %q; want %q", got, want)
		}
	})
}

func TestBreakGlassOwnMaxShorter(t *testing.T) {
	p := mustParse(t, `
version: 1
groups: {oncall: [user:erin@x]}
rules:
  - id: glass
    break_glass: true
    max_duration: 5m
  - id: long
    outcome: auto_approve
    max_duration: 1h
`)
	in := pipelineInput()
	in.Reason = "incident"
	d := p.Decide(in)
	if d.MaxDuration != 5*time.Minute {
		t.Errorf("max duration: got %s; want 5m0s", d.MaxDuration)
	}
	if got, want := strings.Join(d.NotifyGroups, ","), "oncall"; got != want {
		t.Errorf("notify groups without approver groups: got %q; want %q", got, want)
	}
}
