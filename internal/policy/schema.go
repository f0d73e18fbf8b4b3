package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// policyFile is the YAML form of a policy.
type policyFile struct {
	Version int `yaml:"version"`
	// BreakGlassPrefix is the justification prefix that counts as a
	// break-glass reason, such as "BREAK-GLASS:".
	BreakGlassPrefix string `yaml:"break_glass_prefix"`
	// CELCostLimit overrides defaultCELCostLimit.
	CELCostLimit uint64              `yaml:"cel_cost_limit"`
	Groups       map[string][]string `yaml:"groups"`
	Rules        []ruleFile          `yaml:"rules"`
}

type ruleFile struct {
	ID          string    `yaml:"id"`
	Description string    `yaml:"description"`
	Match       matchFile `yaml:"match"`
	// Outcome is deny, auto_approve or require. A break-glass rule may
	// leave it empty because it always grants without approval.
	Outcome       string       `yaml:"outcome"`
	Message       string       `yaml:"message"`
	Require       *requireFile `yaml:"require"`
	MaxDuration   duration     `yaml:"max_duration"`
	RequireTicket bool         `yaml:"require_ticket"`
	BreakGlass    bool         `yaml:"break_glass"`
}

type requireFile struct {
	Approvals int      `yaml:"approvals"`
	Groups    []string `yaml:"groups"`
	EachGroup bool     `yaml:"each_group"`
}

type matchFile struct {
	// Requester maps a claim name to the exact values or globs it may have.
	Requester map[string]stringList `yaml:"requester"`
	// RequesterIn lists policy groups, and the requester must be in one.
	RequesterIn []string  `yaml:"requester_in"`
	Roles       []string  `yaml:"roles"`
	Scopes      []string  `yaml:"scopes"`
	Time        *timeFile `yaml:"time"`
	Condition   string    `yaml:"condition"`
}

type timeFile struct {
	// Timezone is an IANA time zone name such as "Europe/Berlin", and the
	// default is UTC.
	Timezone string   `yaml:"timezone"`
	Days     []string `yaml:"days"`
	Hours    []string `yaml:"hours"`
}

// duration is a time.Duration written as a Go duration string ("15m").
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: duration must be a string such as 15m or 2h30m", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: duration %q is invalid; want a Go duration such as 15m or 2h30m", n.Line, n.Value)
	}
	*d = duration(v)
	return nil
}

// stringList is a YAML string or a sequence of strings.
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = stringList{n.Value}
		return nil
	case yaml.SequenceNode:
		var values []string
		if err := n.Decode(&values); err != nil {
			return err
		}
		*l = values
		return nil
	default:
		return fmt.Errorf("line %d: want a string or a list of strings", n.Line)
	}
}

// yamlTypeNames replaces the Go type names in strict-decoding errors with
// the YAML section names that a policy author writes.
var yamlTypeNames = strings.NewReplacer(
	"in type policy.policyFile", "at the top level",
	"in type policy.ruleFile", "in a rule",
	"in type policy.requireFile", "in require",
	"in type policy.matchFile", "in match",
	"in type policy.timeFile", "in time",
	"in type policy.caseFile", "at the top level",
	"in type policy.caseSpec", "in a case",
	"in type policy.caseInput", "in input",
	"in type policy.casePair", "in a pair",
	"in type policy.caseWant", "in want",
	"in type policy.caseApproval", "in an approval",
)

// decodeStrict decodes a single YAML document into a T, rejecting unknown
// fields, and also returns the document's node tree so that later checks
// can report line numbers.
func decodeStrict[T any](data []byte) (T, *yaml.Node, error) {
	var v T
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return v, nil, fmt.Errorf("parse YAML: %w", err)
	}
	if len(root.Content) == 0 {
		return v, nil, errors.New("parse YAML: the document is empty")
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&v); err != nil {
		return v, nil, fmt.Errorf("parse YAML: %s", yamlTypeNames.Replace(err.Error()))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return v, nil, fmt.Errorf("parse YAML: line %d: found a second document; want exactly one", extra.Line)
	}
	return v, &root, nil
}

// lineOf returns the line of the node at path (mapping keys as strings,
// sequence indexes as ints) below the document root. When the path ends
// early it returns the line of the deepest node found, and 0 for none.
func lineOf(root *yaml.Node, path ...any) int {
	if root == nil || len(root.Content) == 0 {
		return 0
	}
	node := root.Content[0]
	line := node.Line
	for _, step := range path {
		next := childOf(node, step)
		if next == nil {
			return line
		}
		node, line = next, next.Line
	}
	return line
}

// childOf returns the value under key step of a mapping, or the element at
// index step of a sequence, or nil.
func childOf(node *yaml.Node, step any) *yaml.Node {
	switch s := step.(type) {
	case string:
		if node.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			if node.Content[i].Value == s {
				return node.Content[i+1]
			}
		}
	case int:
		if node.Kind == yaml.SequenceNode && s >= 0 && s < len(node.Content) {
			return node.Content[s]
		}
	}
	return nil
}
