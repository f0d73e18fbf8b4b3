package keyvault

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

var routeSeeds = []struct{ method, path string }{
	{"GET", "/secrets"},
	{"GET", "/secrets/"},
	{"PUT", "/secrets/name"},
	{"GET", "/secrets/name/"},
	{"GET", "/secrets/name/0123456789abcdef0123456789abcdef"},
	{"PATCH", "/secrets/name/0123456789abcdef0123456789abcdef/"},
	{"GET", "/secrets/name/versions"},
	{"GET", "/secrets/name/versions/"},
	{"POST", "/secrets/name/backup"},
	{"POST", "/secrets/restore"},
	{"GET", "/deletedsecrets"},
	{"DELETE", "/deletedsecrets/name"},
	{"POST", "/deletedsecrets/name/recover"},
	{"GET", "/secrets/a%2Fb"},
	{"GET", "/secrets/%zz"},
	{"GET", "//secrets"},
	{"GET", ""},
	{"DELETE", "/secrets/name/versions/x/y"},
}

func TestParseRoute(t *testing.T) {
	tests := []struct {
		method, path string
		want         route
		wantStatus   routeStatus
	}{
		{"GET", "/secrets", route{Op: opListSecrets}, routeOK},
		{"GET", "/secrets/n/", route{Op: opGetSecret, Name: "n"}, routeOK},
		{"GET", "/secrets/n", route{Op: opGetSecret, Name: "n"}, routeOK},
		{"PATCH", "/secrets/n/", route{Op: opUpdateSecret, Name: "n"}, routeOK},
		{"GET", "/secrets/n/v1", route{Op: opGetSecret, Name: "n", Version: "v1"}, routeOK},
		{"GET", "/secrets/n/v1/", route{Op: opGetSecret, Name: "n", Version: "v1"}, routeOK},
		{"GET", "/secrets/n/versions", route{Op: opListVersions, Name: "n"}, routeOK},
		{"PUT", "/secrets/restore", route{Op: opSetSecret, Name: "restore"}, routeOK},
		{"POST", "/secrets/restore", route{Op: opRestoreSecret}, routeOK},
		{"POST", "/deletedsecrets/n/recover", route{Op: opRecoverDeleted, Name: "n"}, routeOK},
		{"DELETE", "/deletedsecrets/n/", route{Op: opPurgeDeleted, Name: "n"}, routeOK},
		{"GET", "/secrets/a%2Fb", route{Op: opGetSecret, Name: "a/b"}, routeOK},
		{"POST", "/secrets/n", route{}, routeMethodNotAllowed},
		{"GET", "/secrets//v1", route{}, routeNotFound},
		{"GET", "/secrets/n/v1/extra", route{}, routeNotFound},
		{"GET", "/secrets/%zz", route{}, routeNotFound},
		{"GET", "/keys", route{}, routeNotFound},
		{"GET", "", route{}, routeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			got, status := parseRoute(tt.method, tt.path)
			if status != tt.wantStatus {
				t.Errorf("status: got %d; want %d", status, tt.wantStatus)
			}
			if got != tt.want {
				t.Errorf("route: got %+v; want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseRoute(f *testing.F) {
	for _, seed := range routeSeeds {
		f.Add(seed.method, seed.path)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		rt, status := parseRoute(method, path)
		if (status == routeOK) != (rt.Op != opNone) {
			t.Fatalf("parseRoute(%q, %q) = %+v, %d: an operation iff status OK", method, path, rt, status)
		}
		if status == routeOK && rt.Op.dataAction() == "" {
			t.Fatalf("parseRoute(%q, %q) = %+v: operation without a data action", method, path, rt)
		}
		if status == routeOK && rt.Op != opListSecrets && rt.Op != opListDeleted && rt.Op != opRestoreSecret && rt.Name == "" {
			t.Fatalf("parseRoute(%q, %q) = %+v: single-secret operation without a name", method, path, rt)
		}
	})
}

// FuzzServeHTTP sends arbitrary requests through the whole handler, with
// authorization allowed, to check that no input makes it panic or answer
// with a server error.
func FuzzServeHTTP(f *testing.F) {
	for _, seed := range routeSeeds {
		f.Add(seed.method, seed.path+"?api-version=7.6&maxresults=2", `{"value":"v","tags":{"a":"b"},"attributes":{"enabled":false,"exp":1}}`)
	}
	f.Add("PUT", "/secrets/x?api-version=2026-04-01", `{"value":`)
	f.Add("GET", "/secrets?api-version=7.6&$skiptoken=eA", "")
	svc := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := svc.AddVault(Vault{Name: testVault}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if !strings.HasPrefix(target, "/") {
			return
		}
		req, err := http.NewRequest(method, "https://kv1.vault.localhost"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		svc.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: status %d: %s", method, target, rec.Code, rec.Body.String())
		}
	})
}
