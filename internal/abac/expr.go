package abac

import (
	"slices"
	"strings"
)

// expr is a parsed condition or a part of one.
type expr interface {
	eval(in Input) bool
}

type andExpr []expr

func (e andExpr) eval(in Input) bool {
	for _, x := range e {
		if !x.eval(in) {
			return false
		}
	}
	return true
}

type orExpr []expr

func (e orExpr) eval(in Input) bool {
	for _, x := range e {
		if x.eval(in) {
			return true
		}
	}
	return false
}

type notExpr struct{ x expr }

func (e notExpr) eval(in Input) bool { return !e.x.eval(in) }

// actionMatchExpr is ActionMatches{'pattern'}, with '*' as in role actions.
type actionMatchExpr struct{ pattern string }

func (e actionMatchExpr) eval(in Input) bool { return actionMatches(e.pattern, in.Action) }

// subOperationMatchExpr is SubOperationMatches{'pattern'}. No role
// assignment action has suboperations, so it never matches here.
type subOperationMatchExpr struct{ pattern string }

func (subOperationMatchExpr) eval(Input) bool { return false }

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
func (e compareExpr) eval(in Input) bool {
	attrs := in.Request
	if e.resource {
		attrs = in.Resource
	}
	v, ok := attrs[e.attribute]
	if !ok {
		return false
	}
	if e.attribute == AttrRoleDefinitionID {
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

// walk calls visit for every comparison in x, in the order of the text.
func walk(x expr, visit func(compareExpr)) {
	switch e := x.(type) {
	case andExpr:
		for _, y := range e {
			walk(y, visit)
		}
	case orExpr:
		for _, y := range e {
			walk(y, visit)
		}
	case notExpr:
		walk(e.x, visit)
	case compareExpr:
		visit(e)
	}
}

// actionMatches compares an operation with an action pattern the way Azure
// RBAC does: case-insensitively, with '*' standing for any run of
// characters, including '/'.
func actionMatches(pattern, action string) bool {
	return wildcardMatch(strings.ToLower(pattern), strings.ToLower(action))
}

// wildcardMatch matches s against pattern, where '*' matches any run of
// bytes. It backtracks only to the last '*', so it takes O(len(pattern) *
// len(s)) steps at most.
func wildcardMatch(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
