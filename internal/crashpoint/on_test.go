//go:build crashpoints

package crashpoint

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHitKillsOnNthHit re-runs this test binary as a child that hits a point
// three times, and checks which hit, if any, killed it.
func TestHitKillsOnNthHit(t *testing.T) {
	if os.Getenv("CRASHPOINT_CHILD") == "1" {
		for i := 0; i < 3; i++ {
			Hit("revoke.delete_before")
			os.Stdout.WriteString("survived hit\n")
		}
		return
	}
	cases := []struct {
		name      string
		at, after string
		survived  int
		killed    bool
	}{
		{"first hit kills", "revoke.delete_before", "", 0, true},
		{"third hit kills", "revoke.delete_before", "3", 2, true},
		{"fourth hit never comes", "revoke.delete_before", "4", 3, false},
		{"other point ignored", "revoke.delete_after", "", 3, false},
		{"unknown point ignored", "no.such.point", "", 3, false},
		{"invalid after ignored", "revoke.delete_before", "0", 3, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestHitKillsOnNthHit$")
			cmd.Env = append(os.Environ(), "CRASHPOINT_CHILD=1", EnvAt+"="+tc.at, EnvAfter+"="+tc.after)
			out, err := cmd.Output()
			var exit *exec.ExitError
			killed := errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
			if killed != tc.killed {
				t.Errorf("killed by SIGKILL: got %v; want %v (err %v)", killed, tc.killed, err)
			}
			if got := strings.Count(string(out), "survived hit"); got != tc.survived {
				t.Errorf("hits survived: got %d; want %d", got, tc.survived)
			}
		})
	}
}

func TestClockScalesAroundEpoch(t *testing.T) {
	epoch := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	wall := epoch.Add(10 * time.Second)
	now := func() time.Time { return wall }
	cases := []struct {
		name, rate, epoch string
		want              time.Time
	}{
		{"unset rate unscaled", "", "", wall},
		{"rate 60 from epoch", "60", epoch.Format(time.RFC3339Nano), epoch.Add(10 * time.Minute)},
		{"invalid rate unscaled", "-1", epoch.Format(time.RFC3339Nano), wall},
		{"invalid epoch unscaled", "60", "yesterday", wall},
		{"default epoch is first call", "60", "", wall},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvClockRate, tc.rate)
			t.Setenv(EnvClockEpoch, tc.epoch)
			if got := Clock(now)(); !got.Equal(tc.want) {
				t.Errorf("Clock() = %s; want %s", got, tc.want)
			}
		})
	}
}
