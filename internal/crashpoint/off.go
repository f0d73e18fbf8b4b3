//go:build !crashpoints

package crashpoint

import "time"

// Enabled reports whether this build kills the process at crash points.
const Enabled = false

// Hit does nothing: this build has no crash points.
func Hit(string) {}

// Clock returns now: this build has no test clock.
func Clock(now func() time.Time) func() time.Time { return now }
