package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/elevate-dev/elevate/internal/audit"
)

func init() { commands = append(commands, newAuditCommand) }

func newAuditCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Work with Elevate audit logs",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "verify FILE",
		Short: "Check an audit log's hash chain; any edit, deletion, insertion or reordering fails",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return &UsageError{fmt.Errorf("open audit log: %w", err)}
			}
			defer f.Close()
			report, err := audit.Verify(f)
			if err != nil {
				return fmt.Errorf("audit log %s does not verify: %w", args[0], err)
			}
			_, err = fmt.Fprintf(streams.Out, "%s: %d records, chain intact, head %s\n", args[0], report.Records, report.Head)
			return err
		},
	})
	return cmd
}
