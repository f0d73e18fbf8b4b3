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

// ErrHeadNotFound means an anchored head matches no line of the audit log:
// records were cut from the end, or the chain was rewritten.
var ErrHeadNotFound = errors.New("audit head not found")

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
audit-head step output, kept outside the file), and verify fails unless a line
of the file still hashes to it. Records appended after that run are allowed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return verifyAuditLog(streams.Out, args[0], head)
		},
	}
	verify.Flags().StringVar(&head, "head", "", "SHA-256 hex of a line the log must contain, from a run's audit_head")
	cmd.AddCommand(verify)
	return cmd
}

// verifyAuditLog checks the chain of the log at path and, when head is not
// empty, that one of its lines hashes to head.
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
	line := lineWithHash(data, head)
	if line == 0 {
		return fmt.Errorf("audit log %s: %w: no line hashes to %s, so records were removed from the end "+
			"or the chain was rewritten; the log's head is now %s after %d records",
			path, ErrHeadNotFound, head, report.Head, report.Records)
	}
	_, err = fmt.Fprintf(out, "%s: %d records, chain intact, anchored head found at line %d, head %s\n",
		path, report.Records, line, report.Head)
	return err
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
