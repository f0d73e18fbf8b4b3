package cli

import (
	"context"
	"fmt"
	"net/http"

	"github.com/elevate-dev/elevate/internal/broker"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/webui"
)

// The web UI of `elevate demo --broker --ui`. People sign in through the
// emulator's OIDC provider, which lists the seeded users: the demo seed's
// approver@contoso.example and the admin user added here.
const (
	demoUIClientID   = "elevate-demo-ui"
	demoUIAdminGroup = "elevate-admins"
	demoUIAdminOID   = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c0a"
)

// uiHook enables the web UI in cfg when enabled is set and returns the
// builder for broker.ServerOptions.UI, or nil when it is not.
func (d *brokerDemo) uiHook(enabled bool, cfg *broker.ServerConfig) (func(broker.UIDeps) (http.Handler, error), error) {
	if !enabled {
		return nil, nil
	}
	admin := emulator.Principal{ObjectID: demoUIAdminOID, DisplayName: "admin@contoso.example",
		Type: emulator.PrincipalUser, Groups: []string{demoUIAdminGroup}}
	if err := d.srv.AddPrincipal(admin); err != nil {
		return nil, fmt.Errorf("add the demo admin user: %w", err)
	}
	cfg.UI = broker.UIConfig{Enabled: true, Issuer: d.srv.OIDCIssuer(), ClientID: demoUIClientID}
	cfg.ApproverAuth.AdminGroups = append(cfg.ApproverAuth.AdminGroups, demoUIAdminGroup)
	return webui.New, nil
}

// serveUI files one more request to review in the browser, prints where
// to sign in, and keeps the broker and the emulator running until ctx ends
// (Ctrl-C).
func (d *brokerDemo) serveUI(ctx context.Context) error {
	d.say("5. The web UI is up, with one more Reader request waiting for review.")
	if _, err := d.request(ctx, "Reader", d.rgID, "look at the storage account from the web UI"); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "Open %s/ in a browser on this machine and sign in as approver@contoso.example to\n"+
		"approve, or as admin@contoso.example to revoke. Both servers use self-signed certificates:\n"+
		"trust %s (broker) and %s (emulator), or accept the browser's warnings.\n"+
		"Press Ctrl-C to stop.\n", d.broker.URL(), d.broker.DevCertFile(), d.srv.CAFile())
	<-ctx.Done()
	return nil
}
