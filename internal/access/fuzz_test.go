package access

import (
	"strings"
	"testing"
)

func FuzzParseResourceID(f *testing.F) {
	for _, seed := range []string{
		subID, rgID, vaultID, dbID, mgID, rgID + "/", "", "/", "//",
		"/subscriptions/" + strings.ToUpper(testSub) + "/resourcegroups/RG",
		rgID + "/providers/Microsoft.Authorization/roleAssignments/x",
		rgID + "?a=b", subID + "/resourceGroups/..", "/providers/x/y/z",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseResourceID(s)
		if err != nil {
			if !id.IsZero() {
				t.Fatalf("error %v came with non-zero id %q", err, id)
			}
			return
		}
		again, err := ParseResourceID(id.String())
		if err != nil {
			t.Fatalf("String() %q of parsed %q does not re-parse: %v", id, s, err)
		}
		if again.Key() != id.Key() {
			t.Fatalf("re-parsed key: got %q; want %q", again.Key(), id.Key())
		}
		if !id.Contains(id) {
			t.Fatalf("%q does not contain itself", id)
		}
		if parent, ok := id.Parent(); ok && !parent.Contains(id) {
			t.Fatalf("parent %q does not contain %q", parent, id)
		}
	})
}

func FuzzParseRoleRef(f *testing.F) {
	for _, seed := range []string{
		secretsUser, "Reader", RoleDefinitionID(testSub, secretsUser),
		"/providers/Microsoft.Authorization/roleDefinitions/" + secretsUser,
		"4633458b-17de", "", "/", "\x00",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseRoleRef(s)
		if err != nil {
			return
		}
		if (ref.GUID == "") == (ref.Name == "") {
			t.Fatalf("got %+v; want exactly one of GUID and Name", ref)
		}
		if ref.GUID != "" && (!IsGUID(ref.GUID) || ref.GUID != strings.ToLower(ref.GUID)) {
			t.Fatalf("GUID %q is not a lowercase GUID", ref.GUID)
		}
		if again, err := ParseRoleRef(ref.String()); err != nil || again != ref {
			t.Fatalf("String() %q re-parses to %+v, %v; want %+v", ref.String(), again, err, ref)
		}
	})
}

// FuzzBuildPairs derives role and scope lists from the fuzz input: each
// byte picks a role or scope from a small pool, so duplicates and every
// length combination occur.
func FuzzBuildPairs(f *testing.F) {
	f.Add([]byte{0, 1}, []byte{0, 1}, "")
	f.Add([]byte{0}, []byte{0, 1, 2}, "broadcast")
	f.Add([]byte{0, 1}, []byte{0, 1, 2}, "product")
	f.Add([]byte{0, 0}, []byte{0}, "zip")
	f.Add([]byte{}, []byte{0}, "x")
	roles := []string{roleA, roleB, roleC, strings.ToUpper(roleA), "not-a-guid"}
	scopes := []ResourceID{scope1, scope2, scope3, MustParseResourceID(strings.ToLower(scope1.String())), {}}
	f.Fuzz(func(t *testing.T, roleBytes, scopeBytes []byte, mode string) {
		var rs []string
		for _, b := range roleBytes {
			rs = append(rs, roles[int(b)%len(roles)])
		}
		var ss []ResourceID
		for _, b := range scopeBytes {
			ss = append(ss, scopes[int(b)%len(scopes)])
		}
		pairs, err := BuildPairs(rs, ss, Pairing(mode))
		if err != nil {
			return
		}
		if len(pairs) == 0 {
			t.Fatal("got no pairs and no error")
		}
		if err := checkPairs(pairs); err != nil {
			t.Fatalf("BuildPairs returned pairs that fail checkPairs: %v", err)
		}
	})
}
