package broker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/brokerclient"
	"github.com/elevate-dev/elevate/internal/oidc"
	"github.com/elevate-dev/elevate/internal/store"
)

// MaxBodyBytes caps the body of an API call. A request of 100 pairs with
// long scopes fits in well under 32 KiB.
const MaxBodyBytes = 64 << 10

// errRateLimited is returned when a caller has spent its token bucket.
var errRateLimited = errors.New("rate limited")

// APIOptions tune an API. Zero fields take the documented defaults.
type APIOptions struct {
	Logger *slog.Logger
	Now    func() time.Time
	// Ready reports whether the first reconcile has finished. Until it
	// has, /readyz responds 503. Default: always ready.
	Ready func() bool
	// RatePerSecond and RateBurst bound each caller's calls. Defaults 10
	// and 40.
	RatePerSecond float64
	RateBurst     int
	// AuthFailureBurst is how many failed authentications one remote
	// address may make before it gets 429; it regains one every 5 s.
	// Default 20.
	AuthFailureBurst int
	// TrustedProxies are the CIDR ranges whose X-Forwarded-For header names
	// the client address that failed sign-ins count against.
	TrustedProxies []string
}

// API is the broker's HTTP JSON interface under /v1, with /healthz and
// /readyz.
type API struct {
	svc      *Service
	auth     *Authenticator
	log      *slog.Logger
	now      func() time.Time
	ready    func() bool
	callers  *rateLimiter
	failures *rateLimiter
	tables   tableCache
	proxies  []netip.Prefix
}

// NewAPI returns the API of svc, authenticating callers with auth.
func NewAPI(svc *Service, auth *Authenticator, o APIOptions) *API {
	if o.Logger == nil {
		o.Logger = svc.log
	}
	if o.Now == nil {
		o.Now = svc.cfg.Now
	}
	if o.Ready == nil {
		o.Ready = func() bool { return true }
	}
	if o.RatePerSecond <= 0 {
		o.RatePerSecond = DefaultRatePerSecond
	}
	if o.RateBurst <= 0 {
		o.RateBurst = DefaultRateBurst
	}
	if o.AuthFailureBurst <= 0 {
		o.AuthFailureBurst = 20
	}
	a := &API{
		svc: svc, auth: auth, log: o.Logger, now: o.Now, ready: o.Ready,
		callers:  newRateLimiter(o.RatePerSecond, o.RateBurst, o.Now),
		failures: newRateLimiter(0.2, o.AuthFailureBurst, o.Now),
		tables:   tableCache{tables: map[string]renderedTable{}},
	}
	for _, c := range o.TrustedProxies {
		// The configuration checked every entry; a bad one here is skipped
		// and logged, so it trusts less, never more.
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a.log.Error("ignoring an invalid trusted proxy range", "range", c, "error", err)
			continue
		}
		a.proxies = append(a.proxies, p.Masked())
	}
	return a
}

// handler is one API route. It writes its response on success and returns
// an error otherwise, which wrap maps to a status and a JSON error body.
type handler func(w http.ResponseWriter, r *http.Request, caller Identity) error

// Handler returns the routes of the API.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", a.probe("/healthz", a.healthz))
	mux.Handle("GET /readyz", a.probe("/readyz", a.readyz))
	routes := map[string]handler{
		"POST /v1/requests":              a.createRequest,
		"GET /v1/requests":               a.listRequests,
		"GET /v1/requests/{id}":          a.getRequest,
		"POST /v1/requests/{id}/approve": a.review(store.VerdictApprove),
		"POST /v1/requests/{id}/deny":    a.review(store.VerdictDeny),
		"POST /v1/requests/{id}/cancel":  a.cancelRequest,
		"POST /v1/requests/{id}/revoke":  a.revokeRequest,
		"POST /v1/requests/{id}/extend":  a.extendRequest,
		"GET /v1/grants":                 a.listGrants,
		"GET /v1/audit":                  a.listAudit,
	}
	for pattern, h := range routes {
		mux.Handle(pattern, a.wrap(pattern, h))
	}
	// The mux responds 404 to unknown paths and 405 to known paths with
	// another method, in plain text, with the headers set below.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		mux.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status code written, for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// begin sets the headers of every response and returns the call's id.
func begin(w http.ResponseWriter) string {
	id := newCallID()
	h := w.Header()
	h.Set("X-Request-Id", id)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Type", "application/json")
	return id
}

// wrap authenticates the caller, applies the rate limit and the body limit,
// runs h, writes any error, and logs the call.
func (a *API) wrap(route string, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := a.now()
		callID := begin(w)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		r.Body = http.MaxBytesReader(rec, r.Body, MaxBodyBytes)
		log := a.log.With("http_request_id", callID, "route", route)

		caller, err := a.authenticate(r)
		if err == nil && !a.callers.allow("subject:"+caller.Subject) {
			err = fmt.Errorf("%w: caller %s", errRateLimited, caller.Subject)
		}
		if err == nil {
			err = h(rec, r, caller)
		}
		if err != nil {
			a.writeError(rec, log, err)
		}
		log.InfoContext(r.Context(), "api call", "method", r.Method, "subject", caller.Subject,
			"status", rec.status, "elapsed", a.now().Sub(start))
	})
}

// authenticate checks the bearer token. A remote address whose failures
// exhausted its bucket gets 429 before its token is even looked at, so
// static tokens cannot be guessed at speed.
func (a *API) authenticate(r *http.Request) (Identity, error) {
	host := a.clientAddr(r)
	if !a.failures.available("addr:" + host) {
		return Identity{}, fmt.Errorf("%w: too many failed authentications from %s", errRateLimited, host)
	}
	id, err := a.auth.Authenticate(r.Context(), r.Header.Get("Authorization"))
	if errors.Is(err, ErrUnauthenticated) {
		a.failures.allow("addr:" + host)
	}
	return id, err
}

// clientAddr returns the address a call's failed sign-ins count against:
// the peer, or, when the peer is a trusted proxy, the last address in
// X-Forwarded-For that is not one. Addresses a client wrote into the
// header itself come before its proxies' and are never used.
func (a *API) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !a.trusted(host) {
		return host
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if _, err := netip.ParseAddr(hop); err != nil {
			break // not an address: stop at what cannot be trusted
		}
		if !a.trusted(hop) {
			return hop
		}
		host = hop
	}
	return host
}

func (a *API) trusted(addr string) bool {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	for _, p := range a.proxies {
		if p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// probe serves an unauthenticated health route.
func (a *API) probe(route string, h func(context.Context) (int, string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		begin(w)
		status, state := h(r.Context())
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": state})
		if status != http.StatusOK {
			a.log.WarnContext(r.Context(), "probe failed", "route", route, "status", status, "state", state)
		}
	})
}

func (a *API) healthz(context.Context) (int, string) { return http.StatusOK, "ok" }

// readyz reports ready once the first reconcile finished and the store
// responds to a ping.
func (a *API) readyz(ctx context.Context) (int, string) {
	if !a.ready() {
		return http.StatusServiceUnavailable, "reconciling"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := a.svc.cfg.Store.Ping(ctx); err != nil {
		a.log.ErrorContext(ctx, "store ping failed", "error", err)
		return http.StatusServiceUnavailable, "store unavailable"
	}
	return http.StatusOK, "ready"
}

// apiError is the status, code and client-facing message of an error.
type apiError struct {
	status  int
	code    string
	message string
}

// classify maps an error to its response. Messages of client errors come
// from the broker's own checks and name the value and the fix. Server errors
// get a fixed message, and their detail goes only to the log.
func classify(err error, callID string) apiError {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return apiError{http.StatusUnauthorized, brokerclient.CodeUnauthorized, "missing or invalid bearer token"}
	case errors.Is(err, errRateLimited):
		return apiError{http.StatusTooManyRequests, brokerclient.CodeRateLimited, "too many calls; retry after a second"}
	case errors.Is(err, oidc.ErrKeyFetch):
		return apiError{http.StatusServiceUnavailable, brokerclient.CodeUnavailable, "the token issuer's signing keys could not be fetched; retry later"}
	case errors.As(err, &tooLarge):
		return apiError{http.StatusRequestEntityTooLarge, brokerclient.CodeTooLarge,
			fmt.Sprintf("request body larger than %d bytes", MaxBodyBytes)}
	case errors.Is(err, ErrInvalid), errors.Is(err, store.ErrInvalid), errors.Is(err, access.ErrInvalidInput):
		return apiError{http.StatusBadRequest, brokerclient.CodeInvalid, err.Error()}
	case errors.Is(err, ErrForbidden):
		return apiError{http.StatusForbidden, brokerclient.CodeForbidden, err.Error()}
	case errors.Is(err, store.ErrNotFound):
		return apiError{http.StatusNotFound, brokerclient.CodeNotFound, err.Error()}
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrDuplicate):
		return apiError{http.StatusConflict, brokerclient.CodeConflict, err.Error()}
	default:
		return apiError{http.StatusInternalServerError, brokerclient.CodeInternal,
			"internal error; the broker's log has the detail under http_request_id " + callID}
	}
}

func (a *API) writeError(w *statusRecorder, log *slog.Logger, err error) {
	e := classify(err, w.Header().Get("X-Request-Id"))
	switch e.status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	}
	if e.status >= 500 {
		log.Error("api call failed", "status", e.status, "error", err)
	} else {
		// The detail of a 401 names the reason but never the token.
		log.Info("api call rejected", "status", e.status, "error", err)
	}
	writeJSON(w, e.status, brokerclient.ErrorBody{Error: brokerclient.ErrorDetail{Code: e.code, Message: e.message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing is left to tell it
}

// decodeBody decodes the JSON body into out, rejecting unknown fields and
// trailing data. An empty body leaves out unchanged when allowEmpty.
func decodeBody(r *http.Request, out any, allowEmpty bool) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return fmt.Errorf("%w: read JSON body: %w", ErrInvalid, err)
	}
	if key := duplicateKey(data); key != "" {
		return fmt.Errorf("%w: invalid JSON body: key %q appears twice in one object: send each field once", ErrInvalid, prefix(key, 40))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(out)
	switch {
	case errors.Is(err, io.EOF) && allowEmpty:
		return nil
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: missing JSON body", ErrInvalid)
	case err != nil:
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return fmt.Errorf("%w: invalid JSON body: %w", ErrInvalid, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: invalid JSON body: data after the first value", ErrInvalid)
	}
	return nil
}

func newCallID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error since Go 1.24
	return hex.EncodeToString(b)
}
