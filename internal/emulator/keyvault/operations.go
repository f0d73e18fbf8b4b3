package keyvault

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// Every handler reads and validates its body before it takes Service.mu, so
// a slow client never holds the lock.

func (s *Service) handleSet(req request) response {
	var body setRequest
	if apiErr := decodeBody(req.http, &body); apiErr != nil {
		return errorResponse(apiErr)
	}
	if body.Value == nil {
		return errorResponse(badParameter("The property \"value\" is required."))
	}
	in := setInput{Value: *body.Value, Tags: copyTags(body.Tags), Enabled: true}
	if body.ContentType != nil {
		in.ContentType = *body.ContentType
	}
	if a := body.Attributes; a != nil {
		if a.Enabled != nil {
			in.Enabled = *a.Enabled
		}
		in.NotBefore = timePtr(a.NotBefore)
		in.Expires = timePtr(a.Expires)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	state, apiErr := s.requestVaultLocked(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	entry, record, apiErr := state.set(req.route.Name, in, s.now())
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	return response{status: http.StatusOK, body: s.bundleFor(req.baseURL, entry, record, true)}
}

func (s *Service) handleGet(req request) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, apiErr := s.requestVaultLocked(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	entry, record, apiErr := state.get(req.route.Name, req.route.Version)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	if !record.enabled {
		return errorResponse(errSecretDisabled())
	}
	return response{status: http.StatusOK, body: s.bundleFor(req.baseURL, entry, record, true)}
}

func (s *Service) handleUpdate(req request) response {
	var body updateRequest
	if apiErr := decodeBody(req.http, &body); apiErr != nil {
		return errorResponse(apiErr)
	}
	in := updateInput{ContentType: body.ContentType}
	if body.Tags != nil {
		in.TagsSet = true
		in.Tags = copyTags(*body.Tags)
	}
	if a := body.Attributes; a != nil {
		in.Enabled = a.Enabled
		in.NotBefore = timePtr(a.NotBefore)
		in.Expires = timePtr(a.Expires)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	state, apiErr := s.requestVaultLocked(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	entry, record, apiErr := state.update(req.route.Name, req.route.Version, in, s.now())
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	return response{status: http.StatusOK, body: s.bundleFor(req.baseURL, entry, record, false)}
}

func (s *Service) handleDelete(req request) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, apiErr := s.requestVaultLocked(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	entry, apiErr := state.softDelete(req.route.Name, s.now(), s.retentionDays)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	return response{status: http.StatusOK, body: s.deletedFor(req.baseURL, entry)}
}

func (s *Service) handleGetDeleted(req request) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, apiErr := s.requestVaultLocked(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	entry, apiErr := state.deletedEntry(req.route.Name)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	return response{status: http.StatusOK, body: s.deletedFor(req.baseURL, entry)}
}

func (s *Service) handleRecover(req request) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, apiErr := s.requestVaultLocked(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	entry, apiErr := state.recover(req.route.Name)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	return response{status: http.StatusOK, body: s.bundleFor(req.baseURL, entry, entry.latest(), false)}
}

func (s *Service) handlePurge(req request) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, apiErr := s.requestVaultLocked(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	if apiErr := state.purge(req.route.Name); apiErr != nil {
		return errorResponse(apiErr)
	}
	return response{status: http.StatusNoContent}
}

func (s *Service) handleListSecrets(req request) response {
	page, apiErr := parsePageQuery(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	state, apiErr := s.requestVaultLocked(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	entries := entriesAfter(state.sortedEntries(false), page.after)
	items := make([]secretBundle, 0, min(len(entries), page.size))
	for _, entry := range entries[:min(len(entries), page.size)] {
		items = append(items, s.itemFor(req.baseURL, entry))
	}
	result := listResult[secretBundle]{Value: items}
	if len(entries) > page.size {
		result.NextLink = nextLink(req, "/secrets", strings.ToLower(entries[page.size-1].name), page)
	}
	return response{status: http.StatusOK, body: result}
}

func (s *Service) handleListDeleted(req request) response {
	page, apiErr := parsePageQuery(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	state, apiErr := s.requestVaultLocked(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	entries := entriesAfter(state.sortedEntries(true), page.after)
	items := make([]deletedBundle, 0, min(len(entries), page.size))
	for _, entry := range entries[:min(len(entries), page.size)] {
		item := s.deletedFor(req.baseURL, entry)
		item.ID = req.baseURL + "/secrets/" + entry.name
		items = append(items, item)
	}
	result := listResult[deletedBundle]{Value: items}
	if len(entries) > page.size {
		result.NextLink = nextLink(req, "/deletedsecrets", strings.ToLower(entries[page.size-1].name), page)
	}
	return response{status: http.StatusOK, body: result}
}

// handleListVersions lists versions oldest first. The service documents no
// order; creation order keeps pages stable while new versions are added.
func (s *Service) handleListVersions(req request) response {
	page, apiErr := parsePageQuery(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	state, apiErr := s.requestVaultLocked(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	entry, apiErr := state.live(req.route.Name)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	start, ok := versionsStart(entry, page.after)
	if !ok {
		return errorResponse(errInvalidSkipToken())
	}

	remaining := entry.versions[start:]
	items := make([]secretBundle, 0, min(len(remaining), page.size))
	for _, v := range remaining[:min(len(remaining), page.size)] {
		items = append(items, s.bundleFor(req.baseURL, entry, v, false))
	}
	result := listResult[secretBundle]{Value: items}
	if len(remaining) > page.size {
		path := "/secrets/" + entry.name + "/versions"
		result.NextLink = nextLink(req, path, remaining[page.size-1].id, page)
	}
	return response{status: http.StatusOK, body: result}
}

// versionsStart returns the index of the first version after the version id
// afterID, or 0 when afterID is empty. It reports false for an unknown id.
func versionsStart(entry *secretEntry, afterID string) (int, bool) {
	if afterID == "" {
		return 0, true
	}
	for i, v := range entry.versions {
		if v.id == afterID {
			return i + 1, true
		}
	}
	return 0, false
}

// requestVaultLocked returns the request's vault, which AddVault never
// removes, after dropping secrets whose retention has ended.
func (s *Service) requestVaultLocked(req request) (*vaultState, *apiError) {
	state, ok := s.vaultLocked(req.vaultKey)
	if !ok {
		return nil, &apiError{Status: http.StatusNotFound, Code: "VaultNotFound",
			Message: "No vault named " + strconv.Quote(req.vaultKey) + " exists in this emulator."}
	}
	return state, nil
}

// pageQuery is the maxresults and $skiptoken of a list request.
type pageQuery struct {
	size    int
	sizeSet bool
	after   string // the sort key of the last item of the previous page
}

func parsePageQuery(req request) (pageQuery, *apiError) {
	query := req.http.URL.Query()
	page := pageQuery{size: defaultPageSize}
	if raw := query.Get("maxresults"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxPageSize {
			// NOTE: the range 1-25 is documented; the message is the
			// emulator's own.
			return pageQuery{}, badParameter("The value of maxresults must be an integer from 1 to 25.")
		}
		page.size = n
		page.sizeSet = true
	}
	if raw := query.Get("$skiptoken"); raw != "" {
		decoded, err := base64.RawURLEncoding.DecodeString(raw)
		if err != nil || len(decoded) == 0 {
			return pageQuery{}, errInvalidSkipToken()
		}
		page.after = string(decoded)
	}
	return page, nil
}

func errInvalidSkipToken() *apiError {
	return badParameter("The $skiptoken is not valid.")
}

// entriesAfter returns the entries whose lowercase name sorts after key.
func entriesAfter(entries []*secretEntry, key string) []*secretEntry {
	if key == "" {
		return entries
	}
	for i, entry := range entries {
		if strings.ToLower(entry.name) > key {
			return entries[i:]
		}
	}
	return nil
}

// nextLink builds an absolute link to the next page on the request's own
// host, in the form the service uses: api-version, $skiptoken, maxresults.
// The skip token is the base64url sort key of the last item returned.
func nextLink(req request, path, lastKey string, page pageQuery) *string {
	link := req.baseURL + path +
		"?api-version=" + req.apiVersion +
		"&$skiptoken=" + base64.RawURLEncoding.EncodeToString([]byte(lastKey))
	if page.sizeSet {
		link += "&maxresults=" + strconv.Itoa(page.size)
	}
	return &link
}

// backupBlob is the emulator's backup format. Unlike the service's, it is
// neither encrypted nor bound to a geography: it carries the values in clear
// text, inside the base64url value of the backup response.
type backupBlob struct {
	Format   string          `json:"format"`
	Name     string          `json:"name"`
	Versions []backupVersion `json:"versions"`
}

type backupVersion struct {
	ID          string            `json:"id"`
	Value       string            `json:"value"`
	ContentType string            `json:"contentType,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Enabled     bool              `json:"enabled"`
	NotBefore   *int64            `json:"nbf,omitempty"`
	Expires     *int64            `json:"exp,omitempty"`
	Created     int64             `json:"created"`
	Updated     int64             `json:"updated"`
}

const backupFormat = "elevate-emulator-keyvault-secret-backup-v1"

func (s *Service) handleBackup(req request) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, apiErr := s.requestVaultLocked(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	entry, apiErr := state.live(req.route.Name)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	blob := backupBlob{Format: backupFormat, Name: entry.name}
	for _, v := range entry.versions {
		blob.Versions = append(blob.Versions, backupVersion{
			ID: v.id, Value: v.value, ContentType: v.contentType, Tags: copyTags(v.tags),
			Enabled: v.enabled, NotBefore: unixPtr(v.notBefore), Expires: unixPtr(v.expires),
			Created: v.created.Unix(), Updated: v.updated.Unix(),
		})
	}
	raw, err := json.Marshal(blob)
	if err != nil {
		return errorResponse(asAPIError(err))
	}
	return response{status: http.StatusOK, body: backupResult{Value: base64.RawURLEncoding.EncodeToString(raw)}}
}

// handleRestore restores every version of a backed-up secret. The name must
// be free: neither live nor soft-deleted.
//
// NOTE: the service's error for a restore onto an existing name was not
// confirmed; this returns 409 Conflict with the emulator's own message.
func (s *Service) handleRestore(req request) response {
	var body restoreRequest
	if apiErr := decodeBody(req.http, &body); apiErr != nil {
		return errorResponse(apiErr)
	}
	blob, apiErr := decodeBackup(body.Value)
	if apiErr != nil {
		return errorResponse(apiErr)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	state, apiErr := s.requestVaultLocked(req)
	if apiErr != nil {
		return errorResponse(apiErr)
	}
	key := strings.ToLower(blob.Name)
	if _, exists := state.secrets[key]; exists {
		return errorResponse(&apiError{Status: http.StatusConflict, Code: "Conflict",
			Message: "Secret " + blob.Name + " already exists in this vault, live or deleted, so it cannot be restored."})
	}
	entry := &secretEntry{name: blob.Name}
	for _, v := range blob.Versions {
		entry.versions = append(entry.versions, &versionRecord{
			id: v.ID, value: v.Value, contentType: v.ContentType, tags: copyTags(v.Tags),
			enabled: v.Enabled, notBefore: timePtr(v.NotBefore), expires: timePtr(v.Expires),
			created: *timePtr(&v.Created), updated: *timePtr(&v.Updated),
		})
	}
	state.secrets[key] = entry
	return response{status: http.StatusOK, body: s.bundleFor(req.baseURL, entry, entry.latest(), false)}
}

// decodeBackup parses and checks a backup value made by handleBackup.
func decodeBackup(value *string) (backupBlob, *apiError) {
	invalid := badParameter("The backup blob is not valid.")
	if value == nil {
		return backupBlob{}, badParameter("The property \"value\" is required.")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(*value, "="))
	if err != nil {
		return backupBlob{}, invalid
	}
	var blob backupBlob
	if err := json.Unmarshal(raw, &blob); err != nil || blob.Format != backupFormat {
		return backupBlob{}, invalid
	}
	if !secretNamePattern.MatchString(blob.Name) || len(blob.Versions) == 0 {
		return backupBlob{}, invalid
	}
	for _, v := range blob.Versions {
		if !versionPattern.MatchString(v.ID) || len(v.Value) > maxValueBytes {
			return backupBlob{}, invalid
		}
	}
	return blob, nil
}
