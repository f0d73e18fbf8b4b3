package broker

import (
	"net/http"
	"testing"
)

func TestDuplicateKey(t *testing.T) {
	cases := []struct {
		name, json, want string
	}{
		{"none", `{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}`, ""},
		{"top level", `{"roles":["Reader"],"roles":["Owner"]}`, "roles"},
		{"nested", `{"metadata":{"run_url":"x","run_url":"y"}}`, "run_url"},
		{"in an array", `[{"a":1},{"b":1,"b":2}]`, "b"},
		{"after a nested value", `{"a":{"x":[1,{"y":2}]},"a":3}`, "a"},
		{"string value equal to a key", `{"a":"b","b":"a"}`, ""},
		{"malformed", `{"a":1,"b"`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := duplicateKey([]byte(tc.json)); got != tc.want {
				t.Errorf("duplicateKey(%s): got %q; want %q", tc.json, got, tc.want)
			}
		})
	}
}

// TestDuplicateKeyRejectedOverAPI sends a create body that names the
// principal twice: the broker must refuse it, not pick one.
func TestDuplicateKeyRejectedOverAPI(t *testing.T) {
	h := newAPIHarness(t, APIOptions{}, false)
	body := `{"roles":["Reader"],"scopes":["` + rg + `"],"principal_id":"` + pipelineOID +
		`","principal_id":"00000000-0000-4000-8000-000000000001","duration":"10m","justification":"read"}`
	a := h.call(t, "POST", "/v1/requests", h.pipelineToken(t, nil), body, nil)
	if a.status != http.StatusBadRequest {
		t.Fatalf("status: got %d; want 400 (%s)", a.status, a.body)
	}
	if got := a.errorCode(t); got != "invalid_request" {
		t.Errorf("error code: got %q; want invalid_request", got)
	}
}

func FuzzDuplicateKey(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"a":2}`, `[{"a":[{"b":{}}]}]`, `{"a":"\u0061","\u0061":1}`, `{"a":`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = duplicateKey(data) // must not panic on any input
	})
}
