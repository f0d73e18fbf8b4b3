package audit

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// fixedClock returns a clock that starts at a fixed time and advances one
// second per call.
func fixedClock() func() time.Time {
	var mu sync.Mutex
	next := time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t := next
		next = next.Add(time.Second)
		return t
	}
}

const (
	vaultScope = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-app" +
		"/providers/Microsoft.KeyVault/vaults/kv-app"
	assignmentName = "ed497d0e-8712-5cec-8309-9d8de73805bd"
)

func grantRecord() Record {
	return Record{
		RequestID: "6f1c1a52-8d8e-4c3e-9a51-6b7d0c2f4e10",
		Event:     EventGrant,
		Actor:     "elevate-ci",
		Principal: "11111111-2222-3333-4444-555555555555",
		Pairs: []PairRecord{{
			RoleID:         "4633458b-17de-408a-b874-0445c86b69e6",
			RoleName:       "Key Vault Secrets User",
			Scope:          vaultScope,
			AssignmentID:   vaultScope + "/providers/Microsoft.Authorization/roleAssignments/" + assignmentName,
			AssignmentName: assignmentName,
			Backend:        "rbac",
		}},
		Outcome:               OutcomeOK,
		Durations:             &Durations{GrantMS: 850, EffectiveMS: 12000, HeldMS: 0},
		SecretVersion:         "4387e9f3d6e14c459867679a90fd0f79",
		PreviousSecretVersion: "1f0e9d8c7b6a5f4e3d2c1b0a99887766",
		Detail:                "line one\nline two <b>",
	}
}

// writeLog appends n records to a new log and returns its path.
func writeLog(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	log, err := OpenWithOptions(path, Options{Now: fixedClock()})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer log.Close()
	for i := range n {
		r := grantRecord()
		r.Detail = fmt.Sprintf("record %d", i+1)
		if _, err := log.Append(r); err != nil {
			t.Fatalf("append %d: %v", i+1, err)
		}
	}
	return path
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	return bytes.SplitAfter(data, []byte("\n"))[:bytes.Count(data, []byte("\n"))]
}

func TestRecordGolden(t *testing.T) {
	path := writeLog(t, 0)
	log, err := OpenWithOptions(path, Options{Now: fixedClock()})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer log.Close()
	for _, r := range []Record{{Event: EventRequest, RequestID: "6f1c1a52-8d8e-4c3e-9a51-6b7d0c2f4e10"}, grantRecord()} {
		if _, err := log.Append(r); err != nil {
			t.Fatalf("append: %v", err)
		}
	}

	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	golden := filepath.Join("testdata", "records.golden.jsonl")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatalf("write golden file: %v", err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}

	if !bytes.Equal(got, want) {
		t.Errorf("log differs from golden file; got:\n%s\nwant:\n%s", got, want)
	}
	if report, err := VerifyFile(golden); err != nil || report.Records != 2 {
		t.Errorf("verify golden file: got %+v, %v; want 2 records, nil", report, err)
	}
}

func TestAppendRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	log, err := OpenWithOptions(path, Options{Now: fixedClock()})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	first, err := log.Append(Record{Event: EventRequest, Time: time.Unix(1, 0), Seq: 99, Prev: "forged"})
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	second, err := log.Append(grantRecord())
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	if err := log.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	checks := []struct {
		field     string
		got, want any
	}{
		{"first schema", first.Schema, SchemaVersion},
		{"first seq", first.Seq, int64(1)},
		{"first prev", first.Prev, ""},
		{"first time", first.Time, time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)},
		{"second seq", second.Seq, int64(2)},
		{"second prev", second.Prev, hashLine(bytes.TrimSuffix(readLines(t, path)[0], []byte("\n")))},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v; want %v", c.field, c.got, c.want)
		}
	}

	report, err := VerifyFile(path)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if report.Records != 2 {
		t.Errorf("records: got %d; want 2", report.Records)
	}
	if want := hashLine(bytes.TrimSuffix(readLines(t, path)[1], []byte("\n"))); report.Head != want {
		t.Errorf("head: got %q; want %q", report.Head, want)
	}
}

func TestOpenContinuesChain(t *testing.T) {
	path := writeLog(t, 2)
	log, err := Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	r, err := log.Append(Record{Event: EventRevoke})
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	log.Close()
	if r.Seq != 3 {
		t.Errorf("seq: got %d; want 3", r.Seq)
	}
	report, err := VerifyFile(path)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if report.Records != 3 {
		t.Errorf("records: got %d; want 3", report.Records)
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes are not POSIX on Windows")
	}
	path := writeLog(t, 1)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode: got %o; want 600", mode)
	}
}

func TestOpenRejectsBrokenChain(t *testing.T) {
	path := writeLog(t, 3)
	lines := readLines(t, path)
	tampered := bytes.Join([][]byte{lines[0], lines[2]}, nil)
	if err := os.WriteFile(path, tampered, 0o600); err != nil {
		t.Fatalf("write: %v", err)
	}
	log, err := Open(path)
	if err == nil {
		log.Close()
		t.Fatal("got nil error; want the broken chain rejected")
	}
	if !errors.Is(err, ErrChainBroken) {
		t.Errorf("errors.Is(err, ErrChainBroken) = false for %v", err)
	}
}

func TestAppendAfterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	log, err := Open(path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := log.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := log.Close(); err != nil {
		t.Errorf("second close: got %v; want nil", err)
	}
	if _, err := log.Append(Record{Event: EventError}); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: got %v; want ErrClosed", err)
	}
}

func TestAppendRejectsEmptyEvent(t *testing.T) {
	log, err := Open(filepath.Join(t.TempDir(), "audit.jsonl"))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer log.Close()
	_, err = log.Append(Record{})
	if err == nil {
		t.Fatal("got nil; want an error")
	}
	if !strings.Contains(err.Error(), "event is empty") {
		t.Errorf("got %v; want an empty event error", err)
	}
}

func TestConcurrentAppendsKeepChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	log, err := Open(path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if _, err := log.Append(Record{Event: EventAction, Detail: fmt.Sprintf("w%d-%d", w, i)}); err != nil {
					t.Errorf("append: %v", err)
				}
			}
		})
	}
	wg.Wait()
	log.Close()

	report, err := VerifyFile(path)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if report.Records != workers*each {
		t.Errorf("records: got %d; want %d", report.Records, workers*each)
	}
}

func TestVerifyEmptyLog(t *testing.T) {
	report, err := Verify(strings.NewReader(""))
	if err != nil {
		t.Fatalf("got %v; want nil", err)
	}
	if report != (Report{}) {
		t.Errorf("got %+v; want zero records and no head", report)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	path := writeLog(t, 4)
	original := readLines(t, path)

	// forgedSecond is a well-formed record that claims to be line 2, with
	// the right prev, as an attacker inserting a line would write it.
	forgedSecond := []byte(fmt.Sprintf(`{"schema":1,"seq":2,"time":"2026-01-02T03:04:06Z","event":"grant","prev":%q}`+"\n",
		hashLine(bytes.TrimSuffix(original[0], []byte("\n")))))

	tests := []struct {
		name     string
		tamper   func(lines [][]byte) [][]byte
		wantLine int
		reason   string
	}{
		{"field edited", func(l [][]byte) [][]byte {
			l[1] = bytes.Replace(l[1], []byte("record 2"), []byte("record X"), 1)
			return l
		}, 3, "line 2 was edited"},
		{"line deleted", func(l [][]byte) [][]byte { return append(l[:1:1], l[2:]...) }, 2, "seq is 3; want 2"},
		{"first line deleted", func(l [][]byte) [][]byte { return l[1:] }, 1, "seq is 2; want 1"},
		{"line inserted", func(l [][]byte) [][]byte {
			return append([][]byte{l[0], forgedSecond}, l[1:]...)
		}, 3, "seq is 2; want 3"},
		{"lines swapped", func(l [][]byte) [][]byte {
			l[1], l[2] = l[2], l[1]
			return l
		}, 2, "seq is 3; want 2"},
		{"seq changed", func(l [][]byte) [][]byte {
			l[2] = bytes.Replace(l[2], []byte(`"seq":3`), []byte(`"seq":7`), 1)
			return l
		}, 3, "seq is 7; want 3"},
		{"malformed line", func(l [][]byte) [][]byte {
			l[1] = []byte("{not json\n")
			return l
		}, 2, "not a valid record"},
		{"blank line", func(l [][]byte) [][]byte {
			return append([][]byte{l[0], []byte("\n")}, l[1:]...)
		}, 2, "is empty"},
		{"unknown field", func(l [][]byte) [][]byte {
			l[0] = bytes.Replace(l[0], []byte(`{"schema"`), []byte(`{"extra":1,"schema"`), 1)
			return l
		}, 1, "unknown field"},
		{"text after record", func(l [][]byte) [][]byte {
			l[3] = bytes.Replace(l[3], []byte("}\n"), []byte("}{}\n"), 1)
			return l
		}, 4, "text after the record"},
		{"final newline missing", func(l [][]byte) [][]byte {
			l[3] = bytes.TrimSuffix(l[3], []byte("\n"))
			return l
		}, 4, "no final newline"},
		{"schema changed", func(l [][]byte) [][]byte {
			l[0] = bytes.Replace(l[0], []byte(`"schema":1`), []byte(`"schema":2`), 1)
			return l
		}, 1, "schema is 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := make([][]byte, len(original))
			for i := range original {
				lines[i] = bytes.Clone(original[i])
			}
			data := bytes.Join(tt.tamper(lines), nil)
			_, err := Verify(bytes.NewReader(data))
			var chainErr *ChainError
			if !errors.As(err, &chainErr) {
				t.Fatalf("got %v; want a *ChainError", err)
			}
			if chainErr.Line != tt.wantLine {
				t.Errorf("line: got %d; want %d (%v)", chainErr.Line, tt.wantLine, err)
			}
			if !strings.Contains(chainErr.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", chainErr.Reason, tt.reason)
			}
		})
	}
}

// TestVerifyLastLineEditChangesHead shows the limit of the chain: an edit of
// the last line passes Verify, and only the head hash reveals it.
func TestVerifyLastLineEditChangesHead(t *testing.T) {
	path := writeLog(t, 2)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	before, err := Verify(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("verify original: %v", err)
	}
	edited := bytes.Replace(data, []byte("record 2"), []byte("record X"), 1)
	after, err := Verify(bytes.NewReader(edited))
	if err != nil {
		t.Fatalf("verify edited: %v", err)
	}
	if after.Head == before.Head {
		t.Errorf("head unchanged after editing the last line: %q", after.Head)
	}
}

func TestVerifyRejectsLongLine(t *testing.T) {
	data := bytes.Repeat([]byte("x"), MaxLineBytes+2)
	_, err := Verify(bytes.NewReader(data))
	var chainErr *ChainError
	if !errors.As(err, &chainErr) {
		t.Fatalf("got %v; want a *ChainError", err)
	}
	if chainErr.Line != 1 {
		t.Errorf("line: got %d; want 1", chainErr.Line)
	}
	if !strings.Contains(chainErr.Reason, "longer than") {
		t.Errorf("reason %q does not mention the length", chainErr.Reason)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("\n"))
	f.Add([]byte(`{"schema":1,"seq":1,"time":"2026-01-02T03:04:05Z","event":"request","prev":""}` + "\n"))
	f.Add([]byte("{}\n{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		report, err := Verify(bytes.NewReader(data))
		if err != nil {
			return
		}
		if lines := bytes.Count(data, []byte("\n")); report.Records != lines {
			t.Fatalf("records: got %d; want %d lines", report.Records, lines)
		}
	})
}
