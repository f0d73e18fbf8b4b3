package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newExtendCommand) }

func newExtendCommand(streams Streams) *cobra.Command {
	o := &brokerOptions{}
	var total time.Duration
	cmd := &cobra.Command{
		Use:   "extend REQUEST_ID --duration TOTAL",
		Short: "Lengthen an active broker request, within its policy rule's maximum (requester or admin)",
		Long: `Set an active request's total duration, counted from when it was granted.
The new total must be longer than the current one and within the maximum of
the policy rule that approved the request; its leases move with it.`,
		Args: requestIDArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if total <= 0 {
				return &UsageError{fmt.Errorf("missing --duration: give the new total duration, such as 30m")}
			}
			c, err := o.client(streams)
			if err != nil {
				return err
			}
			d, err := c.Extend(cmd.Context(), args[0], total)
			if err != nil {
				return brokerError("extend request "+args[0], err)
			}
			return writeDetail(streams.Out, o.Output, d)
		},
	}
	o.bind(cmd.Flags())
	cmd.Flags().DurationVar(&total, "duration", 0, "new total duration of the grant, counted from when it was granted")
	return cmd
}
