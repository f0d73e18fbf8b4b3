package policy

import (
	"errors"
	"fmt"

	"cel.dev/cel-go/cel"
)

// Parser limits for conditions. They are estimates far above what a
// readable condition needs and keep a pathological policy from exhausting
// the parser.
const (
	maxConditionSize      = 10_000 // code points
	maxConditionRecursion = 100
)

// condition is a compiled CEL expression that returns bool.
type condition struct {
	text    string
	program cel.Program
}

// newConditionEnv declares the variables a condition can read:
//
//	request    map: principal, principal_type, pairs (list of maps with
//	           role_id, role_name and scope), duration (a CEL duration),
//	           justification, ticket, reason and metadata (map of strings)
//	requester  map of the requester's claims
//	now        timestamp of the decision
func newConditionEnv() (*cel.Env, error) {
	env, err := cel.NewEnv(
		cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("requester", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("now", cel.TimestampType),
		cel.ParserExpressionSizeLimit(maxConditionSize),
		cel.ParserRecursionLimit(maxConditionRecursion),
	)
	if err != nil {
		return nil, fmt.Errorf("create CEL environment: %w", err)
	}
	return env, nil
}

// compileCondition compiles text and checks that it returns a bool. The
// program stops with an error once its cost passes costLimit.
func compileCondition(env *cel.Env, text string, costLimit uint64) (*condition, error) {
	ast, issues := env.Compile(text)
	if issues != nil && issues.Err() != nil {
		return nil, fmt.Errorf("condition does not compile: %w", issues.Err())
	}
	out := ast.OutputType()
	if !out.IsExactType(cel.BoolType) && !out.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("condition returns %s; want bool", out)
	}
	program, err := env.Program(ast, cel.CostLimit(costLimit))
	if err != nil {
		return nil, fmt.Errorf("condition: build program: %w", err)
	}
	return &condition{text: text, program: program}, nil
}

// eval runs the condition. A runtime error, such as a missing map key or
// the cost limit, and a result that is not a bool are both errors.
func (c *condition) eval(vars map[string]any) (bool, error) {
	out, _, err := c.program.Eval(vars)
	if err != nil {
		return false, err
	}
	result, ok := out.Value().(bool)
	if !ok {
		return false, errors.New("condition returned " + string(out.Type().TypeName()) + ", not a bool")
	}
	return result, nil
}

// conditionVars builds the CEL variables from a checked input.
func conditionVars(in *checkedInput) map[string]any {
	pairs := make([]any, len(in.Pairs))
	for i, p := range in.Pairs {
		pairs[i] = map[string]any{"role_id": in.roleGUIDs[i], "role_name": p.RoleName, "scope": p.Scope}
	}
	metadata := in.Metadata
	if metadata == nil {
		metadata = map[string]string{}
	}
	requester := in.Requester
	if requester == nil {
		requester = map[string]string{}
	}
	return map[string]any{
		"request": map[string]any{
			"principal":      in.Principal,
			"principal_type": in.PrincipalType,
			"pairs":          pairs,
			"duration":       in.Duration,
			"justification":  in.Justification,
			"ticket":         in.Ticket,
			"reason":         in.reason(),
			"metadata":       metadata,
		},
		"requester": requester,
		"now":       in.Now,
	}
}
