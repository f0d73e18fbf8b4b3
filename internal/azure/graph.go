package azure

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
)

// DefaultGraphEndpoint is public Microsoft Graph. The CLI reads an override
// from ELEVATE_GRAPH_ENDPOINT.
const DefaultGraphEndpoint = "https://graph.microsoft.com"

// Directory object types, from Graph's @odata.type.
const (
	DirectoryServicePrincipal = "ServicePrincipal"
	DirectoryUser             = "User"
	DirectoryGroup            = "Group"
)

// DirectoryObject is a principal in Microsoft Entra ID.
type DirectoryObject struct {
	ID          string
	Type        string // DirectoryServicePrincipal, DirectoryUser, DirectoryGroup, or Graph's own name for others
	DisplayName string
	AppID       string // service principals only
}

// DirectoryScheduleRequest is a Graph unifiedRoleAssignmentScheduleRequest
// for an Entra role. Action is Graph's lowerCamel word (adminAssign,
// adminRemove, selfActivate, selfDeactivate, ...). The expiration follows
// the rules of ScheduleRequest.
type DirectoryScheduleRequest struct {
	ID               string
	Action           string
	PrincipalID      string
	RoleDefinitionID string // the role's template id
	DirectoryScopeID string // "/" for the whole tenant
	Justification    string
	TicketNumber     string
	TicketSystem     string
	Start            time.Time
	Duration         time.Duration
	End              time.Time
	Status           string
	ApprovalID       string
	TargetScheduleID string
	CreatedOn        time.Time
}

// Graph calls Microsoft Graph's role management API through an azcore
// pipeline, with tokens for the endpoint's "/.default" scope.
type Graph struct {
	endpoint string
	pipeline runtime.Pipeline
}

// NewGraph builds a client for endpoint, such as DefaultGraphEndpoint or
// the emulator's GraphEndpoint().
func NewGraph(endpoint string, cred azcore.TokenCredential, opts policy.ClientOptions) (*Graph, error) {
	endpoint = strings.TrimRight(endpoint, "/")
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("invalid Graph endpoint %q: want an absolute https URL such as %q", endpoint, DefaultGraphEndpoint)
	}
	auth := runtime.NewBearerTokenPolicy(cred, []string{endpoint + "/.default"}, nil)
	pl := runtime.NewPipeline("elevate", "v0.1.0", runtime.PipelineOptions{PerRetry: []policy.Policy{auth}}, &opts)
	return &Graph{endpoint: endpoint, pipeline: pl}, nil
}

// DirectoryObject reads a user, group or service principal by object id;
// ErrNotFound when it does not exist.
func (g *Graph) DirectoryObject(ctx context.Context, id string) (DirectoryObject, error) {
	var body struct {
		Type        string `json:"@odata.type"`
		ID          string `json:"id"`
		DisplayName string `json:"displayName"`
		AppID       string `json:"appId"`
	}
	if err := g.do(ctx, http.MethodGet, "directoryObjects/"+url.PathEscape(id), nil, nil, http.StatusOK, &body); err != nil {
		return DirectoryObject{}, fmt.Errorf("read directory object %s: %w", id, err)
	}
	obj := DirectoryObject{ID: body.ID, DisplayName: body.DisplayName, AppID: body.AppID}
	switch strings.TrimPrefix(body.Type, "#microsoft.graph.") {
	case "servicePrincipal":
		obj.Type = DirectoryServicePrincipal
	case "user":
		obj.Type = DirectoryUser
	case "group":
		obj.Type = DirectoryGroup
	default:
		obj.Type = strings.TrimPrefix(body.Type, "#microsoft.graph.")
	}
	return obj, nil
}

// graphRequestJSON is the wire form of a schedule request.
type graphRequestJSON struct {
	ID               string  `json:"id,omitempty"`
	Action           string  `json:"action"`
	PrincipalID      string  `json:"principalId"`
	RoleDefinitionID string  `json:"roleDefinitionId"`
	DirectoryScopeID string  `json:"directoryScopeId"`
	Justification    *string `json:"justification,omitempty"`
	Status           string  `json:"status,omitempty"`
	ApprovalID       *string `json:"approvalId,omitempty"`
	TargetScheduleID *string `json:"targetScheduleId,omitempty"`
	CreatedDateTime  *string `json:"createdDateTime,omitempty"`
	ScheduleInfo     struct {
		StartDateTime string `json:"startDateTime"`
		Expiration    struct {
			Type        string  `json:"type"`
			Duration    *string `json:"duration,omitempty"`
			EndDateTime *string `json:"endDateTime,omitempty"`
		} `json:"expiration"`
	} `json:"scheduleInfo"`
	TicketInfo *struct {
		TicketNumber *string `json:"ticketNumber"`
		TicketSystem *string `json:"ticketSystem"`
	} `json:"ticketInfo,omitempty"`
}

// Request creates a schedule request. A policy failure comes back as a
// *PolicyError naming each failed rule and its fix.
func (g *Graph) Request(ctx context.Context, r DirectoryScheduleRequest) (DirectoryScheduleRequest, error) {
	in := graphRequestJSON{Action: r.Action, PrincipalID: r.PrincipalID, RoleDefinitionID: r.RoleDefinitionID, DirectoryScopeID: r.DirectoryScopeID}
	if in.DirectoryScopeID == "" {
		in.DirectoryScopeID = "/"
	}
	if r.Justification != "" {
		in.Justification = &r.Justification
	}

	start := r.Start
	if start.IsZero() {
		start = time.Now()
	}
	in.ScheduleInfo.StartDateTime = start.UTC().Format(time.RFC3339Nano)
	switch {
	case r.Duration > 0:
		d := formatISODuration(r.Duration)
		in.ScheduleInfo.Expiration.Type, in.ScheduleInfo.Expiration.Duration = "afterDuration", &d
	case !r.End.IsZero():
		e := r.End.UTC().Format(time.RFC3339Nano)
		in.ScheduleInfo.Expiration.Type, in.ScheduleInfo.Expiration.EndDateTime = "afterDateTime", &e
	default:
		in.ScheduleInfo.Expiration.Type = "noExpiration"
	}

	if r.TicketNumber != "" || r.TicketSystem != "" {
		in.TicketInfo = &struct {
			TicketNumber *string `json:"ticketNumber"`
			TicketSystem *string `json:"ticketSystem"`
		}{&r.TicketNumber, &r.TicketSystem}
	}
	var out graphRequestJSON
	err := g.do(ctx, http.MethodPost, "roleManagement/directory/roleAssignmentScheduleRequests", nil, in, http.StatusCreated, &out)
	if err != nil {
		return DirectoryScheduleRequest{}, fmt.Errorf("%s request for Entra role %s at %q: %w", r.Action, r.RoleDefinitionID, in.DirectoryScopeID,
			classifyGraphRequest(r, err))
	}
	return fromGraphRequest(out), nil
}

// GetRequest reads a schedule request by id; ErrNotFound when unknown.
func (g *Graph) GetRequest(ctx context.Context, id string) (DirectoryScheduleRequest, error) {
	var out graphRequestJSON
	if err := g.do(ctx, http.MethodGet, "roleManagement/directory/roleAssignmentScheduleRequests/"+url.PathEscape(id), nil, nil, http.StatusOK, &out); err != nil {
		return DirectoryScheduleRequest{}, fmt.Errorf("get Entra schedule request %s: %w", id, err)
	}
	return fromGraphRequest(out), nil
}

// CancelRequest cancels a request that waits for approval.
func (g *Graph) CancelRequest(ctx context.Context, id string) error {
	path := "roleManagement/directory/roleAssignmentScheduleRequests/" + url.PathEscape(id) + "/cancel"
	if err := g.do(ctx, http.MethodPost, path, nil, nil, http.StatusNoContent, nil); err != nil {
		return fmt.Errorf("cancel Entra schedule request %s: %w", id, err)
	}
	return nil
}

// ListRequests returns the schedule requests for the principal and Entra
// role at the directory scope, in the order Graph lists them.
func (g *Graph) ListRequests(ctx context.Context, principalID, roleDefinitionID, directoryScopeID string) ([]DirectoryScheduleRequest, error) {
	var out []DirectoryScheduleRequest
	err := g.list(ctx, "roleManagement/directory/roleAssignmentScheduleRequests", principalID, roleDefinitionID, func(raw json.RawMessage) error {
		var v graphRequestJSON
		if err := decodeJSON(raw, &v, "role assignment schedule request"); err != nil {
			return err
		}
		if v.DirectoryScopeID == directoryScopeID && strings.EqualFold(v.PrincipalID, principalID) && strings.EqualFold(v.RoleDefinitionID, roleDefinitionID) {
			out = append(out, fromGraphRequest(v))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list Entra schedule requests of %s for role %s: %w", principalID, roleDefinitionID, err)
	}
	return out, nil
}

// ActiveInstance returns the principal's active assignment of the Entra
// role at the directory scope; ErrNotFound when there is none.
func (g *Graph) ActiveInstance(ctx context.Context, principalID, roleDefinitionID, directoryScopeID string) (Instance, error) {
	var found *Instance
	err := g.list(ctx, "roleManagement/directory/roleAssignmentScheduleInstances", principalID, roleDefinitionID, func(raw json.RawMessage) error {
		var v struct {
			ID, PrincipalID, RoleDefinitionID, DirectoryScopeID, AssignmentType, RoleAssignmentScheduleID string
			StartDateTime, EndDateTime                                                                    *time.Time
		}
		if err := decodeJSON(raw, &v, "role assignment schedule instance"); err != nil {
			return err
		}
		if found == nil && v.DirectoryScopeID == directoryScopeID && strings.EqualFold(v.PrincipalID, principalID) && strings.EqualFold(v.RoleDefinitionID, roleDefinitionID) {
			found = &Instance{ID: v.ID, Name: v.ID, Scope: v.DirectoryScopeID, RoleDefinitionID: v.RoleDefinitionID,
				PrincipalID: v.PrincipalID, AssignmentType: v.AssignmentType, ScheduleID: v.RoleAssignmentScheduleID,
				Start: derefTime(v.StartDateTime), End: derefTime(v.EndDateTime)}
		}
		return nil
	})
	if err != nil {
		return Instance{}, fmt.Errorf("list active Entra assignments of %s: %w", principalID, err)
	}
	if found == nil {
		return Instance{}, fmt.Errorf("active assignment of Entra role %s for %s at %q: %w", roleDefinitionID, principalID, directoryScopeID, ErrNotFound)
	}
	return *found, nil
}

// FindEligibility returns the principal's eligibility for the Entra role at
// the directory scope; ErrNotFound (and ErrNotEligible) when there is none.
func (g *Graph) FindEligibility(ctx context.Context, principalID, roleDefinitionID, directoryScopeID string) (Eligibility, error) {
	var found *Eligibility
	err := g.list(ctx, "roleManagement/directory/roleEligibilitySchedules", principalID, roleDefinitionID, func(raw json.RawMessage) error {
		var v struct {
			ID, PrincipalID, RoleDefinitionID, DirectoryScopeID string
			ScheduleInfo                                        struct {
				StartDateTime *time.Time
				Expiration    struct{ EndDateTime *time.Time }
			}
		}
		if err := decodeJSON(raw, &v, "role eligibility schedule"); err != nil {
			return err
		}
		if found == nil && v.DirectoryScopeID == directoryScopeID && strings.EqualFold(v.PrincipalID, principalID) && strings.EqualFold(v.RoleDefinitionID, roleDefinitionID) {
			found = &Eligibility{ID: v.ID, Name: v.ID, Scope: v.DirectoryScopeID, RoleDefinitionID: v.RoleDefinitionID,
				PrincipalID: v.PrincipalID, Start: derefTime(v.ScheduleInfo.StartDateTime), End: derefTime(v.ScheduleInfo.Expiration.EndDateTime)}
		}
		return nil
	})
	if err != nil {
		return Eligibility{}, fmt.Errorf("list Entra eligibilities of %s: %w", principalID, err)
	}
	if found == nil {
		return Eligibility{}, fmt.Errorf("eligibility of Entra role %s for %s at %q: %w (%w); an administrator must make the principal eligible first",
			roleDefinitionID, principalID, directoryScopeID, ErrNotEligible, ErrNotFound)
	}
	return *found, nil
}

// list pages through a collection filtered by principal and role, following
// @odata.nextLink, and hands each item to visit.
func (g *Graph) list(ctx context.Context, path, principalID, roleDefinitionID string, visit func(json.RawMessage) error) error {
	filter := fmt.Sprintf("principalId eq '%s' and roleDefinitionId eq '%s'", odataQuote(principalID), odataQuote(roleDefinitionID))
	query := url.Values{"$filter": {filter}}
	next := ""
	for {
		var page struct {
			Value    []json.RawMessage `json:"value"`
			NextLink string            `json:"@odata.nextLink"`
		}
		var err error
		if next == "" {
			err = g.do(ctx, http.MethodGet, path, query, nil, http.StatusOK, &page)
		} else {
			err = g.doURL(ctx, http.MethodGet, next, nil, http.StatusOK, &page)
		}
		if err != nil {
			return err
		}
		for _, item := range page.Value {
			if err := visit(item); err != nil {
				return err
			}
		}
		if page.NextLink == "" {
			return nil
		}
		next = page.NextLink
	}
}

// do sends a request to endpoint/v1.0/path.
func (g *Graph) do(ctx context.Context, method, path string, query url.Values, in any, want int, out any) error {
	u := g.endpoint + "/v1.0/" + path
	if len(query) > 0 {
		u += "?" + strings.ReplaceAll(query.Encode(), "+", "%20")
	}
	return g.doURL(ctx, method, u, in, want, out)
}

func (g *Graph) doURL(ctx context.Context, method, u string, in any, want int, out any) error {
	req, err := runtime.NewRequest(ctx, method, u)
	if err != nil {
		return fmt.Errorf("build Graph request %s %s: %w", method, u, err)
	}
	req.Raw().Header.Set("Accept", "application/json")
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode Graph request body: %w", err)
		}
		if err := req.SetBody(streaming.NopCloser(bytes.NewReader(data)), "application/json"); err != nil {
			return fmt.Errorf("set Graph request body: %w", err)
		}
	}
	resp, err := g.pipeline.Do(req)
	if err != nil {
		return Classify(err)
	}
	if resp.StatusCode != want {
		return Classify(runtime.NewResponseError(resp))
	}
	if out == nil {
		return nil
	}
	if err := runtime.UnmarshalAsJSON(resp, out); err != nil {
		return fmt.Errorf("decode Graph response of %s %s: %w", method, u, err)
	}
	return nil
}

// classifyGraphRequest maps a failed Graph request like its ARM twin. It
// does not read the role's policy, so expiration messages name no maximum;
// pre-flight compares the request with the policy before it is sent.
func classifyGraphRequest(r DirectoryScheduleRequest, err error) error {
	requestType := strings.ToUpper(r.Action[:min(1, len(r.Action))]) + r.Action[min(1, len(r.Action)):]
	switch ErrorCode(err) {
	case codePolicyValidationFailed:
		d := r.Duration
		if d == 0 && !r.End.IsZero() {
			d = time.Until(r.End)
		}
		return newPolicyError(failedRules(err), nil, requestType, d, err)
	case codeAcrsValidationFailed:
		policy := &RolePolicy{AuthenticationContext: challengedContext(err)}
		return newPolicyError([]string{AuthenticationContextRule}, policy, requestType, r.Duration, err)
	case codeActiveDurationTooShort:
		return &kindError{kind: ErrDurationTooShort, err: fmt.Errorf(
			"PIM needs activations of at least %s and deactivates only after %s of activity; request a longer duration or wait: %w",
			shortDuration(MinimumActiveDuration), shortDuration(MinimumActiveDuration), err)}
	}
	return err
}

func fromGraphRequest(v graphRequestJSON) DirectoryScheduleRequest {
	r := DirectoryScheduleRequest{ID: v.ID, Action: v.Action, PrincipalID: v.PrincipalID, RoleDefinitionID: v.RoleDefinitionID,
		DirectoryScopeID: v.DirectoryScopeID, Status: v.Status}
	r.Justification, r.ApprovalID, r.TargetScheduleID = deref(v.Justification), deref(v.ApprovalID), deref(v.TargetScheduleID)
	r.Start, _ = time.Parse(time.RFC3339Nano, v.ScheduleInfo.StartDateTime)
	r.CreatedOn, _ = time.Parse(time.RFC3339Nano, deref(v.CreatedDateTime))
	if d, err := parseISODuration(deref(v.ScheduleInfo.Expiration.Duration)); err == nil {
		r.Duration = d
	}
	r.End, _ = time.Parse(time.RFC3339Nano, deref(v.ScheduleInfo.Expiration.EndDateTime))
	if t := v.TicketInfo; t != nil {
		r.TicketNumber, r.TicketSystem = deref(t.TicketNumber), deref(t.TicketSystem)
	}
	return r
}

// odataQuote doubles single quotes, OData's escape inside a string literal.
func odataQuote(s string) string { return strings.ReplaceAll(s, "'", "''") }

func derefTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
