package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxLineBytes is the maximum length of one record line. It bounds the
// memory Verify uses on a damaged or hostile file.
const MaxLineBytes = 1 << 20

// ErrChainBroken is wrapped by every ChainError.
var ErrChainBroken = errors.New("audit chain broken")

// ChainError reports the first line at which a log fails verification.
type ChainError struct {
	Line   int // 1-based
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit log line %d: %s", e.Line, e.Reason)
}

// Unwrap lets errors.Is(err, ErrChainBroken) match every ChainError.
func (e *ChainError) Unwrap() error { return ErrChainBroken }

// Report summarises a verified log.
type Report struct {
	Records int
	Head    string // SHA-256 hex of the last line, "" for an empty log
}

// Verify reads a whole log and checks every line. Each line must be a
// complete, newline-terminated JSON record of SchemaVersion with no unknown
// fields, an event and a time. Its seq must equal its line number, and its
// prev the hash of the line before. The first failure is returned as a
// *ChainError, and the Report then covers the lines before it.
func Verify(r io.Reader) (Report, error) {
	var report Report
	reader := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := readLine(reader)
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return report, nil
		}
		lineNo := report.Records + 1
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errLineTooLong) {
			return report, fmt.Errorf("read audit log line %d: %w", lineNo, err)
		}
		if err != nil {
			return report, &ChainError{Line: lineNo, Reason: lineReadProblem(err)}
		}

		body := line[:len(line)-1] // without the newline
		if err := checkRecord(body, lineNo, report.Head); err != nil {
			return report, err
		}
		report.Records = lineNo
		report.Head = hashLine(body)
	}
}

// VerifyFile opens path and verifies it with Verify.
func VerifyFile(path string) (Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return Report{}, fmt.Errorf("open audit log %q: %w", path, err)
	}
	defer f.Close()
	report, err := Verify(f)
	if err != nil {
		return report, fmt.Errorf("verify audit log %q: %w", path, err)
	}
	return report, nil
}

var errLineTooLong = fmt.Errorf("line longer than %d bytes", MaxLineBytes)

// readLine returns the next line including its newline. At the end of the
// input it returns io.EOF, together with any unterminated final text.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxLineBytes+1 {
			return line, errLineTooLong
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}

func lineReadProblem(err error) string {
	if errors.Is(err, errLineTooLong) {
		return err.Error()
	}
	return "has no final newline, so the last write was cut short; " +
		"remove the partial line only after checking what it was"
}

// checkRecord verifies one line without its newline. prev is the hash of
// the line before, "" for the first line.
func checkRecord(body []byte, lineNo int, prev string) error {
	fail := func(format string, args ...any) error {
		return &ChainError{Line: lineNo, Reason: fmt.Sprintf(format, args...)}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return fail("is empty")
	}

	var rec Record
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return fail("is not a valid record: %v", err)
	}
	if dec.More() {
		return fail("has text after the record")
	}

	switch {
	case rec.Schema != SchemaVersion:
		return fail("schema is %d; want %d", rec.Schema, SchemaVersion)
	case rec.Seq != int64(lineNo):
		return fail("seq is %d; want %d, so a line was deleted, inserted or moved", rec.Seq, lineNo)
	case rec.Prev != prev && lineNo == 1:
		return fail("prev is %q; want \"\" on the first line, so lines before it were deleted", rec.Prev)
	case rec.Prev != prev:
		return fail("prev %q does not match the SHA-256 %q of line %d, so line %d was edited "+
			"or a line was inserted or deleted before line %d", rec.Prev, prev, lineNo-1, lineNo-1, lineNo)
	case rec.Event == "":
		return fail("has no event")
	case rec.Time.IsZero():
		return fail("has no time")
	}
	return nil
}

// hashLine returns the SHA-256 hex of a line without its newline.
func hashLine(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}
