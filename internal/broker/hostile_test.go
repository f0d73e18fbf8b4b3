package broker

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/store"
)

// storeKinds returns the stores a hostile-input test runs on: SQLite, and
// PostgreSQL when ELEVATE_TEST_POSTGRES_DSN is set.
func storeKinds() []string {
	if os.Getenv(postgresDSNVar) == "" {
		return []string{"sqlite"}
	}
	return []string{"sqlite", "postgres"}
}

// newAPIHarnessOn is newAPIHarness on the named store. On PostgreSQL the
// service and API are rebuilt on a fresh schema, with the same emulator,
// clock and authenticator.
func newAPIHarnessOn(t *testing.T, kind string) *apiHarness {
	t.Helper()
	h := newAPIHarness(t, APIOptions{}, false)
	if kind == "sqlite" {
		return h
	}
	st := openPostgres(t, postgresSchema(t), h.clock.Now)
	h.store = st
	h.svc = newService(t, h.srv, st, h.clock, "replica-pg")
	h.api = NewAPI(h.svc, h.api.auth, APIOptions{Ready: h.ready.Load})
	ts := httptest.NewServer(h.api.Handler())
	t.Cleanup(ts.Close)
	h.url = ts.URL
	return h
}

func TestFreeTextControlCharsRejected(t *testing.T) {
	for _, kind := range storeKinds() {
		t.Run(kind, func(t *testing.T) {
			h := newAPIHarnessOn(t, kind)
			tok := h.pipelineToken(t, nil)
			pending := h.create(t, readerRequest("free-text"))
			approvePath := "/v1/requests/" + pending.Request.ID + "/approve"
			denyPath := "/v1/requests/" + pending.Request.ID + "/deny"
			review := func(comment string) brokerclient.ReviewInput {
				return brokerclient.ReviewInput{RequestHash: pending.RequestHash, Comment: comment}
			}
			cases := []struct {
				name, path, token string
				body              any
				field             string
			}{
				{"NUL in key", "/v1/requests", tok, vaultRequest("key\x00nul"), "idempotency key"},
				{"bidi override in key", "/v1/requests", tok, vaultRequest("key\u202eevil"), "idempotency key"},
				{"NUL in comment", approvePath, approverToken, review("fine\x00"), "comment"},
				{"bidi override in comment", approvePath, approverToken, review("fine \u202edenied"), "comment"},
				{"escape in deny comment", denyPath, approverToken, review("no \x1b[2Jreally"), "comment"},
				{"comment over maximum", approvePath, approverToken, review(strings.Repeat("x", MaxCommentRunes+1)), "comment"},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					a := h.call(t, "POST", tc.path, tc.token, tc.body, nil)
					if a.status != http.StatusBadRequest {
						t.Fatalf("status = %d; want 400; body %.300s", a.status, a.body)
					}
					var e brokerclient.ErrorBody
					a.decode(t, &e)
					if e.Error.Code != brokerclient.CodeInvalid {
						t.Errorf("error code = %q; want %q", e.Error.Code, brokerclient.CodeInvalid)
					}
					if !strings.Contains(e.Error.Message, tc.field) {
						t.Errorf("message %q does not name the field %q", e.Error.Message, tc.field)
					}
				})
			}
			// Nothing above changed the pending request, so a clean
			// approval still grants it.
			a := h.call(t, "POST", approvePath, approverToken, review("read-only, fine.\r\n\tChecked the scope."), nil)
			if a.status != http.StatusOK {
				t.Fatalf("clean approval: status = %d; want 200; body %.300s", a.status, a.body)
			}
			var d brokerclient.RequestDetail
			a.decode(t, &d)
			if d.Request.State != brokerclient.StateActive {
				t.Errorf("state after clean approval = %s; want active", d.Request.State)
			}
		})
	}
}

func TestExtendAfterExpiryRejected(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	d := h.create(t, vaultRequest("extend-late"))
	path := "/v1/requests/" + d.Request.ID + "/extend"

	// The 10-minute grant has expired and no sweep has run yet. The rule
	// allows 15 minutes, but an extension must come before the expiry.
	h.clock.Advance(11 * time.Minute)
	a := h.call(t, "POST", path, h.pipelineToken(t, nil), brokerclient.ExtendInput{Duration: "15m"}, nil)
	if a.status != http.StatusConflict {
		t.Fatalf("extend after expiry: status = %d; want 409; body %.300s", a.status, a.body)
	}
	var e brokerclient.ErrorBody
	a.decode(t, &e)
	if !strings.Contains(e.Error.Message, "expired") {
		t.Errorf("message %q does not say the request expired", e.Error.Message)
	}

	h.svc.SweepOnce(t.Context())
	if n := h.liveAssignments(); n != 0 {
		t.Errorf("assignments after the sweep = %d; want 0", n)
	}
	got, err := h.store.GetRequest(t.Context(), d.Request.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RequestRevoked {
		t.Errorf("state after the sweep = %s; want revoked", got.State)
	}
	if _, err := store.VerifyStoredAudit(t.Context(), h.store); err != nil {
		t.Errorf("audit chain: %v", err)
	}
}

func TestRequestPairsBounded(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	tok := h.pipelineToken(t, nil)
	scopes := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s/providers/Microsoft.Storage/storageAccounts/st%03d", rg, i)
		}
		return out
	}
	roles := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("0f1e2d3c-4b5a-4968-8776-6554433221%02d", i)
		}
		return out
	}
	cases := []struct {
		name    string
		roles   []string
		scopes  []string
		pairing string
		status  int
		message string
	}{
		{"scopes over maximum", []string{"Reader"}, scopes(MaxRequestPairs + 1), "", 400, "101 scopes"},
		{"roles over maximum", roles(MaxRequestPairs + 1), []string{rg}, "", 400, "101 roles"},
		{"product over maximum", roles(11), scopes(10), "product", 400, "110 pairs"},
		{"maximum accepted", []string{"Reader"}, scopes(MaxRequestPairs), "", 201, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := readerRequest("")
			in.Roles, in.Scopes, in.Pairing = tc.roles, tc.scopes, tc.pairing
			a := h.call(t, "POST", "/v1/requests", tok, in, nil)
			if a.status != tc.status {
				t.Fatalf("status = %d; want %d; body %.300s", a.status, tc.status, a.body)
			}
			if tc.message == "" {
				return
			}
			var e brokerclient.ErrorBody
			a.decode(t, &e)
			if !strings.Contains(e.Error.Message, tc.message) {
				t.Errorf("message %q does not contain %q", e.Error.Message, tc.message)
			}
		})
	}
}
