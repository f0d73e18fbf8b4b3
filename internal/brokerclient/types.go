package brokerclient

import (
	"encoding/json"
	"fmt"
	"time"
)

// CreateInput is the body of POST /v1/requests. Its JSON fields are those of
// broker.CreateInput, which the server decodes strictly; a test keeps the
// two in step.
type CreateInput struct {
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Roles          []string          `json:"roles"`
	Scopes         []string          `json:"scopes"`
	Pairing        string            `json:"pairing,omitempty"`
	PrincipalID    string            `json:"principal_id"`
	PrincipalType  string            `json:"principal_type,omitempty"`
	Duration       string            `json:"duration"`
	Justification  string            `json:"justification"`
	Ticket         string            `json:"ticket,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	Backend        string            `json:"backend,omitempty"`
}

// Request states, as the store names them.
const (
	StatePending      = "pending"
	StateApproved     = "approved"
	StateDenied       = "denied"
	StateExpired      = "expired"
	StateCancelled    = "cancelled"
	StateActive       = "active"
	StateGrantFailed  = "grant_failed"
	StateRevoking     = "revoking"
	StateRevoked      = "revoked"
	StateRevokeFailed = "revoke_failed"
)

// Principal is the Entra ID object that receives the grants.
type Principal struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

// Pair is one role definition GUID at one scope.
type Pair struct {
	RoleID string `json:"role_id"`
	Scope  string `json:"scope"`
}

// Decision is what policy decided for a request.
type Decision struct {
	Outcome           string   `json:"outcome"` // deny, auto_approve or needs_approval
	RuleID            string   `json:"rule_id,omitempty"`
	RequiredApprovals int      `json:"required_approvals,omitempty"`
	Groups            []string `json:"groups,omitempty"`
	MaxDuration       string   `json:"max_duration,omitempty"`
	BreakGlass        bool     `json:"break_glass,omitempty"`
	EachGroup         bool     `json:"each_group,omitempty"`
	Message           string   `json:"message,omitempty"`
}

// Request is one request for access as the API returns it. Unset times are
// omitted.
type Request struct {
	ID               string            `json:"id"`
	State            string            `json:"state"`
	Requester        string            `json:"requester"`
	Claims           map[string]string `json:"claims,omitempty"`
	Principal        Principal         `json:"principal"`
	Pairs            []Pair            `json:"pairs"`
	Justification    string            `json:"justification"`
	Duration         string            `json:"duration"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	Hash             string            `json:"hash"`
	Backend          string            `json:"backend"`
	Decision         Decision          `json:"decision"`
	CreatedAt        time.Time         `json:"created_at"`
	UpdatedAt        time.Time         `json:"updated_at"`
	ApprovalDeadline *time.Time        `json:"approval_deadline,omitempty"`
	GrantedAt        *time.Time        `json:"granted_at,omitempty"`
	ExpiresAt        *time.Time        `json:"expires_at,omitempty"`
	EndedAt          *time.Time        `json:"ended_at,omitempty"`
	Error            string            `json:"error,omitempty"`
	Version          int64             `json:"version"`
}

// Approval is one reviewer's verdict.
type Approval struct {
	Approver    string    `json:"approver"`
	Groups      []string  `json:"groups,omitempty"`
	Verdict     string    `json:"verdict"` // approve or deny
	Comment     string    `json:"comment,omitempty"`
	RequestHash string    `json:"request_hash"`
	CreatedAt   time.Time `json:"created_at"`
}

// Lease is a request's claim on a grant.
type Lease struct {
	ID         string     `json:"id"`
	GrantID    string     `json:"grant_id"`
	State      string     `json:"state"` // active or released
	ExpiresAt  time.Time  `json:"expires_at"`
	ReleasedAt *time.Time `json:"released_at,omitempty"`
}

// Grant is one Azure role assignment or PIM schedule made for a principal.
type Grant struct {
	ID             string     `json:"id"`
	PrincipalID    string     `json:"principal_id"`
	PrincipalType  string     `json:"principal_type"`
	RoleID         string     `json:"role_id"`
	Scope          string     `json:"scope"`
	RequestID      string     `json:"request_id"`
	AssignmentName string     `json:"assignment_name"`
	AssignmentID   string     `json:"assignment_id,omitempty"`
	Backend        string     `json:"backend"`
	PreExisting    bool       `json:"pre_existing,omitempty"`
	State          string     `json:"state"`
	Attempts       int        `json:"attempts,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	GrantedAt      *time.Time `json:"granted_at,omitempty"`
}

// RequestDetail is the response of GET /v1/requests/{id} and of every call
// that changes a request. Reviewers approve by sending RequestHash back, so
// an approval binds to exactly the request rendered in Table and
// TableMarkdown.
type RequestDetail struct {
	Request       Request    `json:"request"`
	Approvals     []Approval `json:"approvals"`
	Leases        []Lease    `json:"leases"`
	RequestHash   string     `json:"request_hash"`
	TableMarkdown string     `json:"table_markdown"`
	// Table is the approval table as internal/approval renders it in JSON.
	Table json.RawMessage `json:"table"`
}

// RequestList is one page of GET /v1/requests, newest first.
type RequestList struct {
	Requests []Request `json:"requests"`
	// NextCursor continues the listing; empty on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// ListOptions filter GET /v1/requests. Zero fields match everything.
type ListOptions struct {
	States    []string
	Requester string
	Principal string
	Role      string // role definition GUID
	Scope     string // scope prefix
	Limit     int
	Cursor    string
}

// ReviewInput is the body of approve and deny.
type ReviewInput struct {
	RequestHash string `json:"request_hash"`
	Comment     string `json:"comment,omitempty"`
}

// ExtendInput is the body of extend: the new total duration.
type ExtendInput struct {
	Duration string `json:"duration"`
}

// GrantList is the response of GET /v1/grants.
type GrantList struct {
	Grants []Grant `json:"grants"`
}

// AuditEvent is one record of the broker's hash-chained audit table.
type AuditEvent struct {
	Seq       int64           `json:"seq"`
	Time      time.Time       `json:"time"`
	RequestID string          `json:"request_id,omitempty"`
	Event     string          `json:"event"`
	Actor     string          `json:"actor"`
	Detail    json.RawMessage `json:"detail"`
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

// AuditPage is one page of GET /v1/audit.
type AuditPage struct {
	Events []AuditEvent `json:"events"`
	// NextFrom is the from value of the following page; 0 on the last page.
	NextFrom int64 `json:"next_from,omitempty"`
}

// Error codes of ErrorBody.
const (
	CodeInvalid      = "invalid_request"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeConflict     = "conflict"
	CodeTooLarge     = "body_too_large"
	CodeRateLimited  = "rate_limited"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the code and client-facing message of an error.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// APIError is an error response of the broker.
type APIError struct {
	Status  int    // HTTP status code
	Code    string // one of the Code constants
	Message string
	// RequestID is the X-Request-Id of the response, to find the call in the
	// broker's logs.
	RequestID string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("broker: HTTP %d %s: %s", e.Status, e.Code, e.Message)
	if e.RequestID != "" {
		msg += " (request id " + e.RequestID + ")"
	}
	return msg
}
