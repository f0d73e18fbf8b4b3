package cli

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newVersionCommand) }

// Version is set at build time with -ldflags "-X github.com/elevate-dev/elevate/internal/cli.Version=v1.2.3".
var Version = "dev"

func newVersionCommand(streams Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the Elevate version and the Go version it was built with",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			goVersion, revision := "unknown", ""
			if info, ok := debug.ReadBuildInfo(); ok {
				goVersion = info.GoVersion
				for _, s := range info.Settings {
					if s.Key == "vcs.revision" {
						revision = " " + s.Value
					}
				}
			}
			_, err := fmt.Fprintf(streams.Out, "elevate %s%s (%s)\n", Version, revision, goVersion)
			return err
		},
	}
}
