// Package crashpoint marks the places in the grant lifecycle where a test
// may kill the process, to prove that a crash at any of them leaves nothing
// that `elevate revoke --plan` cannot clean up.
//
// In a normal build Hit does nothing and compiles to nothing. In a build
// with the tag `crashpoints`, Hit sends SIGKILL to its own process when
// ELEVATE_CRASH_AT names the point:
//
//	go build -tags crashpoints -o elevate-crash ./cmd/elevate
//	ELEVATE_CRASH_AT=revoke.delete_before ELEVATE_CRASH_AFTER=2 ./elevate-crash apply --plan plan.json -- true
//
// SIGKILL cannot be caught, so no deferred revoke, signal handler or
// audit write runs after it: the process stops as it would on a lost runner.
package crashpoint

// Environment variables read by the crashpoints build.
const (
	// EnvAt names the point to crash at.
	EnvAt = "ELEVATE_CRASH_AT"
	// EnvAfter is N, to crash on the Nth hit of the point (default 1),
	// for points that run once per pair or per poll.
	EnvAfter = "ELEVATE_CRASH_AFTER"
	// EnvDelay is a Go duration: when set, the Nth hit starts a timer and
	// the process is killed when it fires, so a crash lands while the
	// code after the point (such as the action's command) is running.
	EnvDelay = "ELEVATE_CRASH_DELAY"
	// EnvClockRate is a number R > 0: the crashpoints build runs the
	// broker's service and store clocks R times as fast as real time, so a
	// test sees 5 minute leases expire in seconds. Token checks keep real
	// time.
	EnvClockRate = "ELEVATE_TEST_CLOCK_RATE"
	// EnvClockEpoch is the RFC 3339 instant at which the scaled clock
	// equals real time. Processes that share a database must share it.
	// Default: the first call of Clock in the process.
	EnvClockEpoch = "ELEVATE_TEST_CLOCK_EPOCH"
)

// Point is one crash point and the lifecycle step it follows or precedes.
type Point struct {
	Name string
	// Where describes what has happened when the point is hit.
	Where string
	// PerPair marks points hit once per pair (or per poll), where
	// EnvAfter selects which hit crashes.
	PerPair bool
}

// Points lists every point named by a Hit call, in lifecycle order. A test
// in this package checks the list against the Hit calls in the source.
var Points = []Point{
	{Name: "request.audited", Where: "the request record is in the audit log; nothing is granted"},
	{Name: "grant.put_before", Where: "before a role assignment PUT", PerPair: true},
	{Name: "grant.put_after", Where: "after a role assignment PUT succeeded", PerPair: true},
	{Name: "grant.done", Where: "every PUT returned; the grant record is not written"},
	{Name: "grant.audited", Where: "the grant record is written"},
	{Name: "effective.poll", Where: "during the wait for the grant to take effect", PerPair: true},
	{Name: "effective.audited", Where: "the grant is effective and recorded"},
	{Name: "action.start", Where: "before the action starts (with a delay: while it runs)"},
	{Name: "rotate.read_done", Where: "the rotation read the current secret version"},
	{Name: "rotate.set_done", Where: "the rotation set the new secret version"},
	{Name: "rotate.validated", Where: "the validation command accepted the new value"},
	{Name: "rotate.validation_failed", Where: "validation failed; the previous value is not restored yet"},
	{Name: "rotate.restored", Where: "the previous value was written back as a new version"},
	{Name: "action.done", Where: "the action returned; its record is not written"},
	{Name: "action.audited", Where: "the action record is written"},
	{Name: "revoke.start", Where: "before any DELETE"},
	{Name: "revoke.delete_before", Where: "before a role assignment DELETE", PerPair: true},
	{Name: "revoke.delete_after", Where: "after a role assignment DELETE succeeded", PerPair: true},
	{Name: "revoke.verify_before", Where: "before reading a deleted assignment back", PerPair: true},
	{Name: "revoke.verify_poll", Where: "during the read-back of a deleted assignment", PerPair: true},
	{Name: "revoke.done", Where: "every DELETE verified; the final records are not written"},
	{Name: "revoke.audited", Where: "the revoke record is written; the complete record is not"},
}

// BrokerPoints lists the points in the broker (elevate serve), in the
// order a request passes them. They are apart from Points because the CLI
// crash tests walk Points and the CLI never reaches these.
var BrokerPoints = []Point{
	{Name: "broker.approval_recorded", Where: "an approval is stored; the request has not moved on it"},
	{Name: "broker.intent_committed", Where: "a grant intent and its lease are stored; nothing is created in Azure", PerPair: true},
	{Name: "broker.grant_created", Where: "the role assignment exists in Azure; the grant is still an intent", PerPair: true},
	{Name: "broker.lease_released", Where: "a grant's last lease ended and the grant is revoking; no DELETE was sent", PerPair: true},
	{Name: "broker.revoke_verified", Where: "the DELETE was verified by a read-back; the grant is not marked revoked", PerPair: true},
}

// Lookup returns the point named name, from Points or BrokerPoints.
func Lookup(name string) (Point, bool) {
	for _, list := range [][]Point{Points, BrokerPoints} {
		for _, p := range list {
			if p.Name == name {
				return p, true
			}
		}
	}
	return Point{}, false
}
