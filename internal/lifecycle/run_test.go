package lifecycle_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/cli"
	"github.com/elevate-dev/elevate/internal/emulator"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/rotate"
)

func TestEffectiveWaitsOutPropagation(t *testing.T) {
	te := startEnv(t, emulator.Config{PropagationDelay: 300 * time.Millisecond})
	r := te.newRun(t, fastOptions())
	pairs := []access.Pair{pair(t, roleSecretsOfficer, vaultScope)}
	req := te.request(t, pairs...)
	rot := &rotate.Rotation{Store: te.vault(t), Secret: demoSecret, RequestID: req.ID}
	if err := rot.CheckAndSetDefaults(); err != nil {
		t.Fatalf("CheckAndSetDefaults: %v", err)
	}

	res, err := r.engine.Run(context.Background(), req, r.roles(t, pairs), rot, []lifecycle.Prober{rot})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Action.SecretVersion == "" {
		t.Errorf("secret version after rotation: got none; want the new version")
	}
	// The wait saw the grant not yet effective, and the rotation itself
	// never met a 403.
	perms := te.rec.matching(http.MethodGet, `/permissions$`)
	if len(perms) < 2 {
		t.Errorf("permission reads: got %d; want at least 2 (the delay was not waited out)", len(perms))
	}
	for _, ex := range te.rec.log {
		if strings.Contains(ex.Host, "vault") && ex.Status == http.StatusForbidden && ex.Method != http.MethodGet {
			t.Errorf("vault %s %s: got 403; want the rotation to run only once effective", ex.Method, ex.Path)
		}
	}
	versions := te.srv.SecretVersions(demoVault, demoSecret)
	if got := versions[len(versions)-1].Tags[rotate.TagRequestID]; got != req.ID {
		t.Errorf("latest version's %s tag: got %q; want %q", rotate.TagRequestID, got, req.ID)
	}
}

func TestEffectiveTimeoutRevokes(t *testing.T) {
	te := startEnv(t, emulator.Config{PropagationDelay: 10 * time.Minute})
	opts := fastOptions()
	opts.EffectiveTimeout = 150 * time.Millisecond
	r := te.newRun(t, opts)
	// Not Reader: the pipeline's standing delegation already allows */read,
	// so a Reader grant counts as effective at once.
	pairs := []access.Pair{pair(t, roleSecretsOfficer, vaultScope)}
	req := te.request(t, pairs...)
	ran := false
	action := funcAction{name: "never", run: func(context.Context) (lifecycle.ActionResult, error) {
		ran = true
		return lifecycle.ActionResult{}, nil
	}}

	res, err := r.engine.Run(context.Background(), req, r.roles(t, pairs), action, nil)
	if !errors.Is(err, lifecycle.ErrNotEffective) {
		t.Fatalf("Run error: got %v; want it to wrap ErrNotEffective", err)
	}
	if !strings.Contains(err.Error(), "still waiting for Key Vault Secrets Officer at "+vaultScope) {
		t.Errorf("error %q: want it to name the role and scope still waited for", err)
	}
	if code := cli.ExitCode(err); code != cli.ExitFailure {
		t.Errorf("exit code: got %d; want %d", code, cli.ExitFailure)
	}
	if ran {
		t.Errorf("action ran: got true; want false")
	}
	if !res.Grants[0].Verified {
		t.Errorf("grant removal verified: got false; want true")
	}
	if left := te.temporaryAssignments(req.ID); len(left) != 0 {
		t.Errorf("assignments left: got %d; want 0", len(left))
	}
	want := []string{"request:ok", "grant:ok", "effective:failed", "revoke:ok", "complete:failed"}
	if got := events(r.records(t)); !slices.Equal(got, want) {
		t.Errorf("audit events: got %v; want %v", got, want)
	}
}

func TestRevokeOnEveryOutcome(t *testing.T) {
	blockUntilDone := func(ctx context.Context) (lifecycle.ActionResult, error) {
		<-ctx.Done()
		return lifecycle.ActionResult{ExitCode: 143}, context.Cause(ctx)
	}
	tests := []struct {
		name     string
		duration time.Duration
		cancel   bool // cancel the caller's ctx once the action runs, as SIGTERM does
		run      func(ctx context.Context) (lifecycle.ActionResult, error)
		wantErr  error
		wantCode int
	}{
		{name: "action succeeds", run: noopAction.run, wantCode: cli.ExitOK},
		{name: "action fails", wantErr: lifecycle.ErrAction, wantCode: cli.ExitFailure,
			run: func(context.Context) (lifecycle.ActionResult, error) {
				return lifecycle.ActionResult{ExitCode: 1}, errors.New("deploy failed")
			}},
		{name: "window ends first", duration: 100 * time.Millisecond, run: blockUntilDone,
			wantErr: lifecycle.ErrWindowEnded, wantCode: cli.ExitFailure},
		{name: "caller cancels", cancel: true, run: blockUntilDone,
			wantErr: lifecycle.ErrInterrupted, wantCode: cli.ExitFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			te := startEnv(t, emulator.Config{})
			r := te.newRun(t, fastOptions())
			pairs := []access.Pair{pair(t, roleSecretsOfficer, vaultScope), pair(t, roleReader, storageScope)}
			req := te.request(t, pairs...)
			if tt.duration > 0 {
				req.Duration = tt.duration
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			liveDuringAction := 0
			action := funcAction{name: "test action", run: func(actx context.Context) (lifecycle.ActionResult, error) {
				liveDuringAction = len(te.temporaryAssignments(req.ID))
				if tt.cancel {
					cancel()
				}
				return tt.run(actx)
			}}

			res, err := r.engine.Run(ctx, req, r.roles(t, pairs), action, nil)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Run: %v", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("Run error: got %v; want it to wrap %v", err, tt.wantErr)
			}
			if code := cli.ExitCode(err); code != tt.wantCode {
				t.Errorf("exit code: got %d; want %d", code, tt.wantCode)
			}
			if liveDuringAction != len(pairs) {
				t.Errorf("assignments while the action ran: got %d; want %d", liveDuringAction, len(pairs))
			}
			if left := te.temporaryAssignments(req.ID); len(left) != 0 {
				t.Errorf("assignments left: got %d; want 0", len(left))
			}
			for i, g := range res.Grants {
				if !g.Revoked || !g.Verified {
					t.Errorf("grant %d revoked, verified: got %t, %t; want true, true", i, g.Revoked, g.Verified)
				}
			}
			records := r.records(t)
			if got := events(records); !slices.Contains(got, "revoke:ok") {
				t.Errorf("audit events: got %v; want a revoke:ok record", got)
			}
		})
	}
}

func TestRevokeRetriesFailedDeletes(t *testing.T) {
	te := startEnv(t, emulator.Config{})
	// Three failures are one more than the SDK's own tries per call in
	// these tests, so the engine's retry has to finish the job.
	te.setFaults(t, emulator.FaultRule{Method: http.MethodDelete, Path: `roleAssignments`,
		Status: http.StatusInternalServerError, Times: 3})
	r := te.newRun(t, fastOptions())
	pairs := []access.Pair{pair(t, roleReader, storageScope)}
	req := te.request(t, pairs...)

	res, err := r.engine.Run(context.Background(), req, r.roles(t, pairs), noopAction, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	deletes := te.rec.matching(http.MethodDelete, `roleAssignments/`)
	if got, want := statuses(deletes), []int{500, 500, 500, 200}; !slices.Equal(got, want) {
		t.Errorf("DELETE statuses: got %v; want %v", got, want)
	}
	if !res.Grants[0].Verified {
		t.Errorf("grant removal verified: got false; want true")
	}
	if left := te.temporaryAssignments(req.ID); len(left) != 0 {
		t.Errorf("assignments left: got %d; want 0", len(left))
	}
	if !strings.Contains(r.logs.String(), "revoke failed, retrying") {
		t.Errorf("logs: want a retry line; got %s", r.logs.String())
	}
}

func TestRevokeFailureIsReported(t *testing.T) {
	lockedSeed := emulator.DefaultSeed()
	lockedSeed.Locks = append(lockedSeed.Locks, emulator.Lock{
		Scope: storageScope, Name: "keep-storage", Level: emulator.LockCanNotDelete,
	})
	tests := []struct {
		name        string
		seed        emulator.Seed
		faults      []emulator.FaultRule
		wantDeletes int
		wantText    string
	}{
		{
			name:        "delete fails every time",
			faults:      []emulator.FaultRule{{Method: http.MethodDelete, Path: `roleAssignments`, Status: http.StatusServiceUnavailable}},
			wantDeletes: 4 * 3, // RevokeAttempts x the SDK's tries per call
			wantText:    "ServiceUnavailable",
		},
		{
			name:        "scope locked",
			seed:        lockedSeed,
			wantDeletes: 1, // a lock does not go away by retrying
			wantText:    "ScopeLocked",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			te := startEnv(t, emulator.Config{Seed: tt.seed})
			te.setFaults(t, tt.faults...)
			r := te.newRun(t, fastOptions())
			pairs := []access.Pair{pair(t, roleReader, storageScope)}
			req := te.request(t, pairs...)

			res, err := r.engine.Run(context.Background(), req, r.roles(t, pairs), noopAction, nil)
			var revokeErr *lifecycle.RevokeError
			if !errors.As(err, &revokeErr) {
				t.Fatalf("Run error: got %v; want a *RevokeError", err)
			}
			if code := cli.ExitCode(err); code != cli.ExitRevokeFailed {
				t.Errorf("exit code: got %d; want %d", code, cli.ExitRevokeFailed)
			}
			id := res.Grants[0].AssignmentID
			if !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q: want it to name assignment %s and %s", err, id, tt.wantText)
			}
			if got := len(te.rec.matching(http.MethodDelete, `roleAssignments/`)); got != tt.wantDeletes {
				t.Errorf("DELETE requests: got %d; want %d", got, tt.wantDeletes)
			}
			if left := te.temporaryAssignments(req.ID); len(left) != 1 {
				t.Errorf("assignments left: got %d; want 1 (the one that could not be removed)", len(left))
			}
			var failed []string
			for _, rec := range r.records(t) {
				if rec.Event != "revoke_failed" {
					continue
				}
				for _, p := range rec.Pairs {
					failed = append(failed, p.AssignmentID)
				}
			}
			if !slices.Equal(failed, []string{id}) {
				t.Errorf("revoke_failed record assignments: got %v; want [%s]", failed, id)
			}
		})
	}
}

func TestRunSurvivesTransientFaults(t *testing.T) {
	tests := []struct {
		name  string
		rule  emulator.FaultRule
		times int
	}{
		{"role definition read 500", emulator.FaultRule{Method: http.MethodGet, Path: `roleDefinitions/`, Status: 500}, 2},
		{"assignment PUT 503", emulator.FaultRule{Method: http.MethodPut, Path: `roleAssignments/`, Status: 503}, 2},
		{"assignment PUT dropped", emulator.FaultRule{Method: http.MethodPut, Path: `roleAssignments/`, Drop: true}, 2},
		{"permissions read 500", emulator.FaultRule{Method: http.MethodGet, Path: `/permissions$`, Status: 500}, 2},
		{"assignment read 503", emulator.FaultRule{Method: http.MethodGet, Path: `roleAssignments/`, Status: 503}, 2},
		{"assignment list 500", emulator.FaultRule{Method: http.MethodGet, Path: `roleAssignments$`, Status: 500}, 2},
		{"assignment DELETE 500", emulator.FaultRule{Method: http.MethodDelete, Path: `roleAssignments/`, Status: 500}, 2},
		// One failure only: the credential keeps the SDK's default retry
		// delay of 800ms.
		{"vault token 500", emulator.FaultRule{Method: http.MethodPost, Path: `oauth2/v2.0/token$`, Status: 500}, 1},
		{"secret read 500", emulator.FaultRule{Method: http.MethodGet, Host: `vault`, Path: `^/secrets/`, Status: 500}, 2},
		{"secret write 503", emulator.FaultRule{Method: http.MethodPut, Host: `vault`, Path: `^/secrets/`, Status: 503}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			te := startEnv(t, emulator.Config{Seed: seedWithForeignReader(), PropagationDelay: 30 * time.Millisecond})
			rule := tt.rule
			rule.Times = tt.times // within the SDK's three tries
			te.setFaults(t, rule)
			te.rec.reset()
			r := te.newRun(t, fastOptions())
			// The storage pair is adopted, so the list call runs too.
			pairs := []access.Pair{pair(t, roleSecretsOfficer, vaultScope), pair(t, roleReader, storageScope)}
			req := te.request(t, pairs...)
			roles := r.roles(t, pairs)
			rot := &rotate.Rotation{Store: te.vault(t), Secret: demoSecret, RequestID: req.ID}
			if err := rot.CheckAndSetDefaults(); err != nil {
				t.Fatalf("CheckAndSetDefaults: %v", err)
			}

			res, err := r.engine.Run(context.Background(), req, roles, rot, []lifecycle.Prober{rot})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			failed := 0
			for _, ex := range te.rec.log {
				if ex.Status >= 500 || ex.Status == 0 {
					failed++
				}
			}
			if failed != tt.times {
				t.Errorf("failed exchanges: got %d; want %d (the fault did not fire as planned)", failed, tt.times)
			}
			if res.Action.SecretVersion == "" {
				t.Errorf("secret version: got none; want the rotated version")
			}
			if left := te.temporaryAssignments(req.ID); len(left) != 0 {
				t.Errorf("assignments left: got %d; want 0", len(left))
			}
		})
	}
}

func TestAuditRecordsEveryStep(t *testing.T) {
	te := startEnv(t, emulator.Config{PropagationDelay: 20 * time.Millisecond})
	r := te.newRun(t, fastOptions())
	pairs := []access.Pair{pair(t, roleSecretsOfficer, vaultScope), pair(t, roleReader, storageScope)}
	req := te.request(t, pairs...)
	if _, err := r.engine.Run(context.Background(), req, r.roles(t, pairs), noopAction, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}

	records := r.records(t)
	want := []string{"request:ok", "grant:ok", "effective:ok", "action:ok", "revoke:ok", "complete:ok"}
	if got := events(records); !slices.Equal(got, want) {
		t.Fatalf("audit events: got %v; want %v", got, want)
	}
	for _, rec := range records {
		if rec.RequestID != req.ID {
			t.Errorf("%s record request_id: got %q; want %q", rec.Event, rec.RequestID, req.ID)
		}
		if rec.Actor != te.caller.ObjectID || rec.Principal != req.Principal.ID {
			t.Errorf("%s record actor, principal: got %q, %q; want %q, %q",
				rec.Event, rec.Actor, rec.Principal, te.caller.ObjectID, req.Principal.ID)
		}
		switch rec.Event {
		case "request", "grant", "revoke":
			if len(rec.Pairs) != len(pairs) {
				t.Errorf("%s record pairs: got %d; want %d", rec.Event, len(rec.Pairs), len(pairs))
			}
			for i, p := range rec.Pairs {
				if p.RoleID != pairs[i].RoleID || p.Scope != pairs[i].Scope.String() || p.AssignmentName == "" {
					t.Errorf("%s record pair %d: got %+v; want role %s at %s with a name", rec.Event, i, p, pairs[i].RoleID, pairs[i].Scope)
				}
			}
		}
		switch rec.Event {
		case "grant", "effective", "complete":
			if rec.Durations == nil {
				t.Errorf("%s record durations: got none; want them", rec.Event)
			}
		}
	}
}

func TestEffectiveWaitRetriesTransientErrors(t *testing.T) {
	te := startEnv(t, emulator.Config{})
	// More 503s on the permissions read than the SDK retries by itself.
	if err := te.srv.SetFaults(emulator.FaultConfig{Rules: []emulator.FaultRule{
		{Method: "GET", Path: "/providers/Microsoft.Authorization/permissions$", Status: 503, Times: 8},
	}}); err != nil {
		t.Fatal(err)
	}
	r := te.newRun(t, fastOptions())
	pairs := []access.Pair{pair(t, roleSecretsOfficer, vaultScope)}
	ran := false
	action := funcAction{name: "mark", run: func(context.Context) (lifecycle.ActionResult, error) {
		ran = true
		return lifecycle.ActionResult{}, nil
	}}
	if _, err := r.engine.Run(context.Background(), te.request(t, pairs...), r.roles(t, pairs), action, nil); err != nil {
		t.Fatalf("Run with transient permission errors: %v", err)
	}
	if !ran {
		t.Errorf("action ran: got false; want true")
	}
}
