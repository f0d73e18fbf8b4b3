package emulator

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Fixed ids of the demo seed.
const (
	demoTenant       = "3b5f0e4a-8c1d-4e2f-9a7b-6c5d4e3f2a10"
	demoSubscription = "9d2c6e1f-4a3b-4c5d-8e7f-0a1b2c3d4e50"
	demoPipelineOID  = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801"
	demoPipelineApp  = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02"
	demoSecret       = "demo-pipeline-secret"
	demoApproverOID  = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c03"
	demoRG           = "/subscriptions/" + demoSubscription + "/resourceGroups/rg-elevate-demo"
	demoVault        = demoRG + "/providers/Microsoft.KeyVault/vaults/kv-elevate-demo"
	demoStandingName = "e7d6c5b4-a392-4817-b6f5-e4d3c2b1a004"
)

// startServer starts an emulator for one test and closes it at cleanup.
func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// clientOptions returns SDK options that point at the emulator and nothing
// else: cloud endpoints and the transport.
func clientOptions(s *Server) azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: s.URL() + "/",
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: s.URL(), Audience: "https://management.azure.com"},
			},
		},
		Transport: s.Client(),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}
}

func armOptions(s *Server) *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: clientOptions(s)}
}

// pipelineCredential signs in as the demo pipeline with its client secret.
func pipelineCredential(t *testing.T, s *Server) azcore.TokenCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(demoTenant, demoPipelineApp, demoSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: clientOptions(s), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatalf("NewClientSecretCredential: %v", err)
	}
	return cred
}

// doRaw sends a request with an optional bearer token and returns status
// and body.
func doRaw(t *testing.T, s *Server, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(data)
}
