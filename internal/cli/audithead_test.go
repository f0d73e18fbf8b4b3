package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elevate-dev/elevate/internal/audit"
)

// writeAuditLog appends n records to a new log and returns its path and the
// head after each record.
func writeAuditLog(t *testing.T, n int) (string, []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	log, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var heads []string
	for i := 0; i < n; i++ {
		if _, err := log.Append(audit.Record{RequestID: "r1", Event: "grant", Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
		heads = append(heads, log.Head())
	}
	return path, heads
}

func TestAuditVerifyAnchoredHead(t *testing.T) {
	path, heads := writeAuditLog(t, 4)
	truncated := filepath.Join(t.TempDir(), "truncated.jsonl")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if err := os.WriteFile(truncated, []byte(strings.Join(lines[:2], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		file     string
		head     string
		wantCode int
		wantText string
	}{
		{"no head checks chain only", truncated, "", ExitOK, "2 records, chain intact"},
		{"log ends at head", path, heads[3], ExitOK, "ends at the anchored head"},
		{"records after head rejected", path, heads[1], ExitFailure, "2 record(s) follow it"},
		{"truncated log misses head", truncated, heads[3], ExitFailure, "no line hashes to"},
		{"malformed head rejected", path, "abc", ExitUsage, "invalid --head"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := []string{"audit", "verify", tc.file}
			if tc.head != "" {
				args = append(args, "--head", tc.head)
			}
			code := Main(context.Background(), args, Streams{Out: &out, ErrOut: &errOut})
			if code != tc.wantCode {
				t.Errorf("exit code: got %d; want %d\nstderr: %s", code, tc.wantCode, errOut.String())
			}
			if text := out.String() + errOut.String(); !strings.Contains(text, tc.wantText) {
				t.Errorf("output: got %q; want it to contain %q", text, tc.wantText)
			}
		})
	}
}
