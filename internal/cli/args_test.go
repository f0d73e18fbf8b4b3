package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestMissingArgumentsSayWhatToPass runs commands without the argument or
// file they need: each exits 2 and names what to pass.
func TestMissingArgumentsSayWhatToPass(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.json")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"approve"}, "missing request ID"},
		{[]string{"status", "a", "b"}, "takes one request ID"},
		{[]string{"extend"}, "missing request ID"},
		{[]string{"apply", "--plan", missing, "--", "true"}, "plan file " + missing + " does not exist"},
		{[]string{"revoke", "--plan", missing}, "plan file " + missing + " does not exist"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut syncBuffer
			code := Main(context.Background(), tc.args, Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut,
				Getenv: func(string) string { return "" }})
			if code != ExitUsage {
				t.Errorf("exit code: got %d; want %d; stderr %s", code, ExitUsage, errOut.String())
			}
			if !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("stderr: got %q; want it to contain %q", errOut.String(), tc.want)
			}
		})
	}
}
