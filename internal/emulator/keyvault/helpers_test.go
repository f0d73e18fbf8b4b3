package keyvault

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testTenant = "00000000-0000-0000-0000-0000000000aa"
	testVault  = "kv1"
)

// testClock is a settable clock for created, updated and purge dates.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// tokenAuthorizer is a real Authorizer over a fixed table of bearer tokens
// and the data actions each may perform. It counts the requests that came
// without a token, which is how a challenge flow starts.
type tokenAuthorizer struct {
	mu        sync.Mutex
	tokens    map[string][]string
	anonymous int
	checked   []string // data actions seen, in order
}

func (a *tokenAuthorizer) Authorize(r *http.Request, vault Vault, dataAction string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checked = append(a.checked, dataAction)

	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		a.anonymous++
		return &AuthError{
			Status:    http.StatusUnauthorized,
			Code:      "Unauthorized",
			Message:   "AKV10000: Request is missing a Bearer or PoP token.",
			Challenge: challengeFor(r.Host),
		}
	}
	actions, ok := a.tokens[token]
	if !ok {
		return &AuthError{
			Status:    http.StatusUnauthorized,
			Code:      "Unauthorized",
			Message:   "The bearer token is not valid.",
			Challenge: challengeFor(r.Host),
		}
	}
	for _, allowed := range actions {
		if allowed == dataAction {
			return nil
		}
	}
	return &AuthError{
		Status: http.StatusForbidden,
		Code:   "Forbidden",
		Message: fmt.Sprintf("Caller is not authorized to perform action on resource.\r\n"+
			"Action: '%s'\r\nResource: '%s'\r\nAssignment: (not found)\r\n"+
			"DecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: %s;location=%s\r\n",
			dataAction, strings.ToLower(vault.ResourceID), vault.Name, vault.Location),
	}
}

func (a *tokenAuthorizer) anonymousCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.anonymous
}

// challengeFor returns the challenge for a vault host NAME.vault.localhost:PORT.
// The resource is the host without its first label, port included, because
// azsecrets requires the request host to end with "." + the resource host.
func challengeFor(host string) string {
	_, parent, _ := strings.Cut(host, ".")
	return fmt.Sprintf(`Bearer authorization="https://login.localhost/%s", resource="https://%s"`, testTenant, parent)
}

var allActions = []string{
	actionGetSecret, actionSetSecret, actionReadMetadata, actionDelete, actionUpdate,
	actionRecover, actionPurge, actionBackup, actionRestore,
}

// testEnv is a Service behind a TLS test server that answers for every
// *.vault.localhost host name.
type testEnv struct {
	svc    *Service
	clock  *testClock
	auth   *tokenAuthorizer
	server *httptest.Server
	client *http.Client
	port   string
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	env := &testEnv{
		clock: newTestClock(),
		auth: &tokenAuthorizer{tokens: map[string][]string{
			"officer": allActions,
			"reader":  {actionReadMetadata},
			"user":    {actionGetSecret, actionReadMetadata},
		}},
	}
	env.svc = New(Options{
		Authorize: env.auth.Authorize,
		Now:       env.clock.Now,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err := env.svc.AddVault(Vault{
		Name:       testVault,
		ResourceID: "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/" + testVault,
		Location:   "westeurope",
	}); err != nil {
		t.Fatalf("AddVault: %v", err)
	}

	cert, pool := newTestCertificate(t)
	env.server = httptest.NewUnstartedServer(env.svc)
	env.server.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	env.server.StartTLS()
	t.Cleanup(env.server.Close)
	_, env.port, _ = net.SplitHostPort(env.server.Listener.Addr().String())

	serverAddr := env.server.Listener.Addr().String()
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	env.client = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, _, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				if host != "vault.localhost" && !strings.HasSuffix(host, ".vault.localhost") {
					return nil, fmt.Errorf("test transport dials only *.vault.localhost, not %q", addr)
				}
				return dialer.DialContext(ctx, network, serverAddr)
			},
		},
	}
	t.Cleanup(env.client.CloseIdleConnections)
	return env
}

// vaultURL returns the base URL of a vault on the test server.
func (env *testEnv) vaultURL(vault string) string {
	return "https://" + vault + ".vault.localhost:" + env.port
}

// newTestCertificate makes a self-signed certificate for *.vault.localhost
// and a pool that trusts it.
func newTestCertificate(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vault.localhost"},
		DNSNames:              []string{"vault.localhost", "*.vault.localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(parsed)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: parsed}, pool
}

// apiResponse is a decoded response of the raw HTTP tests.
type apiResponse struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

// do sends one request to a vault with an optional bearer token and a JSON
// body, and decodes a JSON response body into a map.
func (env *testEnv) do(t *testing.T, method, vault, pathAndQuery, token string, body any) apiResponse {
	t.Helper()
	target := pathAndQuery
	if !strings.HasPrefix(target, "https://") {
		target = env.vaultURL(vault) + pathAndQuery
	}
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	case []byte:
		reader = strings.NewReader(string(b))
	default:
		encoded, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encode request body: %v", err)
		}
		reader = strings.NewReader(string(encoded))
	}
	req, err := http.NewRequest(method, target, reader)
	if err != nil {
		t.Fatalf("new request %s %s: %v", method, target, err)
	}
	if reader != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := env.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response of %s %s: %v", method, target, err)
	}
	out := apiResponse{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			t.Fatalf("%s %s: response is not a JSON object: %v: %s", method, target, err, raw)
		}
	}
	return out
}

// errorCodes returns the error code and inner error code of an error body.
func (r apiResponse) errorCodes() (code, inner string) {
	errObj, _ := r.Body["error"].(map[string]any)
	code, _ = errObj["code"].(string)
	if innerObj, ok := errObj["innererror"].(map[string]any); ok {
		inner, _ = innerObj["code"].(string)
	}
	return code, inner
}

func (r apiResponse) errorMessage() string {
	errObj, _ := r.Body["error"].(map[string]any)
	message, _ := errObj["message"].(string)
	return message
}

func (r apiResponse) str(key string) string {
	s, _ := r.Body[key].(string)
	return s
}

// errNotAuthError is a failure of the Authorizer itself.
var errNotAuthError = errors.New("token cache unavailable")
