package keyvault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// attributesOut is SecretAttributes as the service returns it: dates are
// unix seconds, and kid and managed never appear because the emulator has no
// certificate-backed secrets.
type attributesOut struct {
	Enabled         bool   `json:"enabled"`
	NotBefore       *int64 `json:"nbf,omitempty"`
	Expires         *int64 `json:"exp,omitempty"`
	Created         int64  `json:"created"`
	Updated         int64  `json:"updated"`
	RecoveryLevel   string `json:"recoveryLevel,omitempty"`
	RecoverableDays int    `json:"recoverableDays,omitempty"`
}

// secretBundle is SecretBundle, and with Value nil also SecretItem.
type secretBundle struct {
	Value       *string           `json:"value,omitempty"`
	ID          string            `json:"id"`
	ContentType string            `json:"contentType,omitempty"`
	Attributes  attributesOut     `json:"attributes"`
	Tags        map[string]string `json:"tags,omitempty"`
}

// deletedBundle is DeletedSecretBundle and DeletedSecretItem.
type deletedBundle struct {
	RecoveryID         string `json:"recoveryId"`
	DeletedDate        int64  `json:"deletedDate"`
	ScheduledPurgeDate int64  `json:"scheduledPurgeDate"`
	secretBundle
}

// listResult is a page of a list operation. NextLink is null on the last page.
type listResult[T any] struct {
	Value    []T     `json:"value"`
	NextLink *string `json:"nextLink"`
}

// attributesIn is SecretAttributes as a request carries it. Read-only fields
// that a client echoes back (created, updated, recoveryLevel) are ignored.
type attributesIn struct {
	Enabled   *bool  `json:"enabled"`
	NotBefore *int64 `json:"nbf"`
	Expires   *int64 `json:"exp"`
}

type setRequest struct {
	Value       *string           `json:"value"`
	ContentType *string           `json:"contentType"`
	Attributes  *attributesIn     `json:"attributes"`
	Tags        map[string]string `json:"tags"`
}

type updateRequest struct {
	ContentType *string            `json:"contentType"`
	Attributes  *attributesIn      `json:"attributes"`
	Tags        *map[string]string `json:"tags"`
}

type backupResult struct {
	Value string `json:"value"`
}

type restoreRequest struct {
	Value *string `json:"value"`
}

type errorEnvelope struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code       string      `json:"code"`
	Message    string      `json:"message"`
	InnerError *innerError `json:"innererror,omitempty"`
}

type innerError struct {
	Code string `json:"code"`
}

// decodeBody reads a JSON request body of at most maxRequestBodySize bytes
// into dst. An empty body decodes as {}.
func decodeBody(r *http.Request, dst any) *apiError {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBodySize+1))
	if err != nil {
		return badParameter("The request body could not be read.")
	}
	if len(body) > maxRequestBodySize {
		// NOTE: the service's status for an oversized body was not
		// confirmed; 413 is the HTTP status for it.
		return &apiError{
			Status:  http.StatusRequestEntityTooLarge,
			Code:    "BadParameter",
			Message: fmt.Sprintf("The request body is over the maximum of %d bytes.", maxRequestBodySize),
		}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, dst); err != nil {
		// NOTE: the service's message for malformed JSON was not confirmed.
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return badParameter(fmt.Sprintf("The property %q has an invalid value.", typeErr.Field))
		}
		return badParameter("The request body is not valid JSON.")
	}
	return nil
}

func unixPtr(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	seconds := t.Unix()
	return &seconds
}

func timePtr(seconds *int64) *time.Time {
	if seconds == nil {
		return nil
	}
	t := time.Unix(*seconds, 0).UTC()
	return &t
}

// bundleFor renders a version as a SecretBundle under baseURL
// ("https://host:port"). withValue is false for update, recover and list
// responses, which carry no value.
func (s *Service) bundleFor(baseURL string, entry *secretEntry, v *versionRecord, withValue bool) secretBundle {
	bundle := secretBundle{
		ID:          baseURL + "/secrets/" + entry.name + "/" + v.id,
		ContentType: v.contentType,
		Attributes:  s.attributesFor(v),
		Tags:        copyTags(v.tags),
	}
	if withValue {
		value := v.value
		bundle.Value = &value
	}
	return bundle
}

func (s *Service) attributesFor(v *versionRecord) attributesOut {
	return attributesOut{
		Enabled:         v.enabled,
		NotBefore:       unixPtr(v.notBefore),
		Expires:         unixPtr(v.expires),
		Created:         v.created.Unix(),
		Updated:         v.updated.Unix(),
		RecoveryLevel:   recoveryLevel,
		RecoverableDays: s.retentionDays,
	}
}

// itemFor renders a secret as a SecretItem: its id has no version and its
// attributes, tags and content type are those of the current version.
func (s *Service) itemFor(baseURL string, entry *secretEntry) secretBundle {
	bundle := s.bundleFor(baseURL, entry, entry.latest(), false)
	bundle.ID = baseURL + "/secrets/" + entry.name
	return bundle
}

func (s *Service) deletedFor(baseURL string, entry *secretEntry) deletedBundle {
	return deletedBundle{
		RecoveryID:         baseURL + "/deletedsecrets/" + entry.name,
		DeletedDate:        entry.deleted.deletedAt.Unix(),
		ScheduledPurgeDate: entry.deleted.purgeAt.Unix(),
		secretBundle:       s.bundleFor(baseURL, entry, entry.latest(), false),
	}
}
