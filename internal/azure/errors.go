package azure

import (
	"errors"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
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

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

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
	kind := kindOf(re.StatusCode, re.ErrorCode)
	if kind == nil {
		return err
	}
	return &kindError{kind: kind, err: err}
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
