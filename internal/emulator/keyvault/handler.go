package keyvault

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// request is one authorized, routed request on a known vault.
type request struct {
	http       *http.Request
	route      route
	vaultKey   string // lowercase vault name
	baseURL    string // "https://" + Host, the prefix of every id returned
	apiVersion string
}

// response is the result of one operation: a status with an optional JSON
// body, or an error that ServeHTTP writes as Key Vault's error envelope.
type response struct {
	status    int
	body      any
	err       *apiError
	challenge string // WWW-Authenticate value of a 401
}

// ServeHTTP serves one secrets request for the vault named by the first
// label of r.Host. The Authorizer runs before the api-version, the secret
// name or the body are read. The SDKs rely on this order because they send
// their first request without a token or body to obtain the challenge.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestID, err := newVersionID()
	if err != nil {
		requestID = "unavailable"
	}
	setCommonHeaders(w.Header(), requestID)

	resp := s.serve(r)
	s.writeResponse(w, r, resp)
	s.logger.Debug("keyvault request",
		"request_id", requestID,
		"host", r.Host,
		"method", r.Method,
		"path", r.URL.Path,
		"status", resp.statusCode())
}

func (s *Service) serve(r *http.Request) response {
	// Resolve the vault. The real service has no such case because DNS
	// would not resolve an unknown vault, so the emulator returns 404.
	vaultName := hostVaultName(r.Host)
	s.mu.Lock()
	state, ok := s.vaults[strings.ToLower(vaultName)]
	var info Vault
	if ok {
		info = state.info
	}
	s.mu.Unlock()
	if !ok {
		return errorResponse(&apiError{
			Status:  http.StatusNotFound,
			Code:    "VaultNotFound",
			Message: "No vault named " + strconv.Quote(vaultName) + " exists in this emulator.",
		})
	}

	// Route. Paths outside the secrets API get 404 and known paths with
	// another method get 405. Both come before authorization because no
	// data action applies to them.
	rt, status := parseRoute(r.Method, r.URL.EscapedPath())
	switch status {
	case routeNotFound:
		return errorResponse(&apiError{Status: http.StatusNotFound, Code: "NotFound",
			Message: "The requested path does not exist in the Key Vault secrets API."})
	case routeMethodNotAllowed:
		return errorResponse(&apiError{Status: http.StatusMethodNotAllowed, Code: "MethodNotAllowed",
			Message: "The method " + r.Method + " is not allowed on this path."})
	}

	// Authorize with the operation's data action.
	if resp, denied := s.authorizeRequest(r, info, rt.Op.dataAction()); denied {
		return resp
	}

	// Validate what the service validates after authentication.
	apiVersion := r.URL.Query().Get("api-version")
	if apiErr := checkAPIVersion(apiVersion); apiErr != nil {
		return errorResponse(apiErr)
	}
	if rt.Name != "" && !secretNamePattern.MatchString(rt.Name) {
		return errorResponse(errInvalidName(rt.Name))
	}

	req := request{
		http:       r,
		route:      rt,
		vaultKey:   strings.ToLower(vaultName),
		baseURL:    "https://" + r.Host,
		apiVersion: apiVersion,
	}
	return s.dispatch(req)
}

func (s *Service) dispatch(req request) response {
	switch req.route.Op {
	case opSetSecret:
		return s.handleSet(req)
	case opGetSecret:
		return s.handleGet(req)
	case opUpdateSecret:
		return s.handleUpdate(req)
	case opDeleteSecret:
		return s.handleDelete(req)
	case opListSecrets:
		return s.handleListSecrets(req)
	case opListVersions:
		return s.handleListVersions(req)
	case opListDeleted:
		return s.handleListDeleted(req)
	case opGetDeleted:
		return s.handleGetDeleted(req)
	case opRecoverDeleted:
		return s.handleRecover(req)
	case opPurgeDeleted:
		return s.handlePurge(req)
	case opBackupSecret:
		return s.handleBackup(req)
	case opRestoreSecret:
		return s.handleRestore(req)
	}
	return errorResponse(&apiError{Status: http.StatusNotFound, Code: "NotFound",
		Message: "The requested operation does not exist."})
}

// authorizeRequest calls the Authorizer and turns its refusal into the
// response to send. It reports true when the request must stop.
func (s *Service) authorizeRequest(r *http.Request, vault Vault, dataAction string) (response, bool) {
	if s.authorize == nil {
		return response{}, false
	}
	err := s.authorize(r, vault, dataAction)
	if err == nil {
		return response{}, false
	}
	var authErr *AuthError
	if !errors.As(err, &authErr) {
		s.logger.Error("keyvault authorizer failed",
			"vault", vault.Name, "data_action", dataAction, "error", err)
		return errorResponse(&apiError{Status: http.StatusInternalServerError, Code: "InternalError",
			Message: "The request could not be authorized because of an internal error."}), true
	}
	return authErrorResponse(authErr), true
}

// authErrorResponse renders an AuthError as Key Vault does: 401 with
// WWW-Authenticate and code Unauthorized, 403 with code Forbidden and inner
// code ForbiddenByRbac. Other statuses keep the Authorizer's code.
func authErrorResponse(e *AuthError) response {
	apiErr := &apiError{Status: e.Status, Code: e.Code, Message: e.Message}
	switch e.Status {
	case http.StatusUnauthorized:
		if apiErr.Code == "" {
			apiErr.Code = "Unauthorized"
		}
		if apiErr.Message == "" {
			apiErr.Message = "AKV10000: Request is missing a Bearer or PoP token."
		}
	case http.StatusForbidden:
		if apiErr.Code == "" {
			apiErr.Code = "Forbidden"
		}
		if apiErr.Message == "" {
			apiErr.Message = "Caller is not authorized to perform action on resource."
		}
		apiErr.Inner = "ForbiddenByRbac"
	default:
		if apiErr.Status < 400 || apiErr.Status > 599 {
			apiErr.Status = http.StatusInternalServerError
		}
		if apiErr.Code == "" {
			apiErr.Code = http.StatusText(apiErr.Status)
		}
	}
	resp := errorResponse(apiErr)
	if e.Status == http.StatusUnauthorized {
		resp.challenge = e.Challenge
	}
	return resp
}

func errorResponse(apiErr *apiError) response {
	return response{status: apiErr.Status, err: apiErr}
}

func (resp response) statusCode() int {
	if resp.err != nil {
		return resp.err.Status
	}
	return resp.status
}

// writeResponse sends resp as JSON, or only its status when it has no body.
func (s *Service) writeResponse(w http.ResponseWriter, r *http.Request, resp response) {
	var payload any
	switch {
	case resp.err != nil:
		if resp.challenge != "" {
			w.Header().Set("WWW-Authenticate", resp.challenge)
		}
		envelope := errorEnvelope{Error: errorDetail{Code: resp.err.Code, Message: resp.err.Message}}
		if resp.err.Inner != "" {
			envelope.Error.InnerError = &innerError{Code: resp.err.Inner}
		}
		payload = envelope
	case resp.body == nil:
		w.WriteHeader(resp.status)
		return
	default:
		payload = resp.body
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(payload); err != nil {
		s.logger.Error("keyvault encode response failed", "path", r.URL.Path, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	body := bytes.TrimRight(buf.Bytes(), "\n")
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.statusCode())
	if _, err := w.Write(body); err != nil {
		s.logger.Debug("keyvault write response failed", "path", r.URL.Path, "error", err)
	}
}

// setCommonHeaders sets the headers that every Key Vault response carries.
func setCommonHeaders(h http.Header, requestID string) {
	h.Set("Cache-Control", "no-cache")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "-1")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Strict-Transport-Security", "max-age=31536000;includeSubDomains")
	h.Set("x-ms-request-id", requestID)
}

// hostVaultName returns the first DNS label of a Host header value.
func hostVaultName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	name, _, _ := strings.Cut(host, ".")
	return name
}
