package emulator

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// This file parses and evaluates role assignment conditions (Azure ABAC,
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
// Anything else is rejected, so an assignment never carries a condition
// that the emulator cannot evaluate.
// NOTE: Azure also accepts storage, principal and environment attributes
// and the Like, StartsWith, Numeric, DateTime, Bool and Exists operators.
// The emulator rejects conditions that use them.

// conditionVersion is the only condition language version ARM accepts.
const conditionVersion = "2.0"

// maxConditionDepth bounds the nesting of parentheses and negations so that
// hostile input cannot make the recursive parser use unbounded stack.
const maxConditionDepth = 64

// Actions whose conditions the emulator evaluates.
const (
	actionRoleAssignmentWrite  = "Microsoft.Authorization/roleAssignments/write"
	actionRoleAssignmentDelete = "Microsoft.Authorization/roleAssignments/delete"
)

// Attribute names, lower-cased, and the type of each.
const (
	attrRoleDefinitionID = "microsoft.authorization/roleassignments:roledefinitionid"
	attrPrincipalID      = "microsoft.authorization/roleassignments:principalid"
	attrPrincipalType    = "microsoft.authorization/roleassignments:principaltype"
)

var conditionAttributeIsGUID = map[string]bool{
	attrRoleDefinitionID: true,
	attrPrincipalID:      true,
	attrPrincipalType:    false,
}

// conditionError is a condition the parser rejects, with the byte offset of
// the text it could not accept.
type conditionError struct {
	Offset  int
	Message string
}

func (e *conditionError) Error() string {
	return fmt.Sprintf("invalid condition at offset %d: %s", e.Offset, e.Message)
}

// conditionInput contains the facts a condition is evaluated against: the
// action and the attributes of the two sources. A nil map means that the
// source has no attributes for this action.
type conditionInput struct {
	Action   string
	Request  map[string]string
	Resource map[string]string
}

// conditionExpr is a parsed condition or a part of one.
type conditionExpr interface {
	eval(in conditionInput) bool
}

type andExpr []conditionExpr

func (e andExpr) eval(in conditionInput) bool {
	for _, x := range e {
		if !x.eval(in) {
			return false
		}
	}
	return true
}

type orExpr []conditionExpr

func (e orExpr) eval(in conditionInput) bool {
	for _, x := range e {
		if x.eval(in) {
			return true
		}
	}
	return false
}

type notExpr struct{ x conditionExpr }

func (e notExpr) eval(in conditionInput) bool { return !e.x.eval(in) }

// actionMatchExpr is ActionMatches{'pattern'}, with '*' as in role actions.
type actionMatchExpr struct{ pattern string }

func (e actionMatchExpr) eval(in conditionInput) bool { return actionMatches(e.pattern, in.Action) }

// subOperationMatchExpr is SubOperationMatches{'pattern'}. No role
// assignment action has suboperations, so it never matches here.
type subOperationMatchExpr struct{ pattern string }

func (subOperationMatchExpr) eval(conditionInput) bool { return false }

// Quantifiers of a cross product comparison: whether any or all values on
// the left, and any or all values on the right, must satisfy it.
type quantifier int

const (
	quantNone quantifier = iota
	quantAnyOfAny
	quantAllOfAny
	quantAnyOfAll
	quantAllOfAll
)

var quantifierNames = map[string]quantifier{
	"foranyofanyvalues": quantAnyOfAny,
	"forallofanyvalues": quantAllOfAny,
	"foranyofallvalues": quantAnyOfAll,
	"forallofallvalues": quantAllOfAll,
}

// comparisonOperator is a base comparison such as GuidNotEquals.
type comparisonOperator struct {
	guid       bool // compares GUIDs, so the attribute must be a GUID
	negate     bool
	ignoreCase bool
}

var comparisonOperators = map[string]comparisonOperator{
	"guidequals":                {guid: true, ignoreCase: true},
	"guidnotequals":             {guid: true, ignoreCase: true, negate: true},
	"stringequals":              {},
	"stringnotequals":           {negate: true},
	"stringequalsignorecase":    {ignoreCase: true},
	"stringnotequalsignorecase": {ignoreCase: true, negate: true},
}

// compareExpr is `@Source[attribute] operator value-or-set`.
type compareExpr struct {
	resource  bool // @Resource rather than @Request
	attribute string
	quant     quantifier
	op        comparisonOperator
	values    []string
}

// eval compares the attribute with the values. An attribute the source
// does not have makes the comparison false, negated operators included,
// so a condition about a missing value never grants access.
func (e compareExpr) eval(in conditionInput) bool {
	attrs := in.Request
	if e.resource {
		attrs = in.Resource
	}
	v, ok := attrs[e.attribute]
	if !ok {
		return false
	}
	if e.attribute == attrRoleDefinitionID {
		v = v[strings.LastIndexByte(v, '/')+1:]
	}
	// Each role assignment attribute has one value, so "any of the left"
	// and "all of the left" are the same test.
	matches := func(r string) bool {
		equal := v == r
		if e.op.ignoreCase {
			equal = strings.EqualFold(v, r)
		}
		return equal != e.op.negate
	}
	switch e.quant {
	case quantAnyOfAll, quantAllOfAll:
		for _, r := range e.values {
			if !matches(r) {
				return false
			}
		}
		return true
	default:
		return slices.ContainsFunc(e.values, matches)
	}
}

// parseCondition parses a condition into an expression, or returns a
// *conditionError.
func parseCondition(text string) (conditionExpr, error) {
	p := &conditionParser{text: text}
	p.next()
	x, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.errorf("unexpected %s after the end of the condition", p.tok)
	}
	return x, nil
}

// validateCondition checks the condition and version of a role assignment
// write. An empty condition is always valid.
func validateCondition(condition, version string) error {
	if condition == "" {
		return nil
	}
	if version != conditionVersion {
		return fmt.Errorf("invalid conditionVersion %q: use %q", version, conditionVersion)
	}
	_, err := parseCondition(condition)
	return err
}

// rejectInvalidCondition writes ARM's 400 when a role assignment write
// carries a condition that does not parse or a version other than 2.0, and
// logs the reason, which ARM's message leaves out.
// NOTE: the message is the one Microsoft's troubleshooting page quotes; the
// code InvalidRoleAssignmentCondition comes from users' reports, not from a
// captured response.
func (s *Server) rejectInvalidCondition(req armRequest, id, condition, version string) bool {
	err := validateCondition(condition, version)
	if err == nil {
		return false
	}
	s.log.Info("role assignment condition rejected", "assignment_id", id, "error", err)
	writeARMError(req.w, http.StatusBadRequest, "InvalidRoleAssignmentCondition",
		"The given role assignment condition is invalid.")
	return true
}

// writeConditionNotFulfilled writes ARM's 403 for a caller whose grants of
// action all carry conditions that the request does not fulfil.
// NOTE: reports confirm the text up to the action; the rest mirrors ARM's
// message for a missing permission.
func writeConditionNotFulfilled(req armRequest, action, target string) {
	writeARMError(req.w, http.StatusForbidden, "AuthorizationFailed", fmt.Sprintf(
		"The client '%s' with object id '%s' has an authorization with ABAC condition that is not fulfilled to perform action '%s' over scope '%s' or the scope is invalid. If access was recently granted, please refresh your credentials.",
		req.caller.clientName(), req.caller.ObjectID, action, target))
}

// conditionAttributes returns the condition attributes of an assignment.
func conditionAttributes(a RoleAssignment) map[string]string {
	return map[string]string{
		attrRoleDefinitionID: a.RoleDefinitionID,
		attrPrincipalID:      a.PrincipalID,
		attrPrincipalType:    a.PrincipalType,
	}
}

// conditionsAllow evaluates the ABAC conditions of the caller's effective
// assignments that grant action at scope. For a write the target is the
// assignment requested and provides the @Request attributes. For a delete
// it is the existing assignment and provides the @Resource attributes.
// It returns true when some granting assignment has no condition or a
// condition that is true. A stored condition that does not parse is true
// for nothing.
// NOTE: only role assignment writes and deletes evaluate conditions, and
// other actions ignore them. A changed condition takes effect at once, not
// after the propagation delay.
func (st *state) conditionsAllow(principalID, action string, scope ResourceID, target RoleAssignment, now time.Time, delay time.Duration) bool {
	in := conditionInput{Action: action}
	if strings.EqualFold(action, actionRoleAssignmentDelete) {
		in.Resource = conditionAttributes(target)
	} else {
		in.Request = conditionAttributes(target)
	}
	principalID = strings.ToLower(principalID)
	keys := st.ancestors(scope)
	for _, a := range st.assignments {
		if a.PrincipalID != principalID || !a.effective(now, delay) || !slices.Contains(keys, strings.ToLower(a.Scope)) {
			continue
		}
		if !st.assignmentGrants(a, action) {
			continue
		}
		if a.Condition == "" {
			return true
		}
		if a.ConditionVersion != "" && a.ConditionVersion != conditionVersion {
			continue
		}
		x, err := parseCondition(a.Condition)
		if err == nil && x.eval(in) {
			return true
		}
	}
	return false
}

// assignmentGrants reports whether the role of a grants the control plane
// action.
func (st *state) assignmentGrants(a *RoleAssignment, action string) bool {
	guid, _ := roleDefinitionGUID(a.RoleDefinitionID)
	for _, p := range st.roles[guid].Permissions {
		if p.allows(action, false) {
			return true
		}
	}
	return false
}

// Token kinds of the condition language.
type tokenKind int

const (
	tokEOF       tokenKind = iota
	tokWord                // keyword, function, operator name or bare GUID
	tokString              // 'text', quotes removed
	tokAttribute           // @Source[name], kept whole
	tokPunct               // ( ) { } , ! && ||
	tokInvalid
)

type token struct {
	kind   tokenKind
	text   string
	offset int
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of text"
	case tokString:
		return fmt.Sprintf("string '%s'", t.text)
	default:
		return fmt.Sprintf("%q", t.text)
	}
}

// conditionParser is a recursive descent parser over a one-token lookahead.
type conditionParser struct {
	text string
	pos  int
	tok  token
}

func (p *conditionParser) errorf(format string, args ...any) error {
	return &conditionError{Offset: p.tok.offset, Message: fmt.Sprintf(format, args...)}
}

func isConditionSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == ':' || c == '-' || c == '_' || c == '.'
}

// next reads the following token into p.tok.
func (p *conditionParser) next() {
	for p.pos < len(p.text) && isConditionSpace(p.text[p.pos]) {
		p.pos++
	}
	start := p.pos
	if start == len(p.text) {
		p.tok = token{kind: tokEOF, offset: start}
		return
	}
	c := p.text[start]
	switch {
	case strings.HasPrefix(p.text[start:], "&&") || strings.HasPrefix(p.text[start:], "||"):
		p.pos += 2
		p.tok = token{kind: tokPunct, text: p.text[start:p.pos], offset: start}
	case strings.IndexByte("(){},!", c) >= 0:
		p.pos++
		p.tok = token{kind: tokPunct, text: p.text[start:p.pos], offset: start}
	case c == '\'':
		end := strings.IndexByte(p.text[start+1:], '\'')
		if end < 0 {
			p.pos = len(p.text)
			p.tok = token{kind: tokInvalid, text: "unterminated string", offset: start}
			return
		}
		p.pos = start + 1 + end + 1
		p.tok = token{kind: tokString, text: p.text[start+1 : p.pos-1], offset: start}
	case c == '@':
		end := strings.IndexByte(p.text[start:], ']')
		if end < 0 {
			p.pos = len(p.text)
			p.tok = token{kind: tokInvalid, text: "attribute without a closing ']'", offset: start}
			return
		}
		p.pos = start + end + 1
		p.tok = token{kind: tokAttribute, text: p.text[start:p.pos], offset: start}
	case isWordByte(c):
		for p.pos < len(p.text) && isWordByte(p.text[p.pos]) {
			p.pos++
		}
		p.tok = token{kind: tokWord, text: p.text[start:p.pos], offset: start}
	default:
		p.pos++
		p.tok = token{kind: tokInvalid, text: fmt.Sprintf("character %q", c), offset: start}
	}
}

func (p *conditionParser) isPunct(s string) bool {
	return p.tok.kind == tokPunct && p.tok.text == s
}

func (p *conditionParser) isWord(s string) bool {
	return p.tok.kind == tokWord && strings.EqualFold(p.tok.text, s)
}

func (p *conditionParser) expect(s string) error {
	if !p.isPunct(s) {
		return p.errorf("got %s; want %q", p.tok, s)
	}
	p.next()
	return nil
}

// binaryOperator returns "and" or "or" when the current token is one.
func (p *conditionParser) binaryOperator() string {
	switch {
	case p.isPunct("&&") || p.isWord("AND"):
		return "and"
	case p.isPunct("||") || p.isWord("OR"):
		return "or"
	}
	return ""
}

// expr parses operands joined by one kind of binary operator. Azure's
// syntax page calls the order of AND mixed with OR ambiguous and requires
// parentheses, so mixing them at one level is an error.
func (p *conditionParser) expr(depth int) (conditionExpr, error) {
	first, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	operands := []conditionExpr{first}
	kind := ""
	for op := p.binaryOperator(); op != ""; op = p.binaryOperator() {
		if kind != "" && op != kind {
			return nil, p.errorf("AND and OR mixed without parentheses; group them with ( )")
		}
		kind = op
		p.next()
		x, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		operands = append(operands, x)
	}
	switch kind {
	case "and":
		return andExpr(operands), nil
	case "or":
		return orExpr(operands), nil
	}
	return first, nil
}

// unary parses an operand with any number of NOT or ! before it.
func (p *conditionParser) unary(depth int) (conditionExpr, error) {
	if depth > maxConditionDepth {
		return nil, p.errorf("nested deeper than %d levels", maxConditionDepth)
	}
	if p.isPunct("!") || p.isWord("NOT") {
		p.next()
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return notExpr{x}, nil
	}
	return p.primary(depth)
}

func (p *conditionParser) primary(depth int) (conditionExpr, error) {
	switch {
	case p.tok.kind == tokInvalid:
		return nil, p.errorf("%s", p.tok.text)
	case p.isPunct("("):
		p.next()
		x, err := p.expr(depth + 1)
		if err != nil {
			return nil, err
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		return x, nil
	case p.isWord("ActionMatches"):
		pattern, err := p.functionArgument()
		if err != nil {
			return nil, err
		}
		return actionMatchExpr{pattern}, nil
	case p.isWord("SubOperationMatches"):
		pattern, err := p.functionArgument()
		if err != nil {
			return nil, err
		}
		return subOperationMatchExpr{pattern}, nil
	case p.tok.kind == tokAttribute:
		return p.comparison()
	}
	return nil, p.errorf("got %s; want (, !, NOT, ActionMatches, SubOperationMatches or an @Request or @Resource attribute", p.tok)
}

// functionArgument parses the {'pattern'} after ActionMatches or
// SubOperationMatches.
func (p *conditionParser) functionArgument() (string, error) {
	name := p.tok.text
	p.next()
	if err := p.expect("{"); err != nil {
		return "", err
	}
	if p.tok.kind != tokString || p.tok.text == "" {
		return "", p.errorf("%s needs a quoted, non-empty pattern; got %s", name, p.tok)
	}
	pattern := p.tok.text
	p.next()
	if err := p.expect("}"); err != nil {
		return "", err
	}
	return pattern, nil
}

// comparison parses `@Source[attribute] operator values`.
func (p *conditionParser) comparison() (conditionExpr, error) {
	var e compareExpr
	ref := p.tok.text
	source, name, _ := strings.Cut(strings.TrimSuffix(ref, "]"), "[")
	switch {
	case strings.EqualFold(source, "@Request"):
	case strings.EqualFold(source, "@Resource"):
		e.resource = true
	default:
		return nil, p.errorf("unsupported attribute source in %s; use @Request or @Resource", ref)
	}
	e.attribute = strings.ToLower(strings.TrimSpace(name))
	isGUID, known := conditionAttributeIsGUID[e.attribute]
	if !known {
		return nil, p.errorf("unsupported attribute %s; use Microsoft.Authorization/roleAssignments:RoleDefinitionId, PrincipalId or PrincipalType", ref)
	}
	p.next()

	if p.tok.kind != tokWord {
		return nil, p.errorf("got %s after %s; want an operator such as ForAnyOfAnyValues:GuidEquals", p.tok, ref)
	}
	opName := strings.ToLower(p.tok.text)
	if q, base, ok := strings.Cut(opName, ":"); ok {
		if e.quant, ok = quantifierNames[q]; !ok {
			return nil, p.errorf("unknown quantifier in %q; use ForAnyOfAnyValues, ForAllOfAnyValues, ForAnyOfAllValues or ForAllOfAllValues", p.tok.text)
		}
		opName = base
	}
	op, ok := comparisonOperators[opName]
	if !ok {
		return nil, p.errorf("unsupported operator %q; use GuidEquals, GuidNotEquals, StringEquals, StringNotEquals or their IgnoreCase forms", p.tok.text)
	}
	if op.guid != isGUID {
		return nil, p.errorf("operator %q does not fit attribute %s", p.tok.text, ref)
	}
	e.op = op
	p.next()

	values, err := p.values(e.quant != quantNone, op.guid)
	if err != nil {
		return nil, err
	}
	e.values = values
	return e, nil
}

// values parses one value, or a {set} when the operator has a quantifier.
// GUIDs may be bare or quoted, and strings must be quoted.
func (p *conditionParser) values(set, guid bool) ([]string, error) {
	if !p.isPunct("{") {
		v, err := p.value(guid)
		if err != nil {
			return nil, err
		}
		return []string{v}, nil
	}
	if !set {
		return nil, p.errorf("a set of values needs a quantifier such as ForAnyOfAnyValues:")
	}
	p.next()
	var out []string
	for {
		v, err := p.value(guid)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if p.isPunct("}") {
			p.next()
			return out, nil
		}
		if err := p.expect(","); err != nil {
			return nil, err
		}
	}
}

func (p *conditionParser) value(guid bool) (string, error) {
	t := p.tok
	switch {
	case guid && (t.kind == tokWord || t.kind == tokString):
		if !isGUID(t.text) {
			return "", p.errorf("got %s; want a GUID such as 00000000-0000-0000-0000-000000000000", t)
		}
	case !guid && t.kind != tokString:
		return "", p.errorf("got %s; want a quoted string", t)
	case !guid:
	default:
		return "", p.errorf("got %s; want a GUID", t)
	}
	p.next()
	return t.text, nil
}
