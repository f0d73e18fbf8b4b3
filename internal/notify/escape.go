package notify

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxValueRunes caps one user-supplied value in a message. Chat messages
// have size limits (Slack: 3000 characters per section text), and a long
// justification must not push the approval table out of the message.
const maxValueRunes = 500

// zeroWidthSpace breaks mention, emoji and autolink patterns without
// changing the visible text.
const zeroWidthSpace = "\u200b"

// plain returns s as one line of at most maxRunes runes: control and
// bidirectional formatting characters become spaces or U+FFFD, so a value
// cannot start a new paragraph or display reversed.
func plain(s string, maxRunes int) string {
	if utf8.RuneCountInString(s) > maxRunes {
		s = string([]rune(s)[:maxRunes-1]) + "…"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case unicode.Is(unicode.Bidi_Control, r):
			return '\uFFFD'
		case unicode.IsControl(r):
			return ' '
		}
		return r
	}, s)
}

// defuse writes r to b and follows it with a zero-width space where r could
// start a mention (@here, @channel, @user), a URL autolink (https://), or a
// www. autolink. prev holds the previous three runes.
func defuse(b *strings.Builder, r rune, prev [3]rune) {
	b.WriteRune(r)
	switch {
	case r == '@' || r == ':':
		b.WriteString(zeroWidthSpace)
	case r == '.' && isWWW(prev):
		b.WriteString(zeroWidthSpace)
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

// escapeSlack renders s for Slack mrkdwn and plain text fields. Slack
// reads '&', '<' and '>' as control characters (links and mentions are
// written <...>), so they become the entities Slack documents. Slack has no
// escape for *, _ and ~, so a value may still show as bold or italic, but it
// cannot link, mention or notify anyone.
func escapeSlack(s string) string {
	var b strings.Builder
	var prev [3]rune
	for _, r := range plain(s, maxValueRunes) {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		default:
			defuse(&b, r, prev)
		}
		prev = [3]rune{prev[1], prev[2], r}
	}
	return b.String()
}

// teamsMarkdown lists the characters that Adaptive Card text in Teams may
// read as Markdown inside a line: emphasis, links and code. List and
// heading markers act only at the start of a line, and renderers never
// start a line with a value.
const teamsMarkdown = "\\`*_[]()~"

// escapeTeams renders s for an Adaptive Card TextBlock or Fact in Teams.
// Markdown punctuation is backslash-escaped and '<' is followed by a
// zero-width space, so a value can form no link, emphasis or <at> mention.
//
// NOTE: checked against the card JSON only, not rendered in a Teams client.
func escapeTeams(s string) string {
	var b strings.Builder
	var prev [3]rune
	for _, r := range plain(s, maxValueRunes) {
		switch {
		case strings.ContainsRune(teamsMarkdown, r):
			b.WriteByte('\\')
			defuse(&b, r, prev)
		case r == '<':
			b.WriteString("<" + zeroWidthSpace)
		default:
			defuse(&b, r, prev)
		}
		prev = [3]rune{prev[1], prev[2], r}
	}
	return b.String()
}
