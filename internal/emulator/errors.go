package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// errorKind selects the error body format of the emulated service that a
// request reached.
type errorKind int

const (
	kindARM errorKind = iota
	kindEntra
	kindVault
)

// armError is ARM's error envelope: {"error":{"code":...,"message":...}}.
// Key Vault uses the same outer shape with an optional innererror.
type armError struct {
	Error armErrorDetail `json:"error"`
}

type armErrorDetail struct {
	Code       string           `json:"code"`
	Message    string           `json:"message"`
	InnerError *armInnerError   `json:"innererror,omitempty"`
	Details    []armErrorDetail `json:"details,omitempty"`
}

type armInnerError struct {
	Code string `json:"code"`
}

// writeJSON writes v with status and the JSON content type ARM, Key Vault and
// Entra all send.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"code":"InternalServerError","message":"encode response"}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeARMError writes ARM's error envelope.
func writeARMError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, armError{Error: armErrorDetail{Code: code, Message: message}})
}

// entraError is the token endpoint's error body.
type entraError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorCodes       []int  `json:"error_codes"`
	Timestamp        string `json:"timestamp"`
	TraceID          string `json:"trace_id"`
	CorrelationID    string `json:"correlation_id"`
	ErrorURI         string `json:"error_uri,omitempty"`
}

// writeEntraError writes an Entra OAuth error. As in Entra, the description
// starts with "AADSTS<code>: " and ends with trace, correlation and time
// lines. Correlation is the client's request id when it sent one.
func writeEntraError(w http.ResponseWriter, status int, oauthCode string, aadsts int, message, correlation string) {
	now := time.Now().UTC().Format("2006-01-02 15:04:05Z")
	trace := uuid.NewString()
	if correlation == "" {
		correlation = uuid.NewString()
	}
	desc := fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
		aadsts, message, trace, correlation, now)
	writeJSON(w, status, entraError{
		Error:            oauthCode,
		ErrorDescription: desc,
		ErrorCodes:       []int{aadsts},
		Timestamp:        now,
		TraceID:          trace,
		CorrelationID:    correlation,
	})
}
