package cli

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// FuzzActionsEnvironment reads the GitHub Actions variables the CLI takes
// its request metadata and idempotency key from. The run URL must appear
// exactly when the server, repository and run id are all set. A pull
// request number read from the ref must be the ref's own segment. The key
// must be stable for one run attempt and change with the attempt.
func FuzzActionsEnvironment(f *testing.F) {
	f.Add("https://github.com", "contoso/payments", "32291736541", "1", "refs/heads/main", "deploy", "")
	f.Add("https://github.com", "contoso/payments", "4242", "2", "refs/pull/17/merge", "build", "")
	f.Add("https://github.com", "contoso/payments", "4242", "1", "refs/pull/17/merge", "build", "99")
	f.Add("https://ghes.contoso.example", "octo-org/octo-repo", "10", "3", "refs/pull//merge", "a-b_c", "")
	f.Add("", "contoso/payments", "1", "1", "refs/pull/", "", "")
	f.Add("https://github.com", "", "", "", "refs/tags/v1.0.0", "", "")
	f.Add("https://github.com", "contoso/pay:ments", "1:2", "1\n", "refs/pull/1\x00/merge", "job:x", "")

	f.Fuzz(func(t *testing.T, server, repository, runID, attempt, ref, job, pullRequest string) {
		env := map[string]string{
			"GITHUB_SERVER_URL": server, "GITHUB_REPOSITORY": repository, "GITHUB_RUN_ID": runID,
			"GITHUB_RUN_ATTEMPT": attempt, "GITHUB_REF": ref, "GITHUB_JOB": job,
		}
		streams := Streams{Getenv: func(k string) string { return env[k] }}

		m := metadataFromEnv(streams.getenv, &requestOptions{PullRequest: pullRequest})
		if m.Repository != repository || m.RunID != runID || m.RunAttempt != attempt || m.Ref != ref {
			t.Errorf("metadata %+v does not copy the environment %v", m, env)
		}
		wantURL := ""
		if server != "" && repository != "" && runID != "" {
			wantURL = server + "/" + repository + "/actions/runs/" + runID
		}
		if m.RunURL != wantURL {
			t.Errorf("run URL = %q; want %q", m.RunURL, wantURL)
		}
		checkPullRequest(t, m.PullRequest, pullRequest, ref)

		o := &brokerRequestOptions{
			Roles: []string{"Reader"}, Scopes: []string{"/subscriptions/9d2c6e1f-4a3b-4c5d-8e7f-0a1b2c3d4e50"},
			PrincipalID: "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801", Duration: 15 * time.Minute,
			Justification: "fuzz", PullRequest: pullRequest,
		}
		in, err := o.input(streams)
		if err != nil {
			t.Fatalf("input with valid flags: %v", err)
		}
		checkIdempotencyKey(t, in.IdempotencyKey, env)
		again, err := o.input(streams)
		if err != nil || again.IdempotencyKey != in.IdempotencyKey {
			t.Errorf("second input gave key %q (%v); want the same key %q", again.IdempotencyKey, err, in.IdempotencyKey)
		}
		if runID == "" {
			return
		}
		env["GITHUB_RUN_ATTEMPT"] = attempt + "0"
		rerun, err := o.input(streams)
		if err != nil || rerun.IdempotencyKey == in.IdempotencyKey {
			t.Errorf("a re-run attempt got the key %q (%v) of the first attempt", rerun.IdempotencyKey, err)
		}
	})
}

// checkPullRequest checks the pull request number metadataFromEnv picked:
// the flag when set, else the number in a refs/pull/N/... ref, else none.
func checkPullRequest(t *testing.T, got, flag, ref string) {
	t.Helper()
	if flag != "" {
		if got != flag {
			t.Errorf("pull request = %q; want the flag's %q", got, flag)
		}
		return
	}
	rest, isPull := strings.CutPrefix(ref, "refs/pull/")
	if !isPull {
		if got != "" {
			t.Errorf("pull request = %q from ref %q; want none", got, ref)
		}
		return
	}
	if strings.Contains(got, "/") {
		t.Errorf("pull request %q from ref %q contains a slash", got, ref)
	}
	if rest != got && !strings.HasPrefix(rest, got+"/") {
		t.Errorf("pull request %q is not the segment after refs/pull/ in %q", got, ref)
	}
}

// checkIdempotencyKey checks the key's shape: empty outside Actions, else
// gha:REPOSITORY:RUN:ATTEMPT:JOB: and 16 hex digits of the body's hash.
func checkIdempotencyKey(t *testing.T, key string, env map[string]string) {
	t.Helper()
	if env["GITHUB_RUN_ID"] == "" {
		if key != "" {
			t.Errorf("key outside a GitHub Actions run = %q; want none", key)
		}
		return
	}
	prefix := "gha:" + env["GITHUB_REPOSITORY"] + ":" + env["GITHUB_RUN_ID"] + ":" +
		env["GITHUB_RUN_ATTEMPT"] + ":" + env["GITHUB_JOB"] + ":"
	if len(prefix)+16 > maxActionsKey {
		// Too long to send as it is: the key is the digest of it.
		digest, ok := strings.CutPrefix(key, "gha:")
		if _, err := hex.DecodeString(digest); !ok || err != nil || len(digest) != 64 {
			t.Errorf("key %q of a long run: want gha: and 64 hex digits", key)
		}
		return
	}
	sum, ok := strings.CutPrefix(key, prefix)
	if !ok {
		t.Fatalf("key %q does not start with %q", key, prefix)
	}
	if _, err := hex.DecodeString(sum); err != nil || len(sum) != 16 {
		t.Errorf("key %q ends in %q; want 16 hex digits", key, sum)
	}
}
