package keyvault

import (
	"net/http"
	"net/url"
	"strings"
)

// operation is one Key Vault secrets REST operation.
type operation int

const (
	opNone operation = iota
	opSetSecret
	opGetSecret
	opListSecrets
	opListVersions
	opUpdateSecret
	opDeleteSecret
	opBackupSecret
	opRestoreSecret
	opListDeleted
	opGetDeleted
	opPurgeDeleted
	opRecoverDeleted
)

// Data actions that Azure RBAC checks for the secrets data plane.
const (
	actionGetSecret    = "Microsoft.KeyVault/vaults/secrets/getSecret/action"
	actionSetSecret    = "Microsoft.KeyVault/vaults/secrets/setSecret/action"
	actionReadMetadata = "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
	actionDelete       = "Microsoft.KeyVault/vaults/secrets/delete"
	actionUpdate       = "Microsoft.KeyVault/vaults/secrets/update/action"
	actionRecover      = "Microsoft.KeyVault/vaults/secrets/recover/action"
	actionPurge        = "Microsoft.KeyVault/vaults/secrets/purge/action"
	actionBackup       = "Microsoft.KeyVault/vaults/secrets/backup/action"
	actionRestore      = "Microsoft.KeyVault/vaults/secrets/restore/action"
)

// dataAction returns the RBAC data action that guards op.
//
// NOTE: reading deleted secrets is mapped to readMetadata/action, the data
// action for reading secret metadata. The service's exact check for the
// deletedsecrets paths is not confirmed.
func (op operation) dataAction() string {
	switch op {
	case opSetSecret:
		return actionSetSecret
	case opGetSecret:
		return actionGetSecret
	case opListSecrets, opListVersions, opListDeleted, opGetDeleted:
		return actionReadMetadata
	case opUpdateSecret:
		return actionUpdate
	case opDeleteSecret:
		return actionDelete
	case opBackupSecret:
		return actionBackup
	case opRestoreSecret:
		return actionRestore
	case opPurgeDeleted:
		return actionPurge
	case opRecoverDeleted:
		return actionRecover
	}
	return ""
}

// route is a parsed request path. Name and Version are raw path segments and
// are validated by the handlers after authorization, as the service does.
type route struct {
	Op      operation
	Name    string
	Version string
}

// routeStatus is the outcome of parseRoute: a match, or why there is none.
type routeStatus int

const (
	routeOK routeStatus = iota
	routeNotFound
	routeMethodNotAllowed
)

// parseRoute maps a method and an escaped URL path to an operation. A single
// trailing slash is ignored except on /secrets/{name}/, which the SDKs send
// for "latest version" and which therefore means GET or PATCH of the latest.
func parseRoute(method, escapedPath string) (route, routeStatus) {
	segments, ok := splitPath(escapedPath)
	if !ok || len(segments) == 0 {
		return route{}, routeNotFound
	}
	switch strings.ToLower(segments[0]) {
	case "secrets":
		return parseSecretsRoute(method, segments[1:])
	case "deletedsecrets":
		return parseDeletedRoute(method, segments[1:])
	}
	return route{}, routeNotFound
}

// splitPath drops the leading slash and unescapes each segment. A trailing
// slash stays as an empty last segment, so "/secrets/n/" keeps its empty
// version segment.
func splitPath(escapedPath string) ([]string, bool) {
	trimmed, found := strings.CutPrefix(escapedPath, "/")
	if !found {
		return nil, false
	}
	raw := strings.Split(trimmed, "/")
	segments := make([]string, 0, len(raw))
	for _, part := range raw {
		segment, err := url.PathUnescape(part)
		if err != nil {
			return nil, false
		}
		segments = append(segments, segment)
	}
	return segments, true
}

func parseSecretsRoute(method string, rest []string) (route, routeStatus) {
	// Collection: /secrets and /secrets/.
	if len(rest) == 0 || (len(rest) == 1 && rest[0] == "") {
		return matchMethod(method, map[string]operation{http.MethodGet: opListSecrets}, route{})
	}
	name := rest[0]
	if name == "" {
		return route{}, routeNotFound
	}
	switch len(rest) {
	case 1:
		if method == http.MethodPost && strings.EqualFold(name, "restore") {
			return route{Op: opRestoreSecret}, routeOK
		}
		return matchMethod(method, map[string]operation{
			http.MethodPut:    opSetSecret,
			http.MethodGet:    opGetSecret,
			http.MethodDelete: opDeleteSecret,
		}, route{Name: name})
	case 2:
		second := rest[1]
		switch {
		case strings.EqualFold(second, "versions"):
			return matchMethod(method, map[string]operation{http.MethodGet: opListVersions}, route{Name: name})
		case strings.EqualFold(second, "backup"):
			return matchMethod(method, map[string]operation{http.MethodPost: opBackupSecret}, route{Name: name})
		}
		return matchMethod(method, map[string]operation{
			http.MethodGet:   opGetSecret,
			http.MethodPatch: opUpdateSecret,
		}, route{Name: name, Version: second})
	case 3:
		// /secrets/{name}/versions/ is the collection with a trailing slash.
		if strings.EqualFold(rest[1], "versions") && rest[2] == "" {
			return matchMethod(method, map[string]operation{http.MethodGet: opListVersions}, route{Name: name})
		}
		// /secrets/{name}/{version}/ likewise names one version.
		if rest[2] == "" && rest[1] != "" {
			return matchMethod(method, map[string]operation{
				http.MethodGet:   opGetSecret,
				http.MethodPatch: opUpdateSecret,
			}, route{Name: name, Version: rest[1]})
		}
	}
	return route{}, routeNotFound
}

func parseDeletedRoute(method string, rest []string) (route, routeStatus) {
	if len(rest) > 0 && rest[len(rest)-1] == "" {
		rest = rest[:len(rest)-1]
	}
	switch len(rest) {
	case 0:
		return matchMethod(method, map[string]operation{http.MethodGet: opListDeleted}, route{})
	case 1:
		if rest[0] == "" {
			return route{}, routeNotFound
		}
		return matchMethod(method, map[string]operation{
			http.MethodGet:    opGetDeleted,
			http.MethodDelete: opPurgeDeleted,
		}, route{Name: rest[0]})
	case 2:
		if rest[0] == "" || !strings.EqualFold(rest[1], "recover") {
			return route{}, routeNotFound
		}
		return matchMethod(method, map[string]operation{http.MethodPost: opRecoverDeleted}, route{Name: rest[0]})
	}
	return route{}, routeNotFound
}

// matchMethod picks the operation for method from the operations a path
// supports, or reports that the path exists under other methods.
func matchMethod(method string, byMethod map[string]operation, base route) (route, routeStatus) {
	op, ok := byMethod[method]
	if !ok {
		return route{}, routeMethodNotAllowed
	}
	base.Op = op
	return base, routeOK
}
