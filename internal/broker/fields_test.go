package broker

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestCreateErrorsNameBodyFields sends bodies that fail the validation the
// CLI shares: the error must name the JSON field, never a CLI flag.
func TestCreateErrorsNameBodyFields(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name  string
		edit  func(*CreateInput)
		field string
	}{
		{"pairing mismatch", func(in *CreateInput) {
			in.Roles = []string{"Reader", "Contributor"}
			in.Scopes = []string{rg, vaultID, rg + "/providers/Microsoft.Storage/storageAccounts/stelevatedemo"}
		}, "pairing"},
		{"empty justification", func(in *CreateInput) { in.Justification = " " }, "justification"},
		{"duration too short", func(in *CreateInput) { in.Duration = "1m" }, "duration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := readerRequest("fields-" + tc.name)
			tc.edit(&in)
			_, err := h.svc.Create(context.Background(), pipeline, in)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Create: got %v; want ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "--") || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error: got %q; want the field %q and no CLI flag", err, tc.field)
			}
		})
	}
}
