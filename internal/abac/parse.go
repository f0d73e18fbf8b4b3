package abac

import (
	"fmt"
	"strings"

	"github.com/elevate-dev/elevate/internal/access"
)

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

// parser is a recursive descent parser over a one-token lookahead.
type parser struct {
	text string
	pos  int
	tok  token
}

func (p *parser) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: p.tok.offset, Message: fmt.Sprintf(format, args...)}
}

func isConditionSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == ':' || c == '-' || c == '_' || c == '.'
}

// next reads the following token into p.tok.
func (p *parser) next() {
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

func (p *parser) isPunct(s string) bool {
	return p.tok.kind == tokPunct && p.tok.text == s
}

func (p *parser) isWord(s string) bool {
	return p.tok.kind == tokWord && strings.EqualFold(p.tok.text, s)
}

func (p *parser) expect(s string) error {
	if !p.isPunct(s) {
		return p.errorf("got %s; want %q", p.tok, s)
	}
	p.next()
	return nil
}

// binaryOperator returns "and" or "or" when the current token is one.
func (p *parser) binaryOperator() string {
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
func (p *parser) expr(depth int) (expr, error) {
	first, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	operands := []expr{first}
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
func (p *parser) unary(depth int) (expr, error) {
	if depth > MaxDepth {
		return nil, p.errorf("nested deeper than %d levels", MaxDepth)
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

func (p *parser) primary(depth int) (expr, error) {
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
func (p *parser) functionArgument() (string, error) {
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
func (p *parser) comparison() (expr, error) {
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
	isGUID, known := attributeIsGUID[e.attribute]
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
func (p *parser) values(set, guid bool) ([]string, error) {
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

func (p *parser) value(guid bool) (string, error) {
	t := p.tok
	switch {
	case guid && (t.kind == tokWord || t.kind == tokString):
		if !access.IsGUID(t.text) {
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
