package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/plan"
)

func TestBackendLabelRoundTrip(t *testing.T) {
	auto := []lifecycle.Choice{{Backend: "pim-activate"}, {Backend: "rbac"}}
	tests := []struct {
		name    string
		opts    backendOptions
		choices []lifecycle.Choice
		label   string
	}{
		{"rbac", backendOptions{Backend: "rbac"}, nil, "rbac"},
		{"pim-assign", backendOptions{Backend: "pim-assign"}, nil, "pim-assign"},
		{"activate with approval wait", backendOptions{Backend: "pim-activate", ApprovalWait: 10 * time.Minute}, nil,
			"pim-activate; approval-wait=10m0s"},
		{"entra at an administrative unit", backendOptions{Backend: "entra-role",
			DirectoryScope: "/administrativeUnits/0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e", EntraMode: "adminAssign"}, nil,
			"entra-role; directory-scope=/administrativeUnits/0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e; mode=adminAssign"},
		{"auto per pair", backendOptions{Backend: "auto"}, auto, "auto; pairs=pim-activate,rbac"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			label := backendLabel(tc.opts, tc.choices)
			if label != tc.label {
				t.Fatalf("label: got %q; want %q", label, tc.label)
			}
			opts, choices, err := parseBackendLabel(label, len(tc.choices))
			if err != nil {
				t.Fatalf("parse %q: %v", label, err)
			}
			if opts.Backend != tc.opts.Backend || opts.ApprovalWait != tc.opts.ApprovalWait || opts.EntraMode != tc.opts.EntraMode {
				t.Errorf("options: got %+v; want %+v", opts, tc.opts)
			}
			if tc.opts.DirectoryScope != "" && opts.DirectoryScope != tc.opts.DirectoryScope {
				t.Errorf("directory scope: got %q; want %q", opts.DirectoryScope, tc.opts.DirectoryScope)
			}
			var got []string
			for _, c := range choices {
				got = append(got, c.Backend)
			}
			var want []string
			for _, c := range tc.choices {
				want = append(want, c.Backend)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("pair backends: got %v; want %v", got, want)
			}
		})
	}
}

func TestParseBackendLabelRejects(t *testing.T) {
	tests := []struct {
		name, label string
		pairs       int
		want        string
	}{
		{"unknown backend", "pim-magic", 1, "invalid --backend"},
		{"unknown setting", "pim-assign; colour=red", 1, `unknown backend setting "colour"`},
		{"setting without value", "pim-assign; approval-wait", 1, "want key=value"},
		{"pair count differs", "auto; pairs=rbac", 2, "names 1 pairs, the request has 2"},
		{"auto inside auto", "auto; pairs=auto", 1, `invalid pair backend "auto"`},
		{"bad directory scope", "entra-role; directory-scope=/groups/x", 1, "invalid directory scope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseBackendLabel(tc.label, tc.pairs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parse %q: got %v; want an error containing %q", tc.label, err, tc.want)
			}
		})
	}
	if opts, _, err := parseBackendLabel("", 1); err != nil || opts.Backend != "rbac" {
		t.Errorf("empty label: got %q, %v; want rbac for plans made before backends", opts.Backend, err)
	}
}

func TestBackendFlagsRejected(t *testing.T) {
	e := startCLIEnv(t, emulator.Config{})
	base := []string{"run", "--role", "Reader", "--justification", "j"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown backend", append(base, "--scope", testStorage, "--backend", "pim", "--", "true"), `invalid --backend "pim"`},
		{"bad directory scope", append(base, "--backend", "entra-role", "--directory-scope", "/tenant", "--", "true"), "invalid directory scope"},
		{"entra with scope", append(base, "--backend", "entra-role", "--scope", testStorage, "--", "true"), "leave out --scope"},
		{"bad entra mode", append(base, "--backend", "entra-role", "--entra-mode", "selfAssign", "--", "true"), "invalid Entra mode"},
		{"negative approval wait", append(base, "--scope", testStorage, "--backend", "pim-activate", "--pim-approval-wait", "-1m", "--", "true"),
			"invalid PIM approval wait"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := e.main(t, context.Background(), tc.args...)
			if got.code != ExitUsage {
				t.Errorf("exit code: got %d; want %d; stderr %q", got.code, ExitUsage, got.stderr)
			}
			if !strings.Contains(got.stderr, tc.want) {
				t.Errorf("stderr %q: want it to contain %q", got.stderr, tc.want)
			}
		})
	}
}

func TestDemoWithPIMAssign(t *testing.T) {
	var e cliEnv
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	got := e.main(t, context.Background(), "demo", "--backend", "pim-assign", "--propagation-delay", "50ms",
		"--audit-log", auditPath, "-o", "json")
	if got.code != ExitOK {
		t.Fatalf("exit code: got %d; want 0; stderr %s", got.code, got.stderr)
	}
	s := decodeSummary(t, got.stdout)
	if len(s.Grants) != 2 {
		t.Fatalf("grants: got %d; want 2", len(s.Grants))
	}
	for _, g := range s.Grants {
		if g.Backend != lifecycle.BackendPIMAssign || g.EndsAt.IsZero() || !g.Verified {
			t.Errorf("grant %s: backend %q ends %v verified %v; want pim-assign, an end, verified", g.Role, g.Backend, g.EndsAt, g.Verified)
		}
		if g.Reason != "requested with --backend pim-assign" {
			t.Errorf("grant %s reason: got %q; want the flag named", g.Role, g.Reason)
		}
	}
	data, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatalf("read audit log: %v", err)
	}
	if n := strings.Count(string(data), `"event":"backend"`); n != 2 {
		t.Errorf("backend audit records: got %d; want 2", n)
	}
	if !strings.Contains(string(data), `"backend":"pim-assign"`) {
		t.Errorf("audit log names no pim-assign pair")
	}
	if got := e.main(t, context.Background(), "demo", "--backend", "pim-activate"); got.code != ExitUsage {
		t.Errorf("demo --backend pim-activate: exit %d; want %d", got.code, ExitUsage)
	}
}

func TestPlanApplyKeepsBackend(t *testing.T) {
	e := startCLIEnv(t, emulator.Config{PropagationDelay: 20 * time.Millisecond})
	planFile := filepath.Join(t.TempDir(), "plan.json")
	got := e.main(t, context.Background(), "plan", "--role", "Reader", "--scope", testStorage,
		"--justification", "deploy", "--backend", "pim-assign", "--plan-file", planFile)
	if got.code != ExitOK {
		t.Fatalf("plan: exit %d; stderr %s", got.code, got.stderr)
	}
	for _, want := range []string{"| Backend | pim-assign |", "| pass | backend |", "pim-assign \\(requested with --backend pim-assign\\)", "AdminAssign of 15m fits"} {
		if !strings.Contains(got.stdout, want) {
			t.Errorf("plan output: want it to contain %q; got %s", want, got.stdout)
		}
	}
	pl, err := plan.Read(planFile)
	if err != nil {
		t.Fatalf("read plan: %v", err)
	}
	if opts, _, err := planBackend(pl.Table, 1); err != nil || opts.Backend != lifecycle.BackendPIMAssign {
		t.Fatalf("plan backend: got %q, %v; want pim-assign", opts.Backend, err)
	}

	got = e.main(t, context.Background(), "apply", "--plan", planFile, "-o", "json", "--", "true")
	if got.code != ExitOK {
		t.Fatalf("apply: exit %d; stderr %s", got.code, got.stderr)
	}
	s := decodeSummary(t, got.stdout)
	if len(s.Grants) != 1 || s.Grants[0].Backend != lifecycle.BackendPIMAssign || !s.Grants[0].Verified {
		t.Fatalf("apply grants: got %+v; want one verified pim-assign grant", s.Grants)
	}
	seeded := map[string]bool{}
	for _, a := range emulator.DefaultSeed().RoleAssignments {
		seeded[strings.ToLower(a.Name)] = true
	}
	for _, a := range e.srv.RoleAssignments() {
		if !seeded[strings.ToLower(a.Name)] {
			t.Errorf("assignment %s at %s left after apply", a.Name, a.Scope)
		}
	}
}

func TestPlanRejectsFailedPIMCheck(t *testing.T) {
	e := startCLIEnv(t, emulator.Config{})
	planFile := filepath.Join(t.TempDir(), "plan.json")
	got := e.main(t, context.Background(), "plan", "--role", "Reader", "--scope", testStorage,
		"--justification", "deploy", "--backend", "pim-activate", "--plan-file", planFile)
	if got.code != ExitFailure {
		t.Fatalf("plan: exit %d; want %d; stderr %s", got.code, ExitFailure, got.stderr)
	}
	for _, want := range []string{"pre-flight check failed", "PIM eligibility", "no eligible assignment"} {
		if !strings.Contains(got.stderr, want) {
			t.Errorf("stderr %q: want it to contain %q", got.stderr, want)
		}
	}
	if _, err := os.Stat(planFile); !os.IsNotExist(err) {
		t.Errorf("plan file written for a refused request: %v", err)
	}
}

func decodeSummary(t *testing.T, stdout string) summary {
	t.Helper()
	var s summary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("decode summary: %v\n%s", err, stdout)
	}
	return s
}
