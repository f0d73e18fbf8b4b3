// Package brokerclient is a Go client of the Elevate broker's HTTP API
// (`elevate serve`). The CLI's request, approve, deny, status, revoke and
// requests commands use it; so can any other program.
package brokerclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxResponse bounds the body read from the broker, so a wrong URL cannot
// make the client buffer an unbounded download.
const maxResponse = 8 << 20

// TokenFunc returns the bearer token for the next call. It is called once
// per call, so a short-lived token such as a GitHub Actions OIDC token is
// fetched fresh during a long wait.
type TokenFunc func(ctx context.Context) (string, error)

// Client calls one broker.
type Client struct {
	base  *url.URL
	token TokenFunc
	http  *http.Client
}

// New returns a client of the broker at baseURL, such as
// https://elevate.example.com. httpClient defaults to one with a 60 s timeout.
func New(baseURL string, token TokenFunc, httpClient *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("invalid broker URL %q: want an absolute URL such as https://elevate.example.com", baseURL)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("invalid broker URL %q: bearer tokens are only sent over https, except to a loopback address", baseURL)
	}
	if token == nil {
		return nil, errors.New("missing broker token source: pass a function that returns the bearer token")
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 60 * time.Second}
	}
	return &Client{base: u, token: token, http: httpClient}, nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// Create submits a request for access. A non-empty IdempotencyKey is sent
// as the Idempotency-Key header too, so a retry returns the first request.
func (c *Client) Create(ctx context.Context, in CreateInput) (RequestDetail, error) {
	var out RequestDetail
	hdr := http.Header{}
	if in.IdempotencyKey != "" {
		hdr.Set("Idempotency-Key", in.IdempotencyKey)
	}
	return out, c.do(ctx, http.MethodPost, "/v1/requests", nil, hdr, in, &out)
}

// Get returns a request with its approvals, leases and approval table.
func (c *Client) Get(ctx context.Context, id string) (RequestDetail, error) {
	var out RequestDetail
	return out, c.do(ctx, http.MethodGet, "/v1/requests/"+url.PathEscape(id), nil, nil, nil, &out)
}

// List returns one page of requests, newest first.
func (c *Client) List(ctx context.Context, o ListOptions) (RequestList, error) {
	q := url.Values{}
	if len(o.States) > 0 {
		q.Set("state", strings.Join(o.States, ","))
	}
	for k, v := range map[string]string{"requester": o.Requester, "principal": o.Principal,
		"role": o.Role, "scope": o.Scope, "cursor": o.Cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	var out RequestList
	return out, c.do(ctx, http.MethodGet, "/v1/requests", q, nil, nil, &out)
}

// Approve approves request id. requestHash must be the RequestHash of the
// detail the reviewer was shown; the broker rejects a stale one with 409.
func (c *Client) Approve(ctx context.Context, id, requestHash, comment string) (RequestDetail, error) {
	return c.review(ctx, id, "approve", requestHash, comment)
}

// Deny denies request id, bound to requestHash like Approve.
func (c *Client) Deny(ctx context.Context, id, requestHash, comment string) (RequestDetail, error) {
	return c.review(ctx, id, "deny", requestHash, comment)
}

func (c *Client) review(ctx context.Context, id, verdict, requestHash, comment string) (RequestDetail, error) {
	var out RequestDetail
	body := ReviewInput{RequestHash: requestHash, Comment: comment}
	return out, c.do(ctx, http.MethodPost, "/v1/requests/"+url.PathEscape(id)+"/"+verdict, nil, nil, body, &out)
}

// Cancel withdraws a pending request or ends an active one; the requester
// or an admin may call it.
func (c *Client) Cancel(ctx context.Context, id string) (RequestDetail, error) {
	var out RequestDetail
	return out, c.do(ctx, http.MethodPost, "/v1/requests/"+url.PathEscape(id)+"/cancel", nil, nil, struct{}{}, &out)
}

// Revoke ends an active request now. Admins only.
func (c *Client) Revoke(ctx context.Context, id string) (RequestDetail, error) {
	var out RequestDetail
	return out, c.do(ctx, http.MethodPost, "/v1/requests/"+url.PathEscape(id)+"/revoke", nil, nil, struct{}{}, &out)
}

// Extend requests that an active request's total duration become total.
func (c *Client) Extend(ctx context.Context, id string, total time.Duration) (RequestDetail, error) {
	var out RequestDetail
	body := ExtendInput{Duration: total.String()}
	return out, c.do(ctx, http.MethodPost, "/v1/requests/"+url.PathEscape(id)+"/extend", nil, nil, body, &out)
}

// Grants returns the active grants.
func (c *Client) Grants(ctx context.Context) (GrantList, error) {
	var out GrantList
	return out, c.do(ctx, http.MethodGet, "/v1/grants", nil, nil, nil, &out)
}

// Audit returns up to limit audit events from sequence number from on.
// Admins only.
func (c *Client) Audit(ctx context.Context, from int64, limit int) (AuditPage, error) {
	q := url.Values{}
	q.Set("from", strconv.FormatInt(from, 10))
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out AuditPage
	return out, c.do(ctx, http.MethodGet, "/v1/audit", q, nil, nil, &out)
}

// Ready returns nil when the broker's /readyz responds 200.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/readyz", nil, nil, nil, nil)
}

// Waiting states are those a request leaves without anyone's action.
func waiting(state string) bool {
	return state == StatePending || state == StateApproved
}

// Wait polls request id every interval until it leaves pending and
// approved, and returns the last detail. Rate limiting, server errors and
// network errors are retried until ctx ends, because a broker restart or a
// rolling update must not fail a waiting pipeline.
func (c *Client) Wait(ctx context.Context, id string, interval time.Duration, progress func(RequestDetail)) (RequestDetail, error) {
	var last RequestDetail
	for {
		d, err := c.Get(ctx, id)
		switch {
		case err == nil && !waiting(d.Request.State):
			return d, nil
		case err == nil:
			last = d
			if progress != nil {
				progress(d)
			}
		case ctx.Err() != nil:
			// The deadline struck during the call: report the last state
			// seen rather than the transport's error.
			return last, stillWaiting(ctx, id, last)
		case !transient(err):
			return d, err
		}
		select {
		case <-ctx.Done():
			return last, stillWaiting(ctx, id, last)
		case <-time.After(interval):
		}
	}
}

func stillWaiting(ctx context.Context, id string, last RequestDetail) error {
	state := last.Request.State
	if state == "" {
		state = "not yet known"
	}
	return fmt.Errorf("wait for request %s: %w: request %s is still %s", id, ctx.Err(), id, state)
}

// transient reports whether a later call may succeed where this one failed.
func transient(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Status == http.StatusTooManyRequests || apiErr.Status >= 500
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// do sends one call and decodes a 2xx response into out, or returns an
// *APIError for an error response.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, hdr http.Header, body, out any) error {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s %s body: %w", method, path, err)
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), reader)
	if err != nil {
		return fmt.Errorf("build %s %s: %w", method, path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if path != "/readyz" { // the probe needs no token
		tok, err := c.token(ctx)
		if err != nil {
			return fmt.Errorf("get broker token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("read %s %s response: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode %s %s response: %w", method, path, err)
	}
	return nil
}

func decodeError(resp *http.Response, data []byte) error {
	e := &APIError{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
	var body ErrorBody
	if json.Unmarshal(data, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message = body.Error.Code, body.Error.Message
		return e
	}
	// Not the broker's error format: a proxy or a wrong URL responded.
	e.Code = "http_" + strconv.Itoa(resp.StatusCode)
	e.Message = strings.TrimSpace(string(data))
	if len(e.Message) > 200 {
		e.Message = e.Message[:200] + "..."
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}
