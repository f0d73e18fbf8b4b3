package policy

import (
	"testing"
	"time"
)

// Scopes and roles shared by the tests.
const (
	subID      = "00000000-0000-0000-0000-000000000000"
	subScope   = "/subscriptions/" + subID
	rgApp      = subScope + "/resourceGroups/rg-app"
	vaultApp   = rgApp + "/providers/Microsoft.KeyVault/vaults/kv-app"
	rgApp2     = subScope + "/resourceGroups/rg-app2"
	ownerGUID  = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
	readerGUID = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	kvUserGUID = "4633458b-17de-408a-b874-0445c86b69e6"
)

// testPolicy exercises every match feature. Rules are ordered so that each
// test input reaches the rule it is meant for.
const testPolicy = `
version: 1
break_glass_prefix: "BREAK-GLASS:"
groups:
  platform-admins:
    - user:alice@contoso.example
    - user:bob@contoso.example
    - group:platform-admins-claim
  security-reviewers:
    - user:carol@contoso.example
    - user:bob@contoso.example
  on-call:
    - user:erin@contoso.example
    - github:erin-gh
rules:
  - id: deny-forks
    match:
      requester: {repository: 'forks/*'}
    outcome: deny
    message: forks get nothing
  - id: glass
    match:
      requester_in: [on-call]
      condition: "'mode' in request.metadata && request.metadata.mode == 'glass'"
    break_glass: true
    max_duration: 1h
  - id: pipeline-vault
    match:
      requester:
        repository: contoso/app
        ref: [refs/heads/main, 'refs/heads/release/*']
        environment: production
      roles: [Key Vault Secrets User, ` + readerGUID + `]
      scopes: [` + rgApp + `]
    outcome: auto_approve
    max_duration: 10m
  - id: vault-glob
    match:
      scopes: ['/subscriptions/*/resourcegroups/rg-*/providers/microsoft.keyvault/vaults/kv-glob*']
    outcome: auto_approve
    max_duration: 30m
  - id: business-hours
    match:
      requester: {repository: contoso/hours}
      time: {timezone: Europe/Berlin, days: [mon-fri], hours: ['09:00-17:00']}
    outcome: auto_approve
    max_duration: 1h
  - id: cel-duration
    match:
      requester: {repository: contoso/cel}
      condition: request.duration <= duration('20m') && now.getDayOfWeek('UTC') != 0
    outcome: auto_approve
    max_duration: 1h
  - id: cel-metadata
    match:
      requester: {repository: contoso/meta}
      condition: request.metadata.run_id == '42'
    outcome: auto_approve
    max_duration: 1h
  - id: owner
    match:
      roles: [Owner]
    outcome: require
    require: {approvals: 2, groups: [platform-admins]}
    max_duration: 2h
    require_ticket: true
  - id: two-groups
    match:
      roles: [Contributor]
    outcome: require
    require: {approvals: 1, groups: [platform-admins, security-reviewers], each_group: true}
    max_duration: 2h
`

func mustParse(t testing.TB, yaml string) *Policy {
	t.Helper()
	p, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

// weekday10 is Tuesday 2025-03-04 10:00 UTC.
var weekday10 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

// pipelineInput is a request that testPolicy's pipeline-vault rule grants.
func pipelineInput() Input {
	return Input{
		Requester: map[string]string{
			"sub":         "repo:contoso/app:environment:production",
			"repository":  "contoso/app",
			"ref":         "refs/heads/main",
			"environment": "production",
			"actor":       "octocat",
		},
		Principal: "3f0d9a52-6c1e-4b8a-a7d4-2e9c5b1f0a83",
		Pairs:     []Pair{{RoleID: kvUserGUID, Scope: vaultApp}},
		Duration:  5 * time.Minute,
		Now:       weekday10,
	}
}
