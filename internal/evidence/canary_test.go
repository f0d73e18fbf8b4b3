package evidence

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/cli"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/plan"
	"github.com/elevate-dev/elevate/internal/rotate"
)

// canaryCase is one rotation through the CLI, in-process.
type canaryCase struct {
	name     string
	apply    bool   // apply --plan --rotate-secret, else rotate-secret
	validate string // validation command, or ""
	via      string // --validate-via
	actions  bool   // GitHub Actions environment files and masks
	json     bool   // --output json
}

var canaryCases = []canaryCase{
	{name: "rotate-secret without validation"},
	{name: "rotate-secret validation passes", validate: validatePass, actions: true, json: true},
	{name: "rotate-secret validation fails", validate: validateFail, actions: true},
	{name: "rotate-secret validation via stdin", validate: `v=$(cat) && test -n "$v"`, via: rotate.ViaStdin},
	{name: "apply validation passes", apply: true, validate: validatePass, actions: true},
	{name: "apply validation fails", apply: true, validate: validateFail, json: true},
	{name: "apply without validation in actions", apply: true, actions: true, json: true},
}

// vaultSecretPath matches the Key Vault data plane paths that carry a
// secret value by design: reading and setting a version.
var vaultSecretPath = regexp.MustCompile(`^/secrets/`)

// TestSecretCanary rotates a secret whose current value is a known canary,
// then searches every output of the run for the canary and for each value
// the rotation wrote.
func TestSecretCanary(t *testing.T) {
	rounds := 1
	if Long() {
		rounds = 5
	}
	var emulatorLog syncBuffer
	canary := "canary" + randomHex(t, 12)
	seed, _ := seedWith(0, canary)
	// No propagation delay: with one, a run that follows the revoke of the
	// same pair can pass the effective wait on the old grant's permission
	// and then get 403 from the vault once its removal takes effect.
	srv := startEmulator(t, emulator.Config{Seed: seed,
		Logger: slog.New(slog.NewJSONHandler(&emulatorLog, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	tap := installWireTap(t, srv.CertPool())

	var artifacts []artifact
	var masks, runs int
	for round := range rounds {
		for _, c := range canaryCases {
			t.Run(fmt.Sprintf("%s round %d", c.name, round), func(t *testing.T) {
				got, n := runCanaryCase(t, srv, c)
				artifacts = append(artifacts, got...)
				masks += n
				runs++
			})
		}
	}

	values := []string{canary}
	for _, v := range srv.SecretVersions(vaultName, secretName) {
		if v.Tags[rotate.TagRequestID] != "" && v.Value != canary {
			values = append(values, v.Value)
		}
	}
	artifacts = append(artifacts, artifact{name: "emulator debug log", text: emulatorLog.String()})
	// The tap must see plaintext: the vault's own secret traffic carries
	// the canary, so finding it there shows the recording works.
	var excluded, seenInVault int
	for _, ex := range tap.exchanges() {
		if strings.HasSuffix(strings.Split(ex.Host, ":")[0], ".vault.localhost") && vaultSecretPath.MatchString(ex.Path) {
			excluded++
			seenInVault += strings.Count(ex.Request+ex.Response, canary)
			continue
		}
		artifacts = append(artifacts, artifact{name: fmt.Sprintf("HTTP %s %s%s", ex.Method, ex.Host, ex.Path),
			text: ex.Request + "\n" + ex.Response})
	}

	leaks := 0
	for _, a := range artifacts {
		for i, v := range values {
			if n := countOutsideMasks(a.text, v); n > 0 {
				leaks += n
				t.Errorf("%s: value %d of %d (the canary is value 0) occurs %d time(s) outside ::add-mask:: lines",
					a.name, i, len(values), n)
			}
		}
	}
	if seenInVault == 0 {
		t.Errorf("canary in recorded Key Vault traffic: got 0 occurrences; want at least 1, or the wire tap records nothing")
	}
	if len(values) < 2 {
		t.Errorf("rotated values found in the vault: got %d; want at least 1", len(values)-1)
	}

	res := Result{Test: "canary", Mode: Mode(), Seed: Seed()}
	res.Add("canary.runs", float64(runs), "runs", nil)
	res.Add("canary.values_tracked", float64(len(values)), "values", nil,
		"the canary that the vault held first, and every value that a rotation wrote, read back from the emulator")
	res.Add("canary.artifacts_scanned", float64(len(artifacts)), "artifacts", nil,
		"stdout, stderr with debug JSON logs, audit log, plan file, GITHUB_OUTPUT, GITHUB_STEP_SUMMARY and GITHUB_ENV "+
			"of every run, the emulator's debug log, and every recorded HTTP request and response")
	res.Add("canary.http_exchanges_excluded", float64(excluded), "exchanges", nil,
		"Key Vault /secrets/ reads and writes, which carry the value by design")
	res.Add("canary.mask_lines", float64(masks), "lines", nil)
	res.Add("canary.occurrences_outside_masks", float64(leaks), "occurrences", &Target{Op: "==", Value: 0})
	if err := res.Write(); err != nil {
		t.Fatal(err)
	}
	t.Logf("canary: %d runs, %d values, %d artifacts, %d leaks", runs, len(values), len(artifacts), leaks)
}

// artifact is one text that a run produced.
type artifact struct {
	name string
	text string
}

// runCanaryCase runs one rotation and returns what it wrote and how many
// ::add-mask:: lines its stdout had.
func runCanaryCase(t *testing.T, srv *emulator.Server, c canaryCase) ([]artifact, int) {
	dir := t.TempDir()
	env := cliEnv(srv, filepath.Join(dir, "audit.jsonl"))
	env["ELEVATE_LOG_LEVEL"] = "debug"
	env["ELEVATE_LOG_FORMAT"] = "json"
	if c.actions {
		env["GITHUB_ACTIONS"] = "true"
		env["GITHUB_OUTPUT"] = filepath.Join(dir, "output")
		env["GITHUB_STEP_SUMMARY"] = filepath.Join(dir, "summary.md")
		env["GITHUB_ENV"] = filepath.Join(dir, "env")
	}
	request := []string{"--role", roleSecretsOfficer, "--scope", vaultScope,
		"--justification", "canary " + c.name, "--request-id", uuid.NewString()}
	rotation := []string{"--vault", vaultName, "--secret", secretName}
	if c.validate != "" {
		rotation = append(rotation, "--validate-command", c.validate)
	}
	if c.via != "" {
		rotation = append(rotation, "--validate-via", c.via)
	}
	if c.json {
		rotation = append(rotation, "--output", "json")
	}

	var args []string
	var outs []artifact
	planFile := filepath.Join(dir, "plan.json")
	if c.apply {
		code, stdout, stderr := runInProcess(env, append([]string{"plan", "--plan-file", planFile}, request...)...)
		if code != 0 {
			t.Fatalf("plan exit code: got %d; want 0\n%s", code, stderr)
		}
		outs = append(outs, artifact{"plan stdout", stdout}, artifact{"plan stderr", stderr})
		pl, err := plan.Read(planFile)
		if err != nil {
			t.Fatal(err)
		}
		args = append([]string{"apply", "--plan", planFile, "--expect-hash", pl.SHA256, "--rotate-secret"}, rotation...)
	} else {
		args = append(append([]string{"rotate-secret"}, request...), rotation...)
	}
	code, stdout, stderr := runInProcess(env, args...)
	wantCode := cli.ExitOK
	if c.validate == validateFail {
		wantCode = cli.ExitActionFailure
	}
	if code != wantCode {
		t.Errorf("%s exit code: got %d; want %d\nstderr:\n%s", args[0], code, wantCode, stderr)
	}
	masks := strings.Count(stdout, "::add-mask::")
	if c.actions && masks == 0 {
		t.Errorf("stdout in GitHub Actions has no ::add-mask:: line for the new value")
	}
	outs = append(outs, artifact{args[0] + " stdout", stdout}, artifact{args[0] + " stderr", stderr})
	for _, name := range []string{"audit.jsonl", "plan.json", "output", "summary.md", "env"} {
		data, err := readFileIfExists(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		if data != nil {
			outs = append(outs, artifact{c.name + " " + name, string(data)})
		}
	}
	return outs, masks
}

// runInProcess runs elevate's command line in this process with env as its
// whole environment.
func runInProcess(env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	streams := cli.Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut,
		Getenv: func(k string) string { return env[k] }}
	code = cli.Main(context.Background(), args, streams)
	return code, out.String(), errOut.String()
}

// countOutsideMasks counts the occurrences of value in text on lines that
// are not ::add-mask:: workflow commands.
func countOutsideMasks(text, value string) int {
	n := 0
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "::add-mask::") {
			continue
		}
		n += strings.Count(line, value)
	}
	return n
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestCanaryScanFindsEcho checks that the scan can fail: a validation
// command that prints the value puts it on stderr, where the scan must
// find it.
func TestCanaryScanFindsEcho(t *testing.T) {
	canary := "canary" + randomHex(t, 12)
	seed, _ := seedWith(0, canary)
	srv := startEmulator(t, emulator.Config{Seed: seed})
	outs, _ := runCanaryCase(t, srv, canaryCase{name: "echo", validate: `echo "value $ELEVATE_SECRET_VALUE"`})
	versions := srv.SecretVersions(vaultName, secretName)
	newValue := versions[len(versions)-1].Value
	found := 0
	for _, a := range outs {
		found += countOutsideMasks(a.text, newValue)
	}
	if found == 0 {
		t.Errorf("occurrences of an echoed value: got 0; want at least 1")
	}
}
