package approval

import (
	"fmt"
	"strings"
	"testing"

	"github.com/elevate-dev/elevate/internal/access"
)

// cellCount returns the number of cells in a Markdown table row, splitting
// on '|' the way GitHub's table parser does: a backslash escapes the next
// character, so "\|" is text and "\\|" ends a cell.
func cellCount(line string) int {
	pipes := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\\':
			i++
		case '|':
			pipes++
		}
	}
	return pipes - 1
}

// checkMarkdownShape verifies that md is a heading followed by tables whose
// rows all have their header's cell count, that the pairs table has
// wantRows rows, and that md has no raw '<'.
func checkMarkdownShape(md string, wantRows int) error {
	if strings.Contains(md, "<") {
		return fmt.Errorf("markdown contains a raw '<':\n%s", md)
	}
	lines := strings.Split(strings.TrimSuffix(md, "\n"), "\n")
	if lines[0] != Heading {
		return fmt.Errorf("line 1: got %q; want the heading %q", lines[0], Heading)
	}
	var tables [][]string // rows of each table
	inTable := false
	for i, line := range lines[1:] {
		switch {
		case line == "":
			inTable = false
		case strings.HasPrefix(line, "| ") && strings.HasSuffix(line, " |"):
			if !inTable {
				tables = append(tables, nil)
				inTable = true
			}
			tables[len(tables)-1] = append(tables[len(tables)-1], line)
		default:
			return fmt.Errorf("line %d is neither blank nor a table row: %q", i+2, line)
		}
	}
	if len(tables) != 2 {
		return fmt.Errorf("got %d tables; want 2", len(tables))
	}
	for _, rows := range tables {
		header := cellCount(rows[0])
		for _, row := range rows[1:] {
			if got := cellCount(row); got != header {
				return fmt.Errorf("row %q has %d cells; want %d like its header", row, got, header)
			}
		}
	}
	if got := len(tables[1]) - 2; got != wantRows {
		return fmt.Errorf("pairs table has %d rows; want %d", got, wantRows)
	}
	return nil
}

func FuzzEscapeCell(f *testing.F) {
	for _, seed := range []string{
		"x | y", "</td><script>", "[a](https://evil)", "a\nb", "@org/team",
		"🚀", "\u202e", `\`, `\|`, "www.x", "&#124;", "\xff", "",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m := access.Metadata{
			Repository: s, Workflow: s, RunID: s, RunAttempt: s, RunURL: s, PullRequest: s,
			Ticket: s, Commit: s, Ref: s, Environment: s, Actor: s,
		}
		row := Row{RoleName: s, RoleID: s, ResourceName: s, ResourceType: s, ResourceID: s, Warning: s}
		table := Table{
			RequestID: s, PrincipalID: s, PrincipalType: s, PrincipalName: s,
			Justification: s, Ticket: s, Metadata: m, Backend: s,
			Rows: []Row{row, row},
		}
		if err := checkMarkdownShape(table.Markdown(), 2); err != nil {
			t.Fatal(err)
		}
		cell := EscapeCell(s)
		if strings.ContainsAny(cell, "<\n\r") {
			t.Fatalf("EscapeCell(%q) = %q contains '<' or a line break", s, cell)
		}
	})
}
