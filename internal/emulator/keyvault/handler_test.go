package keyvault

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

const api = "?api-version=2026-04-01"

var versionedIDPattern = regexp.MustCompile(`^https://kv1\.vault\.localhost:\d+/secrets/([0-9A-Za-z-]+)/([0-9a-f]{32})$`)

func TestAuthorization(t *testing.T) {
	env := newTestEnv(t)
	if _, err := env.svc.SetSecret(testVault, "db-password", "hunter2", nil); err != nil {
		t.Fatalf("seed: %v", err)
	}

	tests := []struct {
		name       string
		method     string
		path       string
		token      string
		wantStatus int
		wantCode   string
		wantInner  string
		wantAction string
	}{
		{"missing token challenged", "GET", "/secrets/db-password" + api, "", 401, "Unauthorized", "", actionGetSecret},
		{"unknown token challenged", "GET", "/secrets/db-password" + api, "stolen", 401, "Unauthorized", "", actionGetSecret},
		{"reader cannot get value", "GET", "/secrets/db-password" + api, "reader", 403, "Forbidden", "ForbiddenByRbac", actionGetSecret},
		{"user cannot set", "PUT", "/secrets/db-password" + api, "user", 403, "Forbidden", "ForbiddenByRbac", actionSetSecret},
		{"user cannot delete", "DELETE", "/secrets/db-password" + api, "user", 403, "Forbidden", "ForbiddenByRbac", actionDelete},
		{"user cannot update", "PATCH", "/secrets/db-password/" + api, "user", 403, "Forbidden", "ForbiddenByRbac", actionUpdate},
		{"user cannot purge", "DELETE", "/deletedsecrets/db-password" + api, "user", 403, "Forbidden", "ForbiddenByRbac", actionPurge},
		{"user cannot recover", "POST", "/deletedsecrets/db-password/recover" + api, "user", 403, "Forbidden", "ForbiddenByRbac", actionRecover},
		{"user cannot back up", "POST", "/secrets/db-password/backup" + api, "user", 403, "Forbidden", "ForbiddenByRbac", actionBackup},
		{"user cannot restore", "POST", "/secrets/restore" + api, "user", 403, "Forbidden", "ForbiddenByRbac", actionRestore},
		{"reader lists secrets", "GET", "/secrets" + api, "reader", 200, "", "", actionReadMetadata},
		{"reader lists versions", "GET", "/secrets/db-password/versions" + api, "reader", 200, "", "", actionReadMetadata},
		{"reader lists deleted", "GET", "/deletedsecrets" + api, "reader", 200, "", "", actionReadMetadata},
		{"user gets value", "GET", "/secrets/db-password" + api, "user", 200, "", "", actionGetSecret},
		// Authorization comes before validation, so a bad name is not
		// revealed to a caller without a token.
		{"invalid name needs token", "GET", "/secrets/bad_name" + api, "", 401, "Unauthorized", "", actionGetSecret},
		{"unknown version needs token", "GET", "/secrets/db-password" + "?api-version=1.0", "", 401, "Unauthorized", "", actionGetSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(env.auth.checked)
			resp := env.do(t, tt.method, testVault, tt.path, tt.token, nil)
			if resp.Status != tt.wantStatus {
				t.Fatalf("status: got %d; want %d (body %s)", resp.Status, tt.wantStatus, resp.Raw)
			}
			env.auth.mu.Lock()
			gotAction := env.auth.checked[before]
			env.auth.mu.Unlock()
			if gotAction != tt.wantAction {
				t.Errorf("data action: got %q; want %q", gotAction, tt.wantAction)
			}
			if tt.wantStatus < 400 {
				return
			}
			code, inner := resp.errorCodes()
			if code != tt.wantCode {
				t.Errorf("error code: got %q; want %q", code, tt.wantCode)
			}
			if inner != tt.wantInner {
				t.Errorf("inner error code: got %q; want %q", inner, tt.wantInner)
			}
			challenge := resp.Header.Get("WWW-Authenticate")
			if tt.wantStatus == 401 {
				want := fmt.Sprintf(`Bearer authorization="https://login.localhost/%s", resource="https://vault.localhost:%s"`, testTenant, env.port)
				if challenge != want {
					t.Errorf("WWW-Authenticate: got %q; want %q", challenge, want)
				}
			} else if challenge != "" {
				t.Errorf("WWW-Authenticate on %d: got %q; want none", tt.wantStatus, challenge)
			}
		})
	}
}

func TestAuthorizerFailureIs500(t *testing.T) {
	svc := New(Options{
		Authorize: func(*http.Request, Vault, string) error { return errNotAuthError },
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err := svc.AddVault(Vault{Name: testVault}); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	svc.ServeHTTP(rec, httptest.NewRequest("GET", "https://kv1.vault.localhost/secrets"+api, nil))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("status: got %d; want 500", rec.Code)
	}
	if strings.Contains(rec.Body.String(), errNotAuthError.Error()) {
		t.Errorf("body leaks the authorizer error: %s", rec.Body.String())
	}
}

func TestSetAndGetSecret(t *testing.T) {
	env := newTestEnv(t)
	set := env.do(t, "PUT", testVault, "/secrets/Db-Password"+api, "officer", map[string]any{
		"value":       "s3cret",
		"contentType": "text/plain",
		"tags":        map[string]string{"request": "r-1"},
	})
	if set.Status != 200 {
		t.Fatalf("set status: got %d; want 200 (%s)", set.Status, set.Raw)
	}
	match := versionedIDPattern.FindStringSubmatch(set.str("id"))
	if match == nil {
		t.Fatalf("id: got %q; want https://kv1.vault.localhost:PORT/secrets/Db-Password/<32 hex>", set.str("id"))
	}
	if match[1] != "Db-Password" {
		t.Errorf("id name: got %q; want %q", match[1], "Db-Password")
	}
	version := match[2]
	if set.str("value") != "s3cret" {
		t.Errorf("value: got %q; want %q", set.str("value"), "s3cret")
	}
	attrs, _ := set.Body["attributes"].(map[string]any)
	wantCreated := float64(env.clock.Now().Unix())
	checks := []struct {
		key  string
		got  any
		want any
	}{
		{"enabled", attrs["enabled"], true},
		{"created", attrs["created"], wantCreated},
		{"updated", attrs["updated"], wantCreated},
		{"recoveryLevel", attrs["recoveryLevel"], "Recoverable+Purgeable"},
		{"recoverableDays", attrs["recoverableDays"], float64(90)},
		{"contentType", set.Body["contentType"], "text/plain"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v; want %v", c.key, c.got, c.want)
		}
	}
	for _, absent := range []string{"kid", "managed"} {
		if _, ok := set.Body[absent]; ok {
			t.Errorf("field %q: present; want absent", absent)
		}
	}

	// Names are case-insensitive; the three GET forms return the same version.
	for _, path := range []string{"/secrets/db-password", "/secrets/DB-PASSWORD/", "/secrets/db-password/" + version} {
		got := env.do(t, "GET", testVault, path+api, "user", nil)
		if got.Status != 200 {
			t.Errorf("GET %s: got status %d; want 200 (%s)", path, got.Status, got.Raw)
			continue
		}
		if got.str("id") != set.str("id") {
			t.Errorf("GET %s id: got %q; want %q", path, got.str("id"), set.str("id"))
		}
		if got.str("value") != "s3cret" {
			t.Errorf("GET %s value: got %q; want %q", path, got.str("value"), "s3cret")
		}
	}

	current, ok := env.svc.Secret(testVault, "db-password")
	if !ok {
		t.Fatal("Secret: got ok false; want true")
	}
	if current.Version != version || current.Value != "s3cret" || current.Tags["request"] != "r-1" {
		t.Errorf("Secret: got %+v; want version %s, value s3cret, tag request=r-1", current, version)
	}
}

func TestGetErrors(t *testing.T) {
	env := newTestEnv(t)
	seeded, err := env.svc.SetSecret(testVault, "app-key", "v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		path        string
		wantStatus  int
		wantCode    string
		wantMessage string
	}{
		{"missing secret", "/secrets/nope" + api, 404, "SecretNotFound", "A secret with (name/id) nope was not found in this key vault."},
		{"missing version", "/secrets/app-key/0123456789abcdef0123456789abcdef" + api, 404, "SecretNotFound", "A secret with (name/id) app-key/0123456789abcdef0123456789abcdef was not found"},
		{"underscore in name", "/secrets/app_key" + api, 400, "BadParameter", "The request URI contains an invalid name: app_key"},
		{"name too long", "/secrets/" + strings.Repeat("a", 128) + api, 400, "BadParameter", "The request URI contains an invalid name: "},
		{"escaped slash in name", "/secrets/a%2Fb" + api, 400, "BadParameter", "The request URI contains an invalid name: a/b"},
		{"unknown api-version", "/secrets/app-key?api-version=1.0", 400, "BadParameter", "The specified version (1.0) is not recognized. Consider using the latest supported version (2026-04-01)."},
		{"missing api-version", "/secrets/app-key", 400, "BadParameter", "The specified version () is not recognized."},
		{"unknown path", "/keys/app-key" + api, 404, "NotFound", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := env.do(t, "GET", testVault, tt.path, "officer", nil)
			if resp.Status != tt.wantStatus {
				t.Fatalf("status: got %d; want %d (%s)", resp.Status, tt.wantStatus, resp.Raw)
			}
			if code, _ := resp.errorCodes(); code != tt.wantCode {
				t.Errorf("code: got %q; want %q", code, tt.wantCode)
			}
			if !strings.Contains(resp.errorMessage(), tt.wantMessage) {
				t.Errorf("message: got %q; want it to contain %q", resp.errorMessage(), tt.wantMessage)
			}
		})
	}

	t.Run("128 character name rejected", func(t *testing.T) {
		if _, err := env.svc.SetSecret(testVault, strings.Repeat("a", 128), "x", nil); err == nil {
			t.Error("SetSecret: got nil error; want invalid name")
		}
	})
	t.Run("127 character name accepted", func(t *testing.T) {
		resp := env.do(t, "PUT", testVault, "/secrets/"+strings.Repeat("a", 127)+api, "officer", map[string]string{"value": "x"})
		if resp.Status != 200 {
			t.Errorf("status: got %d; want 200 (%s)", resp.Status, resp.Raw)
		}
	})
	t.Run("method not allowed", func(t *testing.T) {
		resp := env.do(t, "POST", testVault, "/secrets/app-key/"+seeded.Version+api, "officer", nil)
		if resp.Status != http.StatusMethodNotAllowed {
			t.Errorf("status: got %d; want 405", resp.Status)
		}
	})
	t.Run("unknown vault host", func(t *testing.T) {
		resp := env.do(t, "GET", "kv2", "/secrets"+api, "officer", nil)
		if resp.Status != 404 {
			t.Errorf("status: got %d; want 404", resp.Status)
		}
	})
}

func TestAPIVersionsAccepted(t *testing.T) {
	env := newTestEnv(t)
	if _, err := env.svc.SetSecret(testVault, "s", "v", nil); err != nil {
		t.Fatal(err)
	}
	for _, version := range []string{"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"} {
		t.Run(version, func(t *testing.T) {
			resp := env.do(t, "GET", testVault, "/secrets/s?api-version="+version, "officer", nil)
			if resp.Status != 200 {
				t.Errorf("status: got %d; want 200 (%s)", resp.Status, resp.Raw)
			}
		})
	}
}

func TestSetRejectsBadBodies(t *testing.T) {
	env := newTestEnv(t)
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"malformed JSON", `{"value": "x"`, 400, "BadParameter"},
		{"value of wrong type", `{"value": 5}`, 400, "BadParameter"},
		{"tags of wrong type", `{"value": "x", "tags": ["a"]}`, 400, "BadParameter"},
		{"missing value", `{"contentType": "text/plain"}`, 400, "BadParameter"},
		{"empty body", ``, 400, "BadParameter"},
		{"value over 25 KB", `{"value": "` + strings.Repeat("x", 25*1024+1) + `"}`, 400, "BadParameter"},
		{"body over limit", `{"value": "` + strings.Repeat("x", 300*1024) + `"}`, 413, "BadParameter"},
		{"value of exactly 25 KB", `{"value": "` + strings.Repeat("x", 25*1024) + `"}`, 200, ""},
		{"empty value", `{"value": ""}`, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := env.do(t, "PUT", testVault, "/secrets/body-test"+api, "officer", tt.body)
			if resp.Status != tt.wantStatus {
				t.Fatalf("status: got %d; want %d (%.200s)", resp.Status, tt.wantStatus, resp.Raw)
			}
			if code, _ := resp.errorCodes(); code != tt.wantCode {
				t.Errorf("code: got %q; want %q", code, tt.wantCode)
			}
		})
	}
}

func TestDisabledSecretForbidden(t *testing.T) {
	env := newTestEnv(t)
	set := env.do(t, "PUT", testVault, "/secrets/off"+api, "officer", map[string]any{
		"value": "v1", "attributes": map[string]any{"enabled": false},
	})
	if set.Status != 200 {
		t.Fatalf("set: got %d; want 200 (%s)", set.Status, set.Raw)
	}
	get := env.do(t, "GET", testVault, "/secrets/off"+api, "officer", nil)
	if get.Status != 403 {
		t.Fatalf("get disabled: got %d; want 403 (%s)", get.Status, get.Raw)
	}
	code, inner := get.errorCodes()
	if code != "Forbidden" {
		t.Errorf("code: got %q; want Forbidden", code)
	}
	if inner != "SecretDisabled" {
		t.Errorf("inner code: got %q; want SecretDisabled", inner)
	}
	if got := get.errorMessage(); got != "Operation get is not allowed on a disabled secret." {
		t.Errorf("message: got %q", got)
	}

	// Enabling through PATCH makes the same version readable again.
	patch := env.do(t, "PATCH", testVault, "/secrets/off/"+api, "officer", map[string]any{
		"attributes": map[string]any{"enabled": true},
	})
	if patch.Status != 200 {
		t.Fatalf("patch: got %d; want 200 (%s)", patch.Status, patch.Raw)
	}
	if again := env.do(t, "GET", testVault, "/secrets/off"+api, "officer", nil); again.Status != 200 {
		t.Errorf("get after enable: got %d; want 200", again.Status)
	}
}

func TestUpdateSecretAttributes(t *testing.T) {
	env := newTestEnv(t)
	first, err := env.svc.SetSecret(testVault, "rotating", "old", map[string]string{"keep": "no"})
	if err != nil {
		t.Fatal(err)
	}
	env.clock.Advance(time.Minute)
	if _, err := env.svc.SetSecret(testVault, "rotating", "new", nil); err != nil {
		t.Fatal(err)
	}
	env.clock.Advance(time.Minute)

	resp := env.do(t, "PATCH", testVault, "/secrets/rotating/"+first.Version+api, "officer", map[string]any{
		"contentType": "application/x-test",
		"tags":        map[string]string{"request": "r-9"},
		"attributes":  map[string]any{"exp": 1893456000},
	})
	if resp.Status != 200 {
		t.Fatalf("status: got %d; want 200 (%s)", resp.Status, resp.Raw)
	}
	if _, ok := resp.Body["value"]; ok {
		t.Error("update response carries the value; want no value")
	}
	versions := env.svc.SecretVersions(testVault, "rotating")
	if len(versions) != 2 {
		t.Fatalf("versions: got %d; want 2", len(versions))
	}
	old := versions[0]
	if old.ContentType != "application/x-test" {
		t.Errorf("content type: got %q; want application/x-test", old.ContentType)
	}
	if len(old.Tags) != 1 || old.Tags["request"] != "r-9" {
		t.Errorf("tags: got %v; want only request=r-9 (tags are replaced)", old.Tags)
	}
	if !old.Updated.After(old.Created) {
		t.Errorf("updated: got %v; want after created %v", old.Updated, old.Created)
	}
	attrs, _ := resp.Body["attributes"].(map[string]any)
	if attrs["exp"] != float64(1893456000) {
		t.Errorf("exp: got %v; want 1893456000", attrs["exp"])
	}
	if current, _ := env.svc.Secret(testVault, "rotating"); current.Value != "new" {
		t.Errorf("current value: got %q; want %q", current.Value, "new")
	}
}

func TestListSecretsPaging(t *testing.T) {
	env := newTestEnv(t)
	var want []string
	for i := range 7 {
		name := fmt.Sprintf("secret-%d", i)
		want = append(want, name)
		if _, err := env.svc.SetSecret(testVault, name, "v", map[string]string{"i": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// A second version must not produce a second list item.
	if _, err := env.svc.SetSecret(testVault, "secret-3", "v2", nil); err != nil {
		t.Fatal(err)
	}

	var got []string
	link := "/secrets?api-version=7.5&maxresults=3"
	for pages := 0; link != ""; pages++ {
		if pages > 5 {
			t.Fatal("more than 5 pages for 7 secrets at 3 a page")
		}
		resp := env.do(t, "GET", testVault, link, "reader", nil)
		if resp.Status != 200 {
			t.Fatalf("page %d: got %d; want 200 (%s)", pages, resp.Status, resp.Raw)
		}
		items, _ := resp.Body["value"].([]any)
		if len(items) > 3 {
			t.Errorf("page %d: got %d items; want at most 3", pages, len(items))
		}
		for _, item := range items {
			id, _ := item.(map[string]any)["id"].(string)
			name, ok := strings.CutPrefix(id, env.vaultURL(testVault)+"/secrets/")
			if !ok || strings.Contains(name, "/") {
				t.Errorf("item id: got %q; want %s/secrets/NAME", id, env.vaultURL(testVault))
			}
			got = append(got, name)
		}
		next, present := resp.Body["nextLink"]
		if !present {
			t.Fatalf("page %d: nextLink missing; want a link or null", pages)
		}
		link, _ = next.(string)
		if link != "" && !strings.HasPrefix(link, env.vaultURL(testVault)+"/secrets?api-version=7.5&$skiptoken=") {
			t.Errorf("nextLink: got %q; want absolute on the same host with the same api-version", link)
		}
	}
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("names: got %v; want %v", got, want)
	}

	for _, bad := range []string{"0", "26", "x"} {
		resp := env.do(t, "GET", testVault, "/secrets"+api+"&maxresults="+bad, "reader", nil)
		if code, _ := resp.errorCodes(); resp.Status != 400 || code != "BadParameter" {
			t.Errorf("maxresults=%s: got %d %q; want 400 BadParameter", bad, resp.Status, code)
		}
	}
	resp := env.do(t, "GET", testVault, "/secrets"+api+"&$skiptoken=!!", "reader", nil)
	if resp.Status != 400 {
		t.Errorf("bad skip token: got %d; want 400", resp.Status)
	}
}

func TestListVersionsPaging(t *testing.T) {
	env := newTestEnv(t)
	var want []string
	for i := range 5 {
		v, err := env.svc.SetSecret(testVault, "many", fmt.Sprint(i), nil)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, v.Version)
		env.clock.Advance(time.Second)
	}
	var got []string
	link := "/secrets/many/versions" + api + "&maxresults=2"
	for pages := 0; link != ""; pages++ {
		if pages > 4 {
			t.Fatal("more than 4 pages for 5 versions at 2 a page")
		}
		resp := env.do(t, "GET", testVault, link, "reader", nil)
		if resp.Status != 200 {
			t.Fatalf("page %d: got %d; want 200 (%s)", pages, resp.Status, resp.Raw)
		}
		for _, item := range resp.Body["value"].([]any) {
			fields := item.(map[string]any)
			if _, ok := fields["value"]; ok {
				t.Error("version item carries a value; want none")
			}
			match := versionedIDPattern.FindStringSubmatch(fields["id"].(string))
			if match == nil {
				t.Fatalf("version id: got %q; want a versioned id", fields["id"])
			}
			got = append(got, match[2])
		}
		link, _ = resp.Body["nextLink"].(string)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("versions: got %v; want %v (oldest first)", got, want)
	}
}

func TestSoftDeleteLifecycle(t *testing.T) {
	env := newTestEnv(t)
	if _, err := env.svc.SetSecret(testVault, "doomed", "v1", map[string]string{"t": "1"}); err != nil {
		t.Fatal(err)
	}

	del := env.do(t, "DELETE", testVault, "/secrets/doomed"+api, "officer", nil)
	if del.Status != 200 {
		t.Fatalf("delete: got %d; want 200 (%s)", del.Status, del.Raw)
	}
	now := env.clock.Now()
	if got, want := del.str("recoveryId"), env.vaultURL(testVault)+"/deletedsecrets/doomed"; got != want {
		t.Errorf("recoveryId: got %q; want %q", got, want)
	}
	if got := del.Body["deletedDate"]; got != float64(now.Unix()) {
		t.Errorf("deletedDate: got %v; want %d", got, now.Unix())
	}
	if got, want := del.Body["scheduledPurgeDate"], float64(now.AddDate(0, 0, 90).Unix()); got != want {
		t.Errorf("scheduledPurgeDate: got %v; want %v", got, want)
	}
	if _, ok := del.Body["value"]; ok {
		t.Error("delete response carries the value; want none")
	}

	steps := []struct {
		name       string
		method     string
		path       string
		body       any
		wantStatus int
		wantCode   string
		wantInner  string
	}{
		{"get after delete", "GET", "/secrets/doomed", nil, 404, "SecretNotFound", ""},
		{"delete twice", "DELETE", "/secrets/doomed", nil, 404, "SecretNotFound", ""},
		{"set deleted name", "PUT", "/secrets/doomed", map[string]string{"value": "x"}, 409, "Conflict", "ObjectIsDeletedButRecoverable"},
		{"get deleted", "GET", "/deletedsecrets/doomed", nil, 200, "", ""},
		{"list deleted", "GET", "/deletedsecrets", nil, 200, "", ""},
		{"recover", "POST", "/deletedsecrets/doomed/recover", nil, 200, "", ""},
		{"recover twice", "POST", "/deletedsecrets/doomed/recover", nil, 404, "SecretNotFound", ""},
		{"get after recover", "GET", "/secrets/doomed", nil, 200, "", ""},
		{"purge live secret", "DELETE", "/deletedsecrets/doomed", nil, 404, "SecretNotFound", ""},
		{"delete again", "DELETE", "/secrets/doomed", nil, 200, "", ""},
		{"purge", "DELETE", "/deletedsecrets/doomed", nil, 204, "", ""},
		{"get deleted after purge", "GET", "/deletedsecrets/doomed", nil, 404, "SecretNotFound", ""},
		{"set after purge", "PUT", "/secrets/doomed", map[string]string{"value": "fresh"}, 200, "", ""},
	}
	for _, step := range steps {
		resp := env.do(t, step.method, testVault, step.path+api, "officer", step.body)
		if resp.Status != step.wantStatus {
			t.Fatalf("%s: status got %d; want %d (%s)", step.name, resp.Status, step.wantStatus, resp.Raw)
		}
		code, inner := resp.errorCodes()
		if code != step.wantCode || inner != step.wantInner {
			t.Errorf("%s: codes got %q/%q; want %q/%q", step.name, code, inner, step.wantCode, step.wantInner)
		}
		if step.name == "set deleted name" {
			want := "Secret doomed is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."
			if resp.errorMessage() != want {
				t.Errorf("conflict message: got %q; want %q", resp.errorMessage(), want)
			}
		}
		if step.name == "list deleted" {
			items, _ := resp.Body["value"].([]any)
			if len(items) != 1 {
				t.Errorf("deleted items: got %d; want 1", len(items))
			}
		}
	}
	versions := env.svc.SecretVersions(testVault, "doomed")
	if len(versions) != 1 || versions[0].Value != "fresh" {
		t.Errorf("versions after purge and set: got %+v; want one version with value fresh", versions)
	}
}

func TestRetentionPurgesDeletedSecret(t *testing.T) {
	env := newTestEnv(t)
	if _, err := env.svc.SetSecret(testVault, "old", "v", nil); err != nil {
		t.Fatal(err)
	}
	if resp := env.do(t, "DELETE", testVault, "/secrets/old"+api, "officer", nil); resp.Status != 200 {
		t.Fatalf("delete: got %d; want 200", resp.Status)
	}
	env.clock.Advance(89 * 24 * time.Hour)
	if resp := env.do(t, "GET", testVault, "/deletedsecrets/old"+api, "officer", nil); resp.Status != 200 {
		t.Errorf("day 89: got %d; want 200", resp.Status)
	}
	env.clock.Advance(24 * time.Hour)
	if resp := env.do(t, "GET", testVault, "/deletedsecrets/old"+api, "officer", nil); resp.Status != 404 {
		t.Errorf("day 90: got %d; want 404", resp.Status)
	}
	if _, err := env.svc.SetSecret(testVault, "old", "again", nil); err != nil {
		t.Errorf("set after retention: %v", err)
	}
}

func TestBackupAndRestore(t *testing.T) {
	env := newTestEnv(t)
	for _, value := range []string{"a", "b"} {
		if _, err := env.svc.SetSecret(testVault, "kept", value, nil); err != nil {
			t.Fatal(err)
		}
	}
	backup := env.do(t, "POST", testVault, "/secrets/kept/backup"+api, "officer", nil)
	if backup.Status != 200 {
		t.Fatalf("backup: got %d; want 200 (%s)", backup.Status, backup.Raw)
	}
	blob := backup.str("value")
	restoreBody := map[string]string{"value": blob}
	if resp := env.do(t, "POST", testVault, "/secrets/restore"+api, "officer", restoreBody); resp.Status != 409 {
		t.Errorf("restore over live secret: got %d; want 409", resp.Status)
	}
	env.do(t, "DELETE", testVault, "/secrets/kept"+api, "officer", nil)
	env.do(t, "DELETE", testVault, "/deletedsecrets/kept"+api, "officer", nil)
	resp := env.do(t, "POST", testVault, "/secrets/restore"+api, "officer", restoreBody)
	if resp.Status != 200 {
		t.Fatalf("restore: got %d; want 200 (%s)", resp.Status, resp.Raw)
	}
	versions := env.svc.SecretVersions(testVault, "kept")
	if len(versions) != 2 || versions[1].Value != "b" {
		t.Errorf("restored versions: got %+v; want a then b", versions)
	}
	bad := env.do(t, "POST", testVault, "/secrets/restore"+api, "officer", map[string]string{"value": "bm90IGEgYmFja3Vw"})
	if bad.Status != 400 {
		t.Errorf("restore garbage: got %d; want 400", bad.Status)
	}
}

func TestConcurrentSets(t *testing.T) {
	env := newTestEnv(t)
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				resp := env.do(t, "PUT", testVault, "/secrets/shared"+api, "officer", map[string]string{"value": fmt.Sprintf("%d-%d", w, i)})
				if resp.Status != 200 {
					t.Errorf("set: got %d; want 200", resp.Status)
				}
				env.do(t, "GET", testVault, "/secrets/shared/versions"+api, "officer", nil)
			}
		}()
	}
	wg.Wait()
	versions := env.svc.SecretVersions(testVault, "shared")
	if len(versions) != writers*each {
		t.Errorf("versions: got %d; want %d", len(versions), writers*each)
	}
	seen := map[string]bool{}
	for _, v := range versions {
		if seen[v.Version] {
			t.Errorf("duplicate version id %s", v.Version)
		}
		seen[v.Version] = true
	}
}

func TestSeedingAPI(t *testing.T) {
	svc := New(Options{})
	tests := []struct {
		name    string
		run     func() error
		wantErr string
	}{
		{"add vault", func() error { return svc.AddVault(Vault{Name: "kv-one"}) }, ""},
		{"duplicate vault ignoring case", func() error { return svc.AddVault(Vault{Name: "KV-ONE"}) }, "already exists"},
		{"invalid vault name", func() error { return svc.AddVault(Vault{Name: "1bad"}) }, "invalid name"},
		{"set in unknown vault", func() error { _, err := svc.SetSecret("nope", "a", "v", nil); return err }, "not found"},
		{"set invalid name", func() error { _, err := svc.SetSecret("kv-one", "a.b", "v", nil); return err }, "invalid name"},
		{"set too large", func() error {
			_, err := svc.SetSecret("kv-one", "big", strings.Repeat("x", 25*1024+1), nil)
			return err
		}, "BadParameter"},
		{"set ok", func() error { _, err := svc.SetSecret("kv-one", "a", "v", nil); return err }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("got error %v; want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got error %v; want one containing %q", err, tt.wantErr)
			}
		})
	}
	if _, ok := svc.Secret("kv-one", "missing"); ok {
		t.Error("Secret of missing name: got ok true; want false")
	}
	if got := svc.SecretVersions("nope", "a"); got != nil {
		t.Errorf("SecretVersions of unknown vault: got %v; want nil", got)
	}
}
