package access

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Limits on a request.
const (
	// MinDuration is the shortest grant Elevate accepts. Azure can take
	// minutes to make a role assignment effective, so a shorter grant may
	// expire before it works.
	MinDuration = 5 * time.Minute
	// MaxJustification is the maximum justification length in characters.
	MaxJustification = 1024
	// maxMetadataValue caps each metadata field; URLs are the longest values.
	maxMetadataValue = 2048
)

// Principal types that Azure role assignments accept and Elevate grants to.
const (
	PrincipalServicePrincipal = "ServicePrincipal"
	PrincipalUser             = "User"
	PrincipalGroup            = "Group"
)

// Principal is the Entra ID object that receives the grant.
type Principal struct {
	ID   string `json:"id"`   // object id, a GUID
	Type string `json:"type"` // ServicePrincipal, User or Group
}

// Metadata is the context of a request, shown to approvers and audited. All
// fields are optional. In workflow mode they come from the GitHub Actions
// environment.
type Metadata struct {
	Repository  string `json:"repository,omitempty"`
	Workflow    string `json:"workflow,omitempty"`
	RunID       string `json:"run_id,omitempty"`
	RunAttempt  string `json:"run_attempt,omitempty"`
	RunURL      string `json:"run_url,omitempty"`
	PullRequest string `json:"pull_request,omitempty"`
	Ticket      string `json:"ticket,omitempty"`
	Commit      string `json:"commit,omitempty"`
	Ref         string `json:"ref,omitempty"`
	Environment string `json:"environment,omitempty"`
	Actor       string `json:"actor,omitempty"`
}

// fields returns the metadata as (json name, value) pairs in a fixed order,
// for validation.
func (m Metadata) fields() [][2]string {
	return [][2]string{
		{"repository", m.Repository}, {"workflow", m.Workflow},
		{"run_id", m.RunID}, {"run_attempt", m.RunAttempt},
		{"run_url", m.RunURL}, {"pull_request", m.PullRequest},
		{"ticket", m.Ticket}, {"commit", m.Commit}, {"ref", m.Ref},
		{"environment", m.Environment}, {"actor", m.Actor},
	}
}

// Request is the access a pipeline requests: pairs for one principal, for a
// duration, with a justification.
type Request struct {
	ID            string // UUID
	Principal     Principal
	Pairs         []Pair
	Justification string
	Duration      time.Duration
	Metadata      Metadata
	CreatedAt     time.Time
}

// ExpiresAt returns CreatedAt plus Duration, the latest time at which any
// grant of the request may still exist.
func (r Request) ExpiresAt() time.Time { return r.CreatedAt.Add(r.Duration) }

// Validate checks the request against Elevate's rules and maxDuration, the
// configured maximum grant duration. It returns every problem found, joined,
// each an *InputError that names the field, the value and the fix.
func (r Request) Validate(maxDuration time.Duration) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if !IsGUID(r.ID) {
		add(invalid("request id", r.ID, "is not a UUID", "create requests with a random UUID"))
	}
	if r.CreatedAt.IsZero() {
		add(invalid("created_at", "", "is not set", "set CreatedAt to the time the request was made"))
	}
	add(checkPrincipal(r.Principal))
	add(checkJustification(r.Justification))
	add(checkDuration(r.Duration, maxDuration))
	add(checkPairs(r.Pairs))
	for _, f := range r.Metadata.fields() {
		add(checkMetadataValue(f[0], f[1]))
	}
	return errors.Join(errs...)
}

func checkPrincipal(p Principal) error {
	if !IsGUID(p.ID) {
		return invalid("principal id", p.ID, "is not a GUID", "pass the Entra ID object id of the principal")
	}
	switch p.Type {
	case PrincipalServicePrincipal, PrincipalUser, PrincipalGroup:
		return nil
	}
	return invalid("principal type", p.Type, "is not a supported principal type",
		"use ServicePrincipal, User or Group")
}

func checkJustification(s string) error {
	const field = "--justification"
	if strings.TrimSpace(s) == "" {
		return invalid(field, s, "is empty", "say why the pipeline needs the access, for example a ticket and the change")
	}
	if !utf8.ValidString(s) {
		return invalid(field, s, "is not valid UTF-8", "pass plain text")
	}
	if n := utf8.RuneCountInString(s); n > MaxJustification {
		return invalid(field, s, fmt.Sprintf("is %d characters, more than the maximum of %d", n, MaxJustification),
			"shorten it and link to a ticket for detail")
	}
	if r, ok := findControl(s); ok {
		return invalid(field, s, fmt.Sprintf("contains the control character %U", r),
			"pass a single line of text without tabs or line breaks")
	}
	return nil
}

func checkDuration(d, maxDuration time.Duration) error {
	const field = "--duration"
	if maxDuration < MinDuration {
		return invalid("maximum duration", maxDuration.String(),
			fmt.Sprintf("is less than the minimum grant duration %s", MinDuration),
			"configure a maximum duration of at least "+MinDuration.String())
	}
	if d < MinDuration || d > maxDuration {
		return invalid(field, d.String(), fmt.Sprintf("is outside the allowed range %s to %s", MinDuration, maxDuration),
			"pass a duration such as 15m within that range")
	}
	return nil
}

func checkPairs(pairs []Pair) error {
	if len(pairs) == 0 {
		return invalid("pairs", "", "is empty", "pass at least one --role and one --scope")
	}
	for _, p := range pairs {
		if !IsGUID(p.RoleID) || p.RoleID != strings.ToLower(p.RoleID) {
			return invalid("pair role id", p.RoleID, "is not a lowercase role definition GUID", "build pairs with BuildPairs")
		}
		if p.Scope.IsZero() {
			return invalid("pair scope", "", "is not a parsed resource id", "build pairs with BuildPairs")
		}
	}
	return checkDuplicatePairs(pairs)
}

func checkMetadataValue(field, value string) error {
	if !utf8.ValidString(value) {
		return invalid(field, value, "is not valid UTF-8", "pass plain text")
	}
	if n := utf8.RuneCountInString(value); n > maxMetadataValue {
		return invalid(field, value, fmt.Sprintf("is %d characters, more than the maximum of %d", n, maxMetadataValue),
			"pass an id or a URL, not a document")
	}
	if r, ok := findControl(value); ok {
		return invalid(field, value, fmt.Sprintf("contains the control character %U", r), "pass a single line of text")
	}
	return nil
}

// findControl returns the first control or bidirectional format character
// in s. Format characters can make text display differently from what it
// contains, so they count as control characters here.
func findControl(s string) (rune, bool) {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029' {
			return r, true
		}
	}
	return 0, false
}

// AssignmentNamespace is the fixed UUIDv5 namespace of AssignmentName.
// Changing it renames every future assignment, so a retry after an upgrade
// would no longer find the assignment made before it.
const AssignmentNamespace = "2e418cf3-47df-4b93-9f72-325032160ca2"

var assignmentNamespace = uuid.MustParse(AssignmentNamespace)

// AssignmentName returns the role assignment name for one pair of a request:
// a UUIDv5 of the lowercased request id, principal id, role GUID and scope
// Key(), joined by newlines. A retry or a crash recovery computes the same
// name and so finds the assignment it created before.
func AssignmentName(requestID, principalID, roleGUID string, scope ResourceID) string {
	data := strings.Join([]string{
		strings.ToLower(requestID),
		strings.ToLower(principalID),
		strings.ToLower(roleGUID),
		scope.Key(),
	}, "\n")
	return uuid.NewSHA1(assignmentNamespace, []byte(data)).String()
}

// hashVersion is part of the hashed document, so a change to its layout
// cannot make an old approval match a new document.
const hashVersion = 1

// approvedView is the canonical document behind Request.Hash, holding the
// fields shown to an approver. The struct fixes the field order.
type approvedView struct {
	Version       int          `json:"version"`
	RequestID     string       `json:"request_id"`
	Principal     Principal    `json:"principal"`
	Pairs         []hashedPair `json:"pairs"`
	Duration      string       `json:"duration"`
	Justification string       `json:"justification"`
	Metadata      Metadata     `json:"metadata"`
}

type hashedPair struct {
	RoleID string `json:"role_id"`
	Scope  string `json:"scope"`
}

// Hash returns the SHA-256, in hex, of a canonical JSON document of what an
// approver sees: request id, principal, pairs in order, duration,
// justification and metadata. An approval is bound to this hash, so any
// change to those fields after review voids it. CreatedAt is left out
// because approvers are not shown it. The hash is meaningful only for a
// request that passed Validate, because JSON encoding replaces invalid
// UTF-8, so two invalid strings could hash alike.
func (r Request) Hash() string {
	view := approvedView{
		Version:       hashVersion,
		RequestID:     strings.ToLower(r.ID),
		Principal:     Principal{ID: strings.ToLower(r.Principal.ID), Type: r.Principal.Type},
		Pairs:         make([]hashedPair, len(r.Pairs)),
		Duration:      r.Duration.String(),
		Justification: r.Justification,
		Metadata:      r.Metadata,
	}
	for i, p := range r.Pairs {
		view.Pairs[i] = hashedPair{RoleID: strings.ToLower(p.RoleID), Scope: p.Scope.String()}
	}
	// Marshal cannot fail, because the document contains only strings,
	// ints and slices of structs of those.
	doc, _ := json.Marshal(view)
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:])
}
