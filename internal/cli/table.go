package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/elevate-dev/elevate/internal/lifecycle"
)

func init() { commands = append(commands, newTableCommand) }

func newTableCommand(streams Streams) *cobra.Command {
	var o requestOptions
	var output string
	cmd := &cobra.Command{
		Use:   "table --role ROLE --scope SCOPE --justification TEXT [flags]",
		Short: "Render the approval table for a request without granting anything",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "markdown" && output != "json" {
				return &UsageError{fmt.Errorf("invalid --output %q: use markdown or json", output)}
			}
			ctx := cmd.Context()
			sess, err := newSession(ctx, streams)
			if err != nil {
				return err
			}
			engine := lifecycle.New(lifecycle.Config{ARM: sess.rbac, CallerID: sess.caller.ObjectID, Logger: sess.log})
			p, err := sess.prepare(ctx, &o, streams, engine)
			if err != nil {
				return err
			}
			if output == "json" {
				data, err := p.table.JSON()
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(streams.Out, string(data))
				return err
			}
			_, err = fmt.Fprintln(streams.Out, p.table.Markdown())
			return err
		},
	}
	o.bind(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "markdown", "table format: markdown or json")
	return cmd
}
