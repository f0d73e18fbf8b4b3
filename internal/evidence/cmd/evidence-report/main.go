// Command evidence-report writes the figures of `make bench` into
// docs/reliability.md and docs/benchmarks.md, between the evidence markers,
// keeping the rest of each file.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/evidence"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "evidence-report: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	results := flag.String("results", "", "directory with one subdirectory of evidence results per run (required)")
	bench := flag.String("bench", "", "file with the `go test -bench` output of BenchmarkGrantCurve, BenchmarkSweeperLag and BenchmarkBrokerReplicas (required)")
	runs := flag.Int("runs", 1, "number of runs the results and the benchmark cover")
	command := flag.String("command", "make bench", "command to name in the docs")
	reliability := flag.String("reliability", "docs/reliability.md", "reliability page to update")
	benchmarks := flag.String("benchmarks", "docs/benchmarks.md", "benchmark page to update")
	flag.Parse()
	if *results == "" || *bench == "" {
		return fmt.Errorf("missing -results or -bench: both are required")
	}

	rs, err := evidence.ReadResults(*results)
	if err != nil {
		return err
	}
	if len(rs) == 0 {
		return fmt.Errorf("no evidence results under %q: run the tests with ELEVATE_EVIDENCE_OUT set", *results)
	}
	data, err := os.ReadFile(*bench)
	if err != nil {
		return fmt.Errorf("read benchmark output: %w", err)
	}
	points, err := evidence.ParseBench(bytes.NewReader(data))
	if err != nil {
		return err
	}
	m := machine()
	if err := update(*reliability, evidence.RenderReliability(evidence.Summarize(rs), m, *command, *runs)); err != nil {
		return err
	}
	return update(*benchmarks, evidence.RenderBenchmarks(points, m, *command, *runs))
}

// update replaces the generated part of the document at path.
func update(path, generated string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	out := evidence.ReplaceGenerated(string(doc), generated)
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// machine describes this host: CPU count, CPU model and the Go toolchain
// on PATH, which `make bench` used.
func machine() evidence.Machine {
	m := evidence.Machine{CPUs: runtime.NumCPU(), CPUModel: "unknown", GoVersion: runtime.Version(),
		Date: time.Now().UTC().Format("2006-01-02")}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		m.GoVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if name, value, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(name) == "model name" {
				m.CPUModel = strings.TrimSpace(value)
				break
			}
		}
	}
	return m
}
