package access

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const (
	testRequestID   = "6f1c1a52-8d8e-4c3e-9a51-6b7d0c2f4e10"
	testPrincipalID = "11111111-2222-3333-4444-555555555555"
)

func validRequest() Request {
	return Request{
		ID:        testRequestID,
		Principal: Principal{ID: testPrincipalID, Type: PrincipalServicePrincipal},
		Pairs: []Pair{
			{RoleID: secretsUser, Scope: MustParseResourceID(vaultID)},
			{RoleID: roleA, Scope: MustParseResourceID(rgID)},
		},
		Justification: "Rotate the orders database password (CHG-1234)",
		Duration:      15 * time.Minute,
		Metadata: Metadata{
			Repository: "contoso/orders", Workflow: "rotate", RunID: "42", RunAttempt: "1",
			RunURL: "https://github.com/contoso/orders/actions/runs/42", Ticket: "CHG-1234",
			Commit: "0123456789abcdef0123456789abcdef01234567", Ref: "refs/heads/main",
			Environment: "production", Actor: "octocat",
		},
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func TestRequestValidateAccepted(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Request)
	}{
		{"complete request", func(*Request) {}},
		{"minimum duration", func(r *Request) { r.Duration = MinDuration }},
		{"maximum duration", func(r *Request) { r.Duration = time.Hour }},
		{"user principal", func(r *Request) { r.Principal.Type = PrincipalUser }},
		{"group principal", func(r *Request) { r.Principal.Type = PrincipalGroup }},
		{"justification of 1024", func(r *Request) { r.Justification = strings.Repeat("é", 1024) }},
		{"empty metadata", func(r *Request) { r.Metadata = Metadata{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			tt.modify(&r)
			if err := r.Validate(time.Hour); err != nil {
				t.Errorf("got %v; want nil", err)
			}
		})
	}
}

func TestRequestValidateRejected(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Request)
		max    time.Duration
		want   []string
	}{
		{"request id not uuid", func(r *Request) { r.ID = "req-1" }, 0, []string{"request id", `"req-1"`}},
		{"created at missing", func(r *Request) { r.CreatedAt = time.Time{} }, 0, []string{"created_at"}},
		{"empty justification", func(r *Request) { r.Justification = "" }, 0, []string{"--justification", "is empty"}},
		{"blank justification", func(r *Request) { r.Justification = " \t " }, 0, []string{"--justification", "is empty"}},
		{"justification too long", func(r *Request) { r.Justification = strings.Repeat("x", 1025) }, 0,
			[]string{"1025 characters", "maximum of 1024"}},
		{"justification with newline", func(r *Request) { r.Justification = "a\nb" }, 0, []string{"U+000A"}},
		{"justification with bidi", func(r *Request) { r.Justification = "a\u202eb" }, 0, []string{"U+202E"}},
		{"justification invalid utf8", func(r *Request) { r.Justification = "a\xffb" }, 0, []string{"UTF-8"}},
		{"duration too short", func(r *Request) { r.Duration = 4 * time.Minute }, 0,
			[]string{"--duration", `"4m0s"`, "5m0s to 1h0m0s"}},
		{"duration too long", func(r *Request) { r.Duration = 61 * time.Minute }, 0, []string{`"1h1m0s"`}},
		{"negative duration", func(r *Request) { r.Duration = -time.Hour }, 0, []string{"--duration"}},
		{"maximum below minimum", func(*Request) {}, time.Minute, []string{"maximum duration", `"1m0s"`}},
		{"principal id not guid", func(r *Request) { r.Principal.ID = "spn-app" }, 0, []string{"principal id", `"spn-app"`}},
		{"principal type unknown", func(r *Request) { r.Principal.Type = "Device" }, 0,
			[]string{"principal type", "ServicePrincipal, User or Group"}},
		{"principal type lowercase", func(r *Request) { r.Principal.Type = "user" }, 0, []string{"principal type"}},
		{"no pairs", func(r *Request) { r.Pairs = nil }, 0, []string{"pairs", "is empty"}},
		{"uppercase pair role", func(r *Request) { r.Pairs[0].RoleID = strings.ToUpper(secretsUser) }, 0, []string{"lowercase"}},
		{"zero pair scope", func(r *Request) { r.Pairs[0].Scope = ResourceID{} }, 0, []string{"pair scope"}},
		{"duplicate pairs", func(r *Request) { r.Pairs[1] = r.Pairs[0] }, 0, []string{"appears twice"}},
		{"metadata with newline", func(r *Request) { r.Metadata.Ref = "main\nx" }, 0, []string{"ref", "U+000A"}},
		{"metadata too long", func(r *Request) { r.Metadata.RunURL = strings.Repeat("u", 2049) }, 0, []string{"run_url", "2049"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			tt.modify(&r)
			max := tt.max
			if max == 0 {
				max = time.Hour
			}
			err := r.Validate(max)
			if err == nil {
				t.Fatal("got nil; want an error")
			}
			if !errors.Is(err, ErrInvalidInput) {
				t.Errorf("errors.Is(err, ErrInvalidInput) = false for %v", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestRequestValidateReportsAllProblems(t *testing.T) {
	r := validRequest()
	r.Justification = ""
	r.Principal.Type = "Robot"
	err := r.Validate(time.Hour)
	var inputErr *InputError
	if !errors.As(err, &inputErr) {
		t.Fatalf("errors.As(*InputError) = false for %v", err)
	}
	for _, want := range []string{"--justification", "principal type"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestRequestExpiresAt(t *testing.T) {
	r := validRequest()
	want := time.Date(2026, 1, 2, 3, 19, 5, 0, time.UTC)
	if got := r.ExpiresAt(); !got.Equal(want) {
		t.Errorf("got %v; want %v", got, want)
	}
}

// TestAssignmentNameGolden pins the names, because a change would stop
// retries and crash recovery from finding assignments made before. The
// values were computed independently with Python's uuid.uuid5.
func TestAssignmentNameGolden(t *testing.T) {
	vault := MustParseResourceID(vaultID)
	tests := []struct {
		name               string
		request, principal string
		role               string
		scope              ResourceID
		want               string
	}{
		{"vault pair", testRequestID, testPrincipalID, secretsUser, vault, "ed497d0e-8712-5cec-8309-9d8de73805bd"},
		{"case does not matter", strings.ToUpper(testRequestID), strings.ToUpper(testPrincipalID),
			strings.ToUpper(secretsUser), MustParseResourceID(strings.ToUpper(vaultID[:15]) + strings.ToUpper(vaultID[15:])),
			"ed497d0e-8712-5cec-8309-9d8de73805bd"},
		{"other scope", testRequestID, testPrincipalID, secretsUser, MustParseResourceID(rgID), "1e695dd2-3e38-52e3-a05d-a7d3e2670df1"},
		{"other request", "7f1c1a52-8d8e-4c3e-9a51-6b7d0c2f4e10", testPrincipalID, secretsUser, vault, "2a0143fb-be36-5559-93c0-d7758e32e4fa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AssignmentName(tt.request, tt.principal, tt.role, tt.scope)
			if got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestRequestHash(t *testing.T) {
	base := validRequest()
	const golden = "ab724e29d5528f6900b331add92b48ef535a18ad0effcb9da58cc0fb29c62d2d"
	if got := base.Hash(); got != golden {
		t.Errorf("golden hash: got %q; want %q", got, golden)
	}

	same := validRequest()
	same.CreatedAt = same.CreatedAt.Add(time.Hour)
	same.ID = strings.ToUpper(same.ID)
	if same.Hash() != base.Hash() {
		t.Errorf("hash changed with CreatedAt or id case; want it unchanged")
	}

	changes := []struct {
		name   string
		modify func(*Request)
	}{
		{"justification", func(r *Request) { r.Justification += "." }},
		{"duration", func(r *Request) { r.Duration += time.Minute }},
		{"principal", func(r *Request) { r.Principal.Type = PrincipalUser }},
		{"pair order", func(r *Request) { r.Pairs[0], r.Pairs[1] = r.Pairs[1], r.Pairs[0] }},
		{"pair scope", func(r *Request) { r.Pairs[0].Scope = MustParseResourceID(subID) }},
		{"metadata ticket", func(r *Request) { r.Metadata.Ticket = "CHG-9999" }},
		{"request id", func(r *Request) { r.ID = "7f1c1a52-8d8e-4c3e-9a51-6b7d0c2f4e10" }},
	}
	for _, c := range changes {
		r := validRequest()
		c.modify(&r)
		if r.Hash() == base.Hash() {
			t.Errorf("changing %s left the hash unchanged; want a new hash", c.name)
		}
	}
}
