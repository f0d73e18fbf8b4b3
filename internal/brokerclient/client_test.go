package brokerclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func staticToken(context.Context) (string, error) { return "t0ken", nil }

func TestNewValidatesURL(t *testing.T) {
	cases := []struct {
		url string
		ok  bool
	}{
		{"https://elevate.example", true},
		{"https://elevate.example/", true},
		{"http://127.0.0.1:8443", true},
		{"http://elevate.example", false},
		{"elevate.example", false},
		{"ftp://elevate.example", false},
	}
	for _, tc := range cases {
		_, err := New(tc.url, staticToken, nil)
		if (err == nil) != tc.ok {
			t.Errorf("New(%q) error = %v; want ok %v", tc.url, err, tc.ok)
		}
	}
	if _, err := New("https://elevate.example", nil, nil); err == nil {
		t.Errorf("New without a token source succeeded; want an error")
	}
}

func TestErrorResponsesDecoded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "abc123")
		switch r.URL.Path {
		case "/v1/requests/json":
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"error":{"code":"conflict","message":"stale hash"}}`))
		default:
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("<html>bad gateway</html>"))
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL, staticToken, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		id, code string
		status   int
	}{
		{"json", "conflict", 409},
		{"proxy", "http_502", 502},
	}
	for _, tc := range cases {
		_, err := c.Get(context.Background(), tc.id)
		var apiErr *APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("Get(%s) error = %v; want *APIError", tc.id, err)
		}
		if apiErr.Status != tc.status || apiErr.Code != tc.code || apiErr.RequestID != "abc123" {
			t.Errorf("Get(%s) error = %+v; want status %d, code %s, request id abc123", tc.id, apiErr, tc.status, tc.code)
		}
	}
}

func TestWaitRetriesTransientErrors(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t0ken" {
			t.Errorf("Authorization = %q; want Bearer t0ken", r.Header.Get("Authorization"))
		}
		switch calls.Add(1) {
		case 1:
			_, _ = w.Write([]byte(`{"request":{"id":"r1","state":"pending"}}`))
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"later"}}`))
		default:
			_, _ = w.Write([]byte(`{"request":{"id":"r1","state":"active"}}`))
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL, staticToken, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Wait(context.Background(), "r1", time.Millisecond, nil)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if d.Request.State != StateActive || calls.Load() != 3 {
		t.Errorf("state, calls = %s, %d; want active, 3", d.Request.State, calls.Load())
	}
}

func TestWaitStopsOnClientError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":{"code":"forbidden","message":"not yours"}}`))
	}))
	defer srv.Close()
	c, err := New(srv.URL, staticToken, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Wait(ctx, "r1", time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("Wait error = %v; want the 403 at once", err)
	}
}
