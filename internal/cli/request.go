package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/pflag"

	"github.com/elevate-dev/elevate/internal/access"
)

// MaxDuration caps --duration for the CLI modes.
const MaxDuration = 8 * time.Hour

// requestOptions are the flags shared by the commands that build a request.
type requestOptions struct {
	Roles         []string
	Scopes        []string
	PrincipalID   string
	PrincipalType string
	Pairing       string
	Duration      time.Duration
	Justification string
	Ticket        string
	PullRequest   string
	RequestID     string
	backendOptions
}

func (o *requestOptions) bind(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.Roles, "role", nil, "role to grant: a GUID, a role definition id or a built-in role name (repeatable)")
	fs.StringArrayVar(&o.Scopes, "scope", nil, "Azure resource id the role applies to (repeatable)")
	fs.StringVar(&o.PrincipalID, "principal-id", "", "object id of the identity to elevate (default: the caller itself)")
	fs.StringVar(&o.PrincipalType, "principal-type", "", "ServicePrincipal, User or Group (default: the caller's type, else ServicePrincipal)")
	fs.StringVar(&o.Pairing, "pairing", "", "how roles and scopes pair: zip, broadcast or product (default: zip equal lengths, broadcast a single item)")
	fs.DurationVar(&o.Duration, "duration", 15*time.Minute, "how long the grant may last, 5m to 8h")
	fs.StringVar(&o.Justification, "justification", "", "why the privilege is needed (required)")
	fs.StringVar(&o.Ticket, "ticket", "", "change or incident ticket id")
	fs.StringVar(&o.PullRequest, "pr", "", "pull request number (default: from GITHUB_REF)")
	fs.StringVar(&o.RequestID, "request-id", "", "request id, a UUID (default: a new random one)")
	o.backendOptions.bind(fs)
}

// parsed is a request whose pairs still carry role references, not GUIDs:
// names are resolved through Azure before pairing.
type parsed struct {
	roles  []access.RoleRef
	scopes []access.ResourceID
}

// parse checks the flags that need no Azure call.
func (o *requestOptions) parse() (parsed, error) {
	var p parsed
	if err := o.backendOptions.check(); err != nil {
		return p, err
	}
	if len(o.Roles) == 0 {
		return p, &UsageError{fmt.Errorf("missing --role: name at least one role, for example --role \"Key Vault Secrets Officer\"")}
	}
	if len(o.Scopes) == 0 {
		return p, &UsageError{fmt.Errorf("missing --scope: name at least one Azure resource id, for example --scope /subscriptions/SUB/resourceGroups/RG")}
	}
	for _, r := range o.Roles {
		ref, err := access.ParseRoleRef(r)
		if err != nil {
			return p, asFlagError(err, "--role")
		}
		p.roles = append(p.roles, ref)
	}
	for _, s := range o.Scopes {
		id, err := access.ParseResourceID(s)
		if err != nil {
			return p, asFlagError(err, "--scope")
		}
		p.scopes = append(p.scopes, id)
	}
	if strings.TrimSpace(o.Justification) == "" {
		return p, &UsageError{fmt.Errorf("missing --justification: say why the privilege is needed, for example --justification \"rotate the database password\"")}
	}
	if o.RequestID != "" {
		if _, err := uuid.Parse(o.RequestID); err != nil {
			return p, &UsageError{fmt.Errorf("invalid --request-id %q: want a UUID such as %s", o.RequestID, uuid.NewString())}
		}
	}
	return p, nil
}

// metadataFromEnv reads the build metadata GitHub Actions exports.
func metadataFromEnv(getenv func(string) string, o *requestOptions) access.Metadata {
	m := access.Metadata{
		Repository:  getenv("GITHUB_REPOSITORY"),
		Workflow:    getenv("GITHUB_WORKFLOW"),
		RunID:       getenv("GITHUB_RUN_ID"),
		RunAttempt:  getenv("GITHUB_RUN_ATTEMPT"),
		Commit:      getenv("GITHUB_SHA"),
		Ref:         getenv("GITHUB_REF"),
		Actor:       getenv("GITHUB_ACTOR"),
		Environment: getenv("GITHUB_ENVIRONMENT"),
		Ticket:      o.Ticket,
		PullRequest: o.PullRequest,
	}
	if server := getenv("GITHUB_SERVER_URL"); server != "" && m.Repository != "" && m.RunID != "" {
		m.RunURL = fmt.Sprintf("%s/%s/actions/runs/%s", server, m.Repository, m.RunID)
	}
	if m.PullRequest == "" {
		// Pull request runs check out refs/pull/N/merge.
		if rest, ok := strings.CutPrefix(m.Ref, "refs/pull/"); ok {
			m.PullRequest, _, _ = strings.Cut(rest, "/")
		}
	}
	return m
}

// asFlagError names the flag in an input error from a parser that only knows
// what kind of value it read.
func asFlagError(err error, flag string) error {
	var input *access.InputError
	if errors.As(err, &input) {
		named := *input
		named.Field = flag
		return &named
	}
	return err
}
