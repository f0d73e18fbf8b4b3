# Developer entry points. `make bench` measures the CLI lifecycle and writes
# the figures into docs/benchmarks.md and docs/reliability.md.

GO ?= go

# Runs of every long evidence test and -count of every benchmark.
BENCH_RUNS ?= 3
# Where the raw results go; empty means a new temporary directory.
BENCH_DIR ?=
# Packages whose Go benchmarks run. The broker's benchmarks join this list
# when its evidence is added.
BENCH_PKGS ?= ./internal/lifecycle ./internal/evidence
# The long evidence tests; each run gets its own seed.
EVIDENCE_TESTS ?= TestCrashRecovery|TestFaultSoak|TestSecretCanary|TestAuditTampering

.PHONY: test bench

test:
	$(GO) test ./...

# bench keeps going when an evidence test fails, so the docs show every
# figure, and exits non-zero at the end if any run failed.
bench:
	@set -e; \
	dir="$(BENCH_DIR)"; \
	if [ -z "$$dir" ]; then dir=$$(mktemp -d -t elevate-bench-XXXXXX); fi; \
	mkdir -p "$$dir"; \
	echo "raw results in $$dir"; \
	$(GO) test -run '^$$' -bench . -benchtime 3x -count $(BENCH_RUNS) -timeout 30m $(BENCH_PKGS) | tee "$$dir/bench.txt"; \
	failed=0; \
	for i in $$(seq 1 $(BENCH_RUNS)); do \
		echo "== evidence run $$i of $(BENCH_RUNS), seed $$i"; \
		if ! ELEVATE_EVIDENCE=long ELEVATE_EVIDENCE_SEED=$$i ELEVATE_EVIDENCE_OUT="$$dir/run-$$i" \
			$(GO) test -count=1 -v -timeout 30m -run '$(EVIDENCE_TESTS)' ./internal/evidence > "$$dir/run-$$i.log" 2>&1; then \
			failed=1; echo "run $$i failed: see $$dir/run-$$i.log"; \
		fi; \
		grep -E '^(--- |ok|FAIL)|: (crash|soak|canary|tampering)' "$$dir/run-$$i.log" || true; \
	done; \
	$(GO) run ./internal/evidence/cmd/evidence-report -results "$$dir" -bench "$$dir/bench.txt" \
		-runs $(BENCH_RUNS) -command "make bench BENCH_RUNS=$(BENCH_RUNS)"; \
	if [ $$failed -ne 0 ]; then echo "some evidence runs failed"; exit 1; fi
