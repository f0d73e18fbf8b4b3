package approval

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Length caps, in runes of input, for rendered cells. Names get the short
// cap. Justifications and ids get longer caps because cutting them would
// hide what the approver is asked to grant.
const (
	MaxCellRunes          = 256
	maxJustificationRunes = 1024
	maxIDRunes            = 2048
)

// zeroWidthSpace breaks GitHub's mention, emoji and autolink patterns
// without changing the visible text.
const zeroWidthSpace = "\u200b"

// EscapeCell makes s safe to place in one cell of a GitHub-flavoured
// Markdown table, capped at MaxCellRunes runes.
func EscapeCell(s string) string { return escapeCell(s, MaxCellRunes) }

// escapeCell renders s as literal text in a table cell, so that untrusted
// names, justifications and metadata cannot add a column, a row, a link,
// an image, HTML, a mention or a heading:
//
//   - '<', '>' and '&' become HTML entities, so no raw '<' reaches the page.
//   - Markdown punctuation ('|', '\', '`', '*', '_', '~', '[', ']', '(',
//     ')', '!', '#', '$') is backslash-escaped.
//   - Line breaks, tabs and other control characters become spaces, and
//     bidirectional controls become U+FFFD so text cannot display reversed.
//   - A zero-width space follows every '@', ':' and '#' and splits "www.",
//     which stops @mentions, email and URL autolinks, :emoji: shortcodes and
//     #123 issue references.
//
// Input longer than maxRunes runes is cut and ends in "…".
//
// NOTE: GitHub's mention, emoji and issue reference filters run after
// Markdown rendering, so only cmark-gfm output was tested, not GitHub
// itself. GitHub also links bare commit SHAs and repository-configured
// autolink prefixes such as "GH-123". Those links stay inside the
// repository, and breaking them would corrupt the GUIDs in resource ids, so
// they are left alone.
func escapeCell(s string, maxRunes int) string {
	truncated := false
	if utf8.RuneCountInString(s) > maxRunes {
		s = string([]rune(s)[:maxRunes-1])
		truncated = true
	}

	var b strings.Builder
	b.Grow(len(s) + len(s)/4)
	var prev [3]rune // last three input runes, to spot "www."
	for _, r := range s {
		writeCellRune(&b, r, prev)
		prev = [3]rune{prev[1], prev[2], r}
	}
	if truncated {
		b.WriteString("…")
	}
	return b.String()
}

// writeCellRune writes one escaped rune of cell text. prev holds the three
// input runes before r.
func writeCellRune(b *strings.Builder, r rune, prev [3]rune) {
	switch {
	case r == '<':
		b.WriteString("&lt;")
	case r == '>':
		b.WriteString("&gt;")
	case r == '&':
		b.WriteString("&amp;")
	case strings.ContainsRune("|\\`*_~[]()!$", r):
		b.WriteByte('\\')
		b.WriteRune(r)
	case r == '@' || r == ':' || r == '#':
		if r == '#' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
		b.WriteString(zeroWidthSpace)
	case r == '.' && isWWW(prev):
		b.WriteString(zeroWidthSpace)
		b.WriteRune(r)
	case r == utf8.RuneError, unicode.Is(unicode.Bidi_Control, r):
		b.WriteRune(utf8.RuneError)
	case unicode.IsControl(r), r == '\u2028', r == '\u2029':
		b.WriteByte(' ')
	default:
		b.WriteRune(r)
	}
}

func isWWW(prev [3]rune) bool {
	for _, r := range prev {
		if r != 'w' && r != 'W' {
			return false
		}
	}
	return true
}
