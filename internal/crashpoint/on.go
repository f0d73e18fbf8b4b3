//go:build crashpoints

package crashpoint

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Enabled reports whether this build kills the process at crash points.
const Enabled = true

// target is the crash that the environment requests, read once.
type target struct {
	name  string
	after int64
	delay time.Duration
	hits  atomic.Int64
}

var (
	loadOnce sync.Once
	want     *target
)

// load reads the environment. A malformed EnvAfter or EnvDelay, or an
// unknown point name, is reported on stderr, because a crash test that
// silently never crashes proves nothing.
func load() {
	name := os.Getenv(EnvAt)
	if name == "" {
		return
	}
	if _, ok := Lookup(name); !ok {
		fmt.Fprintf(os.Stderr, "crashpoint: unknown %s %q; no crash will happen\n", EnvAt, name)
		return
	}
	t := &target{name: name, after: 1}
	if s := os.Getenv(EnvAfter); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "crashpoint: invalid %s %q: want a whole number from 1; no crash will happen\n", EnvAfter, s)
			return
		}
		t.after = n
	}
	if s := os.Getenv(EnvDelay); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			fmt.Fprintf(os.Stderr, "crashpoint: invalid %s %q: want a duration such as 100ms; no crash will happen\n", EnvDelay, s)
			return
		}
		t.delay = d
	}
	want = t
}

// Hit kills the process with SIGKILL when name is the point EnvAt names and
// this is its EnvAfter-th hit, at once or after EnvDelay.
func Hit(name string) {
	loadOnce.Do(load)
	if want == nil || want.name != name {
		return
	}
	n := want.hits.Add(1)
	if n != want.after {
		return
	}
	if want.delay > 0 {
		time.AfterFunc(want.delay, func() { kill(name, n) })
		return
	}
	kill(name, n)
}

// kill announces the crash on stderr, so a test can tell it from any other
// death, and sends SIGKILL to this process.
func kill(name string, n int64) {
	fmt.Fprintf(os.Stderr, "crashpoint: %s hit %d: killing the process\n", name, n)
	self, err := os.FindProcess(os.Getpid())
	if err == nil {
		err = self.Kill()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "crashpoint: kill failed: %v\n", err)
		os.Exit(137)
	}
	time.Sleep(time.Minute) // the signal lands before this ends
}

// Clock returns now scaled by EnvClockRate around EnvClockEpoch, or now
// itself when EnvClockRate is unset. Invalid values are reported on stderr
// and leave the clock unscaled.
func Clock(now func() time.Time) func() time.Time {
	text := os.Getenv(EnvClockRate)
	if text == "" {
		return now
	}
	rate, err := strconv.ParseFloat(text, 64)
	if err != nil || rate <= 0 {
		fmt.Fprintf(os.Stderr, "crashpoint: invalid %s %q: want a positive number; the clock is not scaled\n", EnvClockRate, text)
		return now
	}
	epoch := now()
	if s := os.Getenv(EnvClockEpoch); s != "" {
		if epoch, err = time.Parse(time.RFC3339Nano, s); err != nil {
			fmt.Fprintf(os.Stderr, "crashpoint: invalid %s %q: want an RFC 3339 time; the clock is not scaled\n", EnvClockEpoch, s)
			return now
		}
	}
	return func() time.Time {
		t := now()
		return epoch.Add(time.Duration(float64(t.Sub(epoch)) * rate))
	}
}
