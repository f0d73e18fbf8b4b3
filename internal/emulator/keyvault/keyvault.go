// Package keyvault emulates the Azure Key Vault secrets data plane: versions,
// attributes, tags, soft delete with recover and purge, paged lists, and the
// service's error envelopes. It speaks the wire format of api-version
// 2026-04-01 (and the older versions that share it) so that the official
// azsecrets client works against it unchanged.
//
// The package owns no TLS, token or RBAC logic. The emulator core mounts a
// Service on host names NAME.vault.localhost:PORT and passes an Authorizer
// that checks the bearer token and the caller's data actions.
package keyvault

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Authorizer checks the bearer token and RBAC for one data action on one
// vault. It returns nil, or *AuthError: Status 401 carries the
// WWW-Authenticate challenge, 403 is ForbiddenByRbac.
type Authorizer func(r *http.Request, vault Vault, dataAction string) error

// AuthError is an authorization failure that the handler writes as Key
// Vault's error envelope. Challenge is the WWW-Authenticate header value,
// used with Status 401 only.
type AuthError struct {
	Status    int
	Code      string
	Message   string
	Challenge string
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("authorization failed with status %d: %s: %s", e.Status, e.Code, e.Message)
}

// Vault is one emulated key vault. Name is the first label of its host name.
type Vault struct {
	Name       string
	ResourceID string
	Location   string
}

// Options configures a Service. The zero value of each field has a default.
type Options struct {
	// Authorize is called before every operation. Nil allows everything,
	// which only tests of this package should rely on.
	Authorize Authorizer
	// Now is the clock for created, updated and deletion dates. Default
	// time.Now.
	Now func() time.Time
	// Logger receives request and error logs. Default slog.Default().
	Logger *slog.Logger
	// RetentionDays is the soft-delete retention in days. Default 90; values
	// outside 7-90, the range Key Vault allows, are clamped to it.
	RetentionDays int
}

// SecretVersion is one stored version of a secret.
type SecretVersion struct {
	Version     string
	Value       string
	Tags        map[string]string
	ContentType string
	Enabled     bool
	Created     time.Time
	Updated     time.Time
}

// Service serves the secrets data plane of every vault added to it. It is safe
// for concurrent use.
type Service struct {
	authorize     Authorizer
	now           func() time.Time
	logger        *slog.Logger
	retentionDays int

	mu     sync.Mutex
	vaults map[string]*vaultState // by lowercase vault name
}

// Limits of the service. Names are case-insensitive and 1-127 characters of
// letters, digits and dashes. Values are at most 25 KB (25,600 bytes), the
// size limit that the Key Vault documentation gives for secrets.
const (
	maxValueBytes      = 25 * 1024
	defaultRetention   = 90
	minRetention       = 7
	maxRetention       = 90
	defaultPageSize    = 25
	maxPageSize        = 25
	recoveryLevel      = "Recoverable+Purgeable"
	versionHexLength   = 32
	maxRequestBodySize = 256 * 1024
)

var (
	secretNamePattern = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)
	versionPattern    = regexp.MustCompile(`^[0-9a-f]{32}$`)
	// vaultNamePattern accepts Key Vault's 3-24 character names: a letter
	// first, then letters, digits and single dashes, not ending in a dash.
	vaultNamePattern = regexp.MustCompile(`^[A-Za-z](?:[A-Za-z0-9]|-[A-Za-z0-9]){2,23}$`)
)

// New returns a Service with no vaults.
func New(opts Options) *Service {
	s := &Service{
		authorize:     opts.Authorize,
		now:           opts.Now,
		logger:        opts.Logger,
		retentionDays: opts.RetentionDays,
		vaults:        map[string]*vaultState{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.retentionDays == 0 {
		s.retentionDays = defaultRetention
	}
	s.retentionDays = min(max(s.retentionDays, minRetention), maxRetention)
	return s
}

// AddVault registers a vault. Its name must be a valid Key Vault name and
// unique, ignoring case.
func (s *Service) AddVault(v Vault) error {
	if !vaultNamePattern.MatchString(v.Name) {
		return fmt.Errorf("add vault %q: invalid name: use 3-24 letters, digits and single dashes, starting with a letter", v.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(v.Name)
	if _, ok := s.vaults[key]; ok {
		return fmt.Errorf("add vault %q: a vault with this name already exists", v.Name)
	}
	s.vaults[key] = &vaultState{info: v, secrets: map[string]*secretEntry{}}
	return nil
}

// SetSecret stores a new version of a secret, as a test or demo seed does. It
// applies the same name, size and soft-delete rules as the REST API.
func (s *Service) SetSecret(vault, name, value string, tags map[string]string) (SecretVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, ok := s.vaultLocked(vault)
	if !ok {
		return SecretVersion{}, fmt.Errorf("set secret %q: vault %q not found: add it with AddVault first", name, vault)
	}
	if !secretNamePattern.MatchString(name) {
		return SecretVersion{}, fmt.Errorf("set secret %q: invalid name: use 1-127 letters, digits and dashes", name)
	}
	in := setInput{Value: value, Tags: copyTags(tags), Enabled: true}
	_, version, apiErr := state.set(name, in, s.now())
	if apiErr != nil {
		return SecretVersion{}, fmt.Errorf("set secret %q in vault %q: %w", name, vault, apiErr)
	}
	return version.public(), nil
}

// SecretVersions returns every version of a live secret, oldest first, or nil
// when the vault or secret does not exist or the secret is soft-deleted.
func (s *Service) SecretVersions(vault, name string) []SecretVersion {
	s.mu.Lock()
	defer s.mu.Unlock()
	entry, ok := s.liveSecretLocked(vault, name)
	if !ok {
		return nil
	}
	versions := make([]SecretVersion, 0, len(entry.versions))
	for _, v := range entry.versions {
		versions = append(versions, v.public())
	}
	return versions
}

// Secret returns the current (most recently set) version of a live secret.
// It reports false when the vault or secret does not exist or the secret is
// soft-deleted.
func (s *Service) Secret(vault, name string) (current SecretVersion, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entry, ok := s.liveSecretLocked(vault, name)
	if !ok {
		return SecretVersion{}, false
	}
	return entry.latest().public(), true
}

func (s *Service) vaultLocked(name string) (*vaultState, bool) {
	state, ok := s.vaults[strings.ToLower(name)]
	if ok {
		state.purgeExpired(s.now())
	}
	return state, ok
}

func (s *Service) liveSecretLocked(vault, name string) (*secretEntry, bool) {
	state, ok := s.vaultLocked(vault)
	if !ok {
		return nil, false
	}
	entry, ok := state.secrets[strings.ToLower(name)]
	if !ok || entry.deleted != nil {
		return nil, false
	}
	return entry, true
}

// newVersionID returns 32 lowercase hex digits, the form Key Vault uses.
func newVersionID() (string, error) {
	var b [versionHexLength / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate secret version id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func copyTags(tags map[string]string) map[string]string {
	if tags == nil {
		return nil
	}
	out := make(map[string]string, len(tags))
	for k, v := range tags {
		out[k] = v
	}
	return out
}

// apiError is a Key Vault error response: status, code, message and an
// optional inner code.
type apiError struct {
	Status  int
	Code    string
	Message string
	Inner   string
}

func (e *apiError) Error() string {
	if e.Inner != "" {
		return fmt.Sprintf("%s (%s): %s", e.Code, e.Inner, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// asAPIError returns err as an *apiError, or a 500 for anything else.
func asAPIError(err error) *apiError {
	var apiErr *apiError
	if errors.As(err, &apiErr) {
		return apiErr
	}
	return &apiError{Status: http.StatusInternalServerError, Code: "InternalError", Message: err.Error()}
}
