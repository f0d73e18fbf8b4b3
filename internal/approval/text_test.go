package approval

import (
	"strings"
	"testing"
	"time"
)

func TestTextNeutralisesTerminalControls(t *testing.T) {
	table := Table{
		RequestID: "0f8fad5b-d9cb-469f-a165-70867728950e", PrincipalID: "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801",
		PrincipalType: "ServicePrincipal", Duration: 15 * time.Minute,
		Justification: "rotate\x1b[2J\x1b[Hnow\r\nforged line\u202etxt.exe",
		Rows: []Row{{RoleName: "Reader\x07", RoleID: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
			ResourceName: "kv\tapp", ResourceType: "Microsoft.KeyVault/vaults", ResourceID: "/subscriptions/x"}},
	}
	out := table.Text()
	for _, bad := range []string{"\x1b", "\r", "\x07", "\u202e", "\tapp"} {
		if strings.Contains(out, bad) {
			t.Errorf("Text output contains %q", bad)
		}
	}
	if strings.Contains(out, "\nforged line") {
		t.Errorf("a value started a new line:\n%s", out)
	}
	for _, want := range []string{"Access request 0f8fad5b", "Reader", "(ServicePrincipal)", "15m"} {
		if !strings.Contains(out, want) {
			t.Errorf("Text output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `\(`) {
		t.Errorf("Text output has Markdown escapes:\n%s", out)
	}
}

func FuzzTerminalSafe(f *testing.F) {
	f.Add("plain")
	f.Add("\x1b]8;;https://evil\x07link\x1b]8;;\x07")
	f.Add("a\u200bb\u2066c")
	f.Fuzz(func(t *testing.T, s string) {
		out := TerminalSafe(s)
		for _, r := range out {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Fatalf("TerminalSafe(%q) kept control rune %U", s, r)
			}
		}
	})
}
