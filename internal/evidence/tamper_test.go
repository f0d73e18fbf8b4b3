package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/audit"
	"github.com/elevate-dev/elevate/internal/emulator"
)

// tampering changes the lines of an audit log (each with its newline). at
// picks the line, from 0 to len(lines)-1, where the change lands.
type tampering struct {
	name   string
	change func(lines []string, at int) []string
	// positions returns the values of at to try for a log of n lines.
	positions func(n int) []int
}

// edges returns the first, a middle and the last index of n lines.
func edges(n int) []int { return []int{0, n / 2, n - 1} }

var tamperings = []tampering{
	{"edit a field", editOutcome, edges},
	{"delete a record", func(l []string, at int) []string {
		return append(append([]string{}, l[:at]...), l[at+1:]...)
	}, edges},
	{"insert a forged record", insertForged, func(n int) []int { return []int{0, n / 2, n} }},
	{"reorder two records", func(l []string, at int) []string {
		out := append([]string{}, l...)
		out[at], out[at+1] = out[at+1], out[at]
		return out
	}, func(n int) []int { return []int{0, n / 2, n - 2} }},
	{"truncate the tail", func(l []string, at int) []string { return l[:at] }, func(n int) []int { return []int{n - 1, n / 2} }},
	{"cut the last line short", func(l []string, at int) []string {
		out := append([]string{}, l...)
		out[at] = out[at][:len(out[at])/2]
		return out
	}, func(n int) []int { return []int{n - 1} }},
	{"edit and rewrite the chain", func(l []string, at int) []string { return rechain(editOutcome(l, at)) }, edges},
}

// editOutcome turns the record's outcome from ok to failed or back, as
// someone hiding a failure or inventing one would.
func editOutcome(lines []string, at int) []string {
	out := append([]string{}, lines...)
	switch {
	case strings.Contains(out[at], `"outcome":"ok"`):
		out[at] = strings.Replace(out[at], `"outcome":"ok"`, `"outcome":"failed"`, 1)
	case strings.Contains(out[at], `"outcome":"failed"`):
		out[at] = strings.Replace(out[at], `"outcome":"failed"`, `"outcome":"ok"`, 1)
	default:
		out[at] = strings.Replace(out[at], `"event":"`, `"actor":"someone-else","event":"`, 1)
	}
	return out
}

// insertForged inserts a revoke record at index at whose seq and prev fit
// that position, as a forger who read the chain format would write it.
func insertForged(lines []string, at int) []string {
	prev := ""
	if at > 0 {
		prev = hashLine(lines[at-1])
	}
	forged := audit.Record{Schema: audit.SchemaVersion, Seq: int64(at + 1), Time: time.Now().UTC(),
		RequestID: uuid.NewString(), Event: audit.EventRevoke, Outcome: audit.OutcomeOK, Prev: prev}
	data, _ := json.Marshal(forged)
	out := append([]string{}, lines[:at]...)
	out = append(out, string(data)+"\n")
	return append(out, lines[at:]...)
}

// rechain recomputes every seq and prev, so the chain is intact again.
func rechain(lines []string) []string {
	out := make([]string, len(lines))
	prev := ""
	for i, line := range lines {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return lines
		}
		r.Seq, r.Prev = int64(i+1), prev
		data, _ := json.Marshal(r)
		out[i] = string(data) + "\n"
		prev = hashLine(out[i])
	}
	return out
}

func hashLine(line string) string {
	sum := sha256.Sum256([]byte(strings.TrimSuffix(line, "\n")))
	return hex.EncodeToString(sum[:])
}

// TestAuditTampering builds audit logs from real runs, applies each
// tampering at several places, and checks `elevate audit verify` with and
// without the head that the last run printed.
func TestAuditTampering(t *testing.T) {
	logs := 1
	if Long() {
		logs = 4
	}
	seed, scopes := seedWith(2, "")
	srv := startEmulator(t, emulator.Config{Seed: seed})

	var total, byChain, byHead int
	undetectedByChain := map[string]int{}
	for n := range logs {
		path, head := realAuditLog(t, srv, scopes, 2+n)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(string(data), "\n")
		lines = lines[:len(lines)-1] // the text after the last newline is empty
		if code, _, stderr := runInProcess(nil, "audit", "verify", path, "--head", head); code != 0 {
			t.Fatalf("untouched log: verify exit code %d; want 0\n%s", code, stderr)
		}
		for _, tm := range tamperings {
			for _, at := range tm.positions(len(lines)) {
				tampered := filepath.Join(t.TempDir(), "audit.jsonl")
				if err := os.WriteFile(tampered, []byte(strings.Join(tm.change(lines, at), "")), 0o600); err != nil {
					t.Fatal(err)
				}
				total++
				chainCode, _, _ := runInProcess(nil, "audit", "verify", tampered)
				headCode, _, _ := runInProcess(nil, "audit", "verify", tampered, "--head", head)
				if chainCode != 0 {
					byChain++
				} else {
					undetectedByChain[tm.name]++
				}
				if headCode != 0 {
					byHead++
				} else {
					t.Errorf("%s at line %d of %d: verify --head passed; want it to fail", tm.name, at+1, len(lines))
				}
			}
		}
	}

	res := Result{Test: "tamper", Mode: Mode(), Seed: Seed()}
	res.Add("tamper.cases", float64(total), "tamperings", nil,
		fmt.Sprintf("%d kinds at the first, a middle and the last line of %d log(s) written by real runs", len(tamperings), logs))
	res.Add("tamper.detected_with_head_percent", 100*float64(byHead)/float64(total), "%", &Target{Op: ">=", Value: 100})
	var gaps []string
	for _, tm := range tamperings {
		if n := undetectedByChain[tm.name]; n > 0 {
			gaps = append(gaps, fmt.Sprintf("%s (%d)", tm.name, n))
		}
	}
	res.Add("tamper.detected_by_chain_only_percent", 100*float64(byChain)/float64(total), "%", nil,
		"without --head the chain misses: "+strings.Join(gaps, ", "))
	if err := res.Write(); err != nil {
		t.Fatal(err)
	}
	t.Logf("tampering: %d cases, detected with head %d, by chain alone %d; chain misses %v", total, byHead, byChain, undetectedByChain)
}

// realAuditLog runs `elevate run` runs times against srv, all appending to
// one audit log, and returns the log's path and the audit_head of the last
// run's JSON summary.
func realAuditLog(t *testing.T, srv *emulator.Server, scopes []string, runs int) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	env := cliEnv(srv, path)
	var head string
	for i := range runs {
		code, stdout, stderr := runInProcess(env, "run", "--role", roleReader, "--scope", scopes[i%len(scopes)],
			"--justification", "tamper evidence", "-o", "json", "--", "sh", "-c", fmt.Sprintf("exit %d", i%2))
		if code != i%2 {
			t.Fatalf("run exit code: got %d; want %d\n%s", code, i%2, stderr)
		}
		var s struct {
			AuditHead string `json:"audit_head"`
		}
		if err := json.Unmarshal([]byte(stdout), &s); err != nil {
			t.Fatalf("decode run summary: %v\n%s", err, stdout)
		}
		head = s.AuditHead
	}
	report, err := audit.VerifyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if head != report.Head {
		t.Fatalf("audit_head in the summary: got %q; want the log's head %q", head, report.Head)
	}
	return path, head
}
