// Package azure connects Elevate to Azure Resource Manager, Key Vault and Microsoft Entra
// through the official Azure SDK for Go. The same code talks to public Azure or to the
// Elevate emulator: only endpoints, the trusted CA and the credential differ.
package azure

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Public Azure defaults, used when no override is configured.
const (
	DefaultARMEndpoint   = "https://management.azure.com"
	DefaultARMAudience   = "https://management.azure.com"
	DefaultAuthorityHost = "https://login.microsoftonline.com/"
	DefaultVaultSuffix   = "vault.azure.net"
)

// Environment selects the Azure endpoints and the TLS trust that every client uses.
type Environment struct {
	// ARMEndpoint is the Resource Manager base URL.
	ARMEndpoint string
	// ARMAudience is the resource whose "/.default" scope ARM tokens are requested for.
	ARMAudience string
	// AuthorityHost is the Microsoft Entra authority host, ending in a slash.
	AuthorityHost string
	// VaultSuffix is the DNS suffix of Key Vault hosts, port included when not 443.
	VaultSuffix string
	// CAFile, when set, is a PEM bundle trusted in addition to the system roots.
	CAFile string
	// DisableInstanceDiscovery skips Entra instance metadata, which a private
	// authority such as the emulator does not serve.
	DisableInstanceDiscovery bool
	// Logger, when set, receives one line per throttled or failed attempt
	// that the SDK retries.
	Logger *slog.Logger
}

// EnvironmentFromEnv reads the environment variables documented in the README:
// ELEVATE_ARM_ENDPOINT, ELEVATE_ARM_AUDIENCE, AZURE_AUTHORITY_HOST,
// ELEVATE_VAULT_SUFFIX and ELEVATE_CA_FILE. Unset variables keep public Azure.
func EnvironmentFromEnv(getenv func(string) string) (Environment, error) {
	env := Environment{
		ARMEndpoint:   strings.TrimRight(getenv("ELEVATE_ARM_ENDPOINT"), "/"),
		ARMAudience:   getenv("ELEVATE_ARM_AUDIENCE"),
		AuthorityHost: getenv("AZURE_AUTHORITY_HOST"),
		VaultSuffix:   getenv("ELEVATE_VAULT_SUFFIX"),
		CAFile:        getenv("ELEVATE_CA_FILE"),
	}
	return env, env.CheckAndSetDefaults()
}

// CheckAndSetDefaults fills unset fields with public Azure values and rejects
// endpoints that are not absolute HTTPS URLs.
func (e *Environment) CheckAndSetDefaults() error {
	if e.ARMEndpoint == "" {
		e.ARMEndpoint = DefaultARMEndpoint
	}
	if e.ARMAudience == "" {
		e.ARMAudience = DefaultARMAudience
	}
	if e.AuthorityHost == "" {
		e.AuthorityHost = DefaultAuthorityHost
	}
	if !strings.HasSuffix(e.AuthorityHost, "/") {
		e.AuthorityHost += "/"
	}
	if e.VaultSuffix == "" {
		e.VaultSuffix = DefaultVaultSuffix
	}
	for name, value := range map[string]string{
		"ELEVATE_ARM_ENDPOINT": e.ARMEndpoint,
		"AZURE_AUTHORITY_HOST": e.AuthorityHost,
	} {
		u, err := url.Parse(value)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("invalid %s %q: want an absolute https URL such as %q", name, value, "https://management.azure.com")
		}
	}
	// A non-public authority does not serve instance discovery.
	if e.AuthorityHost != DefaultAuthorityHost {
		e.DisableInstanceDiscovery = true
	}
	return nil
}

// Cloud returns the azcore cloud configuration for this environment.
func (e Environment) Cloud() cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: e.AuthorityHost,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: e.ARMEndpoint, Audience: e.ARMAudience},
		},
	}
}

// VaultURL returns the data-plane URL of the named vault, or the value itself
// when it is already a URL.
func (e Environment) VaultURL(nameOrURL string) (string, error) {
	if strings.HasPrefix(nameOrURL, "https://") {
		u, err := url.Parse(nameOrURL)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("invalid vault URL %q: want https://NAME.%s/", nameOrURL, e.VaultSuffix)
		}
		return "https://" + u.Host + "/", nil
	}
	if !validVaultName(nameOrURL) {
		return "", fmt.Errorf("invalid vault name %q: use 3-24 letters, digits and dashes, starting with a letter", nameOrURL)
	}
	return "https://" + strings.ToLower(nameOrURL) + "." + e.VaultSuffix + "/", nil
}

func validVaultName(s string) bool {
	if len(s) < 3 || len(s) > 24 {
		return false
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		digit := r >= '0' && r <= '9'
		switch {
		case i == 0 && !letter:
			return false
		case !letter && !digit && r != '-':
			return false
		}
	}
	return !strings.HasSuffix(s, "-") && !strings.Contains(s, "--")
}

// HTTPClient returns a client that trusts CAFile and resolves every
// "*.localhost" name to the loopback address, as RFC 6761 reserves those names
// for it; Go's resolver only resolves the plain name "localhost".
func (e Environment) HTTPClient() (*http.Client, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if e.CAFile != "" {
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file %q: %w", e.CAFile, err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read CA file %q: no PEM certificate found", e.CAFile)
		}
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, loopbackForLocalhost(addr))
	}
	transport.MaxIdleConnsPerHost = 32
	return &http.Client{Transport: transport}, nil
}

// loopbackForLocalhost rewrites "name.localhost:port" to "127.0.0.1:port".
func loopbackForLocalhost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// ClientOptions returns azcore options with this environment's cloud and
// transport. retry, when non-nil, replaces the SDK's default retry policy.
func (e Environment) ClientOptions(client *http.Client, retry *policy.RetryOptions) policy.ClientOptions {
	opts := policy.ClientOptions{Cloud: e.Cloud(), Transport: client}
	if retry != nil {
		opts.Retry = *retry
	}
	if e.Logger != nil {
		opts.PerRetryPolicies = []policy.Policy{retryLogger{log: e.Logger}}
	}
	return opts
}

// retryLogger logs every attempt that Azure throttled or failed, so a run
// that slows down under 429 logs the reason.
type retryLogger struct{ log *slog.Logger }

func (l retryLogger) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	switch {
	case err != nil:
		l.log.Warn("azure call failed, the SDK may retry", "method", req.Raw().Method, "path", req.Raw().URL.Path, "error", err)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		l.log.Warn("azure call throttled or failed, the SDK may retry", "method", req.Raw().Method,
			"path", req.Raw().URL.Path, "status", resp.StatusCode, "retry_after", resp.Header.Get("Retry-After"))
	}
	return resp, err
}

// ARMOptions returns options for ARM clients.
func (e Environment) ARMOptions(client *http.Client, retry *policy.RetryOptions) *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: e.ClientOptions(client, retry)}
}
