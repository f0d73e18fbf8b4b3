package emulator

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// actionsTokenPath is where the emulated Actions runtime hands out OIDC
// tokens, the URL a runner exports as ACTIONS_ID_TOKEN_REQUEST_URL.
const actionsTokenPath = "/github/_actions/token"

// GitHubJob describes one emulated Actions job: the claims its OIDC tokens
// carry. Subject is derived as GitHub does when it is empty.
type GitHubJob struct {
	Repository  string // owner/name
	Ref         string // refs/heads/main, refs/tags/v1, refs/pull/7/merge
	Environment string // set when the job names an environment
	EventName   string // push, pull_request, workflow_dispatch ...
	Workflow    string
	RunID       string
	Actor       string
	SHA         string
	Subject     string
	// Claims are added to, or override, the derived claims.
	Claims map[string]any
}

// GitHubSubject returns the sub claim GitHub issues for a job: the
// environment form when the job has an environment, the pull_request form
// for pull request events, and the ref form otherwise.
func GitHubSubject(job GitHubJob) string {
	switch {
	case job.Subject != "":
		return job.Subject
	case job.Environment != "":
		return "repo:" + job.Repository + ":environment:" + job.Environment
	case job.EventName == "pull_request" || job.EventName == "pull_request_target":
		return "repo:" + job.Repository + ":pull_request"
	default:
		return "repo:" + job.Repository + ":ref:" + job.Ref
	}
}

// claims returns the token claims of the job, as in GitHub's documented
// example token, for the given audience.
func (job GitHubJob) claims(audience string) map[string]any {
	owner, _, _ := strings.Cut(job.Repository, "/")
	refType := "branch"
	if strings.HasPrefix(job.Ref, "refs/tags/") {
		refType = "tag"
	}
	c := map[string]any{
		"sub":                GitHubSubject(job),
		"aud":                audience,
		"repository":         job.Repository,
		"repository_owner":   owner,
		"ref":                job.Ref,
		"ref_type":           refType,
		"event_name":         job.EventName,
		"workflow":           job.Workflow,
		"run_id":             job.RunID,
		"run_number":         "1",
		"run_attempt":        "1",
		"actor":              job.Actor,
		"sha":                job.SHA,
		"runner_environment": "github-hosted",
		"job_workflow_ref":   job.Repository + "/.github/workflows/elevate.yml@" + job.Ref,
	}
	if job.Environment != "" {
		c["environment"] = job.Environment
	}
	for k, v := range job.Claims {
		c[k] = v
	}
	return c
}

// actionsJobs maps request tokens to registered jobs.
type actionsJobs struct {
	mu   sync.Mutex
	jobs map[string]GitHubJob
}

// RegisterGitHubJob makes a job known to the emulated Actions runtime and
// returns the values a runner exports as ACTIONS_ID_TOKEN_REQUEST_URL and
// ACTIONS_ID_TOKEN_REQUEST_TOKEN for it.
func (s *Server) RegisterGitHubJob(job GitHubJob) (requestURL, requestToken string, err error) {
	if !strings.Contains(job.Repository, "/") {
		return "", "", fmt.Errorf("register GitHub job: invalid repository %q: use owner/name", job.Repository)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("register GitHub job: %w", err)
	}
	token := hex.EncodeToString(b)
	s.actions.mu.Lock()
	defer s.actions.mu.Unlock()
	if s.actions.jobs == nil {
		s.actions.jobs = map[string]GitHubJob{}
	}
	s.actions.jobs[token] = job
	return s.url + actionsTokenPath + "?api-version=2.0", token, nil
}

// serveActionsToken responds to GET ...?audience=AUD with {"value": JWT} for the
// job whose request token is the bearer, as the Actions runtime does.
func (s *Server) serveActionsToken(w http.ResponseWriter, r *http.Request) {
	job, err := s.actions.lookup(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": err.Error()})
		return
	}
	audience := r.URL.Query().Get("audience")
	if audience == "" {
		audience = "https://github.com/" + strings.SplitN(job.Repository, "/", 2)[0]
	}
	tok, err := s.MintGitHubToken(job.claims(audience))
	if err != nil {
		s.log.Error("mint Actions OIDC token failed", "error", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": "token minting failed"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": len(tok), "value": tok})
}

func (a *actionsJobs) lookup(token string) (GitHubJob, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for known, job := range a.jobs {
		if subtle.ConstantTimeCompare([]byte(known), []byte(token)) == 1 {
			return job, nil
		}
	}
	return GitHubJob{}, errors.New("bad credentials: unknown or missing request token")
}
