package abac

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// Built-in role GUIDs (the same in every tenant) and two principals.
const (
	roleOwner                   = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
	roleReader                  = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	roleUserAccessAdministrator = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
	roleSecretsOfficer          = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
	roleSecretsUser             = "4633458b-17de-408a-b874-0445c86b69e6"

	pipelineOID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801"
	approverOID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a802"

	subscription = "9d2c6e1f-4a3b-4c5d-8e7f-0a1b2c3d4e50"
)

// Condition fragments of a delegation that allows Key Vault Secrets
// Officer and Reader for the pipeline only, as `elevate bootstrap` prints.
const (
	attrRequestRole      = "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]"
	attrRequestPrincipal = "@Request[Microsoft.Authorization/roleAssignments:PrincipalId]"
	attrRequestType      = "@Request[Microsoft.Authorization/roleAssignments:PrincipalType]"
	attrResourceRole     = "@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId]"
	attrResourcePrinc    = "@Resource[Microsoft.Authorization/roleAssignments:PrincipalId]"
	notWrite             = "!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})"
	notDelete            = "!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})"
	allowedRoles         = "{" + roleSecretsOfficer + ", " + roleReader + "}"
)

var delegation = "((" + notWrite + ") OR (" + attrRequestRole + " ForAnyOfAnyValues:GuidEquals " + allowedRoles +
	" AND " + attrRequestPrincipal + " ForAnyOfAnyValues:GuidEquals {" + pipelineOID + "})) AND ((" +
	notDelete + ") OR (" + attrResourceRole + " ForAnyOfAnyValues:GuidEquals " + allowedRoles +
	" AND " + attrResourcePrinc + " ForAnyOfAnyValues:GuidEquals {" + pipelineOID + "}))"

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		text string
	}{
		{"delegation", delegation},
		{"docs constrain roles multiline", `(
 (
  !(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})
 )
 OR
 (
  @Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {5e467623-bb1f-42f4-a55d-6e525e11384b, a795c7a0-d4a2-40c1-ae25-d81f01202912}
 )
)`},
		{"principal type set", "((" + notWrite + ") OR (" + attrRequestType + " ForAnyOfAnyValues:StringEqualsIgnoreCase {'User', 'Group'}))"},
		{"exclude roles", "((" + notWrite + ") OR (" + attrRequestRole + " ForAnyOfAllValues:GuidNotEquals {" + roleOwner + ", " + roleUserAccessAdministrator + "}))"},
		{"lower-case keywords", "((!(actionmatches{'Microsoft.Authorization/roleAssignments/write'})) or (" + attrRequestRole + " foranyofanyvalues:guidequals {" + roleReader + "}))"},
		{"symbol operators", "(" + notWrite + " || " + attrRequestRole + " GuidEquals " + roleReader + ") && " + attrRequestType + " StringEquals 'User'"},
		{"NOT keyword", "NOT ActionMatches{'Microsoft.Authorization/*'} OR " + attrRequestPrincipal + " GuidNotEquals '" + approverOID + "'"},
		{"suboperation", "!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'} AND NOT SubOperationMatches{'Blob.List'})"},
		{"all quantifiers", attrRequestRole + " ForAllOfAnyValues:GuidEquals {" + roleReader + "} AND " +
			attrRequestRole + " ForAllOfAllValues:GuidNotEquals {" + roleOwner + "} AND " +
			attrRequestType + " ForAnyOfAnyValues:StringNotEqualsIgnoreCase {'Group'}"},
		{"tabs and CRLF", "(\t" + notWrite + "\r\n\tOR\r\n\t" + attrRequestRole + " GuidEquals " + roleReader + ")"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.text); err != nil {
				t.Errorf("Parse: got %v; want nil", err)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // part of the error message
	}{
		{"empty", "", "end of text"},
		{"mixed AND OR", notWrite + " AND " + notDelete + " OR " + attrRequestRole + " GuidEquals " + roleReader, "mixed"},
		{"unclosed parenthesis", "(" + notWrite, `want ")"`},
		{"extra parenthesis", notWrite + ")", "after the end"},
		{"unterminated string", "ActionMatches{'Microsoft.Authorization", "unterminated"},
		{"empty action pattern", "ActionMatches{''}", "non-empty pattern"},
		{"unknown function", "Exists " + attrRequestRole, "want ("},
		{"unknown attribute", "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals 'x'", "unsupported attribute"},
		{"principal source", "@Principal[Microsoft.Authorization/roleAssignments:PrincipalId] GuidEquals " + roleReader, "unsupported attribute source"},
		{"unclosed attribute", "@Request[Microsoft.Authorization/roleAssignments:PrincipalId GuidEquals x", "closing"},
		{"unknown operator", attrRequestType + " StringLike 'U*'", "unsupported operator"},
		{"unknown quantifier", attrRequestRole + " ForSomeValues:GuidEquals {" + roleReader + "}", "unknown quantifier"},
		{"string operator on GUID", attrRequestRole + " StringEquals '" + roleReader + "'", "does not fit"},
		{"GUID operator on string", attrRequestType + " GuidEquals " + roleReader, "does not fit"},
		{"not a GUID", attrRequestRole + " ForAnyOfAnyValues:GuidEquals {Reader}", "want a GUID"},
		{"unquoted string", attrRequestType + " StringEquals User", "quoted string"},
		{"set without quantifier", attrRequestRole + " GuidEquals {" + roleReader + "}", "needs a quantifier"},
		{"missing comma", attrRequestRole + " ForAnyOfAnyValues:GuidEquals {" + roleReader + " " + roleOwner + "}", `want ","`},
		{"missing value", attrRequestRole + " GuidEquals", "want a GUID"},
		{"stray character", notWrite + " ; " + notDelete, "character"},
		{"too deep", strings.Repeat("(", MaxDepth+2) + notWrite + strings.Repeat(")", MaxDepth+2), "nested deeper"},
		{"too many negations", strings.Repeat("!", MaxDepth+2) + notWrite, "nested deeper"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.text)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse: got %v; want a *SyntaxError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error: got %q; want it to contain %q", err, tc.want)
			}
			if se.Offset < 0 || se.Offset > len(tc.text) {
				t.Errorf("offset: got %d; want within 0..%d", se.Offset, len(tc.text))
			}
		})
	}
}

func TestValidateVersion(t *testing.T) {
	tests := []struct {
		name      string
		condition string
		version   string
		ok        bool
	}{
		{"no condition", "", "", true},
		{"version 2.0", delegation, "2.0", true},
		{"version 1.0", delegation, "1.0", false},
		{"bad syntax", "ActionMatches", "2.0", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.condition, tc.version)
			if (err == nil) != tc.ok {
				t.Errorf("Validate: got %v; want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	roleID := func(guid string) string {
		return "/subscriptions/" + subscription + "/providers/Microsoft.Authorization/roleDefinitions/" + guid
	}
	write := func(role, principal, ptype string) Input {
		return WriteInput(Attributes(roleID(role), principal, ptype))
	}
	del := func(role, principal string) Input {
		return DeleteInput(Attributes(roleID(role), principal, "ServicePrincipal"))
	}
	read := Input{Action: "Microsoft.Authorization/roleAssignments/read"}
	excludeAdmins := "((" + notWrite + ") OR (" + attrRequestRole + " ForAnyOfAllValues:GuidNotEquals {" + roleOwner + ", " + roleUserAccessAdministrator + "}))"
	usersOnly := "((" + notWrite + ") OR (" + attrRequestType + " ForAnyOfAnyValues:StringEqualsIgnoreCase {'user', 'group'}))"
	tests := []struct {
		name      string
		condition string
		in        Input
		want      bool
	}{
		{"self Secrets Officer", delegation, write(roleSecretsOfficer, pipelineOID, "ServicePrincipal"), true},
		{"self Reader", delegation, write(roleReader, pipelineOID, "ServicePrincipal"), true},
		{"self Owner", delegation, write(roleOwner, pipelineOID, "ServicePrincipal"), false},
		{"self Secrets User", delegation, write(roleSecretsUser, pipelineOID, "ServicePrincipal"), false},
		{"bare role GUID", delegation, WriteInput(Attributes(roleReader, pipelineOID, "ServicePrincipal")), true},
		{"other principal", delegation, write(roleSecretsOfficer, approverOID, "User"), false},
		{"upper-case GUIDs", delegation, write(strings.ToUpper(roleReader), strings.ToUpper(pipelineOID), "ServicePrincipal"), true},
		{"delete own", delegation, del(roleSecretsOfficer, pipelineOID), true},
		{"delete other Owner", delegation, del(roleOwner, approverOID), false},
		{"read untouched", delegation, read, true},
		{"exclude roles allows Reader", excludeAdmins, write(roleReader, approverOID, "User"), true},
		{"exclude roles denies Owner", excludeAdmins, write(roleOwner, approverOID, "User"), false},
		{"principal type ignores case", usersOnly, write(roleReader, approverOID, "User"), true},
		{"principal type denies SP", usersOnly, write(roleReader, pipelineOID, "ServicePrincipal"), false},
		{"StringEquals keeps case", attrRequestType + " StringEquals 'user'", write(roleReader, approverOID, "User"), false},
		{"missing attribute is false", attrResourcePrinc + " GuidNotEquals " + approverOID, write(roleReader, pipelineOID, "ServicePrincipal"), false},
		{"action wildcard", "ActionMatches{'Microsoft.Authorization/roleAssignments/*'}", read, true},
		{"action wildcard mismatch", "ActionMatches{'Microsoft.Storage/*'}", read, false},
		{"action ignores case", "ActionMatches{'MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/READ'}", read, true},
		{"suboperation never matches", "SubOperationMatches{'Blob.List'}", read, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.condition)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := c.Evaluate(tc.in); got != tc.want {
				t.Errorf("Evaluate: got %v; want %v", got, tc.want)
			}
		})
	}
}

func TestComparisonsOfDelegation(t *testing.T) {
	c, err := Parse(delegation)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	got := c.Comparisons()
	want := []Comparison{
		{Attribute: AttrRoleDefinitionID, Values: []string{roleSecretsOfficer, roleReader}},
		{Attribute: AttrPrincipalID, Values: []string{pipelineOID}},
		{Resource: true, Attribute: AttrRoleDefinitionID, Values: []string{roleSecretsOfficer, roleReader}},
		{Resource: true, Attribute: AttrPrincipalID, Values: []string{pipelineOID}},
	}
	if len(got) != len(want) {
		t.Fatalf("Comparisons: got %d; want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].Resource != want[i].Resource || got[i].Attribute != want[i].Attribute || got[i].Negated != want[i].Negated {
			t.Errorf("comparison %d: got %+v; want %+v", i, got[i], want[i])
		}
		if !slices.Equal(got[i].Values, want[i].Values) {
			t.Errorf("comparison %d values: got %v; want %v", i, got[i].Values, want[i].Values)
		}
	}
}

func TestComparisonsMarkNegation(t *testing.T) {
	c, err := Parse("NOT " + attrRequestRole + " ForAnyOfAllValues:GuidNotEquals {" + roleOwner + "}")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	got := c.Comparisons()
	if len(got) != 1 {
		t.Fatalf("Comparisons: got %d; want 1", len(got))
	}
	if !got[0].Negated {
		t.Errorf("Negated: got false; want true for GuidNotEquals")
	}
}

func TestWildcardMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"*", "", true},
		{"*", "a/b/c", true},
		{"a/*", "a/b/c", true},
		{"a/*/c", "a/b/x/c", true},
		{"a/*/c", "a/b/x/d", false},
		{"*/read", "microsoft.authorization/roleassignments/read", true},
		{"*/read", "microsoft.authorization/roleassignments/write", false},
		{"a**b", "ab", true},
		{"a*b*c", "abxbc", true},
		{"a*b*c", "abxb", false},
		{"abc", "ab", false},
		{"ab", "abc", false},
	}
	for _, tc := range tests {
		if got := wildcardMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("wildcardMatch(%q, %q): got %v; want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(delegation)
	f.Add("((" + notWrite + ") OR (" + attrRequestType + " ForAnyOfAnyValues:StringEqualsIgnoreCase {'User', 'Group'}))")
	f.Add("NOT SubOperationMatches{'Blob.List'} && " + attrRequestRole + " GuidNotEquals '" + roleOwner + "'")
	f.Add("@Request[")
	f.Add("('")
	in := []Input{
		WriteInput(Attributes("/providers/Microsoft.Authorization/roleDefinitions/"+roleReader, pipelineOID, "ServicePrincipal")),
		DeleteInput(Attributes("", "", "")),
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse(text)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q): got %T; want *SyntaxError", text, err)
			}
			if se.Offset < 0 || se.Offset > len(text) {
				t.Fatalf("Parse(%q): offset %d outside the text", text, se.Offset)
			}
			return
		}
		for _, v := range in {
			c.Evaluate(v)
		}
		c.Comparisons()
	})
}
