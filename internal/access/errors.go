// Package access models what Elevate is asked to grant: Azure resource ids
// used as scopes, role references, role x scope pairs and the request that
// carries them to an approver. Everything here is pure and safe to call on
// untrusted input.
package access

import (
	"errors"
	"fmt"
)

// ErrInvalidInput is the sentinel that every validation error of this package
// wraps, so the CLI can map them to the usage exit code with errors.Is.
var ErrInvalidInput = errors.New("invalid input")

// maxQuotedValue caps how much of an offending value an error message repeats,
// so a hostile or huge input cannot flood logs.
const maxQuotedValue = 200

// InputError describes one rejected value: which field or flag, the value, the
// problem and how to fix it.
type InputError struct {
	Field   string // flag or field name, such as "--scope" or "justification"
	Value   string
	Problem string
	Hint    string // how to fix it, often an example of a valid value
}

// Error reads `invalid FIELD "VALUE": PROBLEM; HINT`.
func (e *InputError) Error() string {
	value := e.Value
	if r := []rune(value); len(r) > maxQuotedValue {
		value = string(r[:maxQuotedValue]) + "..."
	}
	msg := fmt.Sprintf("invalid %s %q: %s", e.Field, value, e.Problem)
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// Unwrap lets errors.Is(err, ErrInvalidInput) match every InputError.
func (e *InputError) Unwrap() error { return ErrInvalidInput }

func invalid(field, value, problem, hint string) *InputError {
	return &InputError{Field: field, Value: value, Problem: problem, Hint: hint}
}
