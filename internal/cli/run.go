package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/elevate-dev/elevate/internal/lifecycle"
)

func init() { commands = append(commands, newRunCommand) }

func newRunCommand(streams Streams) *cobra.Command {
	var o elevateOptions
	cmd := &cobra.Command{
		Use:   "run --role ROLE --scope SCOPE --justification TEXT [flags] -- COMMAND [ARGS...]",
		Short: "Grant roles, run a command while they hold, then revoke and verify",
		Long: `Grant every role x scope pair, wait until the grant is effective, run the
command, then revoke every assignment Elevate created and verify its removal.
Elevate exits with the command's exit code, or 4 when a revoke failed.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("missing command: put the command to run after `--`, for example `elevate run ... -- az keyvault secret list --vault-name kv1`")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(streams); err != nil {
				return err
			}
			ctx := cmd.Context()
			sess, err := newSession(ctx, streams)
			if err != nil {
				return err
			}
			res, err := elevate(ctx, streams, sess, &o, func(prepared) (lifecycle.Action, []lifecycle.Prober, error) {
				return &lifecycle.Command{Args: args, Stdin: streams.In, Stdout: streams.Out, Stderr: streams.ErrOut}, nil, nil
			})
			return commandExit(res, err)
		},
	}
	o.bind(cmd.Flags())
	return cmd
}
