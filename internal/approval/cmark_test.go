package approval

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// hostileCells are inputs that try to leave their table cell.
var hostileCells = []string{
	"x | y", `a \| b`, `a \\| b`, "</td><script>alert(1)</script>", "[a](https://evil)",
	"![i](https://evil/x.png)", "<https://evil>", "https://evil.example", "www.evil.example",
	"me@example.com", "@org/team", ":octocat:", "#1", "line\nbreak", "a\r\nb", "<!-- c -->",
	"&lt;b&gt;", "&#124;", "**bold**", "`code`", "$x$", "[^1]", "\u202eevil", "\\",
}

// TestMarkdownRenderedByCmarkGFM renders hostile tables with cmark-gfm,
// GitHub's fork of the cmark Markdown parser, and checks the HTML.
// It is skipped where the cmark-gfm command is not installed.
func TestMarkdownRenderedByCmarkGFM(t *testing.T) {
	bin, err := exec.LookPath("cmark-gfm")
	if err != nil {
		t.Skip("cmark-gfm not installed")
	}
	forbidden := regexp.MustCompile(`<(a|img|script|strong|em|code|del|h[1-6]|sup|!--)[\s>]`)
	for _, s := range hostileCells {
		row := Row{RoleName: s, RoleID: s, ResourceName: s, ResourceType: s, ResourceID: s, Warning: s}
		table := Table{RequestID: s, PrincipalID: s, PrincipalType: s, Justification: s, Backend: s, Rows: []Row{row}}
		cmd := exec.Command(bin, "-e", "table", "-e", "autolink", "-e", "strikethrough", "-e", "tagfilter")
		cmd.Stdin = strings.NewReader(table.Markdown())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cmark-gfm for %q: %v", s, err)
		}
		// The heading is the only element besides the tables.
		html := strings.Replace(string(out), "<h3>Elevate access request</h3>", "", 1)
		if m := forbidden.FindString(html); m != "" {
			t.Errorf("input %q rendered the element %q:\n%s", s, m, html)
		}
		// Facts table: 2 header and 5 body rows of 2 cells. Pairs table: 7 header
		// cells and 1 body row of 7 cells.
		if got, want := strings.Count(html, "<td>"), 5*2+7; got != want {
			t.Errorf("input %q: got %d <td> cells; want %d:\n%s", s, got, want, html)
		}
		if got, want := strings.Count(html, "<tr>"), 1+5+1+1; got != want {
			t.Errorf("input %q: got %d <tr> rows; want %d", s, got, want)
		}
	}
}
