package keyvault

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
)

// staticCredential hands out one fixed token and records the scopes and
// tenant the SDK asked for, which it takes from the 401 challenge.
type staticCredential struct {
	token string

	mu      sync.Mutex
	scopes  []string
	tenants []string
}

func (c *staticCredential) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scopes = append(c.scopes, opts.Scopes...)
	c.tenants = append(c.tenants, opts.TenantID)
	return azcore.AccessToken{Token: c.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func newSecretsClient(t *testing.T, env *testEnv, token string) (*azsecrets.Client, *staticCredential) {
	t.Helper()
	cred := &staticCredential{token: token}
	client, err := azsecrets.NewClient(env.vaultURL(testVault), cred, &azsecrets.ClientOptions{
		ClientOptions: azcore.ClientOptions{
			Transport: env.client,
			Retry:     policy.RetryOptions{MaxRetries: -1},
		},
	})
	if err != nil {
		t.Fatalf("azsecrets.NewClient: %v", err)
	}
	return client, cred
}

func TestAzsecretsChallengeFlow(t *testing.T) {
	env := newTestEnv(t)
	client, cred := newSecretsClient(t, env, "officer")
	ctx := context.Background()

	// The first request goes out without a token or body, gets the 401
	// challenge, and is sent again with the token for the challenge's scope.
	set, err := client.SetSecret(ctx, "db-password", azsecrets.SetSecretParameters{Value: to.Ptr("v1")}, nil)
	if err != nil {
		t.Fatalf("SetSecret: %v", err)
	}
	if got := env.auth.anonymousCount(); got != 1 {
		t.Errorf("requests without a token: got %d; want 1", got)
	}
	cred.mu.Lock()
	scopes, tenants := cred.scopes, cred.tenants
	cred.mu.Unlock()
	wantScope := "https://vault.localhost:" + env.port + "/.default"
	if len(scopes) == 0 || scopes[0] != wantScope {
		t.Errorf("token scopes: got %v; want [%s]", scopes, wantScope)
	}
	if len(tenants) == 0 || tenants[0] != testTenant {
		t.Errorf("token tenant: got %v; want %s", tenants, testTenant)
	}
	if set.Value == nil || *set.Value != "v1" {
		t.Errorf("set value: got %v; want v1", set.Value)
	}

	// Later requests reuse the token without a new challenge.
	if _, err := client.GetSecret(ctx, "db-password", "", nil); err != nil {
		t.Fatalf("GetSecret: %v", err)
	}
	if got := env.auth.anonymousCount(); got != 1 {
		t.Errorf("requests without a token after the first: got %d; want 1", got)
	}
}

func TestAzsecretsSecretLifecycle(t *testing.T) {
	env := newTestEnv(t)
	client, _ := newSecretsClient(t, env, "officer")
	ctx := context.Background()

	// Set three versions, a minute apart.
	var versions []string
	for _, value := range []string{"v1", "v2", "v3"} {
		resp, err := client.SetSecret(ctx, "rotated", azsecrets.SetSecretParameters{
			Value:       to.Ptr(value),
			ContentType: to.Ptr("text/plain"),
			Tags:        map[string]*string{"value": to.Ptr(value)},
		}, nil)
		if err != nil {
			t.Fatalf("SetSecret %s: %v", value, err)
		}
		if got := resp.ID.Name(); got != "rotated" {
			t.Errorf("ID.Name: got %q; want rotated", got)
		}
		versions = append(versions, resp.ID.Version())
		env.clock.Advance(time.Minute)
	}
	for _, v := range versions {
		if !versionPattern.MatchString(v) {
			t.Errorf("version: got %q; want 32 lowercase hex", v)
		}
	}

	// Get latest and by version.
	latest, err := client.GetSecret(ctx, "rotated", "", nil)
	if err != nil {
		t.Fatalf("GetSecret latest: %v", err)
	}
	if *latest.Value != "v3" || latest.ID.Version() != versions[2] {
		t.Errorf("latest: got %s@%s; want v3@%s", *latest.Value, latest.ID.Version(), versions[2])
	}
	if latest.Attributes.Created == nil || !latest.Attributes.Created.Equal(env.clock.Now().Add(-time.Minute)) {
		t.Errorf("created: got %v; want %v", latest.Attributes.Created, env.clock.Now().Add(-time.Minute))
	}
	if latest.KID != nil || latest.Managed != nil {
		t.Errorf("kid, managed: got %v, %v; want both absent", latest.KID, latest.Managed)
	}
	first, err := client.GetSecret(ctx, "rotated", versions[0], nil)
	if err != nil {
		t.Fatalf("GetSecret v1: %v", err)
	}
	if *first.Value != "v1" {
		t.Errorf("first version value: got %q; want v1", *first.Value)
	}

	// Page through versions; the pager follows nextLink. A page size below
	// the default is set by the service's maxresults, which azsecrets does
	// not send, so add many versions to span two pages.
	for i := range 25 {
		if _, err := client.SetSecret(ctx, "rotated", azsecrets.SetSecretParameters{Value: to.Ptr("bulk")}, nil); err != nil {
			t.Fatalf("SetSecret bulk %d: %v", i, err)
		}
	}
	pager := client.NewListSecretPropertiesVersionsPager("rotated", nil)
	var listed []string
	pages := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("versions page: %v", err)
		}
		pages++
		for _, item := range page.Value {
			listed = append(listed, item.ID.Version())
		}
	}
	if pages != 2 {
		t.Errorf("version pages: got %d; want 2", pages)
	}
	if len(listed) != 28 {
		t.Errorf("versions listed: got %d; want 28", len(listed))
	}
	if len(listed) >= 3 && strings.Join(listed[:3], ",") != strings.Join(versions, ",") {
		t.Errorf("first versions: got %v; want %v", listed[:3], versions)
	}

	// Update attributes and tags of the first version.
	updated, err := client.UpdateSecretProperties(ctx, "rotated", versions[0], azsecrets.UpdateSecretPropertiesParameters{
		SecretAttributes: &azsecrets.SecretAttributes{Enabled: to.Ptr(false)},
		Tags:             map[string]*string{"request": to.Ptr("r-42")},
	}, nil)
	if err != nil {
		t.Fatalf("UpdateSecretProperties: %v", err)
	}
	if updated.Attributes.Enabled == nil || *updated.Attributes.Enabled {
		t.Errorf("enabled after update: got %v; want false", updated.Attributes.Enabled)
	}
	if got := updated.Tags["request"]; got == nil || *got != "r-42" {
		t.Errorf("tag request: got %v; want r-42", got)
	}
	_, err = client.GetSecret(ctx, "rotated", versions[0], nil)
	assertResponseError(t, err, http.StatusForbidden, "Forbidden", "SecretDisabled")

	// List secrets sees one item per name.
	if _, err := client.SetSecret(ctx, "other", azsecrets.SetSecretParameters{Value: to.Ptr("x")}, nil); err != nil {
		t.Fatalf("SetSecret other: %v", err)
	}
	names := listSecretNames(t, client)
	if strings.Join(names, ",") != "other,rotated" {
		t.Errorf("listed names: got %v; want [other rotated]", names)
	}

	// Delete, conflict on reuse, list deleted, recover.
	deleted, err := client.DeleteSecret(ctx, "rotated", nil)
	if err != nil {
		t.Fatalf("DeleteSecret: %v", err)
	}
	if deleted.RecoveryID == nil || *deleted.RecoveryID != env.vaultURL(testVault)+"/deletedsecrets/rotated" {
		t.Errorf("recoveryId: got %v", deleted.RecoveryID)
	}
	if deleted.DeletedDate == nil || deleted.ScheduledPurgeDate == nil ||
		!deleted.ScheduledPurgeDate.Equal(deleted.DeletedDate.AddDate(0, 0, 90)) {
		t.Errorf("dates: deleted %v, purge %v; want purge 90 days after deletion", deleted.DeletedDate, deleted.ScheduledPurgeDate)
	}
	_, err = client.SetSecret(ctx, "rotated", azsecrets.SetSecretParameters{Value: to.Ptr("again")}, nil)
	assertResponseError(t, err, http.StatusConflict, "Conflict", "ObjectIsDeletedButRecoverable")

	deletedPager := client.NewListDeletedSecretPropertiesPager(nil)
	var deletedNames []string
	for deletedPager.More() {
		page, err := deletedPager.NextPage(ctx)
		if err != nil {
			t.Fatalf("deleted page: %v", err)
		}
		for _, item := range page.Value {
			deletedNames = append(deletedNames, item.ID.Name())
		}
	}
	if strings.Join(deletedNames, ",") != "rotated" {
		t.Errorf("deleted names: got %v; want [rotated]", deletedNames)
	}
	if _, err := client.GetDeletedSecret(ctx, "rotated", nil); err != nil {
		t.Errorf("GetDeletedSecret: %v", err)
	}
	recovered, err := client.RecoverDeletedSecret(ctx, "rotated", nil)
	if err != nil {
		t.Fatalf("RecoverDeletedSecret: %v", err)
	}
	if recovered.ID.Version() != listed[len(listed)-1] {
		t.Errorf("recovered version: got %s; want the latest %s", recovered.ID.Version(), listed[len(listed)-1])
	}

	// Delete and purge; the name is free again.
	if _, err := client.DeleteSecret(ctx, "rotated", nil); err != nil {
		t.Fatalf("DeleteSecret again: %v", err)
	}
	if _, err := client.PurgeDeletedSecret(ctx, "rotated", nil); err != nil {
		t.Fatalf("PurgeDeletedSecret: %v", err)
	}
	_, err = client.GetDeletedSecret(ctx, "rotated", nil)
	assertResponseError(t, err, http.StatusNotFound, "SecretNotFound", "")
	if _, err := client.SetSecret(ctx, "rotated", azsecrets.SetSecretParameters{Value: to.Ptr("fresh")}, nil); err != nil {
		t.Errorf("SetSecret after purge: %v", err)
	}
}

func TestAzsecretsForbiddenByRbac(t *testing.T) {
	env := newTestEnv(t)
	if _, err := env.svc.SetSecret(testVault, "guarded", "v", nil); err != nil {
		t.Fatal(err)
	}
	client, _ := newSecretsClient(t, env, "reader")
	_, err := client.GetSecret(context.Background(), "guarded", "", nil)
	respErr := assertResponseError(t, err, http.StatusForbidden, "Forbidden", "ForbiddenByRbac")
	if respErr != nil && !strings.Contains(respErr.Error(), actionGetSecret) {
		t.Errorf("error text: got %q; want it to name %s", respErr.Error(), actionGetSecret)
	}

	// The reader may still list metadata.
	if names := listSecretNames(t, client); strings.Join(names, ",") != "guarded" {
		t.Errorf("listed names: got %v; want [guarded]", names)
	}
}

func listSecretNames(t *testing.T, client *azsecrets.Client) []string {
	t.Helper()
	var names []string
	pager := client.NewListSecretPropertiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatalf("secrets page: %v", err)
		}
		for _, item := range page.Value {
			names = append(names, item.ID.Name())
		}
	}
	return names
}

// assertResponseError checks that err is an *azcore.ResponseError with the
// status and error code, and that the inner code appears in its text, which
// azcore builds from the response body.
func assertResponseError(t *testing.T, err error, status int, code, inner string) *azcore.ResponseError {
	t.Helper()
	var respErr *azcore.ResponseError
	if !errors.As(err, &respErr) {
		t.Errorf("error: got %v (%T); want *azcore.ResponseError", err, err)
		return nil
	}
	if respErr.StatusCode != status {
		t.Errorf("status: got %d; want %d", respErr.StatusCode, status)
	}
	if respErr.ErrorCode != code {
		t.Errorf("error code: got %q; want %q", respErr.ErrorCode, code)
	}
	if inner != "" && !strings.Contains(respErr.Error(), `"code": "`+inner+`"`) &&
		!strings.Contains(respErr.Error(), `"code":"`+inner+`"`) {
		t.Errorf("inner code %q not in error text:\n%s", inner, respErr.Error())
	}
	return respErr
}
