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
// emulator's OIDC provider, which lists the directory's users: the demo
// seed's approver@contoso.example and the admin user added here.
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
	id, err := d.request(ctx, "Reader", d.rgID, "look at the storage account from the web UI")
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "Open %s/ in a browser on this machine and sign in as approver@contoso.example to\n"+
		"approve, or as admin@contoso.example to revoke. Both servers use self-signed certificates:\n"+
		"trust %s (broker) and %s (emulator), or accept the browser's warnings.\n\n",
		d.broker.URL(), d.broker.DevCertFile(), d.srv.CAFile())
	d.printCLIAccess(id)
	fmt.Fprintln(d.out, "Press Ctrl-C to stop.")
	<-ctx.Done()
	return nil
}

// printCLIAccess prints the export lines that point the elevate CLI in
// another shell at the demo broker, with the approver's and the admin's
// static bearer tokens. The tokens are random per run and the broker that
// accepts them stops with the demo.
func (d *brokerDemo) printCLIAccess(requestID string) {
	fmt.Fprintf(d.out, "To use the CLI against this broker, run in another shell:\n"+
		"  export ELEVATE_BROKER_URL=%s\n"+
		"  export ELEVATE_BROKER_CA_FILE=%s\n"+
		"and then one of these two, to act as the approver or as the admin:\n"+
		"  export ELEVATE_BROKER_TOKEN=%s  # approver@contoso.example\n"+
		"  export ELEVATE_BROKER_TOKEN=%s  # admin@contoso.example\n"+
		"For example, as the approver: elevate status %s, then elevate approve %s.\n"+
		"As the admin: elevate revoke %s. The CA file can also be given as --ca-file.\n"+
		"These are development tokens of this throwaway demo broker, made at random for this run and\n"+
		"useless once it stops, so printing them is fine. Never print the tokens of a real broker.\n\n",
		shellQuote(d.broker.URL()), shellQuote(d.broker.DevCertFile()),
		shellQuote(d.approverEnv["ELEVATE_BROKER_TOKEN"]), shellQuote(d.adminEnv["ELEVATE_BROKER_TOKEN"]),
		requestID, requestID, requestID)
}
