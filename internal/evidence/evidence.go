// Package evidence holds the tests that try to break the CLI lifecycle's
// promise that no grant outlives its window and no audit record is lost:
// crash points, a fault soak, a secret canary and audit tampering. Each test
// reports its figures as a Result, and the report writer in this package
// turns the results of several runs into docs/reliability.md and
// docs/benchmarks.md.
//
// `go test ./internal/evidence` runs the short versions. With
// ELEVATE_EVIDENCE=long the tests run at full size, and with
// ELEVATE_EVIDENCE_OUT=DIR each test writes its Result to DIR/TEST.json.
// ELEVATE_EVIDENCE_SEED picks the random choices (default 1).
package evidence

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Environment variables that the evidence tests read.
const (
	EnvMode = "ELEVATE_EVIDENCE"
	EnvOut  = "ELEVATE_EVIDENCE_OUT"
	EnvSeed = "ELEVATE_EVIDENCE_SEED"
)

// Long reports whether the full-size versions were requested.
func Long() bool { return os.Getenv(EnvMode) == "long" }

// Mode returns "long" or "short".
func Mode() string {
	if Long() {
		return "long"
	}
	return "short"
}

// Seed returns ELEVATE_EVIDENCE_SEED, or 1 when it is unset or invalid.
func Seed() int64 {
	n, err := strconv.ParseInt(os.Getenv(EnvSeed), 10, 64)
	if err != nil {
		return 1
	}
	return n
}

// Target is the value a figure must reach: Op is "<=", ">=" or "==".
type Target struct {
	Op    string  `json:"op"`
	Value float64 `json:"value"`
}

// Met reports whether v meets the target.
func (t Target) Met(v float64) bool {
	switch t.Op {
	case "<=":
		return v <= t.Value
	case ">=":
		return v >= t.Value
	default:
		return v == t.Value
	}
}

func (t Target) String() string { return t.Op + " " + formatNumber(t.Value) }

// Figure is one measured number.
type Figure struct {
	// Name is "TEST.QUANTITY", such as "crash.assignments_left".
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
	// Target is nil for figures that only describe, such as a count of
	// exit codes.
	Target *Target `json:"target,omitempty"`
	// Notes explain how the figure was counted or why it missed its target.
	Notes []string `json:"notes,omitempty"`
}

// Result holds the figures of one evidence test in one run.
type Result struct {
	Test    string   `json:"test"`
	Mode    string   `json:"mode"`
	Seed    int64    `json:"seed"`
	Figures []Figure `json:"figures"`
}

// Add appends a figure. target may be nil.
func (r *Result) Add(name string, value float64, unit string, target *Target, notes ...string) {
	r.Figures = append(r.Figures, Figure{Name: name, Value: value, Unit: unit, Target: target, Notes: notes})
}

// Write stores r as DIR/TEST.json when ELEVATE_EVIDENCE_OUT names DIR, and
// does nothing otherwise.
func (r Result) Write() error {
	dir := os.Getenv(EnvOut)
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create evidence directory %q: %w", dir, err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s result: %w", r.Test, err)
	}
	path := filepath.Join(dir, r.Test+".json")
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write evidence result %q: %w", path, err)
	}
	return nil
}

// formatNumber prints whole numbers without decimals and others with up to
// three significant decimals.
func formatNumber(v float64) string {
	if v == float64(int64(v)) {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}
