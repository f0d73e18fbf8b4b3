// Package abac parses and evaluates role assignment conditions (Azure ABAC,
// condition version 2.0) in the subset that delegating role assignment
// management uses, as Microsoft's "Azure role assignment condition format
// and syntax" and "Authorization actions and attributes" pages describe it:
//
//   - ActionMatches{'pattern'} and SubOperationMatches{'pattern'}
//   - NOT or ! before an operand, AND or &&, OR or ||, and parentheses.
//     Keywords and operator names are case-insensitive.
//   - @Request[...] and @Resource[...] of the attributes RoleDefinitionId,
//     PrincipalId (GUIDs) and PrincipalType (a string) in the namespace
//     Microsoft.Authorization/roleAssignments.
//   - GuidEquals, GuidNotEquals, StringEquals, StringNotEquals and their
//     IgnoreCase forms, alone or after ForAnyOfAnyValues:, ForAllOfAnyValues:,
//     ForAnyOfAllValues: or ForAllOfAllValues:.
//
// Parse rejects anything else. The emulator uses this package to decide role
// assignment writes and deletes, and the lifecycle pre-flight uses it to
// predict them, so the two cannot disagree.
//
// NOTE: Azure also accepts storage, principal and environment attributes
// and the Like, StartsWith, Numeric, DateTime, Bool and Exists operators.
// Parse rejects conditions that use them.
package abac

import (
	"fmt"
)

// Version is the only condition language version ARM accepts.
const Version = "2.0"

// MaxDepth bounds the nesting of parentheses and negations so that hostile
// input cannot make the recursive parser use unbounded stack.
const MaxDepth = 64

// Actions whose conditions this package evaluates.
const (
	ActionWrite  = "Microsoft.Authorization/roleAssignments/write"
	ActionDelete = "Microsoft.Authorization/roleAssignments/delete"
)

// Attribute names, lower-cased, as keys of Input.Request and Input.Resource.
const (
	AttrRoleDefinitionID = "microsoft.authorization/roleassignments:roledefinitionid"
	AttrPrincipalID      = "microsoft.authorization/roleassignments:principalid"
	AttrPrincipalType    = "microsoft.authorization/roleassignments:principaltype"
)

// attributeIsGUID records, for each supported attribute, whether its
// values are GUIDs.
var attributeIsGUID = map[string]bool{
	AttrRoleDefinitionID: true,
	AttrPrincipalID:      true,
	AttrPrincipalType:    false,
}

// SyntaxError is a condition that Parse rejects, with the byte offset of
// the text it could not accept.
type SyntaxError struct {
	Offset  int
	Message string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid condition at offset %d: %s", e.Offset, e.Message)
}

// Input contains the facts a condition is evaluated against: the action and
// the attributes of the two sources, keyed by the Attr constants. A nil map
// means that the source has no attributes for this action.
type Input struct {
	Action   string
	Request  map[string]string
	Resource map[string]string
}

// Attributes returns the attributes of a role assignment, for the @Request
// source of a write or the @Resource source of a delete. roleDefinitionID
// may be a full role definition id or a bare GUID.
func Attributes(roleDefinitionID, principalID, principalType string) map[string]string {
	return map[string]string{
		AttrRoleDefinitionID: roleDefinitionID,
		AttrPrincipalID:      principalID,
		AttrPrincipalType:    principalType,
	}
}

// WriteInput returns the input of a write of a role assignment with attrs.
func WriteInput(attrs map[string]string) Input {
	return Input{Action: ActionWrite, Request: attrs}
}

// DeleteInput returns the input of a delete of a role assignment with attrs.
func DeleteInput(attrs map[string]string) Input {
	return Input{Action: ActionDelete, Resource: attrs}
}

// Condition is a parsed condition. Build it with Parse.
type Condition struct {
	root expr
}

// Parse parses a condition, or returns a *SyntaxError.
func Parse(text string) (*Condition, error) {
	p := &parser{text: text}
	p.next()
	x, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.errorf("unexpected %s after the end of the condition", p.tok)
	}
	return &Condition{root: x}, nil
}

// Validate checks the condition and version of a role assignment write. An
// empty condition is always valid.
func Validate(condition, version string) error {
	if condition == "" {
		return nil
	}
	if version != Version {
		return fmt.Errorf("invalid conditionVersion %q: use %q", version, Version)
	}
	_, err := Parse(condition)
	return err
}

// Evaluate reports whether the condition is true for in.
func (c *Condition) Evaluate(in Input) bool {
	return c.root.eval(in)
}

// Comparison is one `@Source[attribute] operator values` term of a
// condition, for messages that name what a condition allows.
type Comparison struct {
	Resource  bool   // @Resource rather than @Request
	Attribute string // one of the Attr constants
	Negated   bool   // a NotEquals operator: the values are excluded
	Values    []string
}

// Comparisons returns the condition's attribute comparisons in the order of
// the text, whatever operators join them.
func (c *Condition) Comparisons() []Comparison {
	var out []Comparison
	walk(c.root, func(e compareExpr) {
		out = append(out, Comparison{Resource: e.resource, Attribute: e.attribute,
			Negated: e.op.negate, Values: append([]string(nil), e.values...)})
	})
	return out
}
