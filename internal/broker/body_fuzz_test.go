package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/brokerclient"
)

// fuzzBodyRequest returns a POST carrying body behind the same size cap
// the API puts on every call.
func fuzzBodyRequest(body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/requests", bytes.NewReader(body))
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, MaxBodyBytes)
	return r
}

// checkBodyError fails unless err is what the API turns into a 400 or 413.
func checkBodyError(t *testing.T, err error) {
	t.Helper()
	var tooLarge *http.MaxBytesError
	if !errors.Is(err, ErrInvalid) && !errors.As(err, &tooLarge) {
		t.Fatalf("decodeBody error %v is neither ErrInvalid nor a MaxBytesError", err)
	}
}

// FuzzCreateBody decodes a create body as the API does and validates it
// with Service.buildRequest against the emulator over HTTPS on loopback,
// which resolves role names. It stops before the policy, the store and
// any grant. A decoded body must survive a JSON round trip unchanged, and
// a request buildRequest accepts must be well formed.
func FuzzCreateBody(f *testing.F) {
	srv := startHAEmulator(f, 0, 0)
	now := func() time.Time { return time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC) }
	svc := serviceOn(f, openSQLite(f, now), emulatorARM(f, srv, srv.Client()), now, "replica-fuzz")

	// The harness is only worth running if a well-formed body passes.
	for _, in := range []CreateInput{vaultRequest("fuzz-1"), readerRequest("")} {
		if _, _, err := svc.buildRequest(context.Background(), pipeline, in); err != nil {
			f.Fatalf("buildRequest of the seed %+v: %v", in, err)
		}
		f.Add(mustMarshal(f, in))
	}
	product := readerRequest("k")
	product.Roles = []string{"Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7"}
	product.Scopes = []string{rg, vaultID}
	product.Pairing = "product"
	product.Metadata = map[string]string{"pull_request": "42", "run_url": "https://github.com/contoso/payments/actions/runs/1"}
	f.Add(mustMarshal(f, product))
	f.Add([]byte(`{"roles":["Reader"],"roles":["Owner"],"scopes":["` + rg + `"]}`))
	f.Add([]byte(`{"roles":["Reader"],"scopes":["` + rg + `"],"principal_id":"` + pipelineOID +
		`","duration":"10m","justification":"x"} {}`))
	f.Add([]byte(`{"roles":["/subscriptions/` + subscription + `/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"],` +
		`"scopes":["` + strings.ToUpper(rg) + `/"],"principal_id":"` + strings.ToUpper(pipelineOID) +
		`","duration":"9223372036854775807ns","justification":"\u202e"}`))
	f.Add([]byte(`{"roles":["Reader"],"scopes":["/subscriptions/../resourceGroups/x"],"duration":"-5m"}`))
	f.Add([]byte(`{"unknown":1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))

	f.Fuzz(func(t *testing.T, body []byte) {
		var in CreateInput
		if err := decodeBody(fuzzBodyRequest(body), &in, false); err != nil {
			checkBodyError(t, err)
			return
		}
		checkRoundTrip(t, in)

		req, names, err := svc.buildRequest(context.Background(), pipeline, in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("buildRequest error %v is not ErrInvalid", err)
			}
			return
		}
		checkBuiltRequest(t, req, names, in, svc.cfg.MaxDuration)
	})
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkRoundTrip encodes in and decodes it again through decodeBody. An
// empty metadata object is dropped by omitempty, so it compares as nil.
func checkRoundTrip(t *testing.T, in CreateInput) {
	t.Helper()
	var again CreateInput
	if err := decodeBody(fuzzBodyRequest(mustMarshal(t, in)), &again, false); err != nil {
		t.Fatalf("decode of the re-encoded body: %v", err)
	}
	if len(in.Metadata) == 0 {
		in.Metadata = nil
	}
	if !reflect.DeepEqual(in, again) {
		t.Fatalf("round trip changed the body:\n got %#v\nwant %#v", again, in)
	}
}

// checkBuiltRequest checks what buildRequest promises about a request it
// accepts, without calling the validation it ran.
func checkBuiltRequest(t *testing.T, req access.Request, names map[string]string, in CreateInput, maxDuration time.Duration) {
	t.Helper()
	if !access.IsGUID(req.ID) {
		t.Errorf("request id %q is not a GUID", req.ID)
	}
	if !access.IsGUID(req.Principal.ID) || req.Principal.ID != strings.ToLower(req.Principal.ID) {
		t.Errorf("principal id %q is not a lowercase GUID", req.Principal.ID)
	}
	if n := len(req.Pairs); n < 1 || n > MaxRequestPairs {
		t.Errorf("%d pairs; want 1 to %d", n, MaxRequestPairs)
	}
	for _, p := range req.Pairs {
		if !access.IsGUID(p.RoleID) || p.RoleID != strings.ToLower(p.RoleID) {
			t.Errorf("pair role id %q is not a lowercase GUID", p.RoleID)
		}
		if _, ok := names[p.RoleID]; !ok {
			t.Errorf("no resolved name for role %q", p.RoleID)
		}
		again, err := access.ParseResourceID(p.Scope.String())
		if err != nil || again.String() != p.Scope.String() {
			t.Errorf("pair scope %q does not parse back to itself: %v", p.Scope, err)
		}
	}
	if req.Duration < access.MinDuration || req.Duration > maxDuration {
		t.Errorf("duration %s outside %s to %s", req.Duration, access.MinDuration, maxDuration)
	}
	if strings.TrimSpace(req.Justification) == "" || req.Justification != in.Justification {
		t.Errorf("justification %q; want the body's non-blank %q", req.Justification, in.Justification)
	}
	for _, r := range req.Justification {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			t.Errorf("justification %q contains the control character %U", req.Justification, r)
		}
	}
}

// FuzzReviewBody decodes an approve or deny body and applies the checks
// the API and Service.Review make before they read the store. An accepted
// comment must be storable in PostgreSQL and must not reorder or hide text.
func FuzzReviewBody(f *testing.F) {
	f.Add([]byte(`{"request_hash":"sha256:0f1e","comment":"looks right"}`))
	f.Add([]byte(`{"request_hash":"sha256:0f1e","comment":"line one\nline two\ttabbed\r\n"}`))
	f.Add([]byte(`{"request_hash":"x","comment":"fine \u202edenied"}`))
	f.Add([]byte(`{"request_hash":"x","comment":"no \u001b[2Jreally"}`))
	f.Add([]byte(`{"request_hash":"x","comment":"nul\u0000"}`))
	f.Add([]byte(`{"request_hash":"x","comment":"` + strings.Repeat("é", MaxCommentRunes) + `"}`))
	f.Add([]byte(`{"request_hash":"x","comment":"\xff\xfe"}`))
	f.Add([]byte(`{"request_hash":"x","request_hash":"y"}`))

	f.Fuzz(func(t *testing.T, body []byte) {
		var in brokerclient.ReviewInput
		if err := decodeBody(fuzzBodyRequest(body), &in, false); err != nil {
			checkBodyError(t, err)
			return
		}
		if err := checkText("comment", in.Comment, MaxCommentRunes, true); err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("checkText error %v is not ErrInvalid", err)
			}
			return
		}
		checkComment(t, in.Comment)
	})
}

// checkComment fails on each character an accepted comment must not contain.
func checkComment(t *testing.T, comment string) {
	t.Helper()
	if !utf8.ValidString(comment) {
		t.Errorf("accepted comment %q is not valid UTF-8", comment)
	}
	if n := utf8.RuneCountInString(comment); n > MaxCommentRunes {
		t.Errorf("accepted comment of %d characters; maximum %d", n, MaxCommentRunes)
	}
	for _, r := range comment {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			t.Errorf("accepted comment %q contains the control character %U", comment, r)
		case r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) ||
			(r >= 0x2066 && r <= 0x2069):
			t.Errorf("accepted comment %q contains the bidirectional control %U", comment, r)
		case r == 0x2028 || r == 0x2029:
			t.Errorf("accepted comment %q contains the separator %U", comment, r)
		}
	}
}

// FuzzExtendBody decodes an extend body and parses its duration as the
// API does. An accepted duration is positive and prints back to itself.
func FuzzExtendBody(f *testing.F) {
	f.Add([]byte(`{"duration":"30m"}`))
	f.Add([]byte(`{"duration":"1h30m0.5s"}`))
	f.Add([]byte(`{"duration":"-1h"}`))
	f.Add([]byte(`{"duration":"0"}`))
	f.Add([]byte(`{"duration":"9223372036854775807ns"}`))
	f.Add([]byte(`{"duration":"9223372036854775808ns"}`))
	f.Add([]byte(`{"duration":30}`))
	f.Add([]byte(`{}`))

	f.Fuzz(func(t *testing.T, body []byte) {
		var in brokerclient.ExtendInput
		if err := decodeBody(fuzzBodyRequest(body), &in, false); err != nil {
			checkBodyError(t, err)
			return
		}
		d, err := time.ParseDuration(in.Duration)
		if err != nil || d <= 0 {
			return
		}
		again, err := time.ParseDuration(d.String())
		if err != nil || again != d {
			t.Errorf("duration %q parsed as %s, which parses back as %s (%v)", in.Duration, d, again, err)
		}
	})
}

// FuzzParseServerConfig parses a broker configuration file. The
// environment contains a PostgreSQL DSN and a UI session key, which are
// secrets, so no error may contain them. An accepted configuration must
// pass CheckAndSetDefaults again without a change, and must load the same
// after it is written back out as YAML.
func FuzzParseServerConfig(f *testing.F) {
	if data, err := os.ReadFile("../../examples/broker/elevate.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("tls: dev\npolicy: p.yaml\npipeline_auth: {audience: https://b}\n"))
	f.Add([]byte("tls: dev\npolicy: p.yaml\npipeline_auth: {audience: https://b}\nstorage: {sqlite: a.db, postgres: postgres://x}\n"))
	f.Add([]byte("tls: {cert_file: c, key_file: k, colour: red}\npolicy: p\npipeline_auth: {audience: https://b}\n"))
	f.Add([]byte("tls: dev\npolicy: p\npipeline_auth: {audience: https://b}\nui: {enabled: true, session_key: zz}\n"))
	f.Add([]byte("tls: dev\npolicy: p\npipeline_auth: {audience: https://b}\nsweep_interval: -1s\nbackends: [pim-assign, rbac, rbac]\n"))
	f.Add([]byte("tls: dev\npolicy: p\npipeline_auth: {audience: https://b}\nrate_limit: {trusted_proxies: [10.0.0.0/33]}\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("{"))
	f.Add([]byte(""))

	const dsnSecret, keySecret = "dsn-canary-5f3a9c", "9e1d"
	sessionKey := strings.Repeat(keySecret, 16)
	getenv := func(name string) string {
		switch name {
		case "ELEVATE_POSTGRES_DSN":
			return "postgres://elevate:" + dsnSecret + "@db.internal/elevate"
		case "ELEVATE_UI_SESSION_KEY":
			return sessionKey
		}
		return ""
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseServerConfig(data, getenv)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, dsnSecret) || strings.Contains(msg, sessionKey) {
				t.Fatalf("error %q contains a secret from the environment", msg)
			}
			return
		}
		again := cfg
		if err := again.CheckAndSetDefaults(); err != nil {
			t.Fatalf("second CheckAndSetDefaults of an accepted configuration: %v", err)
		}
		if !reflect.DeepEqual(again, cfg) {
			t.Fatalf("second CheckAndSetDefaults changed the configuration:\n got %+v\nwant %+v", again, cfg)
		}

		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("encode an accepted configuration: %v", err)
		}
		reloaded, err := ParseServerConfig(out, nil)
		if err != nil {
			t.Fatalf("parse the re-encoded configuration: %v\n%s", err, out)
		}
		// The encodings are compared, because YAML does not tell a nil
		// list from an empty one.
		reencoded, err := yaml.Marshal(reloaded)
		if err != nil {
			t.Fatalf("encode the reloaded configuration: %v", err)
		}
		if !bytes.Equal(reencoded, out) {
			t.Fatalf("re-encoded configuration differs:\n got %s\nwant %s", reencoded, out)
		}
	})
}
