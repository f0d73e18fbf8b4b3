package cli

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/emulator"
)

// TestRunRevokesOnSIGTERM builds the elevate binary, runs `elevate run --
// sleep 30` against an emulator in this process, and sends SIGTERM while
// the command runs, as a cancelled CI job does.
func TestRunRevokesOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	e := startCLIEnv(t, emulator.Config{PropagationDelay: 20 * time.Millisecond})
	cmd := elevateCommand(t, e, "run", "--role", "Reader", "--scope", testStorage,
		"--justification", "signal test", "--", "sleep", "30")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("stderr pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start elevate: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	// Wait for the progress line that shows the command started, then signal.
	lines := make(chan string, 100)
	go func() {
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
		close(lines)
	}()
	var seen []string
	timeout := time.After(30 * time.Second)
wait:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("elevate ended before running the command; stderr %q", seen)
			}
			seen = append(seen, line)
			if strings.Contains(line, "running command sleep") {
				break wait
			}
		case <-timeout:
			t.Fatalf("no \"running command sleep\" line after 30s; stderr %q", seen)
		}
	}
	if n := e.temporaryAssignments(); n != 1 {
		t.Errorf("assignments while the command runs: got %d; want 1", n)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("send SIGTERM: %v", err)
	}
	for line := range lines {
		seen = append(seen, line)
	}

	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != ExitFailure {
		t.Errorf("elevate exit: got %v; want exit code %d; stderr %q", err, ExitFailure, seen)
	}
	if n := e.temporaryAssignments(); n != 0 {
		t.Errorf("assignments after SIGTERM: got %d; want 0", n)
	}
	if _, err := audit.VerifyFile(e.audit); err != nil {
		t.Errorf("audit.VerifyFile: %v", err)
	}
	log := readTestFile(t, e.audit)
	for _, want := range []string{`"event":"revoke"`, "interrupted"} {
		if !strings.Contains(log, want) {
			t.Errorf("audit log: want it to contain %s", want)
		}
	}
}

// TestRunRevokesWhenOutputPipeCloses runs `elevate run` with stdout and
// stderr on pipes whose reader goes away while the command runs, as a job
// step piping elevate into `head` does. The next write must not kill
// elevate before it revokes.
func TestRunRevokesWhenOutputPipeCloses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	e := startCLIEnv(t, emulator.Config{PropagationDelay: 20 * time.Millisecond})
	cmd := elevateCommand(t, e, "run", "--role", "Reader", "--scope", testStorage,
		"--justification", "pipe test", "--", "sleep", "1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start elevate: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	scanner := bufio.NewScanner(stderr)
	for scanner.Scan() {
		if strings.Contains(scanner.Text(), "running command sleep") {
			break
		}
	}
	if n := e.temporaryAssignments(); n != 1 {
		t.Fatalf("assignments while the command runs: got %d; want 1", n)
	}
	// The reader goes away: every later write by elevate hits a closed pipe.
	stdout.Close()
	stderr.Close()

	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
		t.Errorf("elevate was killed by %v; want it to finish", exit.ProcessState.Sys().(syscall.WaitStatus).Signal())
	}
	if n := e.temporaryAssignments(); n != 0 {
		t.Errorf("assignments after the run: got %d; want 0", n)
	}
	if log := readTestFile(t, e.audit); !strings.Contains(log, `"event":"revoke"`) {
		t.Error("audit log: no revoke record")
	}
}

// elevateCommand builds the elevate binary and returns a command that runs
// it with args against e's emulator, with e's environment minus its log
// settings.
func elevateCommand(t *testing.T, e *cliEnv, args ...string) *exec.Cmd {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "elevate")
	build := exec.Command("go", "build", "-o", bin, "github.com/elevate-dev/elevate/cmd/elevate")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	for k, v := range e.vars {
		if k != "ELEVATE_LOG_LEVEL" && k != "ELEVATE_LOG_FORMAT" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	return cmd
}
