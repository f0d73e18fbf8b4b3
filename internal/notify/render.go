package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// maxRows caps the pairs listed in a chat message. A Slack section holds
// 3000 characters; the full table stays in the web UI behind the link.
const maxRows = 10

// titles are the headlines of each event, free of user input.
var titles = map[string]string{
	EventRequest:      "Access request needs approval",
	EventApproved:     "Access request approved",
	EventDenied:       "Access request denied",
	EventGranted:      "Access granted",
	EventRevoked:      "Access revoked",
	EventRevokeFailed: "Revoke failed: access may remain",
	EventBreakGlass:   "Break-glass access used",
}

func title(event string) string {
	if t, ok := titles[event]; ok {
		return t
	}
	return "Elevate event " + event
}

// fact is one labelled value. Labels are fixed text; values are raw and
// escaped by each renderer.
type fact struct{ label, value string }

// facts lists what every format shows about a request, skipping empty
// values.
func facts(s Summary) []fact {
	all := []fact{
		{"Request", s.ID},
		{"Requester", s.Requester},
		{"Principal", s.PrincipalID + " (" + s.PrincipalType + ")"},
		{"Duration", s.Duration},
		{"Justification", s.Justification},
		{"Repository", s.Metadata["repository"]},
		{"Workflow", s.Metadata["workflow"]},
		{"Run", s.Metadata["run_url"]},
		{"Rule", s.RuleID},
		{"Approver groups", strings.Join(s.Groups, ", ")},
		{"Reviews", reviews(s.Reviews)},
		{"Expires", formatTime(s.ExpiresAt)},
		{"Error", s.Error},
	}
	out := all[:0]
	for _, f := range all {
		if strings.TrimSpace(f.value) != "" {
			out = append(out, f)
		}
	}
	return out
}

func reviews(rs []Review) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.Reviewer + ": " + r.Verdict
	}
	return strings.Join(parts, ", ")
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// rowLines renders the approval table as one line per pair, at most
// maxRows, with esc applied to every value.
func rowLines(rows []Row, esc func(string) string) []string {
	var lines []string
	for i, r := range rows {
		if i == maxRows {
			lines = append(lines, fmt.Sprintf("… and %d more pairs", len(rows)-maxRows))
			break
		}
		name := r.RoleName
		if name == "" {
			name = r.RoleID
		}
		lines = append(lines, fmt.Sprintf("%d. %s at %s", i+1, esc(name), esc(r.Scope)))
	}
	return lines
}

// renderSlack returns the body of a Slack incoming webhook call.
func renderSlack(n Notification, format string) ([]byte, error) {
	s := n.Request
	var text strings.Builder
	text.WriteString(title(n.Event) + ": " + escapeSlack(s.ID))
	if format == FormatText {
		for _, f := range facts(s) {
			fmt.Fprintf(&text, "\n%s: %s", f.label, escapeSlack(f.value))
		}
		for _, line := range rowLines(s.Rows, escapeSlack) {
			text.WriteString("\n" + line)
		}
		if s.URL != "" {
			// The URL comes from configuration, not from the request.
			text.WriteString("\n<" + s.URL + "|Open in Elevate>")
		}
		return json.Marshal(map[string]any{"text": text.String()})
	}

	var fields strings.Builder
	for _, f := range facts(s) {
		fmt.Fprintf(&fields, "*%s:* %s\n", f.label, escapeSlack(f.value))
	}
	blocks := []any{
		map[string]any{"type": "header", "text": plainText(title(n.Event))},
		map[string]any{"type": "section", "text": mrkdwn(fields.String())},
	}
	if lines := rowLines(s.Rows, escapeSlack); len(lines) > 0 {
		blocks = append(blocks, map[string]any{"type": "section",
			"text": mrkdwn("*Roles and scopes*\n" + strings.Join(lines, "\n"))})
	}
	if s.URL != "" {
		blocks = append(blocks, map[string]any{"type": "actions", "elements": []any{
			map[string]any{"type": "button", "text": plainText("Open in Elevate"), "url": s.URL},
		}})
	}
	// text is the fallback for notifications and clients without blocks.
	return json.Marshal(map[string]any{"text": text.String(), "blocks": blocks})
}

func plainText(s string) map[string]any {
	return map[string]any{"type": "plain_text", "text": s}
}

// mrkdwn returns a text object with verbatim set, which stops Slack from
// turning URLs, channel names and mentions in it into links.
func mrkdwn(s string) map[string]any {
	return map[string]any{"type": "mrkdwn", "text": s, "verbatim": true}
}

// renderTeams returns the body of a Teams Workflows webhook call ("When a
// Teams webhook request is received"): a message whose one attachment is an
// Adaptive Card.
func renderTeams(n Notification) ([]byte, error) {
	s := n.Request
	var factSet []any
	for _, f := range facts(s) {
		factSet = append(factSet, map[string]any{"title": f.label, "value": escapeTeams(f.value)})
	}
	body := []any{
		map[string]any{"type": "TextBlock", "text": title(n.Event), "weight": "Bolder", "size": "Medium", "wrap": true},
		map[string]any{"type": "FactSet", "facts": factSet},
	}
	if lines := rowLines(s.Rows, escapeTeams); len(lines) > 0 {
		body = append(body, map[string]any{"type": "TextBlock", "wrap": true,
			"text": "Roles and scopes:\n\n" + strings.Join(lines, "\n\n")})
	}
	card := map[string]any{
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"type":    "AdaptiveCard",
		"version": "1.4",
		"body":    body,
	}
	if s.URL != "" {
		card["actions"] = []any{map[string]any{"type": "Action.OpenUrl", "title": "Open in Elevate", "url": s.URL}}
	}
	return json.Marshal(map[string]any{
		"type": "message",
		"attachments": []any{map[string]any{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"contentUrl":  nil,
			"content":     card,
		}},
	})
}

// WebhookBody is the JSON body a webhook sink receives.
type WebhookBody struct {
	// ID is the outbox message id, equal to the Idempotency-Key header.
	ID      string    `json:"id"`
	Event   string    `json:"event"`
	Time    time.Time `json:"time"`
	Request Summary   `json:"request"`
}

func renderWebhook(id string, n Notification) ([]byte, error) {
	return json.Marshal(WebhookBody{ID: id, Event: n.Event, Time: n.Time, Request: n.Request})
}
