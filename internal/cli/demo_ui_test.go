package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDemoBrokerUIServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"demo", "--broker", "--ui", "--propagation-delay", "10ms"},
			Streams{Out: &out, ErrOut: &errOut, Getenv: func(string) string { return "" }})
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C to stop.") {
		select {
		case code := <-done:
			t.Fatalf("demo ended early with exit %d; stdout %s; stderr %s", code, out.String(), errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo did not start the UI within 60s; stdout %s", out.String())
		}
	}
	m := regexp.MustCompile(`Open (https://\S+)/ in a browser[\s\S]*trust (\S+) \(broker\)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("demo output lacks the UI address and certificate:\n%s", out.String())
	}
	client := trustingClient(t, m[2])

	resp, err := client.Get(m[1] + "/")
	if err != nil {
		t.Fatalf("GET UI: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `href="/login"`) {
		t.Errorf("GET / = %d without a sign-in link; want 401 and the sign-in page", resp.StatusCode)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP = %q; want default-src 'none'", csp)
	}
	// The API beside it still wants a bearer token, and ignores cookies.
	resp, err = client.Get(m[1] + "/v1/requests")
	if err != nil {
		t.Fatalf("GET API: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/requests = %d; want 401", resp.StatusCode)
	}

	// The printed export lines let the CLI in another shell act as the
	// approver and as the admin.
	exports := regexp.MustCompile(`export (ELEVATE_BROKER_\w+)='([^']*)'`).FindAllStringSubmatch(out.String(), -1)
	idMatch := regexp.MustCompile(`elevate approve (\S+)\.`).FindStringSubmatch(out.String())
	if len(exports) != 4 || idMatch == nil {
		t.Fatalf("demo output lacks the CLI export lines or the request id:\n%s", out.String())
	}
	env := map[string]string{exports[0][1]: exports[0][2], exports[1][1]: exports[1][2]}
	for i, identity := range []string{"approver", "admin"} {
		env["ELEVATE_BROKER_TOKEN"] = exports[2+i][2]
		var cliOut, cliErr syncBuffer
		code := Main(ctx, []string{"status", idMatch[1]},
			Streams{Out: &cliOut, ErrOut: &cliErr, Getenv: func(k string) string { return env[k] }})
		if code != ExitOK || !strings.Contains(cliOut.String(), idMatch[1]) {
			t.Errorf("elevate status as the %s with the printed exports: exit %d; stdout %s; stderr %s", identity, code, cliOut.String(), cliErr.String())
		}
	}

	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("exit = %d; want %d; stderr %s", code, ExitOK, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s of the cancel")
	}
}

func TestDemoUIWithoutBrokerRejected(t *testing.T) {
	var out, errOut syncBuffer
	code := Main(context.Background(), []string{"demo", "--ui"},
		Streams{Out: &out, ErrOut: &errOut, Getenv: func(string) string { return "" }})
	if code != ExitUsage {
		t.Errorf("exit = %d; want %d", code, ExitUsage)
	}
	if !strings.Contains(errOut.String(), "--ui needs --broker") {
		t.Errorf("stderr %q lacks the reason", errOut.String())
	}
}

// trustingClient returns an HTTPS client that trusts the PEM file only.
func trustingClient(t *testing.T, pemFile string) *http.Client {
	t.Helper()
	data, err := os.ReadFile(pemFile)
	if err != nil {
		t.Fatalf("read broker certificate: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("no certificate in %s", pemFile)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
