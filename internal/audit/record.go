// Package audit writes Elevate's audit trail: an append-only JSON Lines file
// in which every record carries the SHA-256 of the line before it. Editing,
// deleting, inserting or reordering any line except the last breaks the
// chain at a line that Verify names. Changing the last line changes the
// head hash in Report, so callers that publish the head (for example in a
// step summary) can detect that too.
package audit

import "time"

// SchemaVersion is the version of the record layout. Verify rejects records
// of any other version.
const SchemaVersion = 1

// Event names. Other events may be added; Verify does not restrict them.
const (
	EventRequest      = "request"
	EventDecision     = "decision"
	EventGrant        = "grant"
	EventEffective    = "effective"
	EventAction       = "action"
	EventRotate       = "rotate"
	EventRevoke       = "revoke"
	EventVerify       = "verify"
	EventRevokeFailed = "revoke_failed"
	EventError        = "error"
)

// Outcomes of an event.
const (
	OutcomeOK     = "ok"
	OutcomeFailed = "failed"
	OutcomeDenied = "denied"
)

// Durations are the measured phases of a grant, in milliseconds.
type Durations struct {
	GrantMS     int64 `json:"grant_ms"`     // create the role assignment
	EffectiveMS int64 `json:"effective_ms"` // from creation until the permission works
	HeldMS      int64 `json:"held_ms"`      // from creation until revoked
}

// PairRecord is one role x scope pair as granted or revoked.
type PairRecord struct {
	RoleID         string `json:"role_id"`
	RoleName       string `json:"role_name,omitempty"`
	Scope          string `json:"scope"`
	AssignmentID   string `json:"assignment_id,omitempty"`
	AssignmentName string `json:"assignment_name,omitempty"`
	// PreExisting marks an assignment that Elevate found and adopted rather
	// than created, and so must not delete.
	PreExisting bool   `json:"pre_existing,omitempty"`
	Backend     string `json:"backend,omitempty"`
}

// Record is one audit event. Log.Append fills Schema, Seq, Time and Prev.
type Record struct {
	Schema    int          `json:"schema"`
	Seq       int64        `json:"seq"` // 1 for the first line of a file
	Time      time.Time    `json:"time"`
	RequestID string       `json:"request_id,omitempty"`
	Event     string       `json:"event"`
	Actor     string       `json:"actor,omitempty"`
	Principal string       `json:"principal,omitempty"`
	Pairs     []PairRecord `json:"pairs,omitempty"`
	Outcome   string       `json:"outcome,omitempty"`
	Durations *Durations   `json:"durations,omitempty"`
	// SecretVersion is the Key Vault secret version id written by a
	// rotation. Secret values never belong in a record.
	SecretVersion         string `json:"secret_version,omitempty"`
	PreviousSecretVersion string `json:"previous_secret_version,omitempty"`
	Detail                string `json:"detail,omitempty"`
	Error                 string `json:"error,omitempty"`
	// Prev is the SHA-256, in hex, of the previous line's bytes without its
	// newline, or "" on the first line.
	Prev string `json:"prev"`
}
