package keyvault

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// vaultState is the stored content of one vault. Service.mu guards it.
type vaultState struct {
	info    Vault
	secrets map[string]*secretEntry // by lowercase secret name
}

// secretEntry is one secret name with all its versions, live or soft-deleted.
type secretEntry struct {
	name     string           // the spelling used when it was first created
	versions []*versionRecord // in creation order; the last is the current one
	deleted  *deletion
}

type versionRecord struct {
	id          string
	value       string
	contentType string
	tags        map[string]string
	enabled     bool
	notBefore   *time.Time
	expires     *time.Time
	created     time.Time
	updated     time.Time
}

type deletion struct {
	deletedAt time.Time
	purgeAt   time.Time
}

// setInput is a validated SetSecret request.
type setInput struct {
	Value       string
	ContentType string
	Tags        map[string]string
	Enabled     bool
	NotBefore   *time.Time
	Expires     *time.Time
}

// updateInput is a validated UpdateSecret request. Nil fields stay unchanged;
// Tags replaces the whole tag set when TagsSet is true.
type updateInput struct {
	ContentType *string
	Tags        map[string]string
	TagsSet     bool
	Enabled     *bool
	NotBefore   *time.Time
	Expires     *time.Time
}

func (e *secretEntry) latest() *versionRecord {
	return e.versions[len(e.versions)-1]
}

func (e *secretEntry) version(id string) (*versionRecord, bool) {
	if id == "" {
		return e.latest(), true
	}
	for _, v := range e.versions {
		if strings.EqualFold(v.id, id) {
			return v, true
		}
	}
	return nil, false
}

func (v *versionRecord) public() SecretVersion {
	return SecretVersion{
		Version:     v.id,
		Value:       v.value,
		Tags:        copyTags(v.tags),
		ContentType: v.contentType,
		Enabled:     v.enabled,
		Created:     v.created,
		Updated:     v.updated,
	}
}

// purgeExpired removes soft-deleted secrets whose scheduled purge date has
// passed, as the service does at the end of the retention period.
func (vs *vaultState) purgeExpired(now time.Time) {
	for key, entry := range vs.secrets {
		if entry.deleted != nil && !now.Before(entry.deleted.purgeAt) {
			delete(vs.secrets, key)
		}
	}
}

// set adds a version, creating the secret if needed. A soft-deleted name is
// a conflict until it is recovered or purged.
func (vs *vaultState) set(name string, in setInput, now time.Time) (*secretEntry, *versionRecord, *apiError) {
	if len(in.Value) > maxValueBytes {
		return nil, nil, errValueTooLarge(len(in.Value))
	}
	key := strings.ToLower(name)
	entry, exists := vs.secrets[key]
	if exists && entry.deleted != nil {
		return nil, nil, errDeletedButRecoverable(entry.name)
	}
	id, err := newVersionID()
	if err != nil {
		return nil, nil, asAPIError(err)
	}
	now = now.UTC().Truncate(time.Second)
	record := &versionRecord{
		id:          id,
		value:       in.Value,
		contentType: in.ContentType,
		tags:        in.Tags,
		enabled:     in.Enabled,
		notBefore:   in.NotBefore,
		expires:     in.Expires,
		created:     now,
		updated:     now,
	}
	if !exists {
		entry = &secretEntry{name: name}
		vs.secrets[key] = entry
	}
	entry.versions = append(entry.versions, record)
	return entry, record, nil
}

// live returns a secret that exists and is not soft-deleted.
func (vs *vaultState) live(name string) (*secretEntry, *apiError) {
	entry, ok := vs.secrets[strings.ToLower(name)]
	if !ok || entry.deleted != nil {
		return nil, errSecretNotFound(name)
	}
	return entry, nil
}

// get returns one version of a live secret; an empty version means the
// current one.
func (vs *vaultState) get(name, version string) (*secretEntry, *versionRecord, *apiError) {
	entry, apiErr := vs.live(name)
	if apiErr != nil {
		return nil, nil, apiErr
	}
	record, ok := entry.version(version)
	if !ok {
		return nil, nil, errSecretNotFound(name + "/" + version)
	}
	return entry, record, nil
}

func (vs *vaultState) update(name, version string, in updateInput, now time.Time) (*secretEntry, *versionRecord, *apiError) {
	entry, record, apiErr := vs.get(name, version)
	if apiErr != nil {
		return nil, nil, apiErr
	}
	if in.ContentType != nil {
		record.contentType = *in.ContentType
	}
	if in.TagsSet {
		record.tags = in.Tags
	}
	if in.Enabled != nil {
		record.enabled = *in.Enabled
	}
	if in.NotBefore != nil {
		record.notBefore = in.NotBefore
	}
	if in.Expires != nil {
		record.expires = in.Expires
	}
	record.updated = now.UTC().Truncate(time.Second)
	return entry, record, nil
}

func (vs *vaultState) softDelete(name string, now time.Time, retentionDays int) (*secretEntry, *apiError) {
	entry, apiErr := vs.live(name)
	if apiErr != nil {
		return nil, apiErr
	}
	now = now.UTC().Truncate(time.Second)
	entry.deleted = &deletion{
		deletedAt: now,
		purgeAt:   now.AddDate(0, 0, retentionDays),
	}
	return entry, nil
}

// deletedEntry returns a soft-deleted secret.
func (vs *vaultState) deletedEntry(name string) (*secretEntry, *apiError) {
	entry, ok := vs.secrets[strings.ToLower(name)]
	if !ok || entry.deleted == nil {
		return nil, errDeletedNotFound(name)
	}
	return entry, nil
}

func (vs *vaultState) recover(name string) (*secretEntry, *apiError) {
	entry, apiErr := vs.deletedEntry(name)
	if apiErr != nil {
		return nil, apiErr
	}
	entry.deleted = nil
	return entry, nil
}

func (vs *vaultState) purge(name string) *apiError {
	entry, apiErr := vs.deletedEntry(name)
	if apiErr != nil {
		return apiErr
	}
	delete(vs.secrets, strings.ToLower(entry.name))
	return nil
}

// sortedEntries returns the secrets whose deleted state matches, ordered by
// lowercase name, the key that list paging continues from.
func (vs *vaultState) sortedEntries(deleted bool) []*secretEntry {
	entries := make([]*secretEntry, 0, len(vs.secrets))
	for _, entry := range vs.secrets {
		if (entry.deleted != nil) == deleted {
			entries = append(entries, entry)
		}
	}
	sort.Slice(entries, func(i, j int) bool {
		return strings.ToLower(entries[i].name) < strings.ToLower(entries[j].name)
	})
	return entries
}

// Error constructors. Codes and messages follow responses captured from the
// service. The ones marked NOTE could not be confirmed, so they use the
// emulator's own wording under the service's code.

func errSecretNotFound(nameOrID string) *apiError {
	return &apiError{
		Status: http.StatusNotFound,
		Code:   "SecretNotFound",
		Message: fmt.Sprintf("A secret with (name/id) %s was not found in this key vault. "+
			"If you recently deleted this secret you may be able to recover it using the correct recovery command. "+
			"For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182", nameOrID),
	}
}

func errDeletedNotFound(name string) *apiError {
	return &apiError{
		Status:  http.StatusNotFound,
		Code:    "SecretNotFound",
		Message: "Deleted Secret not found: " + name,
	}
}

func errDeletedButRecoverable(name string) *apiError {
	return &apiError{
		Status: http.StatusConflict,
		Code:   "Conflict",
		Message: fmt.Sprintf("Secret %s is currently in a deleted but recoverable state, "+
			"and its name cannot be reused; in this state, the secret can only be recovered or purged.", name),
		Inner: "ObjectIsDeletedButRecoverable",
	}
}

func errSecretDisabled() *apiError {
	return &apiError{
		Status:  http.StatusForbidden,
		Code:    "Forbidden",
		Message: "Operation get is not allowed on a disabled secret.",
		Inner:   "SecretDisabled",
	}
}

func errInvalidName(name string) *apiError {
	return badParameter("The request URI contains an invalid name: " + name)
}

// NOTE: the service's response to an oversized value was not confirmed; this
// uses 400 BadParameter with the emulator's own message.
func errValueTooLarge(size int) *apiError {
	return badParameter(fmt.Sprintf(
		"The secret value is %d bytes, over the maximum of %d bytes.", size, maxValueBytes))
}

func badParameter(message string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "BadParameter", Message: message}
}
