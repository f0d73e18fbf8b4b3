package broker

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestFailedAuthCountedPerClientBehindProxy sends every call through a
// trusted proxy on loopback. Failed sign-ins from one client must lock out
// that client only, and a client cannot escape its count by writing its own
// X-Forwarded-For entries.
func TestFailedAuthCountedPerClientBehindProxy(t *testing.T) {
	h := newAPIHarness(t, APIOptions{AuthFailureBurst: 3, TrustedProxies: []string{"127.0.0.0/8", "::1/128"}}, false)
	from := func(client string) http.Header {
		return http.Header{"X-Forwarded-For": {client}}
	}
	for i := range 3 {
		if a := h.call(t, "GET", "/v1/grants", "guess", nil, from("203.0.113.7")); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: status = %d; want 401", i+1, a.status)
		}
	}
	if a := h.call(t, "GET", "/v1/grants", approverToken, nil, from("203.0.113.7")); a.status != http.StatusTooManyRequests {
		t.Errorf("the failing client after 3 failures: status = %d; want 429", a.status)
	}
	// A spoofed first entry is the client's own writing; the proxy appends
	// the real peer last.
	if a := h.call(t, "GET", "/v1/grants", approverToken, nil, from("198.51.100.9, 203.0.113.7")); a.status != http.StatusTooManyRequests {
		t.Errorf("the failing client with a spoofed entry: status = %d; want 429", a.status)
	}
	if a := h.call(t, "GET", "/v1/grants", approverToken, nil, from("198.51.100.9")); a.status != http.StatusOK {
		t.Errorf("another client behind the proxy: status = %d; want 200", a.status)
	}
}

// TestForwardedForIgnoredWithoutTrustedProxy checks that a direct caller
// cannot move its failures to another address with the header.
func TestForwardedForIgnoredWithoutTrustedProxy(t *testing.T) {
	h := newAPIHarness(t, APIOptions{AuthFailureBurst: 3}, false)
	for i := range 3 {
		hdr := http.Header{"X-Forwarded-For": {"198.51.100." + string(rune('1'+i))}}
		if a := h.call(t, "GET", "/v1/grants", "guess", nil, hdr); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: status = %d; want 401", i+1, a.status)
		}
	}
	hdr := http.Header{"X-Forwarded-For": {"198.51.100.200"}}
	if a := h.call(t, "GET", "/v1/grants", approverToken, nil, hdr); a.status != http.StatusTooManyRequests {
		t.Errorf("after 3 failures with varied headers: status = %d; want 429", a.status)
	}
}

// TestBearerSchemeAnyCase accepts the scheme name in any case.
func TestBearerSchemeAnyCase(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		req := httptest.NewRequest("GET", "/v1/grants", nil)
		req.Header.Set("Authorization", scheme+" "+approverToken)
		if _, err := h.api.auth.Authenticate(req.Context(), req.Header.Get("Authorization")); err != nil {
			t.Errorf("scheme %q: %v; want accepted", scheme, err)
		}
	}
	if _, err := h.api.auth.Authenticate(t.Context(), "Basic "+approverToken); err == nil {
		t.Error("scheme Basic: accepted; want rejected")
	}
}
