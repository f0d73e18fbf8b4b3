package crashpoint

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// hitCalls returns the name of every crashpoint.Hit call in the non-test Go
// files of dirs, with how often each occurs.
func hitCalls(t *testing.T, dirs ...string) map[string]int {
	t.Helper()
	calls := map[string]int{}
	fset := token.NewFileSet()
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatalf("parse %s: %v", path, err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "Hit" {
					return true
				}
				if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "crashpoint" {
					return true
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok {
					t.Errorf("%s: crashpoint.Hit needs a string literal, so this test can list it", fset.Position(call.Pos()))
					return true
				}
				name, _ := strconv.Unquote(lit.Value)
				calls[name]++
				return true
			})
		}
	}
	return calls
}

func TestPointsMatchHitCalls(t *testing.T) {
	calls := hitCalls(t, "../lifecycle", "../rotate")
	for _, p := range Points {
		if got := calls[p.Name]; got != 1 {
			t.Errorf("Hit(%q) calls in the source: got %d; want 1", p.Name, got)
		}
	}
	for name := range calls {
		if _, ok := Lookup(name); !ok {
			t.Errorf("Hit(%q) is called but not listed in Points", name)
		}
	}
	broker := hitCalls(t, "../broker")
	for _, p := range BrokerPoints {
		if got := broker[p.Name]; got != 1 {
			t.Errorf("Hit(%q) calls in the broker: got %d; want 1", p.Name, got)
		}
	}
	for name := range broker {
		if !slices.ContainsFunc(BrokerPoints, func(p Point) bool { return p.Name == name }) {
			t.Errorf("Hit(%q) is called in the broker but not listed in BrokerPoints", name)
		}
	}
	if len(Points) < 20 {
		t.Errorf("crash points: got %d; want at least 20", len(Points))
	}
}

func TestPointNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range append(slices.Clone(Points), BrokerPoints...) {
		if seen[p.Name] {
			t.Errorf("point %q listed twice", p.Name)
		}
		seen[p.Name] = true
		if p.Where == "" {
			t.Errorf("point %q has no Where text", p.Name)
		}
	}
}

func TestHitNoOpInNormalBuild(t *testing.T) {
	if Enabled {
		t.Skip("built with the crashpoints tag")
	}
	t.Setenv(EnvAt, Points[0].Name)
	Hit(Points[0].Name) // must return: the test process would die otherwise
}
