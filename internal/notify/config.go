package notify

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"
)

// Sink types.
const (
	TypeSlack   = "slack"
	TypeTeams   = "teams"
	TypeWebhook = "webhook"
)

// Slack message formats.
const (
	FormatBlocks = "blocks" // Block Kit, the default
	FormatText   = "text"   // a plain text field only
)

// Defaults of Config.
const (
	DefaultMaxAttempts  = 10
	DefaultRetryBase    = 5 * time.Second
	DefaultRetryMax     = 10 * time.Minute
	DefaultPollInterval = time.Second
	DefaultTimeout      = 10 * time.Second
)

// Config is the notify: section of the broker configuration. Webhook URLs
// of Slack and Teams carry their own credential, so each URL and secret may
// come from an environment variable named in the file instead of the file.
type Config struct {
	// Sinks are the destinations. Empty disables notifications.
	Sinks []SinkConfig `yaml:"sinks"`
	// AuditStream, when set, streams every audit event as a CloudEvent.
	AuditStream *AuditStreamConfig `yaml:"audit_stream"`
	// MaxAttempts is the number of failed deliveries after which a message
	// is dead: it stays in the outbox, is logged as an error and counted,
	// and is not tried again. The outbox counts claims, so an attempt cut
	// short by a shutdown counts too. Default 10.
	MaxAttempts int `yaml:"max_attempts"`
	// RetryBase and RetryMax shape the exponential backoff between
	// attempts of one message. Defaults 5s and 10m.
	RetryBase time.Duration `yaml:"retry_base"`
	RetryMax  time.Duration `yaml:"retry_max"`
	// PollInterval is how often the dispatcher looks for due messages.
	// Default 1s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Timeout bounds one HTTP delivery. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// SinkConfig is one destination of notifications.
type SinkConfig struct {
	// Name identifies the sink in logs, metrics and outbox messages.
	// Required and unique. Renaming a sink dead-letters the messages queued
	// for the old name.
	Name string `yaml:"name"`
	// Type is slack, teams or webhook.
	Type string `yaml:"type"`
	// URL is the endpoint. Set URL or URLEnv, not both. Slack and Teams
	// webhook URLs are credentials, so prefer URLEnv for them.
	URL string `yaml:"url"`
	// URLEnv names the environment variable that holds the URL.
	URLEnv string `yaml:"url_env"`
	// SecretEnv names the environment variable that holds the HMAC key of
	// a webhook sink's X-Elevate-Signature. Required for type webhook.
	SecretEnv string `yaml:"secret_env"`
	// Format is the Slack message format: blocks (default) or text.
	Format string `yaml:"format"`
	// Groups limits the sink to requests whose approver or notify groups
	// include one of these. Empty receives every request. Break-glass use
	// reaches every sink whatever its groups.
	Groups []string `yaml:"groups"`
	// Events limits the sink to these events. Default all.
	Events []string `yaml:"events"`
}

// AuditStreamConfig is the webhook that receives the audit chain.
type AuditStreamConfig struct {
	// URL or URLEnv is the endpoint, as for a sink.
	URL    string `yaml:"url"`
	URLEnv string `yaml:"url_env"`
	// SecretEnv names the variable that holds the HMAC key. Optional: the
	// events carry their own hash chain, but without a signature the
	// receiver cannot tell who sent them.
	SecretEnv string `yaml:"secret_env"`
	// Source is the CloudEvents source attribute. Default: the broker's
	// URL.
	Source string `yaml:"source"`
}

// Enabled reports whether the section configures anything to deliver.
func (c *Config) Enabled() bool {
	return len(c.Sinks) > 0 || c.AuditStream != nil
}

// CheckAndSetDefaults fills unset fields with their defaults and rejects
// invalid values, naming the field. It does not read the environment.
func (c *Config) CheckAndSetDefaults() error {
	seen := map[string]bool{}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		if s.Name == "" {
			return fmt.Errorf("missing notify.sinks[%d].name: name each sink, such as platform-slack", i)
		}
		if seen[s.Name] {
			return fmt.Errorf("invalid notify.sinks[%d].name %q: sink names must be unique", i, s.Name)
		}
		seen[s.Name] = true
		if err := s.check(); err != nil {
			return fmt.Errorf("notify.sinks[%d] (%s): %w", i, s.Name, err)
		}
	}
	if a := c.AuditStream; a != nil {
		if err := checkEndpoint(a.URL, a.URLEnv); err != nil {
			return fmt.Errorf("notify.audit_stream: %w", err)
		}
		if a.Source != "" {
			if _, err := url.Parse(a.Source); err != nil {
				return fmt.Errorf("invalid notify.audit_stream.source %q: use a URI such as https://elevate.example.com", a.Source)
			}
		}
	}
	if c.MaxAttempts < 0 {
		return fmt.Errorf("invalid notify.max_attempts %d: use a positive number", c.MaxAttempts)
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	for name, d := range map[string]*time.Duration{
		"retry_base": &c.RetryBase, "retry_max": &c.RetryMax,
		"poll_interval": &c.PollInterval, "timeout": &c.Timeout,
	} {
		if *d < 0 {
			return fmt.Errorf("invalid notify.%s %s: use a positive duration such as 5s", name, *d)
		}
	}
	setDefault(&c.RetryBase, DefaultRetryBase)
	setDefault(&c.RetryMax, DefaultRetryMax)
	setDefault(&c.PollInterval, DefaultPollInterval)
	setDefault(&c.Timeout, DefaultTimeout)
	if c.RetryMax < c.RetryBase {
		return fmt.Errorf("invalid notify.retry_max %s: use at least retry_base (%s)", c.RetryMax, c.RetryBase)
	}
	return nil
}

func (s *SinkConfig) check() error {
	switch s.Type {
	case TypeSlack:
		if s.Format == "" {
			s.Format = FormatBlocks
		}
		if s.Format != FormatBlocks && s.Format != FormatText {
			return fmt.Errorf("invalid format %q: use blocks or text", s.Format)
		}
	case TypeTeams, TypeWebhook:
		if s.Format != "" {
			return fmt.Errorf("invalid format %q: only slack sinks have a format", s.Format)
		}
	default:
		return fmt.Errorf("invalid type %q: use slack, teams or webhook", s.Type)
	}
	if err := checkEndpoint(s.URL, s.URLEnv); err != nil {
		return err
	}
	if s.Type == TypeWebhook && s.SecretEnv == "" {
		return errors.New("missing secret_env: name the environment variable that holds the signing key")
	}
	if s.Type != TypeWebhook && s.SecretEnv != "" {
		return errors.New("invalid secret_env: only webhook sinks sign their requests")
	}
	for _, e := range s.Events {
		if !slices.Contains(Events, e) {
			return fmt.Errorf("invalid events entry %q: use one of %v", e, Events)
		}
	}
	return nil
}

// checkEndpoint checks a URL given inline. A URL from the environment is
// checked when Resolve reads it.
func checkEndpoint(raw, env string) error {
	switch {
	case raw != "" && env != "":
		return errors.New("invalid endpoint: set url or url_env, not both")
	case raw == "" && env == "":
		return errors.New("missing url: set url, or url_env to read it from the environment")
	case raw != "":
		return checkURL(raw)
	}
	return nil
}

// checkURL accepts absolute http and https URLs. Plain http is allowed for
// receivers on the same host or network, such as a local relay.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		// The URL may hold a credential, so only its scheme is shown.
		scheme := "?"
		if err == nil {
			scheme = u.Scheme
		}
		return fmt.Errorf("invalid url (scheme %q): use an absolute https URL", scheme)
	}
	return nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}
