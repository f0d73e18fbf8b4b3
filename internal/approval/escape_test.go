package approval

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscapeCell(t *testing.T) {
	const zw = zeroWidthSpace
	tests := []struct{ name, in, want string }{
		{"plain text unchanged", "Key Vault Secrets User", "Key Vault Secrets User"},
		{"pipe escaped", "x | y", `x \| y`},
		{"backslash escaped", `a\b`, `a\\b`},
		{"escaped pipe stays literal", `\|`, `\\\|`},
		{"html becomes entities", "</td><script>", `&lt;/td&gt;&lt;script&gt;`},
		{"entity text kept literal", "&lt;", "&amp;lt;"},
		{"link syntax escaped", "[a](https://evil)", `\[a\]\(https:` + zw + `//evil\)`},
		{"image syntax escaped", "![x](y)", `\!\[x\]\(y\)`},
		{"emphasis escaped", "*b* _i_ ~s~", `\*b\* \_i\_ \~s\~`},
		{"code span escaped", "`x`", "\\`x\\`"},
		{"heading and issue escaped", "# 12", `\#` + zw + " 12"},
		{"math escaped", "$x$", `\$x\$`},
		{"newlines become spaces", "a\r\nb\tc", "a  b c"},
		{"other controls become spaces", "a\x00b\x1bc\u0085d", "a b c d"},
		{"line separator becomes space", "a\u2028b", "a b"},
		{"mention broken", "@org/team", "@" + zw + "org/team"},
		{"email broken", "me@example.com", "me@" + zw + "example.com"},
		{"url scheme broken", "https://evil.example", "https:" + zw + "//evil.example"},
		{"www autolink broken", "WWW.evil.example", "WWW" + zw + ".evil.example"},
		{"emoji shortcode broken", ":smile:", ":" + zw + "smile:" + zw},
		{"emoji kept", "deploy 🚀 👩‍💻", "deploy 🚀 👩‍💻"},
		{"rtl marks replaced", "abc\u202edcba\u200f", "abc\ufffddcba\ufffd"},
		{"invalid utf8 replaced", "a\xffb", "a\ufffdb"},
		{"resource id readable", "/subscriptions/0000-1/resourceGroups/rg-app", "/subscriptions/0000-1/resourceGroups/rg-app"},
		{"parens and underscore escaped", "rg_(1)", `rg\_\(1\)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EscapeCell(tt.in); got != tt.want {
				t.Errorf("EscapeCell(%q): got %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestEscapeCellCapsLength(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantRunes int
		wantCut   bool
	}{
		{"at the cap", strings.Repeat("é", MaxCellRunes), MaxCellRunes, false},
		{"over the cap", strings.Repeat("é", MaxCellRunes+1), MaxCellRunes, true},
		{"far over the cap", strings.Repeat("a", 10000), MaxCellRunes, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EscapeCell(tt.in)
			if n := utf8.RuneCountInString(got); n != tt.wantRunes {
				t.Errorf("rune count: got %d; want %d", n, tt.wantRunes)
			}
			if cut := strings.HasSuffix(got, "…"); cut != tt.wantCut {
				t.Errorf("ends in ellipsis: got %v; want %v", cut, tt.wantCut)
			}
		})
	}
}
