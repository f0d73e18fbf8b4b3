package approval

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
)

// Text renders the table for a terminal: aligned plain columns with no
// Markdown escapes, for people reading the CLI's output. Every value goes
// through TerminalSafe, so no name can move the cursor, clear the screen,
// start a new line or reorder text.
func (t Table) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Access request %s\n", TerminalSafe(t.RequestID))
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	principal := TerminalSafe(t.PrincipalID) + " (" + TerminalSafe(t.PrincipalType) + ")"
	if t.PrincipalName != "" {
		principal = TerminalSafe(t.PrincipalName) + " (" + TerminalSafe(t.PrincipalType) + ", " + TerminalSafe(t.PrincipalID) + ")"
	}
	ticket := t.Ticket
	if ticket == "" {
		ticket = t.Metadata.Ticket
	}
	m := t.Metadata
	for _, f := range [][2]string{
		{"Principal", principal}, {"Duration", formatDuration(t.Duration)},
		{"Justification", TerminalSafe(t.Justification)}, {"Ticket", TerminalSafe(ticket)},
		{"Backend", TerminalSafe(t.Backend)}, {"Repository", TerminalSafe(m.Repository)},
		{"Workflow", TerminalSafe(m.Workflow)}, {"Run URL", TerminalSafe(m.RunURL)},
		{"Commit", TerminalSafe(m.Commit)}, {"Ref", TerminalSafe(m.Ref)},
		{"Environment", TerminalSafe(m.Environment)}, {"Actor", TerminalSafe(m.Actor)},
	} {
		if f[1] != "" {
			fmt.Fprintf(w, "  %s\t%s\n", f[0], f[1])
		}
	}
	w.Flush()
	b.WriteString("\n")
	w = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "  #\tRole\tResource\tType\tScope")
	for i, row := range t.Rows {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", strconv.Itoa(i+1),
			TerminalSafe(orFallback(row.RoleName, row.RoleID)),
			TerminalSafe(orFallback(row.ResourceName, row.ResourceID)),
			TerminalSafe(row.ResourceType), TerminalSafe(row.ResourceID))
	}
	w.Flush()
	for i, row := range t.Rows {
		if row.Warning != "" {
			fmt.Fprintf(&b, "  warning (pair %d): %s\n", i+1, TerminalSafe(row.Warning))
		}
	}
	return b.String()
}

// TerminalSafe replaces control characters (escape sequences, line breaks,
// tabs) and invisible format characters (bidirectional overrides,
// zero-width characters) with U+FFFD, and caps the length, so a value
// printed to a terminal shows as what it is.
func TerminalSafe(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxIDRunes {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == unicode.ReplacementChar {
			r = unicode.ReplacementChar
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
