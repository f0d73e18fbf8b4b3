package cli

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/github"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/rotate"
)

func init() { commands = append(commands, newRotateCommand) }

// rotateOptions are the flags of the built-in secret rotation.
type rotateOptions struct {
	Vault       string
	Secret      string
	Length      int
	Charset     string
	Validate    string
	ValidateVia string
}

func newRotateCommand(streams Streams) *cobra.Command {
	var o elevateOptions
	var r rotateOptions
	cmd := &cobra.Command{
		Use:   "rotate-secret --vault NAME|URL --secret NAME --scope VAULT_ID --justification TEXT [flags]",
		Short: "Grant Key Vault access, rotate a secret, validate it, then revoke and verify",
		Long: `Grant the roles (default: Key Vault Secrets Officer), wait until the vault
accepts the grant, write a new random value, run the validation command with
the value in ELEVATE_SECRET_VALUE (or on stdin), restore the previous value if
validation fails, then revoke and verify. The value is never printed, logged
or audited.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(o.Roles) == 0 {
				o.Roles = []string{"Key Vault Secrets Officer"}
			}
			if err := o.check(streams); err != nil {
				return err
			}
			if r.Vault == "" {
				return &UsageError{fmt.Errorf("missing --vault: give the vault name or URL")}
			}
			ctx := cmd.Context()
			sess, err := newSession(ctx, streams)
			if err != nil {
				return err
			}
			_, err = rotateSecret(ctx, streams, sess, &o, r)
			return err
		},
	}
	o.bind(cmd.Flags())
	bindRotate(cmd, &r)
	return cmd
}

func bindRotate(cmd *cobra.Command, r *rotateOptions) {
	fs := cmd.Flags()
	fs.StringVar(&r.Vault, "vault", "", "Key Vault name or URL")
	fs.StringVar(&r.Secret, "secret", "", "name of the secret to rotate")
	fs.IntVar(&r.Length, "length", rotate.DefaultLength, "length of the new value in characters")
	fs.StringVar(&r.Charset, "charset", "alphanumeric", "characters of the new value: alphanumeric, symbols, hex or custom:CHARS")
	fs.StringVar(&r.Validate, "validate-command", "", "shell command that checks the new value; a non-zero exit restores the old one")
	fs.StringVar(&r.ValidateVia, "validate-via", rotate.ViaEnv, "how the validation command gets the value: env (ELEVATE_SECRET_VALUE) or stdin")
}

// rotateSecret runs the lifecycle with the rotation as its action.
func rotateSecret(ctx context.Context, streams Streams, sess *session, o *elevateOptions, r rotateOptions) (lifecycle.Result, error) {
	vault, err := sess.vault(r.Vault)
	if err != nil {
		return lifecycle.Result{}, err
	}
	if err := checkVaultInScopes(vault.URL, o.Scopes); err != nil {
		return lifecycle.Result{}, err
	}
	rot := &rotate.Rotation{
		Store: vault, Secret: r.Secret, Length: r.Length, Charset: r.Charset,
		Validate: r.Validate, ValidateVia: r.ValidateVia, Stdout: streams.ErrOut, Stderr: streams.ErrOut,
		OnValue: maskInActions(streams),
	}
	if err := rot.CheckAndSetDefaults(); err != nil {
		return lifecycle.Result{}, &UsageError{err}
	}
	return elevate(ctx, streams, sess, o, func(p prepared) (lifecycle.Action, []lifecycle.Prober, error) {
		rot.RequestID = p.req.ID
		return rot, []lifecycle.Prober{rot}, nil
	})
}

// maskInActions returns a function that asks the GitHub Actions runner to
// mask a value in every later log line, or nil outside Actions, where the
// workflow command would print the value itself.
func maskInActions(streams Streams) func(string) {
	runner := github.FromEnv(streams.getenv, streams.Out)
	if !runner.InActions() {
		return nil
	}
	return runner.Mask
}

// checkVaultInScopes refuses a vault that none of the scopes grants
// access to, when the scopes name vaults: a mistyped --vault would
// otherwise be found only after the grant. Scopes above a vault (a
// resource group, a subscription) are not checked, because a vault's
// resource group is not part of its URL.
func checkVaultInScopes(vaultURL string, scopes []string) error {
	const vaultType = "Microsoft.KeyVault/vaults"
	u, err := url.Parse(vaultURL)
	if err != nil {
		return &UsageError{fmt.Errorf("invalid --vault URL %q: %w", vaultURL, err)}
	}
	name, _, _ := strings.Cut(u.Hostname(), ".")
	var vaults []string
	for _, sc := range scopes {
		id, err := access.ParseResourceID(sc)
		for err == nil && len(id.Type()) > len(vaultType) {
			var ok bool
			if id, ok = id.Parent(); !ok {
				break
			}
		}
		if err != nil || !strings.EqualFold(id.Type(), vaultType) {
			return nil // a scope that is not a vault may cover this one
		}
		if strings.EqualFold(id.Name(), name) {
			return nil
		}
		vaults = append(vaults, id.Name())
	}
	if len(vaults) == 0 {
		return nil
	}
	return &UsageError{fmt.Errorf("invalid --vault %q: the grant covers only vault %s; make --vault and --scope name the same vault",
		name, strings.Join(vaults, ", "))}
}
