// Package notify sends notifications of broker events to Slack, Microsoft
// Teams and signed webhooks, and streams the audit chain to a webhook as
// CloudEvents.
//
// Delivery goes through the store's outbox so that a restart loses nothing.
// A request's state change writes an event message (kind store.KindEvent)
// in its own transaction, and a Dispatcher expands it with Notifier.Expand
// into one message per sink, with ids derived from the event, so a repeated
// expansion adds nothing. Events without a request state change go through
// the broker's Notify hook (Notifier.Notify), which enqueues one message
// per sink right after the event. The Dispatcher claims due messages, posts
// them and records the outcome. A message is delivered at least once. Every
// POST carries the message id in the Idempotency-Key header, so a receiver
// can drop a repeat after a crash between the POST and the store update.
package notify

import (
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// Events the broker reports through its Notify hook.
const (
	EventRequest      = "request"       // a request needs approval
	EventApproved     = "approved"      // approvals are complete
	EventDenied       = "denied"        // a reviewer denied the request
	EventGranted      = "granted"       // every pair is granted
	EventRevoked      = "revoked"       // every grant of the request is gone
	EventRevokeFailed = "revoke_failed" // the sweeper gave up retrying a revoke
	EventBreakGlass   = "break_glass"   // a break-glass rule granted without approval
)

// Events lists every event, in the order the docs describe them.
var Events = []string{EventRequest, EventApproved, EventDenied, EventGranted, EventRevoked,
	EventRevokeFailed, EventBreakGlass}

// Outbox message kinds. The Dispatcher dead-letters a message of any other
// kind at once.
const (
	KindNotification = "notification"
	KindAudit        = "audit"
	KindEvent        = store.KindEvent
)

// Notification is the outbox payload of one event for one sink. It holds a
// snapshot of the request at the time of the event, so a delivery after a
// restart shows what was true then.
type Notification struct {
	Sink    string    `json:"sink"`
	Event   string    `json:"event"`
	Time    time.Time `json:"time"`
	Request Summary   `json:"request"`
}

// Summary is the part of a request that notifications show. Every string in
// it may come from the requester or the policy author, and renderers escape
// it for their format.
type Summary struct {
	ID            string            `json:"id"`
	State         string            `json:"state"`
	Requester     string            `json:"requester"`
	PrincipalID   string            `json:"principal_id"`
	PrincipalType string            `json:"principal_type"`
	Justification string            `json:"justification"`
	Duration      string            `json:"duration"`
	Rows          []Row             `json:"rows"`
	Outcome       string            `json:"outcome"`
	RuleID        string            `json:"rule_id,omitempty"`
	Groups        []string          `json:"groups,omitempty"`
	Approvals     int               `json:"required_approvals,omitempty"`
	BreakGlass    bool              `json:"break_glass,omitempty"`
	Reviews       []Review          `json:"reviews,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	ExpiresAt     time.Time         `json:"expires_at,omitzero"`
	Error         string            `json:"error,omitempty"`
	// URL is the request's page in the web UI, empty without ui.base_url.
	URL string `json:"url,omitempty"`
}

// Row is one role and scope pair of the approval table.
type Row struct {
	RoleName string `json:"role_name,omitempty"`
	RoleID   string `json:"role_id"`
	Scope    string `json:"scope"`
}

// Review is one reviewer's verdict, shown with approved and denied events.
type Review struct {
	Reviewer string `json:"reviewer"`
	Verdict  string `json:"verdict"`
}
