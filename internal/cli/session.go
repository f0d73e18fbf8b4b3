package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/approval"
	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/github"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// session is one authenticated connection to Azure (or the emulator).
type session struct {
	env    azure.Environment
	client *http.Client
	cred   azcore.TokenCredential
	rbac   *azure.RBAC
	caller azure.Caller
	log    *slog.Logger
	// graphEndpoint overrides Microsoft Graph for entra-role, from
	// ELEVATE_GRAPH_ENDPOINT; empty means public Graph.
	graphEndpoint string
}

// retryOptions make the SDK retry 429 and 5xx responses and dropped connections
// with backoff, honouring Retry-After, a few more times than its default.
var retryOptions = policy.RetryOptions{MaxRetries: 5, RetryDelay: 400 * time.Millisecond, MaxRetryDelay: 20 * time.Second}

// newSession connects with the endpoints and credential the environment names.
func newSession(ctx context.Context, streams Streams) (*session, error) {
	env, err := azure.EnvironmentFromEnv(streams.getenv)
	if err != nil {
		return nil, &UsageError{err}
	}
	client, err := env.HTTPClient()
	if err != nil {
		return nil, err
	}
	credCfg := azure.CredentialConfig{Kind: streams.getenv("ELEVATE_CREDENTIAL"), Getenv: streams.getenv}
	if src, ok := github.TokenSourceFromEnv(streams.getenv, client); ok {
		credCfg.GitHubAssertion = src.Token
	}
	cred, _, err := azure.NewCredential(env, client, credCfg)
	if err != nil {
		return nil, &UsageError{err}
	}
	sess, err := connect(ctx, env, client, cred, newLogger(streams))
	if err != nil {
		return nil, err
	}
	sess.graphEndpoint = streams.getenv("ELEVATE_GRAPH_ENDPOINT")
	return sess, nil
}

// connect finishes a session for an already built credential.
func connect(ctx context.Context, env azure.Environment, client *http.Client, cred azcore.TokenCredential, log *slog.Logger) (*session, error) {
	env.Logger = log
	rbac, err := azure.NewRBAC(cred, env.ARMOptions(client, &retryOptions))
	if err != nil {
		return nil, err
	}
	caller, err := azure.WhoAmI(ctx, cred, env)
	if err != nil {
		return nil, fmt.Errorf("sign in to %s: %w", env.AuthorityHost, err)
	}
	log.Debug("signed in", "caller_id", caller.ObjectID, "tenant_id", caller.TenantID)
	return &session{env: env, client: client, cred: cred, rbac: rbac, caller: caller, log: log}, nil
}

// vault opens a Key Vault data-plane client.
func (s *session) vault(nameOrURL string) (*azure.Vault, error) {
	url, err := s.env.VaultURL(nameOrURL)
	if err != nil {
		return nil, &UsageError{err}
	}
	return azure.NewVault(url, s.cred, s.env.ClientOptions(s.client, &retryOptions))
}

// prepared is a validated request with its names resolved and its table.
type prepared struct {
	req   access.Request
	roles map[string]lifecycle.Role
	table approval.Table
	// choices holds each pair's backend and why; pimCfg configures them.
	choices []lifecycle.Choice
	pimCfg  lifecycle.PIMConfig
}

// prepare turns request flags into a validated request and its approval table.
func (s *session) prepare(ctx context.Context, o *requestOptions, streams Streams, engine *lifecycle.Engine) (prepared, error) {
	var out prepared
	if o.Backend == lifecycle.BackendEntraRole {
		if len(o.Scopes) > 0 {
			return out, &UsageError{errNoEntraScope}
		}
		o.Scopes = o.entraScopes(s.caller.TenantID)
	}
	p, err := o.parse()
	if err != nil {
		return out, err
	}
	principal := access.Principal{ID: o.PrincipalID, Type: o.PrincipalType}
	if principal.ID == "" {
		principal.ID = s.caller.ObjectID
	}
	if principal.Type == "" {
		principal.Type = access.PrincipalServicePrincipal
		if strings.EqualFold(principal.ID, s.caller.ObjectID) {
			principal.Type = s.caller.Type
		}
	}
	roles, err := engine.ResolveRoles(ctx, p.roles, lifecycle.LookupScope(p.scopes))
	if errors.Is(err, azure.ErrNotFound) {
		return out, &UsageError{err} // a role name that matches no role is bad input
	}
	if err != nil {
		return out, err
	}
	out.roles = make(map[string]lifecycle.Role, len(roles))
	guids := make([]string, len(roles))
	for i, r := range roles {
		guids[i] = r.GUID
		out.roles[r.GUID] = r
	}
	pairs, err := access.BuildPairs(guids, p.scopes, access.Pairing(o.Pairing))
	if err != nil {
		return out, err
	}
	id := o.RequestID
	if id == "" {
		id = uuid.NewString()
	}
	out.req = access.Request{
		ID:            strings.ToLower(id),
		Principal:     principal,
		Pairs:         pairs,
		Justification: o.Justification,
		Duration:      o.Duration,
		Metadata:      metadataFromEnv(streams.getenv, o),
		CreatedAt:     time.Now().UTC(),
	}
	if err := out.req.Validate(MaxDuration); err != nil {
		return out, err
	}
	out.table = engine.Describe(ctx, out.req, out.roles)
	if out.choices, out.pimCfg, err = s.addBackends(ctx, engine, o.backendOptions, out.req, nil); err != nil {
		return out, err
	}
	out.table.Backend = backendLabel(o.backendOptions, out.choices)
	return out, nil
}

// newLogger writes structured logs to stderr at the level ELEVATE_LOG_LEVEL
// names (default warn), as text or, with ELEVATE_LOG_FORMAT=json, as JSON.
func newLogger(streams Streams) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(streams.getenv("ELEVATE_LOG_LEVEL"))); err != nil {
		level = slog.LevelWarn
	}
	var w io.Writer = streams.ErrOut
	opts := &slog.HandlerOptions{Level: level}
	if streams.getenv("ELEVATE_LOG_FORMAT") == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
