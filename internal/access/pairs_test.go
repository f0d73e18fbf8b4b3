package access

import (
	"errors"
	"strings"
	"testing"
)

const (
	roleA = "aaaaaaaa-0000-0000-0000-000000000001"
	roleB = "bbbbbbbb-0000-0000-0000-000000000002"
	roleC = "cccccccc-0000-0000-0000-000000000003"
)

var (
	scope1 = MustParseResourceID(subID + "/resourceGroups/rg-1")
	scope2 = MustParseResourceID(subID + "/resourceGroups/rg-2")
	scope3 = MustParseResourceID(subID + "/resourceGroups/rg-3")
)

// pairsString renders pairs as "role@rg" words for compact comparison.
func pairsString(pairs []Pair) string {
	var words []string
	for _, p := range pairs {
		words = append(words, p.RoleID[:1]+"@"+p.Scope.Name())
	}
	return strings.Join(words, " ")
}

func TestBuildPairsAccepted(t *testing.T) {
	tests := []struct {
		name   string
		roles  []string
		scopes []ResourceID
		mode   Pairing
		want   string
	}{
		{"default zips equal lengths", []string{roleA, roleB}, []ResourceID{scope1, scope2}, "", "a@rg-1 b@rg-2"},
		{"default one role broadcasts", []string{roleA}, []ResourceID{scope1, scope2, scope3}, "", "a@rg-1 a@rg-2 a@rg-3"},
		{"default one scope broadcasts", []string{roleA, roleB, roleC}, []ResourceID{scope1}, "", "a@rg-1 b@rg-1 c@rg-1"},
		{"default single pair", []string{roleA}, []ResourceID{scope1}, "", "a@rg-1"},
		{"zip equal lengths", []string{roleA, roleB}, []ResourceID{scope1, scope2}, PairingZip, "a@rg-1 b@rg-2"},
		{"broadcast one role", []string{roleA}, []ResourceID{scope1, scope2}, PairingBroadcast, "a@rg-1 a@rg-2"},
		{"broadcast one scope", []string{roleA, roleB}, []ResourceID{scope1}, PairingBroadcast, "a@rg-1 b@rg-1"},
		{"broadcast both single", []string{roleA}, []ResourceID{scope1}, PairingBroadcast, "a@rg-1"},
		{"product is role major", []string{roleA, roleB}, []ResourceID{scope1, scope2, scope3}, PairingProduct,
			"a@rg-1 a@rg-2 a@rg-3 b@rg-1 b@rg-2 b@rg-3"},
		{"product of equal lengths", []string{roleA, roleB}, []ResourceID{scope1, scope2}, PairingProduct,
			"a@rg-1 a@rg-2 b@rg-1 b@rg-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pairs, err := BuildPairs(tt.roles, tt.scopes, tt.mode)
			if err != nil {
				t.Fatalf("BuildPairs error: %v", err)
			}
			if got := pairsString(pairs); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestBuildPairsLowercasesRoles(t *testing.T) {
	pairs, err := BuildPairs([]string{strings.ToUpper(roleA)}, []ResourceID{scope1}, "")
	if err != nil {
		t.Fatalf("BuildPairs error: %v", err)
	}
	if pairs[0].RoleID != roleA {
		t.Errorf("got %q; want %q", pairs[0].RoleID, roleA)
	}
}

func TestBuildPairsRejected(t *testing.T) {
	scope1Upper := MustParseResourceID(strings.ToUpper(scope1.String()[:15]) + scope1.String()[15:])
	tests := []struct {
		name   string
		roles  []string
		scopes []ResourceID
		mode   Pairing
		want   []string // substrings of the error
	}{
		{"no roles", nil, []ResourceID{scope1}, "", []string{"--role", "pass at least one --role"}},
		{"no scopes", []string{roleA}, nil, "", []string{"--scope", "pass at least one --scope"}},
		{"default mismatch", []string{roleA, roleB}, []ResourceID{scope1, scope2, scope3}, "",
			[]string{"2 roles and 3 scopes", "--pairing product"}},
		{"zip mismatch", []string{roleA}, []ResourceID{scope1, scope2}, PairingZip,
			[]string{"1 roles and 2 scopes", "--pairing product"}},
		{"broadcast neither single", []string{roleA, roleB}, []ResourceID{scope1, scope2}, PairingBroadcast,
			[]string{"2 roles and 2 scopes", "--pairing product"}},
		{"unknown mode", []string{roleA}, []ResourceID{scope1}, "cross",
			[]string{`"cross"`, `"zip", "broadcast" or "product"`}},
		{"malformed role guid", []string{"Reader"}, []ResourceID{scope1}, "", []string{"--role", `"Reader"`}},
		{"zero scope", []string{roleA}, []ResourceID{{}}, "", []string{"--scope", "scope 1"}},
		{"duplicate pair", []string{roleA, roleA}, []ResourceID{scope1, scope1}, "",
			[]string{roleA + " at " + scope1.String(), "pairs 1 and 2"}},
		{"duplicate differing in case", []string{roleA, strings.ToUpper(roleA)}, []ResourceID{scope1, scope1Upper}, "",
			[]string{"appears twice"}},
		{"duplicate scope broadcast", []string{roleA}, []ResourceID{scope1, scope2, scope1}, "",
			[]string{"pairs 1 and 3"}},
		{"duplicate role product", []string{roleA, roleA}, []ResourceID{scope1}, PairingProduct,
			[]string{"pairs 1 and 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pairs, err := BuildPairs(tt.roles, tt.scopes, tt.mode)
			if err == nil {
				t.Fatalf("got %q; want an error", pairsString(pairs))
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

func TestParsePairing(t *testing.T) {
	for _, s := range []string{"", "zip", "broadcast", "product"} {
		if got, err := ParsePairing(s); err != nil || string(got) != s {
			t.Errorf("ParsePairing(%q): got %q, %v; want %q, nil", s, got, err, s)
		}
	}
	if _, err := ParsePairing("ZIP"); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("ParsePairing(ZIP): got %v; want ErrInvalidInput", err)
	}
}
