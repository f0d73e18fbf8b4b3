package cli

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/github"
)

func init() {
	commands = append(commands, newRequestCommand, newApproveCommand, newDenyCommand,
		newStatusCommand, newCancelCommand, newRequestsCommand)
}

// brokerOptions are the flags every broker client command shares. Tests
// and the demo set HTTPClient and Token directly.
type brokerOptions struct {
	URL      string
	Token    string
	Audience string
	CAFile   string
	Output   string

	HTTPClient *http.Client
	TokenFunc  brokerclient.TokenFunc
}

func (o *brokerOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.URL, "broker", "", "broker base URL, such as https://elevate.contoso.example (default $ELEVATE_BROKER_URL)")
	fs.StringVar(&o.Token, "token", "", "bearer token for the broker (default $ELEVATE_BROKER_TOKEN; prefer the variable, which stays out of the process list)")
	fs.StringVar(&o.Audience, "audience", "", "audience of the GitHub Actions OIDC token (default: the broker URL)")
	fs.StringVar(&o.CAFile, "ca-file", "", "PEM file of extra CAs to trust for the broker, such as its dev certificate (default $ELEVATE_BROKER_CA_FILE)")
	fs.StringVarP(&o.Output, "output", "o", "text", "result format on stdout: text or json")
}

// client resolves the flags and the environment into a broker client. The
// token is, in order: --token, ELEVATE_BROKER_TOKEN, then inside GitHub
// Actions the job's OIDC token for the audience.
func (o *brokerOptions) client(streams Streams) (*brokerclient.Client, error) {
	if o.URL == "" {
		o.URL = streams.getenv("ELEVATE_BROKER_URL")
	}
	if o.URL == "" {
		return nil, &UsageError{errors.New("missing --broker: give the broker URL, or set ELEVATE_BROKER_URL")}
	}
	if o.Output != "text" && o.Output != "json" {
		return nil, &UsageError{fmt.Errorf("invalid --output %q: use text or json", o.Output)}
	}
	httpClient := o.HTTPClient
	if httpClient == nil {
		var err error
		if httpClient, err = o.httpClient(streams); err != nil {
			return nil, err
		}
	}
	token, err := o.tokenFunc(streams, httpClient)
	if err != nil {
		return nil, err
	}
	c, err := brokerclient.New(o.URL, token, httpClient)
	if err != nil {
		return nil, &UsageError{err}
	}
	return c, nil
}

// httpClient trusts the system roots, ELEVATE_CA_FILE (as every Elevate
// client does) and the broker's own CA file.
func (o *brokerOptions) httpClient(streams Streams) (*http.Client, error) {
	if o.CAFile == "" {
		o.CAFile = streams.getenv("ELEVATE_BROKER_CA_FILE")
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	for _, file := range []string{streams.getenv("ELEVATE_CA_FILE"), o.CAFile} {
		if file == "" {
			continue
		}
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, &UsageError{fmt.Errorf("read CA file %q: %w", file, err)}
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, &UsageError{fmt.Errorf("invalid CA file %q: no PEM certificate found", file)}
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: transport, Timeout: 2 * time.Minute}, nil
}

func (o *brokerOptions) tokenFunc(streams Streams, httpClient *http.Client) (brokerclient.TokenFunc, error) {
	if o.TokenFunc != nil {
		return o.TokenFunc, nil
	}
	token := o.Token
	if token == "" {
		token = streams.getenv("ELEVATE_BROKER_TOKEN")
	}
	if token != "" {
		return func(context.Context) (string, error) { return token, nil }, nil
	}
	if src, ok := github.TokenSourceFromEnv(streams.getenv, httpClient); ok {
		src.Audience = o.Audience
		if src.Audience == "" {
			src.Audience = o.URL
		}
		return src.Token, nil
	}
	return nil, &UsageError{errors.New("missing broker token: set ELEVATE_BROKER_TOKEN, or run in GitHub Actions with `permissions: id-token: write`")}
}

// brokerRequestOptions are the flags of `elevate request`.
type brokerRequestOptions struct {
	broker         brokerOptions
	Roles          []string
	Scopes         []string
	PrincipalID    string
	PrincipalType  string
	Pairing        string
	Duration       time.Duration
	Justification  string
	Ticket         string
	Backend        string
	PullRequest    string
	IdempotencyKey string
	Wait           bool
	Timeout        time.Duration
	PollInterval   time.Duration
}

func newRequestCommand(streams Streams) *cobra.Command {
	o := &brokerRequestOptions{}
	cmd := &cobra.Command{
		Use:   "request --broker URL --role ROLE --scope SCOPE --principal-id ID --justification TEXT [flags]",
		Short: "Ask an Elevate broker for a role, and optionally wait until it is granted",
		Long: `Send a request to the broker (elevate serve). The broker decides it by policy:
auto-approved requests are granted at once, others wait for reviewers. Prints
the request id and the approval table.

Inside GitHub Actions the job's OIDC token, requested for --audience, proves
who is asking (the job needs ` + "`permissions: id-token: write`" + `); elsewhere
set ELEVATE_BROKER_TOKEN. With --wait the command polls until the grant is
active (exit 0), denied (exit 3), or expired, cancelled or failed (exit 1).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return reportError(streams, runBrokerRequest(cmd.Context(), streams, o))
		},
	}
	fs := cmd.Flags()
	o.broker.bind(fs)
	fs.StringArrayVar(&o.Roles, "role", nil, "role to grant: a GUID, a role definition id or a built-in role name (repeatable)")
	fs.StringArrayVar(&o.Scopes, "scope", nil, "Azure resource id the role applies to (repeatable)")
	fs.StringVar(&o.PrincipalID, "principal-id", "", "object id of the identity to elevate (required)")
	fs.StringVar(&o.PrincipalType, "principal-type", "", "ServicePrincipal, User or Group (default ServicePrincipal)")
	fs.StringVar(&o.Pairing, "pairing", "", "how roles and scopes pair: zip, broadcast or product (default: zip equal lengths, broadcast a single item)")
	fs.DurationVar(&o.Duration, "duration", 15*time.Minute, "how long the grant may last, 5m to 8h")
	fs.StringVar(&o.Justification, "justification", "", "why the privilege is needed (required)")
	fs.StringVar(&o.Ticket, "ticket", "", "change or incident ticket id")
	fs.StringVar(&o.Backend, "backend", "", "grant backend, among those the broker enables: rbac or pim-assign (default: the broker's first)")
	fs.StringVar(&o.PullRequest, "pr", "", "pull request number (default: from GITHUB_REF)")
	fs.StringVar(&o.IdempotencyKey, "idempotency-key", "", "key that makes a retried command return the first request (default in GitHub Actions: run, attempt, job and the request's fields)")
	fs.BoolVar(&o.Wait, "wait", false, "poll until the request is active, denied or ended")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Minute, "how long --wait polls before it gives up")
	fs.DurationVar(&o.PollInterval, "poll-interval", 5*time.Second, "time between polls with --wait")
	return cmd
}

// input checks the flags and builds the API body.
func (o *brokerRequestOptions) input(streams Streams) (brokerclient.CreateInput, error) {
	var in brokerclient.CreateInput
	switch {
	case len(o.Roles) == 0:
		return in, &UsageError{errors.New("missing --role: name at least one role, for example --role Reader")}
	case len(o.Scopes) == 0:
		return in, &UsageError{errors.New("missing --scope: name at least one Azure resource id")}
	case o.PrincipalID == "":
		return in, &UsageError{errors.New("missing --principal-id: give the object id of the identity to elevate")}
	case strings.TrimSpace(o.Justification) == "":
		return in, &UsageError{errors.New("missing --justification: say why the privilege is needed")}
	case o.Wait && o.PollInterval <= 0:
		return in, &UsageError{fmt.Errorf("invalid --poll-interval %s: use a positive duration such as 5s", o.PollInterval)}
	}
	meta := metadataFromEnv(streams.getenv, &requestOptions{PullRequest: o.PullRequest})
	in = brokerclient.CreateInput{
		Roles: o.Roles, Scopes: o.Scopes, Pairing: o.Pairing, PrincipalID: o.PrincipalID,
		PrincipalType: o.PrincipalType, Duration: o.Duration.String(), Justification: o.Justification,
		Ticket: o.Ticket, IdempotencyKey: o.IdempotencyKey, Backend: o.Backend,
	}
	// The broker takes repository, ref, run and actor from the verified
	// token; only what the token lacks is sent.
	for k, v := range map[string]string{"pull_request": meta.PullRequest, "run_url": meta.RunURL} {
		if v != "" {
			if in.Metadata == nil {
				in.Metadata = map[string]string{}
			}
			in.Metadata[k] = v
		}
	}
	if in.IdempotencyKey == "" {
		in.IdempotencyKey = actionsIdempotencyKey(streams.getenv, in)
	}
	return in, nil
}

// actionsIdempotencyKey derives a key from the GitHub Actions run, attempt
// and job and from the request itself, so a step that is retried within one
// attempt gets its first request back, and a re-run attempt creates a new request.
// Outside Actions it returns "".
func actionsIdempotencyKey(getenv func(string) string, in brokerclient.CreateInput) string {
	run := getenv("GITHUB_RUN_ID")
	if run == "" {
		return ""
	}
	body, _ := json.Marshal(in) // a struct of strings and maps always encodes
	sum := sha256.Sum256(body)
	key := fmt.Sprintf("gha:%s:%s:%s:%s:%s", getenv("GITHUB_REPOSITORY"), run, getenv("GITHUB_RUN_ATTEMPT"),
		getenv("GITHUB_JOB"), hex.EncodeToString(sum[:8]))
	if len(key) > maxActionsKey {
		// Long repository and job names would pass the broker's limit on
		// keys; a digest of the whole key stays unique per attempt.
		long := sha256.Sum256([]byte(key))
		key = "gha:" + hex.EncodeToString(long[:])
	}
	return key
}

// maxActionsKey is the longest derived key sent as it is. The broker
// accepts keys of up to 255 characters.
const maxActionsKey = 200

func runBrokerRequest(ctx context.Context, streams Streams, o *brokerRequestOptions) error {
	d, err := submitRequest(ctx, streams, o)
	if err != nil {
		return err
	}
	if err := writeDetail(streams.Out, o.broker.Output, d); err != nil {
		return err
	}
	return requestOutcome(d.Request, o.Wait)
}

// submitRequest creates the request and, with --wait, polls until it
// leaves pending and approved. Inside GitHub Actions it sets the step
// output request-id.
func submitRequest(ctx context.Context, streams Streams, o *brokerRequestOptions) (brokerclient.RequestDetail, error) {
	in, err := o.input(streams)
	if err != nil {
		return brokerclient.RequestDetail{}, err
	}
	c, err := o.broker.client(streams)
	if err != nil {
		return brokerclient.RequestDetail{}, err
	}
	d, err := c.Create(ctx, in)
	if err != nil {
		return d, brokerError("create request", err)
	}
	if runner := github.FromEnv(streams.getenv, streams.Out); runner.InActions() {
		if err := runner.SetOutput("request-id", d.Request.ID); err != nil {
			return d, fmt.Errorf("set step output request-id: %w", err)
		}
	}
	if o.Wait && (d.Request.State == brokerclient.StatePending || d.Request.State == brokerclient.StateApproved) {
		fmt.Fprintf(streams.ErrOut, "request %s is %s; waiting up to %s\n", d.Request.ID, d.Request.State, o.Timeout)
		waitCtx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		last := d.Request.State
		d, err = c.Wait(waitCtx, d.Request.ID, o.PollInterval, func(p brokerclient.RequestDetail) {
			if p.Request.State != last {
				fmt.Fprintf(streams.ErrOut, "request %s is %s\n", p.Request.ID, p.Request.State)
				last = p.Request.State
			}
		})
		if err != nil {
			return d, err
		}
	}
	return d, nil
}

// requestOutcome maps a request's state to the exit code of `elevate
// request`: denied exits 3, and a request that ended without being granted
// exits 1. Pending is success only without --wait.
func requestOutcome(r brokerclient.Request, waited bool) error {
	switch r.State {
	case brokerclient.StateActive:
		return nil
	case brokerclient.StatePending, brokerclient.StateApproved:
		if !waited {
			return nil
		}
	case brokerclient.StateDenied:
		return &exitError{code: ExitDenied, err: fmt.Errorf("request %s was denied: %s", r.ID, firstNonEmpty(r.Error, r.Decision.Message))}
	}
	return &exitError{code: ExitFailure, err: fmt.Errorf("request %s is %s: %s", r.ID, r.State, firstNonEmpty(r.Error, "no grant"))}
}

func firstNonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// writeDetail prints a request as JSON, or as a summary line and the
// approval table.
func writeDetail(w io.Writer, format string, d brokerclient.RequestDetail) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(d)
	}
	r := d.Request
	fmt.Fprintf(w, "Request %s: %s", r.ID, r.State)
	if r.Decision.RuleID != "" {
		fmt.Fprintf(w, " (rule %s, %s)", r.Decision.RuleID, r.Decision.Outcome)
	}
	fmt.Fprintln(w)
	if r.ExpiresAt != nil {
		fmt.Fprintf(w, "Expires: %s\n", r.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if r.Decision.Outcome == "needs_approval" {
		fmt.Fprintf(w, "Approvals: %d of %d from %s\n", countVerdicts(d.Approvals, "approve"),
			r.Decision.RequiredApprovals, strings.Join(r.Decision.Groups, ", "))
	}
	if r.Error != "" {
		fmt.Fprintf(w, "Reason: %s\n", r.Error)
	}
	fmt.Fprintf(w, "Request hash: %s\n\n%s\n", d.RequestHash, strings.TrimRight(d.TableMarkdown, "\n"))
	return nil
}

func countVerdicts(approvals []brokerclient.Approval, verdict string) int {
	n := 0
	for _, a := range approvals {
		if a.Verdict == verdict {
			n++
		}
	}
	return n
}

// reviewOptions are the flags of approve and deny.
type reviewOptions struct {
	broker  brokerOptions
	Comment string
}

func newApproveCommand(streams Streams) *cobra.Command {
	return newReviewCommand(streams, "approve", "Approve a pending broker request after showing its table")
}

func newDenyCommand(streams Streams) *cobra.Command {
	return newReviewCommand(streams, "deny", "Deny a pending broker request, with a comment")
}

func newReviewCommand(streams Streams, verdict, short string) *cobra.Command {
	o := &reviewOptions{}
	cmd := &cobra.Command{
		Use:   verdict + " REQUEST_ID [--comment TEXT]",
		Short: short,
		Long: short + `.

The command fetches the request, prints its approval table, and sends the
hash of exactly that request with the verdict, so the broker records the
verdict only for what was shown. Requesters cannot review their own requests.`,
		Args: requestIDArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReview(cmd.Context(), streams, o, verdict, args[0])
		},
	}
	o.broker.bind(cmd.Flags())
	usage := "comment recorded with the verdict"
	if verdict == "deny" {
		usage = "why the request is denied (required)"
	}
	cmd.Flags().StringVar(&o.Comment, "comment", "", usage)
	return cmd
}

func runReview(ctx context.Context, streams Streams, o *reviewOptions, verdict, id string) error {
	if verdict == "deny" && strings.TrimSpace(o.Comment) == "" {
		return &UsageError{errors.New("missing --comment: say why the request is denied")}
	}
	c, err := o.broker.client(streams)
	if err != nil {
		return err
	}
	shown, err := c.Get(ctx, id)
	if err != nil {
		return brokerError("get request "+id, err)
	}
	if o.broker.Output == "text" {
		fmt.Fprintf(streams.Out, "%s\n\n", strings.TrimRight(shown.TableMarkdown, "\n"))
	}
	review, done := c.Approve, "Approved"
	if verdict == "deny" {
		review, done = c.Deny, "Denied"
	}
	d, err := review(ctx, id, shown.RequestHash, o.Comment)
	if err != nil {
		return brokerError(verdict+" request "+id, err)
	}
	if o.broker.Output == "json" {
		return writeDetail(streams.Out, o.broker.Output, d)
	}
	fmt.Fprintf(streams.Out, "%s request %s (hash %s); it is now %s.\n", done, id, shown.RequestHash, d.Request.State)
	if d.Request.Error != "" {
		fmt.Fprintf(streams.Out, "Reason: %s\n", d.Request.Error)
	}
	return nil
}

func newStatusCommand(streams Streams) *cobra.Command {
	o := &brokerOptions{}
	cmd := &cobra.Command{
		Use:   "status REQUEST_ID",
		Short: "Show a broker request: state, approvals and its approval table",
		Args:  requestIDArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(streams)
			if err != nil {
				return err
			}
			d, err := c.Get(cmd.Context(), args[0])
			if err != nil {
				return brokerError("get request "+args[0], err)
			}
			return writeDetail(streams.Out, o.Output, d)
		},
	}
	o.bind(cmd.Flags())
	return cmd
}

func newCancelCommand(streams Streams) *cobra.Command {
	o := &brokerOptions{}
	cmd := &cobra.Command{
		Use:   "cancel REQUEST_ID",
		Short: "Withdraw a pending broker request, or end an active one early (requester or admin)",
		Args:  requestIDArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(streams)
			if err != nil {
				return err
			}
			d, err := c.Cancel(cmd.Context(), args[0])
			if err != nil {
				return brokerError("cancel request "+args[0], err)
			}
			return finished(streams, o.Output, d)
		},
	}
	o.bind(cmd.Flags())
	return cmd
}

// bindBrokerRevoke adds the broker flags to `elevate revoke` and returns
// the run function of its broker form, `elevate revoke --broker URL ID`,
// which ends an active request at once (admins only).
func bindBrokerRevoke(cmd *cobra.Command, streams Streams) func(ctx context.Context, id string) error {
	o := &brokerOptions{}
	o.bind(cmd.Flags())
	return func(ctx context.Context, id string) error {
		c, err := o.client(streams)
		if err != nil {
			return err
		}
		d, err := c.Revoke(ctx, id)
		if err != nil {
			return brokerError("revoke request "+id, err)
		}
		return finished(streams, o.Output, d)
	}
}

// finished prints an ended request. A revoke that has not completed yet
// exits 4, like a failed revoke in workflow mode.
func finished(streams Streams, format string, d brokerclient.RequestDetail) error {
	if format == "json" {
		if err := writeDetail(streams.Out, format, d); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(streams.Out, "Request %s: %s\n", d.Request.ID, d.Request.State)
	}
	if d.Request.State == brokerclient.StateRevokeFailed {
		return &exitError{code: ExitRevokeFailed, err: fmt.Errorf("request %s: %s", d.Request.ID,
			firstNonEmpty(d.Request.Error, "a revoke has not succeeded yet; the broker retries it"))}
	}
	return nil
}

// requestsListOptions are the flags of `elevate requests list`.
type requestsListOptions struct {
	broker brokerOptions
	list   brokerclient.ListOptions
}

func newRequestsCommand(streams Streams) *cobra.Command {
	parent := &cobra.Command{Use: "requests", Short: "List broker requests"}
	o := &requestsListOptions{}
	list := &cobra.Command{
		Use:   "list [--state STATE]...",
		Short: "List broker requests, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRequestsList(cmd.Context(), streams, o)
		},
	}
	fs := list.Flags()
	o.broker.bind(fs)
	fs.StringSliceVar(&o.list.States, "state", nil, "only requests in these states, such as pending or active (repeatable, or comma-separated)")
	fs.StringVar(&o.list.Requester, "requester", "", "only requests of this requester (token subject)")
	fs.StringVar(&o.list.Principal, "principal", "", "only requests for this principal object id")
	fs.StringVar(&o.list.Role, "role", "", "only requests with this role definition GUID")
	fs.StringVar(&o.list.Scope, "scope", "", "only requests with a scope under this resource id")
	fs.IntVar(&o.list.Limit, "limit", 50, "maximum number of requests, 1 to 1000")
	fs.StringVar(&o.list.Cursor, "cursor", "", "continue a listing from the cursor a previous page printed")
	parent.AddCommand(list)
	return parent
}

func runRequestsList(ctx context.Context, streams Streams, o *requestsListOptions) error {
	c, err := o.broker.client(streams)
	if err != nil {
		return err
	}
	page, err := c.List(ctx, o.list)
	if err != nil {
		return brokerError("list requests", err)
	}
	if o.broker.Output == "json" {
		enc := json.NewEncoder(streams.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(page)
	}
	tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tREQUESTER\tPAIRS\tDURATION\tCREATED")
	for _, r := range page.Requests {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.State, r.Requester, len(r.Pairs), r.Duration,
			r.CreatedAt.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.NextCursor != "" {
		fmt.Fprintf(streams.ErrOut, "more requests: --cursor %s\n", page.NextCursor)
	}
	return nil
}

// brokerError names the failed action. The broker's 400 means invalid
// input, so it exits 2 like any other usage error.
func brokerError(action string, err error) error {
	err = fmt.Errorf("%s: %w", action, err)
	var apiErr *brokerclient.APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusBadRequest {
		return &UsageError{err}
	}
	return err
}

// requestIDArg accepts exactly one argument, the broker request id, and
// names where to find it when it is missing.
func requestIDArg(cmd *cobra.Command, args []string) error {
	switch {
	case len(args) == 0:
		return &UsageError{fmt.Errorf("missing request ID: use %s REQUEST_ID with the id elevate request printed, or find it with elevate requests list", cmd.CommandPath())}
	case len(args) > 1:
		return &UsageError{fmt.Errorf("%d arguments: %s takes one request ID", len(args), cmd.CommandPath())}
	}
	return nil
}
