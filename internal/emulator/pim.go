package emulator

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// pimAPIVersions are the api-version values the emulator accepts for the
// PIM resource types. 2020-10-01 is the newest stable version and the one
// armauthorization v2 sends; the previews are those the REST specs and
// deployment templates use.
var pimAPIVersions = []string{"2020-10-01-preview", "2020-10-01", "2022-04-01-preview", "2024-09-01-preview"}

// pimTypes are the lower-case Microsoft.Authorization resource types the
// PIM handlers serve.
var pimTypes = []string{
	"roleeligibilityschedules", "roleeligibilityscheduleinstances",
	"roleassignmentschedulerequests", "roleassignmentschedules", "roleassignmentscheduleinstances",
	"rolemanagementpolicies", "rolemanagementpolicyassignments",
}

// minimumActiveDuration is the shortest activation PIM grants, and the
// time an activation must have run before it can be deactivated
// (ActiveDurationTooShort otherwise).
const minimumActiveDuration = 5 * time.Minute

// pimNamespace seeds the UUIDv5 names the emulator derives for seeded
// eligibilities and for policies, so they are stable across restarts.
var pimNamespace = uuid.MustParse("5a1d7f0e-3c2b-4e8a-9f61-7b0c2d4e6a10")

// Request types as ARM spells them. Graph uses the same words in
// lowerCamel case (selfActivate).
const (
	reqSelfActivate   = "SelfActivate"
	reqSelfDeactivate = "SelfDeactivate"
	reqSelfExtend     = "SelfExtend"
	reqSelfRenew      = "SelfRenew"
	reqAdminAssign    = "AdminAssign"
	reqAdminRemove    = "AdminRemove"
	reqAdminExtend    = "AdminExtend"
	reqAdminRenew     = "AdminRenew"
	reqAdminUpdate    = "AdminUpdate"
)

var requestTypes = []string{reqSelfActivate, reqSelfDeactivate, reqSelfExtend, reqSelfRenew,
	reqAdminAssign, reqAdminRemove, reqAdminExtend, reqAdminRenew, reqAdminUpdate}

// Request statuses the emulator sets; ARM and Graph spell them alike.
const (
	statusProvisioned     = "Provisioned"
	statusGranted         = "Granted"
	statusPendingApproval = "PendingApproval"
	statusDenied          = "Denied"
	statusCanceled        = "Canceled"
	statusRevoked         = "Revoked"
	statusFailed          = "Failed"
)

// Expiration types as ARM spells them. Graph responses use lowerCamel case.
const (
	expAfterDuration = "AfterDuration"
	expAfterDateTime = "AfterDateTime"
	expNoExpiration  = "NoExpiration"
)

// canonicalExpiration returns ARM's spelling of an expiration type given
// in any case, as Graph accepts "afterDuration" and "AfterDuration". An
// empty type means NoExpiration. Unknown values come back unchanged, so
// resolveSchedule rejects them.
func canonicalExpiration(t string) string {
	if t == "" {
		return expNoExpiration
	}
	for _, known := range []string{expAfterDuration, expAfterDateTime, expNoExpiration} {
		if strings.EqualFold(t, known) {
			return known
		}
	}
	return t
}

// pimTarget is the subject of a PIM object: one role for one principal at
// an ARM scope, or at a directory scope for an Entra role (Directory true).
type pimTarget struct {
	Directory        bool
	Scope            ResourceID // ARM only
	DirectoryScopeID string     // Graph only, "/" for the tenant
	RoleGUID         string     // lower case
	PrincipalID      string     // lower case
	PrincipalType    string
}

// same reports whether two targets name the same role, principal and scope.
func (t pimTarget) same(o pimTarget) bool {
	return t.Directory == o.Directory && t.RoleGUID == o.RoleGUID && t.PrincipalID == o.PrincipalID &&
		t.Scope.Key() == o.Scope.Key() && t.DirectoryScopeID == o.DirectoryScopeID
}

// pimEligibility is an eligible assignment and its single instance.
type pimEligibility struct {
	pimTarget
	Name         string // schedule name (GUID)
	InstanceName string
	Start, End   time.Time // End zero: permanent
	CreatedOn    time.Time
}

func (e *pimEligibility) activeAt(now time.Time) bool {
	return !now.Before(e.Start) && (e.End.IsZero() || now.Before(e.End))
}

// pimRequest is a role assignment schedule request, from ARM or Graph.
type pimRequest struct {
	pimTarget
	Name              string
	RequestType       string // ARM spelling
	Status            string
	Justification     string
	TicketNumber      string
	TicketSystem      string
	Start             time.Time
	ExpirationType    string
	Duration          string    // ISO 8601 as sent, for AfterDuration
	EndDateTime       time.Time // as sent, for AfterDateTime
	End               time.Time // computed; zero for NoExpiration
	LinkedEligibility string    // eligibility schedule name
	RequestorID       string
	RequestorIsApp    bool
	CreatedOn         time.Time
	CompletedOn       time.Time
	ApprovalID        string
	TargetSchedule    string // schedule name once provisioned
	TargetInstance    string
	Condition         string
	ConditionVersion  string
}

// pimSchedule is an active assignment schedule with its one instance and,
// for Azure roles, the RBAC role assignment that makes it effective.
type pimSchedule struct {
	pimTarget
	Name              string
	InstanceName      string
	AssignmentType    string // Activated or Assigned
	Start, End        time.Time
	RequestName       string
	LinkedEligibility string
	Assignment        *RoleAssignment // nil for Entra roles
	CreatedOn         time.Time
	EndedOn           time.Time // zero while active
}

// activeAt reports whether the schedule grants the role at now.
func (sc *pimSchedule) activeAt(now time.Time) bool {
	return sc.EndedOn.IsZero() && !now.Before(sc.Start) && (sc.End.IsZero() || now.Before(sc.End))
}

// pimStore holds the PIM objects. The state mutex (Server.st.mu) guards it,
// because provisioning changes role assignments in the same step.
type pimStore struct {
	eligibilities  []*pimEligibility
	requests       []*pimRequest
	schedules      []*pimSchedule
	policies       map[string]pimPolicy // by policyKey
	directoryRoles map[string]directoryRole
}

// newPIMStore builds the PIM state from the seed. st must already hold the
// seed's principals and roles.
func newPIMStore(seed Seed, st *state, now time.Time) (*pimStore, error) {
	ps := &pimStore{policies: map[string]pimPolicy{}, directoryRoles: map[string]directoryRole{}}
	for _, r := range builtinDirectoryRoles {
		ps.directoryRoles[r.ID] = r
	}
	for i, se := range seed.Eligibilities {
		e, err := ps.eligibilityFromSeed(se, st, now)
		if err != nil {
			return nil, fmt.Errorf("seed eligibility %d: %w", i, err)
		}
		ps.eligibilities = append(ps.eligibilities, e)
	}
	for i, sp := range seed.RolePolicies {
		key, p, err := ps.policyFromSeed(sp, st)
		if err != nil {
			return nil, fmt.Errorf("seed role policy %d: %w", i, err)
		}
		ps.policies[key] = p
	}
	return ps, nil
}

func (ps *pimStore) eligibilityFromSeed(se SeedEligibility, st *state, now time.Time) (*pimEligibility, error) {
	t, err := ps.seedTarget(se.Scope, se.DirectoryScopeID, se.RoleDefinitionID, se.RoleName, st)
	if err != nil {
		return nil, err
	}
	p, ok := st.principals[strings.ToLower(se.PrincipalID)]
	if !ok {
		return nil, fmt.Errorf("principal %q is not in the seed's principals", se.PrincipalID)
	}
	t.PrincipalID, t.PrincipalType = strings.ToLower(p.ObjectID), p.Type
	e := &pimEligibility{pimTarget: t, Start: se.Start, End: se.End, CreatedOn: now.Add(-24 * time.Hour)}
	if e.Start.IsZero() {
		e.Start = e.CreatedOn
	}
	if !e.End.IsZero() && !e.End.After(e.Start) {
		return nil, fmt.Errorf("end %s is not after start %s", e.End.Format(time.RFC3339), e.Start.Format(time.RFC3339))
	}
	seedKey := t.Scope.Key() + "|" + t.DirectoryScopeID + "|" + t.RoleGUID + "|" + t.PrincipalID
	e.Name = strings.ToLower(se.Name)
	if e.Name == "" {
		e.Name = uuid.NewSHA1(pimNamespace, []byte("eligibility|"+seedKey)).String()
	} else if !isGUID(e.Name) {
		return nil, fmt.Errorf("invalid name %q; want a GUID", se.Name)
	}
	e.InstanceName = uuid.NewSHA1(pimNamespace, []byte("eligibility-instance|"+e.Name)).String()
	return e, nil
}

// seedTarget resolves the scope and role of a seed entry: exactly one of
// scope (an Azure role) and directoryScopeID (an Entra role).
func (ps *pimStore) seedTarget(scope, dirScope, roleID, roleName string, st *state) (pimTarget, error) {
	var t pimTarget
	switch {
	case scope != "" && dirScope != "":
		return t, errors.New("set scope (Azure role) or directoryScopeId (Entra role), not both")
	case dirScope != "":
		t.Directory, t.DirectoryScopeID = true, dirScope
		r, err := ps.resolveDirectoryRole(roleID, roleName)
		if err != nil {
			return t, err
		}
		t.RoleGUID = r.ID
	case scope != "":
		id, err := ParseResourceID(scope)
		if err != nil {
			return t, fmt.Errorf("scope: %w", err)
		}
		if code, msg, ok := st.scopeExists(id); !ok {
			return t, fmt.Errorf("scope %q: %s: %s", scope, code, msg)
		}
		t.Scope = id
		if t.RoleGUID, err = st.resolveRole(roleID, roleName); err != nil {
			return t, err
		}
	default:
		return t, errors.New("scope (Azure role) or directoryScopeId (Entra role) is required")
	}
	return t, nil
}

// eligibilityFor returns the eligibility of the target's principal for
// its role at exactly its scope that is active at now, or nil.
func (ps *pimStore) eligibilityFor(t pimTarget, now time.Time) *pimEligibility {
	for _, e := range ps.eligibilities {
		if e.same(t) && e.activeAt(now) {
			return e
		}
	}
	return nil
}

// activeSchedule returns the schedule granting the target's role at now.
func (ps *pimStore) activeSchedule(t pimTarget, now time.Time) *pimSchedule {
	for _, sc := range ps.schedules {
		if sc.same(t) && sc.activeAt(now) {
			return sc
		}
	}
	return nil
}

// findRequest returns the request with the given name (ARM) or id (Graph).
func (ps *pimStore) findRequest(name string, directory bool) *pimRequest {
	name = strings.ToLower(name)
	for _, r := range ps.requests {
		if r.Name == name && r.Directory == directory {
			return r
		}
	}
	return nil
}

// expireSchedules ends every schedule whose end time has passed by the
// emulator's clock, and deletes its role assignment as of that end time, so
// access lasts until End plus the propagation delay, as a removal does.
// ServeHTTP runs it before each request, which is the only time anyone can
// observe the state.
func (s *Server) expireSchedules() {
	now := s.now()
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	for _, sc := range s.pim.schedules {
		if !sc.EndedOn.IsZero() || sc.End.IsZero() || now.Before(sc.End) {
			continue
		}
		sc.EndedOn = sc.End
		if sc.Assignment != nil && sc.Assignment.DeletedOn.IsZero() {
			sc.Assignment.DeletedOn = sc.End
		}
		s.log.Info("pim schedule expired", "schedule", sc.Name, "principal_id", sc.PrincipalID,
			"role_definition_id", sc.RoleGUID, "end", sc.End.UTC().Format(time.RFC3339))
	}
}

// parseISODuration parses the ISO 8601 durations PIM uses: PnW, PnD and
// PTnHnMnS with integer parts, and fractional seconds. Years and months are
// rejected because their length depends on the calendar.
func parseISODuration(s string) (time.Duration, error) {
	rest, ok := strings.CutPrefix(strings.ToUpper(s), "P")
	if !ok || rest == "" {
		return 0, fmt.Errorf("invalid ISO 8601 duration %q; want a form such as PT8H or P1D", s)
	}
	var total time.Duration
	inTime := false
	for rest != "" {
		if rest[0] == 'T' {
			if inTime || len(rest) == 1 {
				return 0, fmt.Errorf("invalid ISO 8601 duration %q: misplaced T", s)
			}
			inTime, rest = true, rest[1:]
			continue
		}
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 || i == len(rest) {
			return 0, fmt.Errorf("invalid ISO 8601 duration %q: want a number followed by a unit", s)
		}
		num, unit := rest[:i], rest[i]
		rest = rest[i+1:]
		unitLen, err := isoUnit(unit, inTime)
		if err != nil {
			return 0, fmt.Errorf("invalid ISO 8601 duration %q: %w", s, err)
		}
		if strings.Contains(num, ".") && unit != 'S' {
			return 0, fmt.Errorf("invalid ISO 8601 duration %q: only seconds may have a fraction", s)
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || v > float64(100*365*24*time.Hour)/float64(unitLen) {
			return 0, fmt.Errorf("invalid ISO 8601 duration %q: number %q out of range", s, num)
		}
		total += time.Duration(v * float64(unitLen))
	}
	return total, nil
}

func isoUnit(unit byte, inTime bool) (time.Duration, error) {
	switch {
	case !inTime && unit == 'W':
		return 7 * 24 * time.Hour, nil
	case !inTime && unit == 'D':
		return 24 * time.Hour, nil
	case inTime && unit == 'H':
		return time.Hour, nil
	case inTime && unit == 'M':
		return time.Minute, nil
	case inTime && unit == 'S':
		return time.Second, nil
	case !inTime && (unit == 'Y' || unit == 'M'):
		return 0, fmt.Errorf("years and months are not supported; use days")
	}
	return 0, fmt.Errorf("unknown unit %q", unit)
}

// formatISODuration writes d as PTnHnMnS, leaving out zero parts.
func formatISODuration(d time.Duration) string {
	if d <= 0 {
		return "PT0S"
	}
	var b strings.Builder
	b.WriteString("PT")
	if h := d / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%dH", h)
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		fmt.Fprintf(&b, "%dM", m)
		d -= m * time.Minute
	}
	if d > 0 {
		b.WriteString(strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "S")
	}
	return b.String()
}
