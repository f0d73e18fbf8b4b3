package broker

import (
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := LoadServerConfig("../../examples/broker/elevate.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatalf("LoadServerConfig: %v", err)
	}
	if cfg.PipelineAuth.Audience != "https://elevate.contoso.example" {
		t.Errorf("audience = %q; want https://elevate.contoso.example", cfg.PipelineAuth.Audience)
	}
	if cfg.SweepInterval != 250*time.Millisecond {
		t.Errorf("sweep_interval = %s; want 250ms", cfg.SweepInterval)
	}
	if cfg.ApproverAuth.OIDC.GroupsClaim != "groups" {
		t.Errorf("groups_claim = %q; want groups", cfg.ApproverAuth.OIDC.GroupsClaim)
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := ParseServerConfig([]byte("tls: dev\npolicy: p.yaml\npipeline_auth: {audience: https://b}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", cfg.Listen, DefaultListen},
		{"tls mode", cfg.TLS.Mode, TLSModeDev},
		{"sqlite", cfg.Storage.SQLite, DefaultSQLitePath},
		{"issuer", cfg.PipelineAuth.Issuer, DefaultPipelineIssuer},
		{"shutdown", cfg.ShutdownTimeout, DefaultShutdownTimeout},
		{"rate", cfg.RateLimit.PerSecond, float64(DefaultRatePerSecond)},
		{"burst", cfg.RateLimit.Burst, DefaultRateBurst},
		{"backends", strings.Join(cfg.Backends, ","), "rbac"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestPostgresDSNFromEnvironment(t *testing.T) {
	env := map[string]string{"ELEVATE_POSTGRES_DSN": "postgres://elevate:secret@db/elevate"}
	cfg, err := ParseServerConfig([]byte("tls: dev\npolicy: p.yaml\npipeline_auth: {audience: https://b}\n"),
		func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Storage.Postgres != env["ELEVATE_POSTGRES_DSN"] || cfg.Storage.SQLite != "" {
		t.Errorf("storage = %+v; want the DSN from ELEVATE_POSTGRES_DSN and no sqlite", cfg.Storage)
	}
}

func TestConfigErrorsNameField(t *testing.T) {
	const base = "tls: dev\npolicy: p.yaml\npipeline_auth: {audience: https://b}\n"
	hash := strings.Repeat("ab", 32)
	cases := []struct {
		name, yaml, want string
	}{
		{"empty file", "", "missing tls"},
		{"unknown field", base + "listen_addr: x\n", "field listen_addr not found"},
		{"unknown tls field", "tls: {cert: a}\npolicy: p\npipeline_auth: {audience: https://b}\n", "field cert not found"},
		{"bad listen", base + "listen: 8443\n", "invalid listen"},
		{"tls mode unknown", "tls: self-signed\npolicy: p\npipeline_auth: {audience: https://b}\n", `invalid tls "self-signed"`},
		{"tls key missing", "tls: {cert_file: a}\npolicy: p\npipeline_auth: {audience: https://b}\n", "missing tls.key_file"},
		{"policy missing", "tls: dev\npipeline_auth: {audience: https://b}\n", "missing policy"},
		{"audience missing", "tls: dev\npolicy: p\n", "missing pipeline_auth.audience"},
		{"http issuer", "tls: dev\npolicy: p\npipeline_auth: {audience: a, issuer: http://x}\n", "invalid pipeline_auth.issuer"},
		{"repository form", "tls: dev\npolicy: p\npipeline_auth: {audience: a, allowed_repositories: [payments]}\n", "allowed_repositories entry \"payments\""},
		{"two stores", base + "storage: {sqlite: a.db, postgres: postgres://x/y}\n", "invalid storage"},
		{"postgres not a URL", base + "storage: {postgres: \"host=db password=hunter2\"}\n", "invalid storage.postgres"},
		{"plaintext static token", base + "approver_auth: {static_tokens: {hunter2-token: {subject: user:a}}}\n", "invalid approver_auth.static_tokens key \"hunter...\""},
		{"static token without subject", base + "approver_auth: {static_tokens: {" + hash + ": {admin: true}}}\n", "static_tokens[abababab...].subject"},
		{"oidc without audience", base + "approver_auth: {oidc: {issuer: https://login.example}}\n", "missing approver_auth.oidc.audience"},
		{"negative duration", base + "approval_timeout: -1h\n", "invalid approval_timeout"},
		{"tiny sweep", base + "sweep_interval: 1ms\n", "invalid sweep_interval"},
		{"self-activation backend", base + "backends: [rbac, pim-activate]\n", `invalid backends entry "pim-activate": use rbac or pim-assign`},
		{"proxy not a range", base + "rate_limit: {trusted_proxies: [lb.internal]}\n", `invalid rate_limit.trusted_proxies entry "lb.internal"`},
		{"backend twice", base + "backends: [rbac, rbac]\n", `"rbac" is listed twice`},
		// The YAML decoder names the line, not the field.
		{"duration not parsed", base + "max_duration: soon\n", "line 4: cannot unmarshal !!str `soon` into time.Duration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseServerConfig([]byte(tc.yaml), nil)
			if err == nil {
				t.Fatalf("ParseServerConfig succeeded; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q; want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q repeats a secret", err)
			}
		})
	}
}
