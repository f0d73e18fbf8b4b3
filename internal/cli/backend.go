package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/plan"
)

// backendOptions are the flags that choose how each pair is granted.
type backendOptions struct {
	Backend        string
	DirectoryScope string
	EntraMode      string
	ApprovalWait   time.Duration
	// planning is set by `elevate plan`, whose caller plans for a principal
	// that signs in itself to apply.
	planning bool
}

func (o *backendOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.Backend, "backend", lifecycle.BackendRBAC,
		"how to grant: rbac, pim-activate, pim-assign, entra-role, or auto (pim-activate where the principal is eligible, else rbac)")
	fs.StringVar(&o.DirectoryScope, "directory-scope", "/",
		"entra-role only: Entra directory scope id, / for the tenant or /administrativeUnits/ID")
	fs.StringVar(&o.EntraMode, "entra-mode", "",
		"entra-role only: selfActivate or adminAssign (default: selfActivate when the principal is eligible)")
	fs.DurationVar(&o.ApprovalWait, "pim-approval-wait", 0,
		"how long a PIM activation may wait for a PIM approver before it is canceled; 0 rejects roles that need one")
}

// check rejects invalid backend flags before any Azure call.
func (o *backendOptions) check() error {
	if o.Backend == "" {
		o.Backend = lifecycle.BackendRBAC
	}
	known := false
	for _, n := range lifecycle.BackendNames {
		known = known || n == o.Backend
	}
	if !known {
		return &UsageError{fmt.Errorf("invalid --backend %q: use one of %s", o.Backend, strings.Join(lifecycle.BackendNames, ", "))}
	}
	cfg := o.pimConfig()
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return &UsageError{err}
	}
	return nil
}

func (o *backendOptions) pimConfig() lifecycle.PIMConfig {
	return lifecycle.PIMConfig{DirectoryScope: o.DirectoryScope, EntraMode: o.EntraMode, ApprovalWait: o.ApprovalWait, Planning: o.planning}
}

// entraScopes returns the scope entra-role pairs carry when --scope is not
// given: the tenant root management group, whose id is the tenant id.
// Entra directory scopes are not Azure resource ids, so --directory-scope
// names where the role applies.
func (o *backendOptions) entraScopes(tenantID string) []string {
	return []string{"/providers/Microsoft.Management/managementGroups/" + tenantID}
}

// addBackends registers the PIM backends on engine, chooses the backend of
// every pair of req and routes the grants. It builds only the clients the
// choice needs.
func (s *session) addBackends(ctx context.Context, engine *lifecycle.Engine, o backendOptions, req access.Request, fixed []lifecycle.Choice) ([]lifecycle.Choice, lifecycle.PIMConfig, error) {
	cfg := o.pimConfig()
	if o.Backend == lifecycle.BackendRBAC && fixed == nil {
		choices, err := engine.ChooseBackends(ctx, req, lifecycle.BackendRBAC)
		return choices, cfg, err
	}
	if o.Backend != lifecycle.BackendEntraRole {
		pim, err := azure.NewPIM(s.cred, s.env.ARMOptions(s.client, &retryOptions))
		if err != nil {
			return nil, cfg, err
		}
		cfg.PIM = pim
	}
	if o.Backend == lifecycle.BackendEntraRole {
		endpoint := s.graphEndpoint
		if endpoint == "" {
			endpoint = azure.DefaultGraphEndpoint
		}
		graph, err := azure.NewGraph(endpoint, s.cred, s.env.ClientOptions(s.client, &retryOptions))
		if err != nil {
			return nil, cfg, &UsageError{fmt.Errorf("ELEVATE_GRAPH_ENDPOINT: %w", err)}
		}
		cfg.Graph = graph
	}
	if err := engine.AddPIM(cfg); err != nil {
		return nil, cfg, &UsageError{err}
	}
	choices := fixed
	if choices == nil {
		var err error
		if choices, err = engine.ChooseBackends(ctx, req, o.Backend); err != nil {
			return nil, cfg, err
		}
	}
	if err := engine.Route(req, choices); err != nil {
		return nil, cfg, err
	}
	_ = cfg.CheckAndSetDefaults()
	return choices, cfg, nil
}

// preflight runs the checks for the chosen backends: the RBAC ones alone
// when every pair is rbac, as before backends existed.
func preflight(ctx context.Context, engine *lifecycle.Engine, p prepared) []lifecycle.Check {
	for _, c := range p.choices {
		if c.Backend != lifecycle.BackendRBAC {
			return engine.PreflightBackends(ctx, p.req, p.choices, p.pimCfg)
		}
	}
	return engine.Preflight(ctx, p.req)
}

func failedChecks(failed []lifecycle.Check) error {
	if len(failed) == 0 {
		return nil
	}
	parts := make([]string, len(failed))
	for i, c := range failed {
		parts[i] = fmt.Sprintf("%s at %s: %s", c.Name, c.Scope, c.Detail)
	}
	return fmt.Errorf("%w: %s", ErrPreflight, strings.Join(parts, "; "))
}

// The backend field of the approval table, which the plan file carries to
// apply, is "NAME" followed by "; key=value" settings that apply needs:
//
//	pim-activate; approval-wait=10m
//	entra-role; directory-scope=/; mode=selfActivate
//	auto; pairs=pim-activate,rbac
//
// The pre-flight table beside it gives each pair's reason.

// backendLabel renders the backend field for choices.
func backendLabel(o backendOptions, choices []lifecycle.Choice) string {
	parts := []string{o.Backend}
	if o.Backend == lifecycle.BackendAuto {
		names := make([]string, len(choices))
		for i, c := range choices {
			names[i] = c.Backend
		}
		parts = append(parts, "pairs="+strings.Join(names, ","))
	}
	if o.Backend == lifecycle.BackendEntraRole {
		parts = append(parts, "directory-scope="+backendOrDefault(o.DirectoryScope, "/"))
		if o.EntraMode != "" {
			parts = append(parts, "mode="+o.EntraMode)
		}
	}
	if o.ApprovalWait > 0 {
		parts = append(parts, "approval-wait="+o.ApprovalWait.String())
	}
	return strings.Join(parts, "; ")
}

func backendOrDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// parseBackendLabel reads a backend field back into options and, for auto,
// the per-pair choices. An empty field is rbac, as in plans made before
// backends existed.
func parseBackendLabel(label string, pairs int) (backendOptions, []lifecycle.Choice, error) {
	o := backendOptions{Backend: lifecycle.BackendRBAC}
	fields := strings.Split(label, "; ")
	if strings.TrimSpace(fields[0]) != "" {
		o.Backend = strings.TrimSpace(fields[0])
	}
	var choices []lifecycle.Choice
	for _, f := range fields[1:] {
		key, value, ok := strings.Cut(f, "=")
		if !ok {
			return o, nil, fmt.Errorf("invalid backend setting %q in the plan: want key=value", f)
		}
		switch key {
		case "pairs":
			for _, name := range strings.Split(value, ",") {
				choices = append(choices, lifecycle.Choice{Backend: name, Reason: autoPlannedReason})
			}
		case "directory-scope":
			o.DirectoryScope = value
		case "mode":
			o.EntraMode = value
		case "approval-wait":
			d, err := time.ParseDuration(value)
			if err != nil {
				return o, nil, fmt.Errorf("invalid approval-wait %q in the plan: %w", value, err)
			}
			o.ApprovalWait = d
		default:
			return o, nil, fmt.Errorf("unknown backend setting %q in the plan; plan and apply with the same elevate version", key)
		}
	}
	if err := o.check(); err != nil {
		return o, nil, fmt.Errorf("plan backend %q: %w", label, err)
	}
	if o.Backend == lifecycle.BackendAuto && len(choices) != pairs {
		return o, nil, fmt.Errorf("plan backend %q names %d pairs, the request has %d", label, len(choices), pairs)
	}
	for _, c := range choices {
		if c.Backend == lifecycle.BackendAuto || !validBackend(c.Backend) {
			return o, nil, fmt.Errorf("plan backend %q: invalid pair backend %q", label, c.Backend)
		}
	}
	return o, choices, nil
}

func validBackend(name string) bool {
	for _, n := range lifecycle.BackendNames {
		if n == name {
			return true
		}
	}
	return false
}

// autoPlannedReason is the reason of a pair that auto chose in the plan.
const autoPlannedReason = "chosen by auto when the plan was made"

// addPlannedReasons appends to each choice that auto made in the plan the
// reason that the plan's pre-flight table gave for it, so that apply
// audits why a pair got its backend and not only that the plan chose it.
func addPlannedReasons(choices []lifecycle.Choice, checks []plan.Check, req access.Request) {
	lc := make([]lifecycle.Check, len(checks))
	for i, c := range checks {
		lc[i] = lifecycle.Check(c)
	}
	for i := range choices {
		if choices[i].Reason != autoPlannedReason || i >= len(req.Pairs) {
			continue
		}
		if reason := lifecycle.PlannedReason(lc, i, req.Pairs[i], choices[i].Backend); reason != "" {
			choices[i].Reason += ": " + reason
		}
	}
}

// planBackend reads the backend field of a plan's approval table.
func planBackend(table json.RawMessage, pairs int) (backendOptions, []lifecycle.Choice, error) {
	var doc struct {
		Backend string `json:"backend"`
	}
	if len(table) > 0 {
		if err := json.Unmarshal(table, &doc); err != nil {
			return backendOptions{}, nil, fmt.Errorf("read the backend from the plan's approval table: %w", err)
		}
	}
	return parseBackendLabel(doc.Backend, pairs)
}

// grantBackend is the JSON summary's account of each pair's backend.
type grantBackend struct {
	Backend string    `json:"backend"`
	Reason  string    `json:"backend_reason,omitempty"`
	EndsAt  time.Time `json:"ends_at,omitzero"`
}

// withReasons adds to each grant of s why its backend was chosen.
func withReasons(s summary, choices []lifecycle.Choice) summary {
	for i := range s.Grants {
		if i < len(choices) {
			s.Grants[i].Reason = choices[i].Reason
		}
	}
	return s
}

// endsLabel returns when the platform ends a grant by itself, or "" when it does not.
func endsLabel(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return ", set in Azure to end by itself at " + t.UTC().Format(time.RFC3339)
}

// errNoEntraScope explains the scope rule of entra-role.
var errNoEntraScope = errors.New("entra-role grants at --directory-scope, so leave out --scope")
