package access

import (
	"errors"
	"strings"
	"testing"
)

// TestProductStopsAtRepeatedPair checks that a product of long lists with
// a repeated role fails at the first repeat. FuzzBuildPairs ran out of
// memory when the whole product of about 4,000 roles and 4,000 scopes, 16
// million pairs, was built before the duplicate check.
func TestProductStopsAtRepeatedPair(t *testing.T) {
	const n = 3000
	roles := make([]string, n)
	scopes := make([]ResourceID, n)
	for i := range n {
		roles[i] = roleA
		scopes[i] = scope1
	}
	roles[1] = strings.ToUpper(roleA)

	_, err := BuildPairs(roles, scopes, PairingProduct)
	var input *InputError
	if !errors.As(err, &input) {
		t.Fatalf("BuildPairs error = %v; want an InputError", err)
	}
	if !strings.Contains(err.Error(), "appears twice (pairs 1 and 2)") {
		t.Errorf("error %q does not name the first two pairs", err)
	}
}
