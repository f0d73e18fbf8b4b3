package evidence

import (
	"strings"
	"testing"
)

func TestMedianOddAndEven(t *testing.T) {
	cases := []struct {
		name   string
		values []float64
		want   float64
	}{
		{"empty", nil, 0},
		{"odd count", []float64{3, 1, 2}, 2},
		{"even count", []float64{4, 1, 3, 2}, 2.5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := median(tc.values); got != tc.want {
				t.Errorf("median(%v): got %v; want %v", tc.values, got, tc.want)
			}
		})
	}
}

func TestSummarizeCountsMisses(t *testing.T) {
	zero := &Target{Op: "==", Value: 0}
	results := []Result{
		{Figures: []Figure{{Name: "crash.left", Value: 0, Target: zero}}},
		{Figures: []Figure{{Name: "crash.left", Value: 2, Target: zero, Notes: []string{"late PUT"}}}},
		{Figures: []Figure{{Name: "crash.left", Value: 0, Target: zero}}},
	}
	got := Summarize(results)
	if len(got) != 1 {
		t.Fatalf("summaries: got %d; want 1", len(got))
	}
	if got[0].Misses != 1 {
		t.Errorf("misses: got %d; want 1", got[0].Misses)
	}
	if got[0].Median() != 0 {
		t.Errorf("median: got %v; want 0", got[0].Median())
	}
	if lo, hi := got[0].Spread(); lo != 0 || hi != 2 {
		t.Errorf("spread: got %v to %v; want 0 to 2", lo, hi)
	}
	if len(got[0].Notes) != 1 || got[0].Notes[0] != "late PUT" {
		t.Errorf("notes: got %q; want [late PUT]", got[0].Notes)
	}
}

func TestReplaceGeneratedKeepsProse(t *testing.T) {
	doc := "# Title\n\nhand text\n\n" + BeginMarker + "\nold\n" + EndMarker + "\n\ntail text\n"
	got := ReplaceGenerated(doc, "new\n")
	for _, want := range []string{"hand text", "tail text", "\nnew\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("result lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old") {
		t.Errorf("result still has the old block:\n%s", got)
	}
	if again := ReplaceGenerated(got, "new\n"); again != got {
		t.Errorf("second replace changed the document:\n%s", again)
	}
}

func TestReplaceGeneratedAppendsBlock(t *testing.T) {
	got := ReplaceGenerated("# Title\n", "figures\n")
	if !strings.HasSuffix(got, BeginMarker+"\nfigures\n"+EndMarker+"\n") {
		t.Errorf("appended block missing:\n%s", got)
	}
}

func TestParseBenchCustomMetrics(t *testing.T) {
	out := "goos: linux\n" +
		"BenchmarkGrantCurve/pairs=10-2   \t       3\t 415482331 ns/op\t       207.5 grant-ms/op\t        10.00 pairs\n" +
		"BenchmarkGrantCurve/pairs=10-2   \t       3\t 425482331 ns/op\t       217.5 grant-ms/op\t        10.00 pairs\n" +
		"PASS\n"
	points, err := ParseBench(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(points) != 1 {
		t.Fatalf("points: got %d; want 1", len(points))
	}
	p := points[0]
	if p.Name != "BenchmarkGrantCurve/pairs=10" {
		t.Errorf("name: got %q; want BenchmarkGrantCurve/pairs=10", p.Name)
	}
	if len(p.NsPerOp) != 2 || p.NsPerOp[1] != 425482331 {
		t.Errorf("ns/op: got %v; want two values ending in 425482331", p.NsPerOp)
	}
	if got := p.Metrics["grant-ms/op"]; len(got) != 2 || got[0] != 207.5 {
		t.Errorf("grant-ms/op: got %v; want [207.5 217.5]", got)
	}
}

func TestRenderReliabilityListsMisses(t *testing.T) {
	zero := &Target{Op: "==", Value: 0}
	summaries := Summarize([]Result{
		{Figures: []Figure{{Name: "crash.assignments_left", Value: 2, Unit: "assignments", Target: zero,
			Notes: []string{"a PUT landed late"}}}},
		{Figures: []Figure{{Name: "soak.clean_percent", Value: 100, Unit: "%", Target: &Target{Op: ">=", Value: 100}}}},
	})
	got := RenderReliability(summaries, Machine{CPUs: 2, CPUModel: "test CPU", GoVersion: "go1.x", Date: "2026-01-01"}, "make bench", 1)
	for _, want := range []string{
		"| `assignments_left` | 2 | 2 to 2 | assignments | `== 0` | 0 of 1 runs |",
		"| `clean_percent` | 100% | 100 to 100 | % | `>= 100` | 1 of 1 runs |",
		"- `crash.assignments_left` missed `== 0` in 1 of 1 runs (median 2). Reason: a PUT landed late.",
		"2 CPUs (`nproc`), `test CPU`",
		"`request.audited`",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

func TestRenderBenchmarksBrokerSections(t *testing.T) {
	out := strings.Join([]string{
		"BenchmarkSweeperLag/sqlite/leases=100000-2 1 9 ns/op 150 create-per-s 4.2 heap-MiB 0.5 idle-sweep-ms 200 p50-ms 380 p99-ms 42 rss-MiB",
		"BenchmarkSweeperLag/sqlite/leases=100000-2 1 9 ns/op 170 create-per-s 4.4 heap-MiB 0.7 idle-sweep-ms 260 p50-ms 1500 p99-ms 41 rss-MiB",
		"BenchmarkSweeperLag/sqlite/leases=100000-2 1 9 ns/op 160 create-per-s 4.3 heap-MiB 0.6 idle-sweep-ms 220 p50-ms 1200 p99-ms 43 rss-MiB",
		"BenchmarkBrokerReplicas/replicas=2-2 300 9 ns/op 93.3 req/s",
	}, "\n")
	points, err := ParseBench(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	got := RenderBenchmarks(points, Machine{CPUs: 2, CPUModel: "test", GoVersion: "go", Date: "2026-01-01"}, "make bench", 3)
	for _, want := range []string{
		"| SQLite | 100,000 | 3 | 220 ms (200 to 260) | 1200 ms (380 to 1500) | 0.6 ms (0.5 to 0.7) | 160 (150 to 170) | 42 MiB (41 to 43) | 4.3 MiB (4.2 to 4.4) | missed |",
		"| 2 | 1 | 93 req/s (93 to 93) |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered benchmarks lack %q:\n%s", want, got)
		}
	}
}
