package cli

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/elevate-dev/elevate/internal/audit"
)

func init() { commands = append(commands, newAuditCommand) }

// ErrHeadMismatch means an audit log does not end at the anchored head:
// records were cut from the end or added after it, or the chain was rewritten.
var ErrHeadMismatch = errors.New("audit log does not end at the anchored head")

func newAuditCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Work with Elevate audit logs",
	}
	var head string
	verify := &cobra.Command{
		Use:   "verify FILE [--head HASH]",
		Short: "Check an audit log's hash chain; any edit, deletion, insertion or reordering fails",
		Long: `Check that every line of the audit log carries the SHA-256 of the line
before it. The chain alone cannot show that records were cut from the end, or
that every hash after an edit was recomputed. --head closes that gap: give the
audit_head that a run printed (in its JSON summary, its job summary or its
audit-head step output, kept outside the file), and verify fails unless the
file's last line hashes to it. Use the head of the last run that wrote to the
file: the revoke step appends to the log that apply wrote.`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return verifyAuditLog(streams.Out, args[0], head)
		},
	}
	verify.Flags().StringVar(&head, "head", "", "SHA-256 hex that the log's last line must have: the audit_head of the last run that wrote to it")
	cmd.AddCommand(verify)
	return cmd
}

// verifyAuditLog checks the chain of the log at path and, when head is not
// empty, that its last line hashes to head.
func verifyAuditLog(out io.Writer, path, head string) error {
	head = strings.ToLower(strings.TrimSpace(head))
	if head != "" && !isSHA256Hex(head) {
		return &UsageError{fmt.Errorf("invalid --head %q: want the 64 hex digits of a run's audit_head", head)}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return &UsageError{fmt.Errorf("open audit log: %w", err)}
	}
	report, err := audit.Verify(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("audit log %s does not verify: %w", path, err)
	}
	if head == "" {
		_, err = fmt.Fprintf(out, "%s: %d records, chain intact, head %s\n", path, report.Records, report.Head)
		return err
	}
	if report.Head == head {
		_, err = fmt.Fprintf(out, "%s: %d records, chain intact, ends at the anchored head %s\n", path, report.Records, head)
		return err
	}
	if line := lineWithHash(data, head); line > 0 {
		return fmt.Errorf("audit log %s: %w: line %d has the anchored head %s, but %d record(s) follow it; "+
			"verify with the head that the last run writing to this log printed, "+
			"or investigate the extra records", path, ErrHeadMismatch, line, head, report.Records-line)
	}
	return fmt.Errorf("audit log %s: %w: no line hashes to %s, so records were removed from the end "+
		"or the chain was rewritten; the log's head is now %s after %d records",
		path, ErrHeadMismatch, head, report.Head, report.Records)
}

// lineWithHash returns the 1-based number of the last line whose SHA-256,
// without its newline, is head, or 0 when none is. The audit chain hashes
// lines the same way.
func lineWithHash(data []byte, head string) int {
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), audit.MaxLineBytes+1)
	for n := 1; sc.Scan(); n++ {
		sum := sha256.Sum256(sc.Bytes())
		if hex.EncodeToString(sum[:]) == head {
			found = n
		}
	}
	return found
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
