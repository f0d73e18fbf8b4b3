package emulator

import (
	"time"
)

// conditionsAllow evaluates the ABAC conditions of the caller's effective
// assignments that grant action at scope, against the assignment being
// written or deleted. It returns ok when some granting assignment has no
// condition or a condition that holds.
// NOTE: conditions are stored and returned but not yet evaluated.
func (st *state) conditionsAllow(principalID, action string, scope ResourceID, target RoleAssignment, now time.Time, delay time.Duration) (string, bool) {
	return "", true
}
