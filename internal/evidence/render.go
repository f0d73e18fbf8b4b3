package evidence

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/elevate-dev/elevate/internal/crashpoint"
)

// Machine describes where the figures were measured.
type Machine struct {
	CPUs      int    // nproc
	CPUModel  string // model name from /proc/cpuinfo
	GoVersion string
	Date      string // YYYY-MM-DD
}

func (m Machine) markdown(command string, runs int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "- Machine: %d CPUs (`nproc`), `%s`, shared with other jobs while it ran\n", m.CPUs, m.CPUModel)
	fmt.Fprintf(&b, "- Go: %s\n", m.GoVersion)
	fmt.Fprintf(&b, "- Date: %s, %d run(s) of each test; spread is the smallest to the largest value\n", m.Date, runs)
	fmt.Fprintf(&b, "- Command: `%s`\n", command)
	return b.String()
}

// testTitles names the evidence tests, in the order the report shows them.
// Figures whose name has no prefix listed here are left out of the report.
var testTitles = []struct{ prefix, title string }{
	{"crash.", "Crash points"},
	{"soak.", "Fault soak"},
	{"canary.", "Secret canary"},
	{"tamper.", "Audit tampering"},
	{"ha.", "Broker replicas killed every 10 seconds"},
}

// RenderReliability returns the generated part of docs/reliability.md.
func RenderReliability(summaries []Summary, m Machine, command string, runs int) string {
	var b strings.Builder
	b.WriteString("## Latest figures\n\n")
	b.WriteString(m.markdown(command, runs))
	for _, t := range testTitles {
		fmt.Fprintf(&b, "\n### %s\n\n", t.title)
		b.WriteString("| figure | median | spread | unit | target | met |\n| --- | ---: | ---: | --- | --- | --- |\n")
		for _, s := range summaries {
			if !strings.HasPrefix(s.Name, t.prefix) {
				continue
			}
			lo, hi := s.Spread()
			target, met := "", ""
			if s.Target != nil {
				target = "`" + s.Target.String() + "`"
				met = fmt.Sprintf("%d of %d runs", len(s.Values)-s.Misses, len(s.Values))
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s to %s | %s | %s | %s |\n", strings.TrimPrefix(s.Name, t.prefix),
				formatValue(round(s.Median()), s.Unit), formatNumber(round(lo)), formatNumber(round(hi)), s.Unit, target, met)
		}
		notes := notesOf(summaries, t.prefix)
		if len(notes) > 0 {
			b.WriteString("\n")
			for _, n := range notes {
				b.WriteString("- " + n + "\n")
			}
		}
	}

	b.WriteString("\n### Missed targets\n\n")
	missed := 0
	for _, s := range summaries {
		if s.Misses == 0 {
			continue
		}
		missed++
		fmt.Fprintf(&b, "- `%s` missed `%s` in %d of %d runs (median %s).", s.Name, s.Target, s.Misses,
			len(s.Values), formatNumber(round(s.Median())))
		if len(s.Notes) > 0 {
			b.WriteString(" Reason: " + strings.Join(s.Notes, "; ") + ".")
		}
		b.WriteString("\n")
	}
	if missed == 0 {
		b.WriteString("None: every figure met its target in every run.\n")
	}

	b.WriteString("\n### Crash point list\n\n| point | where | per pair or poll |\n| --- | --- | --- |\n")
	for _, p := range crashpoint.Points {
		per := ""
		if p.PerPair {
			per = "yes"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", p.Name, p.Where, per)
	}
	return b.String()
}

// notesOf returns the notes of the figures with prefix, as "`name`: note".
func notesOf(summaries []Summary, prefix string) []string {
	var out []string
	for _, s := range summaries {
		if !strings.HasPrefix(s.Name, prefix) {
			continue
		}
		for _, n := range s.Notes {
			out = append(out, fmt.Sprintf("`%s`: %s", strings.TrimPrefix(s.Name, prefix), n))
		}
	}
	return out
}

// RenderBenchmarks returns the generated part of docs/benchmarks.md: the
// grant cost curve from BenchmarkGrantCurve, and the broker's sweeper lag
// and replica throughput when the output has them.
func RenderBenchmarks(points []BenchPoint, m Machine, command string, runs int) string {
	var b strings.Builder
	b.WriteString("## Grant cost curve, 1 to 200 pairs\n\n")
	b.WriteString("`BenchmarkGrantCurve` in `internal/evidence/bench_test.go` measures as `BenchmarkGrant` does " +
		"(every role assignment PUT and DELETE delayed by an assumed 200 ms, `Engine.GrantAll` then " +
		"`Engine.RevokeAll`) with the default concurrency bound of 50, for 1 to 200 pairs. " +
		"The grant column is the `GrantAll` phase alone.\n\n")
	b.WriteString(m.markdown(command, runs))
	b.WriteString("\n| pairs | grant median | grant spread | grant and revoke median | grant and revoke spread | ratio to 1 pair |\n")
	b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: |\n")
	var base float64
	for _, p := range points {
		pairs, ok := strings.CutPrefix(p.Name, "BenchmarkGrantCurve/pairs=")
		if !ok {
			continue
		}
		grant := p.Metrics["grant-ms/op"]
		total := make([]float64, len(p.NsPerOp))
		for i, ns := range p.NsPerOp {
			total[i] = ns / 1e6
		}
		if base == 0 {
			base = median(total)
		}
		ratio := 0.0
		if base > 0 {
			ratio = median(total) / base
		}
		fmt.Fprintf(&b, "| %s | %s ms | %s | %s ms | %s | %.2f |\n", pairs,
			formatMS(median(grant)), spreadMS(grant), formatMS(median(total)), spreadMS(total), ratio)
	}
	b.WriteString("\nWith a bound of 50, requests of up to 50 pairs take one round of writes, " +
		"and larger ones one more round per 50 pairs, so the time grows in steps of about one PUT and one DELETE.\n")
	b.WriteString(renderSweeperLag(points, m, command, runs))
	b.WriteString(renderReplicas(points, m, command, runs))
	return b.String()
}

// renderSweeperLag returns the sweeper lag and memory section from
// BenchmarkSweeperLag, or "" when the output has none.
func renderSweeperLag(points []BenchPoint, m Machine, command string, runs int) string {
	var rows strings.Builder
	for _, p := range points {
		rest, ok := strings.CutPrefix(p.Name, "BenchmarkSweeperLag/")
		if !ok {
			continue
		}
		kind, leases, _ := strings.Cut(rest, "/leases=")
		p99 := p.Metrics["p99-ms"]
		met := "met"
		if median(p99) > 1000 {
			met = "missed"
		}
		fmt.Fprintf(&rows, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", storeName(kind), groupDigits(leases), len(p99),
			medianSpread(p.Metrics["p50-ms"], "ms"), medianSpread(p99, "ms"), medianSpread(p.Metrics["idle-sweep-ms"], "ms"),
			medianSpread(p.Metrics["create-per-s"], ""), medianSpread(p.Metrics["rss-MiB"], "MiB"),
			medianSpread(p.Metrics["heap-MiB"], "MiB"), met)
	}
	if rows.Len() == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## Broker sweeper lag and memory, 1,000 to 100,000 active leases\n\n")
	b.WriteString("`BenchmarkSweeperLag` in `internal/broker/sweeper_bench_test.go` seeds N active leases in bulk " +
		"(`store.Seeder`, 1,000 per transaction, all active for an hour). Then it creates 200 requests through " +
		"`Service.Create` against the emulator over HTTPS. Their leases expire 10 ms apart while `Sweep` runs " +
		"at its default 250 ms interval. The lag is the grant's `verified_at` minus the lease's `expires_at`. " +
		"The idle sweep is the median `SweepOnce` that finds nothing to do, which grows with N when a sweeper " +
		"query scans the active rows. RSS is `VmRSS` of the test process (broker, emulator and store), and heap " +
		"is the Go heap in use, both after the burst with the N leases still active. The 100,000 case runs with " +
		"`ELEVATE_EVIDENCE=long`, and PostgreSQL cases need `ELEVATE_TEST_POSTGRES_DSN`.\n\n")
	b.WriteString(m.markdown(command, runs))
	b.WriteString("\nEach cell is the median, then the smallest to the largest value.\n\n")
	b.WriteString("| store | active leases | runs | lag p50 | lag p99 | idle sweep | cohort creates per s | RSS | Go heap | p99 <= 1 s |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	b.WriteString(rows.String())
	return b.String()
}

// renderReplicas returns the replica throughput section from
// BenchmarkBrokerReplicas, or "" when the output has none.
func renderReplicas(points []BenchPoint, m Machine, command string, runs int) string {
	var rows strings.Builder
	for _, p := range points {
		replicas, ok := strings.CutPrefix(p.Name, "BenchmarkBrokerReplicas/replicas=")
		if !ok {
			continue
		}
		rate := p.Metrics["req/s"]
		fmt.Fprintf(&rows, "| %s | %d | %s |\n", replicas, len(rate), medianSpread(rate, "req/s"))
	}
	if rows.Len() == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## Broker throughput, one to three replicas on PostgreSQL\n\n")
	b.WriteString("`BenchmarkBrokerReplicas` in `internal/broker/bench_test.go` runs one to three Services in one " +
		"process, each with its own connection pool on one PostgreSQL schema and four callers. One request is " +
		"`Create` (policy auto-approves Reader), the role assignment PUT, then an admin `Revoke` with DELETE and " +
		"read-back, against the in-process emulator with no added latency. Every replica, the emulator and " +
		"PostgreSQL share the machine's cores.\n\n")
	b.WriteString(m.markdown(command, runs))
	b.WriteString("\n| replicas | runs | requests per second: median, smallest to largest |\n| ---: | ---: | ---: |\n")
	b.WriteString(rows.String())
	return b.String()
}

// storeName returns the display name of a benchmark's store kind.
func storeName(kind string) string {
	switch kind {
	case "sqlite":
		return "SQLite"
	case "postgres":
		return "PostgreSQL"
	}
	return kind
}

// medianSpread formats values as "median unit (lo to hi)", or "" when
// there are none.
func medianSpread(values []float64, unit string) string {
	if len(values) == 0 {
		return ""
	}
	lo, hi := slices.Min(values), slices.Max(values)
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', decimals(v), 64) }
	return strings.TrimSpace(fmt.Sprintf("%s %s", f(median(values)), unit)) + fmt.Sprintf(" (%s to %s)", f(lo), f(hi))
}

// decimals returns the decimals to print of v: one below 10 and none
// above, enough for timings and rates measured on a shared machine.
func decimals(v float64) int {
	if math.Abs(v) < 10 {
		return 1
	}
	return 0
}

// groupDigits returns the whole number s with thousands separators:
// 100000 as 100,000.
func groupDigits(s string) string {
	if len(s) <= 3 {
		return s
	}
	return groupDigits(s[:len(s)-3]) + "," + s[len(s)-3:]
}

func formatMS(v float64) string { return strconv.FormatFloat(math.Round(v), 'f', 0, 64) }

func spreadMS(values []float64) string {
	if len(values) == 0 {
		return ""
	}
	lo, hi := values[0], values[0]
	for _, v := range values {
		lo, hi = min(lo, v), max(hi, v)
	}
	return formatMS(lo) + " to " + formatMS(hi) + " ms"
}

// round keeps two decimals, enough for percentages.
func round(v float64) float64 { return math.Round(v*100) / 100 }
