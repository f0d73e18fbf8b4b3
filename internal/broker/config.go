package broker

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/metrics"
	"github.com/elevate-dev/elevate/internal/notify"
)

// Defaults of ServerConfig, documented in docs/broker.md.
const (
	DefaultListen          = "127.0.0.1:8443"
	DefaultSQLitePath      = "elevate.db"
	DefaultPipelineIssuer  = "https://token.actions.githubusercontent.com"
	DefaultGroupsClaim     = "groups"
	DefaultShutdownTimeout = 30 * time.Second
	DefaultRatePerSecond   = 10
	DefaultRateBurst       = 40
	// TLSModeDev selects a self-signed certificate made at start.
	TLSModeDev = "dev"
)

// ServerConfig is the broker's configuration file (elevate serve --config).
// Unknown fields are rejected. The Azure endpoints and the broker's own
// credential come from the same environment variables the CLI reads, and
// the PostgreSQL DSN may come from ELEVATE_POSTGRES_DSN, so no secret has to
// be written into this file.
type ServerConfig struct {
	// Listen is the TCP address to serve on. Default 127.0.0.1:8443.
	Listen string `yaml:"listen"`
	// TLS is either the scalar "dev" or cert_file and key_file. Required.
	TLS TLSConfig `yaml:"tls"`
	// Storage selects SQLite (default, file elevate.db) or PostgreSQL.
	Storage StorageConfig `yaml:"storage"`
	// Policy is the policy file path. Required.
	Policy string `yaml:"policy"`
	// PipelineAuth configures the OIDC tokens pipelines present.
	PipelineAuth PipelineAuthConfig `yaml:"pipeline_auth"`
	// ApproverAuth configures how reviewers and admins sign in.
	ApproverAuth ApproverAuthConfig `yaml:"approver_auth"`
	// ReplicaID names this process in leases and logs. It must differ
	// between replicas of one database. Default: a random id at start.
	ReplicaID string `yaml:"replica_id"`
	// SweepInterval is how often expired leases and due revoke retries are
	// handled. Default 250ms.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// ApprovalTimeout is how long a request waits for approvals before it
	// expires. Default 1h.
	ApprovalTimeout time.Duration `yaml:"approval_timeout"`
	// MaxDuration caps every request, whatever the policy allows. Default 8h.
	MaxDuration time.Duration `yaml:"max_duration"`
	// Backends lists the grant backends a request may ask for: rbac (a
	// temporary role assignment) and pim-assign (a PIM assignment that
	// Azure ends by itself). The first is the default. Default [rbac].
	Backends []string `yaml:"backends"`
	// ShutdownTimeout bounds the wait for in-flight calls at shutdown.
	// Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// RateLimit bounds calls per caller.
	RateLimit RateLimitConfig `yaml:"rate_limit"`
	// UI configures the web UI for reviewers and admins. Default off.
	UI UIConfig `yaml:"ui"`
	// Notify configures notifications and the audit stream. Default off.
	Notify notify.Config `yaml:"notify"`
	// Metrics configures the Prometheus /metrics endpoint. Default off.
	Metrics metrics.Config `yaml:"metrics"`
}

// DefaultUISessionTTL is the default of UIConfig.SessionTTL.
const DefaultUISessionTTL = 8 * time.Hour

// UIConfig configures the web UI, served at / beside the API under /v1.
// People sign in with the OIDC authorization code flow with PKCE. The
// client secret, when the provider needs one, comes from
// ELEVATE_UI_CLIENT_SECRET and never from this file.
type UIConfig struct {
	// Enabled serves the UI. Default false.
	Enabled bool `yaml:"enabled"`
	// Issuer is the exact iss of the provider people sign in with.
	// Default approver_auth.oidc.issuer.
	Issuer string `yaml:"issuer"`
	// ClientID is the UI's OAuth client id, which ID tokens must carry as
	// aud. Default approver_auth.oidc.audience.
	ClientID string `yaml:"client_id"`
	// GroupsClaim names the ID token claim that lists a person's groups.
	// Default approver_auth.oidc.groups_claim, else "groups".
	GroupsClaim string `yaml:"groups_claim"`
	// RedirectURL is the callback registered with the provider, ending in
	// /auth/callback. Default: the broker's URL + /auth/callback.
	RedirectURL string `yaml:"redirect_url"`
	// SessionKey is 64 hex digits, the AES-256 key that seals session
	// cookies. Replicas behind one address need the same key. Default
	// $ELEVATE_UI_SESSION_KEY, else a random key at start, so sessions end
	// when the broker restarts.
	SessionKey string `yaml:"session_key"`
	// SessionTTL is how long a sign-in lasts. Default 8h.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// BaseURL is the UI's public address, such as
	// https://elevate.contoso.example. Notifications link to
	// BaseURL/requests/ID; without it they carry no link. It applies
	// whether or not this broker serves the UI itself.
	BaseURL string `yaml:"base_url"`
}

// TLSConfig is the broker's certificate. In YAML it is either the string
// "dev" or a mapping with cert_file and key_file.
type TLSConfig struct {
	// Mode is "dev" for a self-signed certificate, else empty.
	Mode     string `yaml:"mode"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// DevCertFile is where the dev certificate is written, for clients to
	// trust. Default: a new file in the temporary directory.
	DevCertFile string `yaml:"dev_cert_file"`
}

// UnmarshalYAML accepts `tls: dev` as well as the mapping form.
func (t *TLSConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		t.Mode = n.Value
		return nil
	}
	type plain TLSConfig
	var p plain
	if err := decodeStrict(n, &p); err != nil {
		return err
	}
	*t = TLSConfig(p)
	return nil
}

// StorageConfig selects the store. Set at most one of the two.
type StorageConfig struct {
	// SQLite is the database file of a single broker. Default elevate.db.
	SQLite string `yaml:"sqlite"`
	// Postgres is a DSN such as postgres://elevate@db/elevate. Default
	// $ELEVATE_POSTGRES_DSN, which keeps the password out of the file.
	Postgres string `yaml:"postgres"`
}

// PipelineAuthConfig configures the verifier of pipeline OIDC tokens.
type PipelineAuthConfig struct {
	// Issuer is the exact iss of pipeline tokens. Default GitHub Actions,
	// https://token.actions.githubusercontent.com.
	Issuer string `yaml:"issuer"`
	// Audience is the exact aud pipelines request their token for, usually
	// the broker's URL. Required.
	Audience string `yaml:"audience"`
	// AllowedRepositories, when set, lists the owner/name repositories whose
	// tokens are accepted; tokens of any other repository get 401.
	AllowedRepositories []string `yaml:"allowed_repositories"`
}

// ApproverAuthConfig configures how people sign in. Either part may be
// empty; with both empty only pipelines can call the broker.
type ApproverAuthConfig struct {
	OIDC *ApproverOIDCConfig `yaml:"oidc"`
	// StaticTokens maps the lowercase hex SHA-256 of a bearer token to the
	// identity it stands for. For development and break-glass use: the
	// tokens never expire. Generate one with
	// `openssl rand -hex 32 | tee token | tr -d '\n' | sha256sum`.
	StaticTokens map[string]StaticIdentity `yaml:"static_tokens"`
	// AdminGroups lists the groups whose members are admins: they may
	// revoke any request and read the audit log.
	AdminGroups []string `yaml:"admin_groups"`
}

// ApproverOIDCConfig is an OIDC issuer of reviewers' ID tokens, such as
// Microsoft Entra ID.
type ApproverOIDCConfig struct {
	Issuer   string `yaml:"issuer"`   // required, exact iss
	Audience string `yaml:"audience"` // required, exact aud
	// GroupsClaim names the claim that lists the user's groups. Default
	// "groups".
	GroupsClaim string `yaml:"groups_claim"`
}

// StaticIdentity is the identity of a static token.
type StaticIdentity struct {
	// Subject is the reviewer's name, such as user:alice@contoso.example.
	// Required.
	Subject string   `yaml:"subject"`
	Groups  []string `yaml:"groups"`
	Admin   bool     `yaml:"admin"`
}

// RateLimitConfig bounds each caller's request rate with a token bucket.
type RateLimitConfig struct {
	// PerSecond is the sustained rate per caller. Default 10.
	PerSecond float64 `yaml:"per_second"`
	// Burst is the bucket size. Default 40.
	Burst int `yaml:"burst"`
	// TrustedProxies lists the CIDR ranges of load balancers in front of
	// the broker. A call from one of them is counted against the client
	// address it appends to X-Forwarded-For, so failed sign-ins from one
	// client do not lock out every caller behind the same proxy. Default
	// none: the header is ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// LoadServerConfig reads and checks a configuration file. getenv supplies
// ELEVATE_POSTGRES_DSN.
func LoadServerConfig(path string, getenv func(string) string) (ServerConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return ServerConfig{}, fmt.Errorf("read broker config: %w", err)
	}
	cfg, err := ParseServerConfig(data, getenv)
	if err != nil {
		return cfg, fmt.Errorf("broker config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseServerConfig decodes YAML strictly and calls CheckAndSetDefaults.
func ParseServerConfig(data []byte, getenv func(string) string) (ServerConfig, error) {
	var cfg ServerConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file decodes to io.EOF; it goes on to CheckAndSetDefaults,
	// which names the first missing field.
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("decode: %w", err)
	}
	if getenv != nil && cfg.Storage.Postgres == "" && cfg.Storage.SQLite == "" {
		cfg.Storage.Postgres = getenv("ELEVATE_POSTGRES_DSN")
	}
	if getenv != nil && cfg.UI.SessionKey == "" {
		cfg.UI.SessionKey = getenv("ELEVATE_UI_SESSION_KEY")
	}
	return cfg, cfg.CheckAndSetDefaults()
}

func decodeStrict(n *yaml.Node, out any) error {
	// yaml.Node.Decode has no KnownFields switch, so the node is encoded and
	// decoded again through a strict decoder.
	data, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(out)
}

// CheckAndSetDefaults fills unset fields with their defaults and rejects
// invalid values, naming the field.
func (c *ServerConfig) CheckAndSetDefaults() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("invalid listen %q: use host:port such as %s", c.Listen, DefaultListen)
	}
	if err := c.TLS.check(); err != nil {
		return err
	}
	if err := c.Storage.check(); err != nil {
		return err
	}
	if strings.TrimSpace(c.Policy) == "" {
		return errors.New("missing policy: set the path of the policy file, such as policy: /etc/elevate/policy.yaml")
	}
	if err := c.PipelineAuth.check(); err != nil {
		return err
	}
	if err := c.ApproverAuth.check(); err != nil {
		return err
	}
	if err := c.UI.check(c.ApproverAuth.OIDC); err != nil {
		return err
	}
	for name, d := range map[string]*time.Duration{
		"sweep_interval": &c.SweepInterval, "approval_timeout": &c.ApprovalTimeout,
		"max_duration": &c.MaxDuration, "shutdown_timeout": &c.ShutdownTimeout,
	} {
		if *d < 0 {
			return fmt.Errorf("invalid %s %s: use a positive duration such as 30s", name, *d)
		}
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if err := checkBackends(c.Backends); err != nil {
		return err
	}
	if len(c.Backends) == 0 {
		c.Backends = []string{lifecycle.BackendRBAC}
	}
	if c.SweepInterval != 0 && c.SweepInterval < 10*time.Millisecond {
		return fmt.Errorf("invalid sweep_interval %s: use at least 10ms", c.SweepInterval)
	}
	if err := c.Notify.CheckAndSetDefaults(); err != nil {
		return err
	}
	if err := c.Metrics.CheckAndSetDefaults(); err != nil {
		return err
	}
	if u, err := url.Parse(c.UI.BaseURL); c.UI.BaseURL != "" && (err != nil || u.Scheme != "https" || u.Host == "") {
		return fmt.Errorf("invalid ui.base_url %q: use the https address people open the UI at", c.UI.BaseURL)
	}
	return c.RateLimit.check()
}

func (t *TLSConfig) check() error {
	switch {
	case t.Mode == TLSModeDev && (t.CertFile != "" || t.KeyFile != ""):
		return errors.New("invalid tls: use either `tls: dev` or cert_file and key_file, not both")
	case t.Mode == TLSModeDev:
		return nil
	case t.Mode != "":
		return fmt.Errorf("invalid tls %q: use `dev` or a mapping with cert_file and key_file", t.Mode)
	case t.CertFile == "" && t.KeyFile == "":
		return errors.New("missing tls: set cert_file and key_file, or `tls: dev` for a self-signed development certificate")
	case t.CertFile == "":
		return errors.New("missing tls.cert_file: set it next to tls.key_file")
	case t.KeyFile == "":
		return errors.New("missing tls.key_file: set it next to tls.cert_file")
	case t.DevCertFile != "":
		return errors.New("invalid tls.dev_cert_file: it applies only with `tls: {mode: dev}`")
	}
	return nil
}

func (s *StorageConfig) check() error {
	if s.SQLite != "" && s.Postgres != "" {
		return errors.New("invalid storage: set sqlite or postgres, not both")
	}
	if s.Postgres != "" {
		u, err := url.Parse(s.Postgres)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			// The DSN may hold a password, so it is not echoed.
			return errors.New("invalid storage.postgres: use a URL such as postgres://elevate@db.internal/elevate")
		}
		return nil
	}
	if s.SQLite == "" {
		s.SQLite = DefaultSQLitePath
	}
	return nil
}

func (p *PipelineAuthConfig) check() error {
	if p.Issuer == "" {
		p.Issuer = DefaultPipelineIssuer
	}
	if !strings.HasPrefix(p.Issuer, "https://") {
		return fmt.Errorf("invalid pipeline_auth.issuer %q: use an https URL such as %s", p.Issuer, DefaultPipelineIssuer)
	}
	if p.Audience == "" {
		return errors.New("missing pipeline_auth.audience: set the exact aud pipelines request their token for, usually the broker's URL")
	}
	for _, r := range p.AllowedRepositories {
		owner, name, ok := strings.Cut(r, "/")
		if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("invalid pipeline_auth.allowed_repositories entry %q: use owner/name", r)
		}
	}
	return nil
}

func (a *ApproverAuthConfig) check() error {
	if o := a.OIDC; o != nil {
		if !strings.HasPrefix(o.Issuer, "https://") {
			return fmt.Errorf("invalid approver_auth.oidc.issuer %q: use the https issuer URL of your identity provider", o.Issuer)
		}
		if o.Audience == "" {
			return errors.New("missing approver_auth.oidc.audience: set the client id the ID tokens are issued for")
		}
		if o.GroupsClaim == "" {
			o.GroupsClaim = DefaultGroupsClaim
		}
	}
	normalized := make(map[string]StaticIdentity, len(a.StaticTokens))
	for digest, id := range a.StaticTokens {
		key := strings.ToLower(digest)
		if b, err := hex.DecodeString(key); err != nil || len(b) != 32 {
			// Show only a prefix, in case a plaintext token was pasted here.
			return fmt.Errorf("invalid approver_auth.static_tokens key %q: use the 64 hex digits of the token's SHA-256, never the token itself", prefix(digest, 6))
		}
		if strings.TrimSpace(id.Subject) == "" {
			return fmt.Errorf("missing approver_auth.static_tokens[%s...].subject: name the reviewer, such as user:alice@contoso.example", key[:8])
		}
		normalized[key] = id
	}
	a.StaticTokens = normalized
	return nil
}

func (u *UIConfig) check(approver *ApproverOIDCConfig) error {
	if !u.Enabled {
		return nil
	}
	if approver != nil {
		u.Issuer = cmp.Or(u.Issuer, approver.Issuer)
		u.ClientID = cmp.Or(u.ClientID, approver.Audience)
		u.GroupsClaim = cmp.Or(u.GroupsClaim, approver.GroupsClaim)
	}
	u.GroupsClaim = cmp.Or(u.GroupsClaim, DefaultGroupsClaim)
	if !strings.HasPrefix(u.Issuer, "https://") {
		return fmt.Errorf("invalid ui.issuer %q: set the https issuer URL people sign in with, or approver_auth.oidc", u.Issuer)
	}
	if u.ClientID == "" {
		return errors.New("missing ui.client_id: set the OAuth client id registered for the UI, or approver_auth.oidc.audience")
	}
	if u.RedirectURL != "" {
		r, err := url.Parse(u.RedirectURL)
		if err != nil || r.Scheme != "https" || r.Path != "/auth/callback" {
			return fmt.Errorf("invalid ui.redirect_url %q: use https://HOST/auth/callback", u.RedirectURL)
		}
	}
	if u.SessionKey != "" {
		if b, err := hex.DecodeString(u.SessionKey); err != nil || len(b) != 32 {
			return errors.New("invalid ui.session_key: use 64 hex digits, such as the output of `openssl rand -hex 32`")
		}
	}
	if u.SessionTTL < 0 || (u.SessionTTL > 0 && u.SessionTTL < time.Minute) {
		return fmt.Errorf("invalid ui.session_ttl %s: use at least 1m", u.SessionTTL)
	}
	if u.SessionTTL == 0 {
		u.SessionTTL = DefaultUISessionTTL
	}
	return nil
}

func (r *RateLimitConfig) check() error {
	if r.PerSecond < 0 || r.Burst < 0 {
		return fmt.Errorf("invalid rate_limit %v/s burst %d: use positive numbers", r.PerSecond, r.Burst)
	}
	if r.PerSecond == 0 {
		r.PerSecond = DefaultRatePerSecond
	}
	if r.Burst == 0 {
		r.Burst = DefaultRateBurst
	}
	for _, c := range r.TrustedProxies {
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("invalid rate_limit.trusted_proxies entry %q: use a CIDR range such as 10.0.0.0/8", c)
		}
	}
	return nil
}

func prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// BrokerBackends are the grant backends the broker can use. pim-activate
// and entra-role are left out: a self-activation must come from the
// principal itself, and the broker grants other principals.
var BrokerBackends = []string{lifecycle.BackendRBAC, lifecycle.BackendPIMAssign}

func checkBackends(names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if !slices.Contains(BrokerBackends, n) {
			return fmt.Errorf("invalid backends entry %q: use %s", n, strings.Join(BrokerBackends, " or "))
		}
		if seen[n] {
			return fmt.Errorf("invalid backends: %q is listed twice", n)
		}
		seen[n] = true
	}
	return nil
}
