package azure

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
)

// Vault reads and writes secrets of one Key Vault through azsecrets.
type Vault struct {
	URL    string
	client *azsecrets.Client
}

// SecretVersion is one version of a secret. Value is only filled by reads
// that need it and must never be logged.
type SecretVersion struct {
	Version string
	Value   string
	Tags    map[string]string
}

// NewVault connects to the vault at url.
func NewVault(url string, cred azcore.TokenCredential, opts policy.ClientOptions) (*Vault, error) {
	client, err := azsecrets.NewClient(url, cred, &azsecrets.ClientOptions{ClientOptions: opts})
	if err != nil {
		return nil, fmt.Errorf("create Key Vault client for %q: %w", url, err)
	}
	return &Vault{URL: url, client: client}, nil
}

// Current reads the latest version of a secret, value included.
func (v *Vault) Current(ctx context.Context, name string) (SecretVersion, error) {
	resp, err := v.client.GetSecret(ctx, name, "", nil)
	if err != nil {
		return SecretVersion{}, fmt.Errorf("get secret %q from %s: %w", name, v.URL, Classify(err))
	}
	return SecretVersion{Version: versionOf(resp.ID), Value: deref(resp.Value), Tags: derefTags(resp.Tags)}, nil
}

// Set writes a new version of a secret and returns its version id.
func (v *Vault) Set(ctx context.Context, name, value string, tags map[string]string) (string, error) {
	params := azsecrets.SetSecretParameters{Value: &value, Tags: make(map[string]*string, len(tags))}
	for k, val := range tags {
		params.Tags[k] = &val
	}
	resp, err := v.client.SetSecret(ctx, name, params, nil)
	if err != nil {
		return "", fmt.Errorf("set secret %q in %s: %w", name, v.URL, Classify(err))
	}
	return versionOf(resp.ID), nil
}

// Probe lists the versions of a secret, a read that needs the readMetadata
// data action and returns no value. It returns ErrForbidden until the role is
// effective on the vault's data plane.
func (v *Vault) Probe(ctx context.Context, name string) error {
	pager := v.client.NewListSecretPropertiesVersionsPager(name, nil)
	if _, err := pager.NextPage(ctx); err != nil {
		return fmt.Errorf("list versions of secret %q in %s: %w", name, v.URL, Classify(err))
	}
	return nil
}

func versionOf(id *azsecrets.ID) string {
	if id == nil {
		return ""
	}
	return id.Version()
}

func derefTags(tags map[string]*string) map[string]string {
	out := make(map[string]string, len(tags))
	for k, v := range tags {
		out[k] = deref(v)
	}
	return out
}
