package notify

import (
	"strings"
	"testing"
	"time"
)

func TestConfigRejectsInvalid(t *testing.T) {
	slack := SinkConfig{Name: "a", Type: TypeSlack, URLEnv: "A"}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"missing name", Config{Sinks: []SinkConfig{{Type: TypeSlack, URL: "https://h.example"}}}, "missing notify.sinks[0].name"},
		{"duplicate name", Config{Sinks: []SinkConfig{slack, slack}}, "must be unique"},
		{"unknown type", Config{Sinks: []SinkConfig{{Name: "a", Type: "email", URL: "https://h.example"}}}, `invalid type "email"`},
		{"url and url_env", Config{Sinks: []SinkConfig{{Name: "a", Type: TypeTeams, URL: "https://h.example", URLEnv: "A"}}}, "not both"},
		{"no url", Config{Sinks: []SinkConfig{{Name: "a", Type: TypeTeams}}}, "missing url"},
		{"webhook without secret", Config{Sinks: []SinkConfig{{Name: "a", Type: TypeWebhook, URLEnv: "A"}}}, "missing secret_env"},
		{"slack with secret", Config{Sinks: []SinkConfig{{Name: "a", Type: TypeSlack, URLEnv: "A", SecretEnv: "S"}}}, "only webhook sinks sign"},
		{"unknown event", Config{Sinks: []SinkConfig{{Name: "a", Type: TypeSlack, URLEnv: "A", Events: []string{"grant"}}}}, `invalid events entry "grant"`},
		{"bad slack format", Config{Sinks: []SinkConfig{{Name: "a", Type: TypeSlack, URLEnv: "A", Format: "html"}}}, `invalid format "html"`},
		{"url without scheme", Config{Sinks: []SinkConfig{{Name: "a", Type: TypeSlack, URL: "hooks.slack.com/x"}}}, "absolute https URL"},
		{"negative attempts", Config{MaxAttempts: -1}, "invalid notify.max_attempts"},
		{"max below base", Config{RetryBase: time.Minute, RetryMax: time.Second}, "invalid notify.retry_max"},
		{"audit stream without url", Config{AuditStream: &AuditStreamConfig{}}, "notify.audit_stream: missing url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.CheckAndSetDefaults()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error: got %v; want one containing %q", err, tt.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Sinks: []SinkConfig{{Name: "a", Type: TypeSlack, URLEnv: "A"}}}
	if err := c.CheckAndSetDefaults(); err != nil {
		t.Fatalf("check: %v", err)
	}
	if c.MaxAttempts != DefaultMaxAttempts || c.RetryBase != DefaultRetryBase || c.RetryMax != DefaultRetryMax ||
		c.PollInterval != DefaultPollInterval || c.Timeout != DefaultTimeout {
		t.Errorf("defaults: got %+v; want the documented defaults", c)
	}
	if c.Sinks[0].Format != FormatBlocks {
		t.Errorf("slack format: got %q; want blocks", c.Sinks[0].Format)
	}
	if !c.Enabled() {
		t.Errorf("Enabled: got false; want true with a sink")
	}
}

func TestInlineURLNeverEchoed(t *testing.T) {
	c := Config{Sinks: []SinkConfig{{Name: "a", Type: TypeSlack, URL: "hooks.slack.com/services/T0/B0/SECRETPART"}}}
	err := c.CheckAndSetDefaults()
	if err == nil || strings.Contains(err.Error(), "SECRETPART") {
		t.Errorf("error: got %v; want an error that does not repeat the URL", err)
	}
}
