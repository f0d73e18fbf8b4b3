// Package rotate implements Elevate's built-in action: rotating a Key Vault
// secret to a fresh random value, validating it, and restoring the previous
// value when validation fails. Secret values never leave this package except
// to the vault and to the validation command's environment or stdin.
package rotate

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/crashpoint"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// Store is the vault the secret lives in; *azure.Vault implements it.
type Store interface {
	Current(ctx context.Context, name string) (azure.SecretVersion, error)
	Set(ctx context.Context, name, value string, tags map[string]string) (string, error)
	Probe(ctx context.Context, name string) error
}

// Named character sets for --charset. A value starting with "custom:" uses
// the characters after the colon.
var Charsets = map[string]string{
	"alphanumeric": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
	"symbols":      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#%+-.:=@_~",
	"hex":          "0123456789abcdef",
}

// Length limits. Key Vault stores values up to 25 KB.
const (
	MinLength     = 16
	MaxLength     = 4096
	DefaultLength = 32
)

// Tags written on versions Elevate creates.
const (
	TagRequestID   = "elevate-request-id"
	TagRollbackOf  = "elevate-rollback-of"
	TagRestoredVer = "elevate-restored-from"
)

// Validation value delivery modes.
const (
	ViaEnv   = "env"
	ViaStdin = "stdin"
)

// EnvValue is the variable that carries the new value to the validation command.
const EnvValue = "ELEVATE_SECRET_VALUE"

// ErrValidation means the validation command rejected the new value.
var ErrValidation = errors.New("validation of the new secret value failed")

// Rotation is the secret-rotation action.
type Rotation struct {
	Store     Store
	Secret    string
	RequestID string
	Length    int
	Charset   string
	// Validate is a shell command run with sh -c after the new value is set.
	Validate    string
	ValidateVia string
	Stdout      io.Writer
	Stderr      io.Writer
	// Rand is the randomness source; nil means crypto/rand.
	Rand io.Reader
	// OnValue, when set, is called with each new value before it is used,
	// so that a runner can mask it in its logs.
	OnValue func(value string)
}

// CheckAndSetDefaults validates the options before anything is granted.
func (r *Rotation) CheckAndSetDefaults() error {
	if r.Secret == "" || len(r.Secret) > 127 || strings.Trim(r.Secret, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
		return fmt.Errorf("invalid --secret %q: use 1-127 letters, digits and dashes", r.Secret)
	}
	if r.Length == 0 {
		r.Length = DefaultLength
	}
	if r.Length < MinLength || r.Length > MaxLength {
		return fmt.Errorf("invalid --length %d: use %d to %d characters", r.Length, MinLength, MaxLength)
	}
	if r.Charset == "" {
		r.Charset = "alphanumeric"
	}
	if _, err := r.alphabet(); err != nil {
		return err
	}
	switch r.ValidateVia {
	case "":
		r.ValidateVia = ViaEnv
	case ViaEnv, ViaStdin:
	default:
		return fmt.Errorf("invalid --validate-via %q: use env or stdin", r.ValidateVia)
	}
	if r.Stdout == nil {
		r.Stdout = io.Discard
	}
	if r.Stderr == nil {
		r.Stderr = io.Discard
	}
	if r.Rand == nil {
		r.Rand = rand.Reader
	}
	return nil
}

func (r *Rotation) alphabet() (string, error) {
	if custom, ok := strings.CutPrefix(r.Charset, "custom:"); ok {
		if len(custom) < 2 {
			return "", fmt.Errorf("invalid --charset %q: a custom set needs at least 2 characters", r.Charset)
		}
		return custom, nil
	}
	set, ok := Charsets[r.Charset]
	if !ok {
		return "", fmt.Errorf("invalid --charset %q: use alphanumeric, symbols, hex or custom:CHARS", r.Charset)
	}
	return set, nil
}

// Name returns the action label.
func (r *Rotation) Name() string { return "rotate secret " + r.Secret }

// Probe is a harmless read that needs the same data plane access, used to
// wait until the grant is effective on the vault.
func (r *Rotation) Probe(ctx context.Context) error { return r.Store.Probe(ctx, r.Secret) }

// Run rotates the secret. On validation failure the previous value is written
// back as a new version and the error wraps ErrValidation.
func (r *Rotation) Run(ctx context.Context) (lifecycle.ActionResult, error) {
	var res lifecycle.ActionResult
	prev, err := r.Store.Current(ctx, r.Secret)
	hasPrev := err == nil
	if err != nil && !errors.Is(err, azure.ErrNotFound) {
		return res, err
	}
	res.PreviousSecretVersion = prev.Version
	crashpoint.Hit("rotate.read_done")

	value, err := r.generate()
	if err != nil {
		return res, err
	}
	if r.OnValue != nil {
		r.OnValue(value)
	}
	version, err := r.Store.Set(ctx, r.Secret, value, map[string]string{TagRequestID: r.RequestID})
	if err != nil {
		return res, err
	}
	res.SecretVersion = version
	crashpoint.Hit("rotate.set_done")
	res.Detail = fmt.Sprintf("secret=%s version=%s previous=%s", r.Secret, version, prev.Version)
	if r.Validate == "" {
		return res, nil
	}

	valErr := r.validate(ctx, value, version)
	if valErr == nil {
		crashpoint.Hit("rotate.validated")
		res.Detail += " validated=true"
		return res, nil
	}
	if !hasPrev {
		res.ExitCode = 1
		return res, fmt.Errorf("%w: %v; no previous version existed, so version %s stays current", ErrValidation, valErr, version)
	}
	crashpoint.Hit("rotate.validation_failed")
	// Write the old value back on a context that survives cancellation: a
	// half-done rotation is worse than a late one.
	restoreCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	restored, err := r.Store.Set(restoreCtx, r.Secret, prev.Value, map[string]string{
		TagRequestID: r.RequestID, TagRollbackOf: version, TagRestoredVer: prev.Version,
	})
	crashpoint.Hit("rotate.restored")
	res.ExitCode = 1
	if err != nil {
		return res, fmt.Errorf("%w: %v; restoring the previous value also failed: %w", ErrValidation, valErr, err)
	}
	res.SecretVersion = restored
	res.Detail += " validated=false restored=" + restored
	return res, fmt.Errorf("%w: %v; previous value restored as version %s", ErrValidation, valErr, restored)
}

// generate draws Length characters uniformly from the alphabet.
func (r *Rotation) generate() (string, error) {
	alphabet, err := r.alphabet()
	if err != nil {
		return "", err
	}
	max := big.NewInt(int64(len(alphabet)))
	out := make([]byte, r.Length)
	for i := range out {
		n, err := rand.Int(r.Rand, max)
		if err != nil {
			return "", fmt.Errorf("generate secret value: %w", err)
		}
		out[i] = alphabet[n.Int64()]
	}
	return string(out), nil
}

// validate runs the validation command with the value in its environment or
// on stdin, never in its arguments.
func (r *Rotation) validate(ctx context.Context, value, version string) error {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", r.Validate)
	cmd.Env = append(os.Environ(), "ELEVATE_SECRET_NAME="+r.Secret, "ELEVATE_SECRET_VERSION="+version)
	if r.ValidateVia == ViaEnv {
		cmd.Env = append(cmd.Env, EnvValue+"="+value)
	} else {
		cmd.Stdin = bytes.NewBufferString(value)
	}
	cmd.Stdout, cmd.Stderr = r.Stdout, r.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("validation command: %w", err)
	}
	return nil
}
