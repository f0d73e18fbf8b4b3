package notify

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func hostileNotification(t *testing.T, event string) Notification {
	t.Helper()
	n := NewNotifier(NotifierOptions{BaseURL: "https://elevate.example/ui/"})
	s := n.summary(context.Background(), EventRequest, hostile())
	return Notification{Sink: "s", Event: event, Time: time.Unix(1700000000, 0).UTC(), Request: s}
}

func TestEscapeSlack(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"entities for control characters", "a & b <c> d", "a &amp; b &lt;c&gt; d"},
		{"mention broken", "@here", "@\u200bhere"},
		{"url autolink broken", "https://x.example", "https:\u200b//x.example"},
		{"www autolink broken", "www.x.example", "www.\u200bx.example"},
		{"newline flattened", "a\nb", "a b"},
		{"bidi control replaced", "a\u202eb", "a\uFFFDb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := escapeSlack(tt.in); got != tt.want {
				t.Errorf("escapeSlack(%q): got %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestEscapeTeams(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"link syntax escaped", "[x](y)", `\[x\]\(y\)`},
		{"emphasis escaped", "*b* _i_", `\*b\* \_i\_`},
		{"at tag broken", "<at>boss</at>", "<\u200bat>boss<\u200b/at>"},
		{"mention broken", "@channel", "@\u200bchannel"},
		{"long value capped", strings.Repeat("a", 600), strings.Repeat("a", maxValueRunes-1) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := escapeTeams(tt.in); got != tt.want {
				t.Errorf("escapeTeams(%q): got %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSlackBlocksPayload(t *testing.T) {
	body, err := renderSlack(hostileNotification(t, EventRequest), FormatBlocks)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type     string `json:"type"`
				Text     string `json:"text"`
				Verbatim bool   `json:"verbatim"`
			} `json:"text"`
			Elements []struct {
				URL string `json:"url"`
			} `json:"elements"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if !strings.HasPrefix(msg.Text, "Access request needs approval: ") {
		t.Errorf("fallback text: got %q; want the event title first", msg.Text)
	}
	types := []string{}
	for _, b := range msg.Blocks {
		types = append(types, b.Type)
	}
	if got, want := strings.Join(types, ","), "header,section,section,actions"; got != want {
		t.Errorf("block types: got %s; want %s", got, want)
	}
	for i, b := range msg.Blocks {
		if b.Text == nil || b.Text.Type != "mrkdwn" {
			continue
		}
		if !b.Text.Verbatim {
			t.Errorf("block %d: verbatim false; want true so Slack links nothing", i)
		}
		if strings.ContainsAny(b.Text.Text, "<>") {
			t.Errorf("block %d: got raw < or > in %q; want entities", i, b.Text.Text)
		}
	}
	if fields := msg.Blocks[1].Text.Text; !strings.Contains(fields, "&lt;!channel&gt;") {
		t.Errorf("fields: got %q; want <!channel> escaped as entities", fields)
	}
	if url := msg.Blocks[3].Elements[0].URL; url != "https://elevate.example/ui/requests/0b7d4e52-0000-4000-8000-000000000001" {
		t.Errorf("button url: got %q; want the request page under ui.base_url", url)
	}
}

func TestSlackTextPayload(t *testing.T) {
	body, err := renderSlack(hostileNotification(t, EventRevokeFailed), FormatText)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	var msg map[string]any
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(msg) != 1 {
		t.Errorf("fields: got %v; want text only", msg)
	}
	text, _ := msg["text"].(string)
	if !strings.HasPrefix(text, "Revoke failed: access may remain: ") {
		t.Errorf("text: got %q; want the revoke_failed title first", text)
	}
	// The only '<' left is the configured link.
	if strings.Count(text, "<") != 1 || !strings.HasSuffix(text, "|Open in Elevate>") {
		t.Errorf("text: got %q; want exactly one link, the configured one", text)
	}
}

func TestTeamsCardPayload(t *testing.T) {
	body, err := renderTeams(hostileNotification(t, EventBreakGlass))
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	var msg struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string  `json:"contentType"`
			ContentURL  *string `json:"contentUrl"`
			Content     struct {
				Type    string `json:"type"`
				Version string `json:"version"`
				Body    []struct {
					Type  string `json:"type"`
					Text  string `json:"text"`
					Facts []struct{ Title, Value string }
				} `json:"body"`
				Actions []struct{ Type, URL string } `json:"actions"`
			} `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if msg.Type != "message" || len(msg.Attachments) != 1 {
		t.Fatalf("envelope: got type %q with %d attachments; want message with 1", msg.Type, len(msg.Attachments))
	}
	att := msg.Attachments[0]
	if att.ContentType != "application/vnd.microsoft.card.adaptive" || att.ContentURL != nil {
		t.Errorf("attachment: got %q, contentUrl %v; want the Adaptive Card type and null", att.ContentType, att.ContentURL)
	}
	if att.Content.Type != "AdaptiveCard" || att.Content.Version != "1.4" {
		t.Errorf("card: got %s %s; want AdaptiveCard 1.4", att.Content.Type, att.Content.Version)
	}
	if got := att.Content.Body[0].Text; got != "Break-glass access used" {
		t.Errorf("title: got %q; want the break-glass title", got)
	}
	for _, f := range att.Content.Body[1].Facts {
		if f.Title != "Justification" {
			continue
		}
		if strings.Contains(f.Value, "[click](") || strings.Contains(f.Value, "<@") {
			t.Errorf("justification: got %q; want link and mention syntax escaped", f.Value)
		}
	}
	if len(att.Content.Actions) != 1 || att.Content.Actions[0].Type != "Action.OpenUrl" {
		t.Errorf("actions: got %+v; want one Action.OpenUrl", att.Content.Actions)
	}
}

func TestWebhookBodyFields(t *testing.T) {
	n := hostileNotification(t, EventGranted)
	body, err := renderWebhook("msg-1", n)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	var got WebhookBody
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if got.ID != "msg-1" || got.Event != EventGranted {
		t.Errorf("id, event: got %q, %q; want msg-1, granted", got.ID, got.Event)
	}
	// Webhook receivers get raw values: escaping is theirs to do.
	if got.Request.Justification != hostile().Justification {
		t.Errorf("justification: got %q; want the raw value", got.Request.Justification)
	}
	if len(got.Request.Rows) != 1 || got.Request.Rows[0].Scope != hostile().Pairs[0].Scope {
		t.Errorf("rows: got %+v; want the request's pair", got.Request.Rows)
	}
}
