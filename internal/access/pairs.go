package access

import (
	"fmt"
	"strings"
)

// Pairing selects how BuildPairs combines the --role and --scope lists.
type Pairing string

// Pairing modes. PairingDefault zips equal-length lists and broadcasts a
// list of one across the other, which covers the common cases without
// letting a miscounted list silently become a cross product.
const (
	PairingDefault   Pairing = ""
	PairingZip       Pairing = "zip"
	PairingBroadcast Pairing = "broadcast"
	PairingProduct   Pairing = "product"
)

const validPairings = `"zip", "broadcast" or "product" (or leave it unset)`

// ParsePairing parses the --pairing flag value.
func ParsePairing(s string) (Pairing, error) {
	switch p := Pairing(s); p {
	case PairingDefault, PairingZip, PairingBroadcast, PairingProduct:
		return p, nil
	default:
		return "", invalid("--pairing", s, "is not a pairing mode", "use "+validPairings)
	}
}

// Pair is one role definition with one scope: the unit that becomes one role
// assignment.
type Pair struct {
	RoleID string     `json:"role_id"` // role definition GUID, lowercase
	Scope  ResourceID `json:"scope"`
}

// String returns "ROLE at SCOPE" for messages.
func (p Pair) String() string { return p.RoleID + " at " + p.Scope.String() }

// key identifies a pair without regard to case.
func (p Pair) key() string { return strings.ToLower(p.RoleID) + "\n" + p.Scope.Key() }

// BuildPairs combines role GUIDs and scopes into pairs.
//
// With PairingDefault, equal-length lists zip by index and a list of one
// broadcasts across the other; any other mismatch is an error. PairingZip
// requires equal lengths, PairingBroadcast requires one list of length one,
// and PairingProduct returns the cross product, role-major. Role GUIDs are
// lowercased. Empty lists, malformed GUIDs, zero scopes and duplicate pairs
// are errors that wrap ErrInvalidInput.
func BuildPairs(roleGUIDs []string, scopes []ResourceID, mode Pairing) ([]Pair, error) {
	if _, err := ParsePairing(string(mode)); err != nil {
		return nil, err
	}
	if err := checkPairInputs(roleGUIDs, scopes); err != nil {
		return nil, err
	}

	nRoles, nScopes := len(roleGUIDs), len(scopes)
	counts := fmt.Sprintf("%d roles and %d scopes", nRoles, nScopes)
	var pairs []Pair
	switch {
	case mode == PairingProduct:
		// The product is checked for a repeated pair as it grows, so long
		// lists with a repeat fail at the first one instead of filling
		// memory with their whole product.
		seen := map[string]int{}
		for _, role := range roleGUIDs {
			for _, scope := range scopes {
				p := newPair(role, scope)
				if first, ok := seen[p.key()]; ok {
					return nil, duplicatePair(p, first, len(pairs))
				}
				seen[p.key()] = len(pairs)
				pairs = append(pairs, p)
			}
		}
	case mode != PairingBroadcast && nRoles == nScopes:
		for i := range roleGUIDs {
			pairs = append(pairs, newPair(roleGUIDs[i], scopes[i]))
		}
	case mode == PairingZip:
		return nil, invalid("--pairing", string(mode), "zip needs as many roles as scopes, got "+counts,
			"pass one --role per --scope, or use --pairing product for every combination")
	case mode == PairingBroadcast && nRoles != 1 && nScopes != 1:
		return nil, invalid("--pairing", string(mode), "broadcast needs exactly one role or one scope, got "+counts,
			"pass a single --role or --scope, or use --pairing product for every combination")
	case nRoles == 1:
		for _, scope := range scopes {
			pairs = append(pairs, newPair(roleGUIDs[0], scope))
		}
	case nScopes == 1:
		for _, role := range roleGUIDs {
			pairs = append(pairs, newPair(role, scopes[0]))
		}
	default:
		return nil, invalid("--role/--scope", counts, "the counts differ and neither is one, "+
			"so roles cannot be matched to scopes",
			"pass one --role per --scope, a single --role or --scope, or --pairing product for every combination")
	}

	if err := checkDuplicatePairs(pairs); err != nil {
		return nil, err
	}
	return pairs, nil
}

func newPair(role string, scope ResourceID) Pair {
	return Pair{RoleID: strings.ToLower(role), Scope: scope}
}

// checkPairInputs rejects empty lists, malformed role GUIDs and zero scopes.
func checkPairInputs(roleGUIDs []string, scopes []ResourceID) error {
	if len(roleGUIDs) == 0 {
		return invalid("--role", "", "is missing", "pass at least one --role")
	}
	if len(scopes) == 0 {
		return invalid("--scope", "", "is missing", "pass at least one --scope")
	}
	for _, role := range roleGUIDs {
		if !IsGUID(role) {
			return invalid("--role", role, "is not a role definition GUID",
				"resolve role names and ids to GUIDs with ParseRoleRef first")
		}
	}
	for i, scope := range scopes {
		if scope.IsZero() {
			return invalid("--scope", "", fmt.Sprintf("scope %d is not a parsed resource id", i+1),
				"parse each --scope with ParseResourceID")
		}
	}
	return nil
}

// checkDuplicatePairs rejects a pair that appears twice, ignoring case,
// because two grants of the same pair would share one role assignment.
func checkDuplicatePairs(pairs []Pair) error {
	seen := make(map[string]int, len(pairs))
	for i, p := range pairs {
		if first, ok := seen[p.key()]; ok {
			return duplicatePair(p, first, i)
		}
		seen[p.key()] = i
	}
	return nil
}

// duplicatePair is the error for pair p at index i repeating the pair at
// index first.
func duplicatePair(p Pair, first, i int) error {
	return invalid("pair", p.String(),
		fmt.Sprintf("appears twice (pairs %d and %d)", first+1, i+1),
		"remove the repeated --role or --scope")
}
