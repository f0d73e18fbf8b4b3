package azure

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// Error kinds that callers branch on with errors.Is. Azure's own error code and
// message stay in the wrapped *azcore.ResponseError.
var (
	ErrNotFound          = errors.New("not found")
	ErrPrincipalNotFound = errors.New("principal not found")
	ErrAssignmentExists  = errors.New("role assignment exists")
	ErrForbidden         = errors.New("forbidden")
	ErrLocked            = errors.New("scope locked")
	ErrThrottled         = errors.New("throttled")
	ErrTransient         = errors.New("transient service error")
	ErrInvalid           = errors.New("rejected as invalid")
	ErrLimitExceeded     = errors.New("role assignment limit exceeded")
)

// kindError ties a sentinel kind to the SDK error it was derived from.
type kindError struct {
	kind error
	err  error
}

// Error is one line: the call, the status, Azure's code and message. The
// SDK's own text spans many lines with the whole response body.
func (e *kindError) Error() string {
	// Only a bare SDK error is shortened; a wrapped one carries its own text.
	re, ok := e.err.(*azcore.ResponseError)
	if !ok || re.RawResponse == nil || re.RawResponse.Request == nil {
		return e.err.Error()
	}
	req := re.RawResponse.Request
	msg := fmt.Sprintf("%s %s: %d %s", req.Method, req.URL.Path, re.StatusCode, re.ErrorCode)
	if detail := errorMessage(re.RawResponse); detail != "" {
		msg += ": " + detail
	}
	return msg
}

// errorMessage reads error.message from an ARM, Key Vault or Graph error body.
func errorMessage(resp *http.Response) string {
	body, err := runtime.Payload(resp)
	if err != nil {
		return ""
	}
	var doc struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return ""
	}
	m := doc.Error.Message
	if m == "" {
		m = doc.Description
	}
	return strings.Join(strings.Fields(m), " ")
}
func (e *kindError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}

// Classify wraps an SDK error with the kind that fits its status and code.
// Errors without an HTTP response (transport failures) count as transient.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return err
	}
	return &kindError{kind: kindOf(re.StatusCode, re.ErrorCode), err: err}
}

func kindOf(status int, code string) error {
	switch code {
	case "PrincipalNotFound":
		return ErrPrincipalNotFound
	case "RoleAssignmentExists":
		return ErrAssignmentExists
	case "ScopeLocked":
		return ErrLocked
	case "RoleAssignmentLimitExceeded":
		return ErrLimitExceeded
	case "AuthorizationFailed", "LinkedAuthorizationFailed", "Forbidden", "ForbiddenByRbac":
		return ErrForbidden
	case "RoleAssignmentNotFound", "RoleDefinitionDoesNotExist", "ResourceNotFound",
		"ResourceGroupNotFound", "SubscriptionNotFound", "SecretNotFound", "NotFound":
		return ErrNotFound
	}
	switch {
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusForbidden:
		return ErrForbidden
	case status == http.StatusTooManyRequests:
		return ErrThrottled
	case status >= 500:
		return ErrTransient
	case status == http.StatusBadRequest:
		return ErrInvalid
	}
	return nil
}

// ErrorCode returns Azure's error code carried by err, or "".
func ErrorCode(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}
