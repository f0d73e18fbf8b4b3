// Package github speaks to the GitHub Actions runner: step outputs, the job
// summary, environment files, log masks, annotations and the job's OIDC token.
package github

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Runner writes to the files and the log of one GitHub Actions step. Outside
// Actions every file path is empty and the writes that need one return
// ErrNotInActions.
type Runner struct {
	OutputFile  string // GITHUB_OUTPUT
	SummaryFile string // GITHUB_STEP_SUMMARY
	EnvFile     string // GITHUB_ENV
	// Log is where workflow commands (masks, annotations) go: the step's stdout.
	Log io.Writer
}

// ErrNotInActions is returned by writes that need a runner file that is not set.
var ErrNotInActions = errors.New("not running in GitHub Actions")

// FromEnv reads the runner file paths from the environment.
func FromEnv(getenv func(string) string, log io.Writer) Runner {
	return Runner{
		OutputFile:  getenv("GITHUB_OUTPUT"),
		SummaryFile: getenv("GITHUB_STEP_SUMMARY"),
		EnvFile:     getenv("GITHUB_ENV"),
		Log:         log,
	}
}

// InActions reports whether the step output file is available.
func (r Runner) InActions() bool { return r.OutputFile != "" }

// SetOutput appends name=value to GITHUB_OUTPUT, using the heredoc form with a
// random delimiter for every value, so no value can end the block early or
// inject another output.
func (r Runner) SetOutput(name, value string) error {
	return appendKeyValue(r.OutputFile, name, value)
}

// SetEnv appends name=value to GITHUB_ENV for the following steps.
func (r Runner) SetEnv(name, value string) error {
	return appendKeyValue(r.EnvFile, name, value)
}

// AppendSummary adds Markdown to the job summary.
func (r Runner) AppendSummary(markdown string) error {
	if r.SummaryFile == "" {
		return ErrNotInActions
	}
	return appendFile(r.SummaryFile, strings.TrimRight(markdown, "\n")+"\n")
}

// Mask tells the runner to replace value with *** in all later log lines.
// Each line of a multi-line value is masked on its own, because the runner
// matches masks line by line.
func (r Runner) Mask(value string) {
	if r.Log == nil {
		return
	}
	for _, line := range strings.Split(value, "\n") {
		if line = strings.TrimRight(line, "\r"); line != "" {
			fmt.Fprintf(r.Log, "::add-mask::%s\n", escapeData(line))
		}
	}
}

// Annotation levels.
const (
	LevelError   = "error"
	LevelWarning = "warning"
	LevelNotice  = "notice"
)

// Annotate writes an annotation that the run's page shows, with an optional
// title such as the name of the offending field.
func (r Runner) Annotate(level, title, message string) {
	if r.Log == nil {
		return
	}
	props := ""
	if title != "" {
		props = " title=" + escapeProperty(title)
	}
	fmt.Fprintf(r.Log, "::%s%s::%s\n", level, props, escapeData(message))
}

func appendKeyValue(path, name, value string) error {
	if path == "" {
		return ErrNotInActions
	}
	if name == "" || strings.ContainsAny(name, "=\r\n") {
		return fmt.Errorf("invalid output name %q: use letters, digits, dashes and underscores", name)
	}
	delim, err := delimiter(value)
	if err != nil {
		return err
	}
	return appendFile(path, fmt.Sprintf("%s<<%s\n%s\n%s\n", name, delim, value, delim))
}

// delimiter returns a random heredoc delimiter that does not occur in value.
func delimiter(value string) (string, error) {
	for range 10 {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("generate output delimiter: %w", err)
		}
		d := "ghadelimiter_" + hex.EncodeToString(b)
		if !strings.Contains(value, d) {
			return d, nil
		}
	}
	return "", errors.New("generate output delimiter: every candidate occurs in the value")
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// escapeData encodes the characters the runner treats specially in a
// workflow command's message.
func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// escapeProperty also encodes the separators of command properties.
func escapeProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}
