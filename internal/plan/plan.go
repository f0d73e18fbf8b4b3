// Package plan reads and writes the plan file that carries an approved
// request from the `elevate plan` job to the `elevate apply` and
// `elevate revoke` jobs. The file is JSON with a SHA-256 of its own content,
// and the request's approval hash is what the gate was shown; apply refuses a
// file whose content, hash or validity window does not hold.
package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/approval"
)

// SchemaVersion is the plan file format version.
const SchemaVersion = 1

// MaxFileBytes bounds what Read accepts; a plan of 200 pairs is about 200 KB.
const MaxFileBytes = 4 << 20

// Plan is the content of a plan file.
type Plan struct {
	Schema int `json:"schema"`
	// Request is everything the lifecycle needs to grant, act and revoke.
	Request Request `json:"request"`
	// Pairs repeats the request's pairs with their names and the
	// deterministic assignment names, so revoke needs no lookup.
	Pairs []Pair `json:"pairs"`
	// ApprovalHash is access.Request.Hash of the request: what the gate was shown.
	ApprovalHash string          `json:"approval_hash"`
	Preflight    []Check         `json:"preflight,omitempty"`
	Table        json.RawMessage `json:"table"`
	CreatedAt    time.Time       `json:"created_at"`
	ValidUntil   time.Time       `json:"valid_until"`
	// SHA256 is the hex SHA-256 of the plan's compact JSON with this field
	// empty, not of the file's bytes (which are indented).
	SHA256 string `json:"sha256"`
}

// Request is the serialised access.Request.
type Request struct {
	ID            string           `json:"id"`
	Principal     access.Principal `json:"principal"`
	Pairs         []access.Pair    `json:"pairs"`
	Justification string           `json:"justification"`
	Duration      string           `json:"duration"`
	Metadata      access.Metadata  `json:"metadata"`
	CreatedAt     time.Time        `json:"created_at"`
}

// Pair is one pair with what apply and revoke need about it.
type Pair struct {
	RoleID           string `json:"role_id"`
	RoleName         string `json:"role_name"`
	RoleDefinitionID string `json:"role_definition_id"`
	Scope            string `json:"scope"`
	AssignmentName   string `json:"assignment_name"`
}

// Check is one pre-flight result.
type Check struct {
	Name    string `json:"name"`
	Scope   string `json:"scope,omitempty"`
	OK      bool   `json:"ok"`
	Warning bool   `json:"warning,omitempty"`
	Detail  string `json:"detail"`
}

// FromRequest serialises req.
func FromRequest(req access.Request) Request {
	return Request{
		ID: req.ID, Principal: req.Principal, Pairs: req.Pairs, Justification: req.Justification,
		Duration: req.Duration.String(), Metadata: req.Metadata, CreatedAt: req.CreatedAt,
	}
}

// AccessRequest turns the serialised request back into an access.Request.
func (r Request) AccessRequest() (access.Request, error) {
	d, err := time.ParseDuration(r.Duration)
	if err != nil {
		return access.Request{}, fmt.Errorf("invalid plan request duration %q: %w", r.Duration, err)
	}
	return access.Request{
		ID: r.ID, Principal: r.Principal, Pairs: r.Pairs, Justification: r.Justification,
		Duration: d, Metadata: r.Metadata, CreatedAt: r.CreatedAt,
	}, nil
}

// New builds a plan for a validated request.
func New(req access.Request, pairs []Pair, table approval.Table, checks []Check, now time.Time, validFor time.Duration) (Plan, error) {
	tableJSON, err := table.JSON()
	if err != nil {
		return Plan{}, fmt.Errorf("encode approval table: %w", err)
	}
	return Plan{
		Schema:       SchemaVersion,
		Request:      FromRequest(req),
		Pairs:        pairs,
		ApprovalHash: req.Hash(),
		Preflight:    checks,
		Table:        tableJSON,
		CreatedAt:    now.UTC(),
		ValidUntil:   now.UTC().Add(validFor),
	}, nil
}

// Write stores p at path with its content hash filled in, and returns the hash.
func Write(path string, p Plan) (string, error) {
	p.SHA256 = ""
	sum, err := contentHash(p)
	if err != nil {
		return "", err
	}
	p.SHA256 = sum
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode plan: %w", err)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("create plan directory: %w", err)
		}
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("write plan %s: %w", path, err)
	}
	return sum, nil
}

// Errors Read and Check return, for the CLI's messages and exit codes.
var (
	ErrTampered = errors.New("plan file content does not match its hash")
	ErrExpired  = errors.New("plan has expired")
	ErrMismatch = errors.New("plan differs from what was approved")
)

// Read loads and checks a plan file: size, strict JSON, schema, and its
// content hash. Validity and the approval hash are checked by Check.
func Read(path string) (Plan, error) {
	var p Plan
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, fmt.Errorf("%w: plan file %s does not exist: pass the path the plan step wrote (its plan-path output), and carry the file from the plan job as an artifact",
			access.ErrInvalidInput, path)
	}
	if err != nil {
		return p, fmt.Errorf("open plan: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if n, err := buf.ReadFrom(io.LimitReader(f, MaxFileBytes+1)); err != nil {
		return p, fmt.Errorf("read plan %s: %w", path, err)
	} else if n > MaxFileBytes {
		return p, fmt.Errorf("read plan %s: larger than %d bytes", path, MaxFileBytes)
	}
	return Parse(buf.Bytes())
}

// Parse decodes and checks plan file bytes.
func Parse(data []byte) (Plan, error) {
	var p Plan
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("decode plan: %w", err)
	}
	if dec.More() {
		return p, errors.New("decode plan: trailing data after the JSON document")
	}
	if p.Schema != SchemaVersion {
		return p, fmt.Errorf("unsupported plan schema %d: this elevate reads schema %d; plan and apply with the same version", p.Schema, SchemaVersion)
	}
	want := p.SHA256
	p.SHA256 = ""
	got, err := contentHash(p)
	if err != nil {
		return p, err
	}
	p.SHA256 = want
	if !strings.EqualFold(got, want) {
		return p, fmt.Errorf("%w: recorded %q, computed %q", ErrTampered, want, got)
	}
	return p, nil
}

// Check verifies that the plan is still valid at now, that its request hashes
// to the approval hash it carries, that the pairs listed for revoke are the
// request's own, and, when expectHash is set, that it is the plan the gate
// was shown. It returns the request to run.
func (p Plan) Check(now time.Time, expectHash string) (access.Request, error) {
	req, err := p.Request.AccessRequest()
	if err != nil {
		return req, err
	}
	if !now.Before(p.ValidUntil) {
		return req, fmt.Errorf("%w: valid until %s; run `elevate plan` again", ErrExpired, p.ValidUntil.Format(time.RFC3339))
	}
	if expectHash != "" && !strings.EqualFold(expectHash, p.SHA256) {
		return req, fmt.Errorf("%w: expected hash %q, plan has %q", ErrMismatch, expectHash, p.SHA256)
	}
	if got := req.Hash(); got != p.ApprovalHash {
		return req, fmt.Errorf("%w: request hashes to %q, approval was for %q", ErrMismatch, got, p.ApprovalHash)
	}
	if len(p.Pairs) != len(req.Pairs) {
		return req, fmt.Errorf("%w: %d pairs listed, request has %d", ErrMismatch, len(p.Pairs), len(req.Pairs))
	}
	for i, pair := range req.Pairs {
		want := access.AssignmentName(req.ID, req.Principal.ID, pair.RoleID, pair.Scope)
		if p.Pairs[i].AssignmentName != want || !strings.EqualFold(p.Pairs[i].Scope, pair.Scope.String()) {
			return req, fmt.Errorf("%w: pair %d (%s) does not match the request", ErrMismatch, i+1, pair)
		}
	}
	return req, nil
}

func contentHash(p Plan) (string, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("encode plan: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}
