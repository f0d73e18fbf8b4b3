package webui

import (
	"strings"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/broker"
)

const baseConfig = "tls: dev\npolicy: p.yaml\npipeline_auth: {audience: https://b}\n"

func TestUIConfigDefaultsFromApproverOIDC(t *testing.T) {
	cfg, err := broker.ParseServerConfig([]byte(baseConfig+
		"approver_auth: {oidc: {issuer: https://login.example/v2.0, audience: app-1, groups_claim: roles}}\nui: {enabled: true}\n"), nil)
	if err != nil {
		t.Fatalf("ParseServerConfig: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"issuer", cfg.UI.Issuer, "https://login.example/v2.0"},
		{"client id", cfg.UI.ClientID, "app-1"},
		{"groups claim", cfg.UI.GroupsClaim, "roles"},
		{"session ttl", cfg.UI.SessionTTL, 8 * time.Hour},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestUIConfigSessionKeyFromEnvironment(t *testing.T) {
	key := strings.Repeat("ab", 32)
	env := map[string]string{"ELEVATE_UI_SESSION_KEY": key}
	cfg, err := broker.ParseServerConfig([]byte(baseConfig+"ui: {enabled: true, issuer: https://i, client_id: c}\n"),
		func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("ParseServerConfig: %v", err)
	}
	if cfg.UI.SessionKey != key {
		t.Errorf("session key = %q; want the environment's", cfg.UI.SessionKey)
	}
}

func TestUIConfigInvalidValuesRejected(t *testing.T) {
	cases := []struct {
		name, ui, want string
	}{
		{"missing issuer", "{enabled: true, client_id: c}", "invalid ui.issuer"},
		{"http issuer", "{enabled: true, issuer: http://i, client_id: c}", "invalid ui.issuer"},
		{"missing client id", "{enabled: true, issuer: https://i}", "missing ui.client_id"},
		{"redirect elsewhere", "{enabled: true, issuer: https://i, client_id: c, redirect_url: https://b/cb}", "invalid ui.redirect_url"},
		{"short session key", "{enabled: true, issuer: https://i, client_id: c, session_key: abcd}", "invalid ui.session_key"},
		{"tiny session ttl", "{enabled: true, issuer: https://i, client_id: c, session_ttl: 5s}", "invalid ui.session_ttl"},
		{"unknown field", "{enabled: true, colour: blue}", "colour"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := broker.ParseServerConfig([]byte(baseConfig+"ui: "+c.ui+"\n"), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error = %v; want one containing %q", err, c.want)
			}
		})
	}
}

func TestUIConfigDisabledNeedsNothing(t *testing.T) {
	if _, err := broker.ParseServerConfig([]byte(baseConfig+"ui: {enabled: false}\n"), nil); err != nil {
		t.Errorf("ParseServerConfig: %v; want no error", err)
	}
}

func TestBarChartEscapesAndScales(t *testing.T) {
	svg := string(barChart{Title: `<script>x</script>`, Unit: "min", Labels: []string{"01-01", `<b>`}, Values: []float64{3, 7}}.SVG())
	if strings.Contains(svg, "<script>") || strings.Contains(svg, "<b>") {
		t.Errorf("svg contains an unescaped title or label: %s", svg)
	}
	if got := strings.Count(svg, `<rect class="bar"`); got != 2 {
		t.Errorf("bars = %d; want 2", got)
	}
	if !strings.Contains(svg, ">10 min</text>") {
		t.Errorf("axis maximum is not 10 min: %s", svg)
	}
}

func TestNiceCeiling(t *testing.T) {
	cases := []struct{ in, want float64 }{{0, 1}, {0.3, 0.5}, {1, 1}, {3, 5}, {7, 10}, {11, 20}, {240, 500}}
	for _, c := range cases {
		if got := niceCeiling(c.in); got != c.want {
			t.Errorf("niceCeiling(%v) = %v; want %v", c.in, got, c.want)
		}
	}
}
