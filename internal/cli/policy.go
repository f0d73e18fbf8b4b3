package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/elevate-dev/elevate/internal/policy"
)

func init() { commands = append(commands, newPolicyCommand) }

func newPolicyCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with Elevate access policies",
	}
	cmd.AddCommand(newPolicyTestCommand(streams))
	return cmd
}

// policyTestOptions contains the arguments of `elevate policy test`.
type policyTestOptions struct {
	streams    Streams
	policyPath string
	casesPath  string
}

func newPolicyTestCommand(streams Streams) *cobra.Command {
	opts := &policyTestOptions{streams: streams}
	return &cobra.Command{
		Use:   "test POLICY CASES",
		Short: "Decide the table tests in CASES by the policy in POLICY, offline",
		Long: `Decide each case in the CASES file by the policy in POLICY and compare the
outcome, the deciding rule and, when the case lists approvals, the approval
state with what the case expects. Prints one PASS or FAIL line per case and
exits with status 1 when any case fails, or 2 when a file does not parse.`,
		Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			opts.policyPath, opts.casesPath = args[0], args[1]
			return opts.run()
		},
	}
}

func (o *policyTestOptions) run() error {
	p, err := policy.Load(o.policyPath)
	if err != nil {
		return &UsageError{err}
	}
	cases, err := policy.LoadCases(o.casesPath)
	if err != nil {
		return &UsageError{err}
	}

	failed := 0
	for _, c := range cases {
		failures := c.Run(p)
		if len(failures) == 0 {
			fmt.Fprintf(o.streams.Out, "PASS  %s\n", c.Name)
			continue
		}
		failed++
		fmt.Fprintf(o.streams.Out, "FAIL  %s (line %d): %s\n", c.Name, c.Line, strings.Join(failures, "; "))
	}
	fmt.Fprintf(o.streams.Out, "%d passed, %d failed\n", len(cases)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d policy cases failed", failed, len(cases))
	}
	return nil
}
