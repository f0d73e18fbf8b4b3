package emulator

import (
	"errors"
	"fmt"
	"strings"
)

// filterTerm is one clause of an ARM $filter: a function call such as
// atScope() or assignedTo('id'), or a comparison such as principalId eq 'id'.
type filterTerm struct {
	Name  string // lower-case function or property name
	Value string // the quoted argument or right-hand side; "" for atScope()
	Call  bool   // true for name(...) terms
}

var errInvalidFilter = errors.New("invalid $filter")

// parseFilter parses the subset of OData that ARM's authorization lists
// accept: terms joined by "and", where a term is name(), name('v') or
// name eq 'v'. Quotes inside values are doubled (”) as OData escapes them.
func parseFilter(s string) ([]filterTerm, error) {
	p := filterParser{src: s}
	var terms []filterTerm
	for {
		p.skipSpace()
		t, err := p.term()
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", errInvalidFilter, s, err)
		}
		terms = append(terms, t)
		p.skipSpace()
		if p.done() {
			return terms, nil
		}
		word := strings.ToLower(p.word())
		if word != "and" {
			return nil, fmt.Errorf("%w %q: got %q at offset %d; want \"and\"", errInvalidFilter, s, word, p.pos)
		}
	}
}

type filterParser struct {
	src string
	pos int
}

func (p *filterParser) done() bool { return p.pos >= len(p.src) }

func (p *filterParser) skipSpace() {
	for !p.done() && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t') {
		p.pos++
	}
}

// word reads an identifier made of letters, digits, '_' and '.'.
func (p *filterParser) word() string {
	start := p.pos
	for !p.done() {
		c := p.src[p.pos]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' {
			p.pos++
			continue
		}
		break
	}
	return p.src[start:p.pos]
}

// quoted reads a single-quoted OData string literal.
func (p *filterParser) quoted() (string, error) {
	if p.done() || p.src[p.pos] != '\'' {
		return "", fmt.Errorf("want a quoted value at offset %d", p.pos)
	}
	p.pos++
	var b strings.Builder
	for !p.done() {
		c := p.src[p.pos]
		p.pos++
		if c != '\'' {
			b.WriteByte(c)
			continue
		}
		if !p.done() && p.src[p.pos] == '\'' {
			b.WriteByte('\'')
			p.pos++
			continue
		}
		return b.String(), nil
	}
	return "", errors.New("unterminated quoted value")
}

func (p *filterParser) term() (filterTerm, error) {
	name := p.word()
	if name == "" {
		return filterTerm{}, fmt.Errorf("want a name at offset %d", p.pos)
	}
	t := filterTerm{Name: strings.ToLower(name)}
	p.skipSpace()
	if !p.done() && p.src[p.pos] == '(' {
		t.Call = true
		p.pos++
		p.skipSpace()
		if !p.done() && p.src[p.pos] == '\'' {
			v, err := p.quoted()
			if err != nil {
				return t, err
			}
			t.Value = v
			p.skipSpace()
		}
		if p.done() || p.src[p.pos] != ')' {
			return t, fmt.Errorf("want ) at offset %d", p.pos)
		}
		p.pos++
		return t, nil
	}
	if op := strings.ToLower(p.word()); op != "eq" {
		return t, fmt.Errorf("got operator %q after %q; want eq", op, name)
	}
	p.skipSpace()
	v, err := p.quoted()
	if err != nil {
		return t, err
	}
	t.Value = v
	return t, nil
}

// assignmentFilter is a parsed role assignment list filter.
type assignmentFilter struct {
	AtScope     bool   // atScope(): only assignments at or above the scope
	PrincipalID string // principalId eq '...'
	AssignedTo  string // assignedTo('...'): the principal and its groups
}

// parseAssignmentFilter accepts the combinations ARM documents for
// roleAssignments lists: atScope(), principalId eq, assignedTo() and
// "and" joins of them; any other term is an error.
func parseAssignmentFilter(s string) (assignmentFilter, error) {
	var f assignmentFilter
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	terms, err := parseFilter(s)
	if err != nil {
		return f, err
	}
	for _, t := range terms {
		switch {
		case t.Call && t.Name == "atscope" && t.Value == "":
			f.AtScope = true
		case t.Call && t.Name == "assignedto" && t.Value != "":
			f.AssignedTo = t.Value
		case !t.Call && t.Name == "principalid":
			f.PrincipalID = t.Value
		default:
			return f, fmt.Errorf("%w %q: unsupported term %q", errInvalidFilter, s, t.Name)
		}
	}
	if f.AssignedTo != "" && f.PrincipalID != "" {
		return f, fmt.Errorf("%w %q: use either assignedTo() or principalId eq, not both", errInvalidFilter, s)
	}
	return f, nil
}

// definitionFilter is a parsed role definition list filter.
type definitionFilter struct {
	RoleName string // roleName eq '...', compared case-insensitively
	Type     string // type eq 'BuiltInRole' or 'CustomRole'
}

func parseDefinitionFilter(s string) (definitionFilter, error) {
	var f definitionFilter
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	terms, err := parseFilter(s)
	if err != nil {
		return f, err
	}
	for _, t := range terms {
		switch {
		case !t.Call && t.Name == "rolename":
			f.RoleName = t.Value
		case !t.Call && t.Name == "type":
			f.Type = t.Value
		default:
			return f, fmt.Errorf("%w %q: unsupported term %q", errInvalidFilter, s, t.Name)
		}
	}
	return f, nil
}
