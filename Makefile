# Developer entry points. `make bench` measures the CLI lifecycle and the
# broker and writes the figures into docs/benchmarks.md and
# docs/reliability.md. The broker's PostgreSQL cases need
# ELEVATE_TEST_POSTGRES_DSN and are skipped without it.

GO ?= go

# Runs of every long evidence test and -count of every benchmark.
BENCH_RUNS ?= 3
# Where the raw results go; empty means a new temporary directory.
BENCH_DIR ?=
# Packages whose Go benchmarks run with -benchtime 3x. The broker's run
# on their own lines below, because each needs its own -benchtime.
BENCH_PKGS ?= ./internal/lifecycle ./internal/evidence
# The long evidence tests; each run gets its own seed.
EVIDENCE_TESTS ?= TestCrashRecovery|TestFaultSoak|TestSecretCanary|TestAuditTampering
# The broker's long HA test, run once per evidence run.
BROKER_EVIDENCE_TESTS ?= TestReplicasSurviveRepeatedKills

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
	$(GO) test -run '^$$' -bench BrokerReplicas -benchtime 300x -count $(BENCH_RUNS) -timeout 30m ./internal/broker | tee -a "$$dir/bench.txt"; \
	ELEVATE_EVIDENCE=long $(GO) test -run '^$$' -bench SweeperLag -benchtime 1x -count $(BENCH_RUNS) -timeout 120m ./internal/broker | tee -a "$$dir/bench.txt"; \
	failed=0; \
	for i in $$(seq 1 $(BENCH_RUNS)); do \
		echo "== evidence run $$i of $(BENCH_RUNS), seed $$i"; \
		if ! ELEVATE_EVIDENCE=long ELEVATE_EVIDENCE_SEED=$$i ELEVATE_EVIDENCE_OUT="$$dir/run-$$i" \
			$(GO) test -count=1 -v -timeout 30m -run '$(EVIDENCE_TESTS)' ./internal/evidence > "$$dir/run-$$i.log" 2>&1; then \
			failed=1; echo "run $$i failed: see $$dir/run-$$i.log"; \
		fi; \
		grep -E '^(--- |ok|FAIL)|: (crash|soak|canary|tampering)' "$$dir/run-$$i.log" || true; \
		if ! ELEVATE_EVIDENCE=long ELEVATE_EVIDENCE_SEED=$$i ELEVATE_EVIDENCE_OUT="$$dir/run-$$i" \
			$(GO) test -count=1 -v -timeout 30m -run '$(BROKER_EVIDENCE_TESTS)' ./internal/broker > "$$dir/run-$$i-broker.log" 2>&1; then \
			failed=1; echo "broker run $$i failed: see $$dir/run-$$i-broker.log and the replica logs in $$dir/run-$$i"; \
		fi; \
		grep -E '^(--- |ok|FAIL)|ha\.' "$$dir/run-$$i-broker.log" || true; \
	done; \
	$(GO) run ./internal/evidence/cmd/evidence-report -results "$$dir" -bench "$$dir/bench.txt" \
		-runs $(BENCH_RUNS) -command "make bench BENCH_RUNS=$(BENCH_RUNS)"; \
	if [ $$failed -ne 0 ]; then echo "some evidence runs failed"; exit 1; fi

# fuzz runs every Go fuzz target for FUZZTIME each (a -fuzztime value) and
# writes a table of executions, new interesting inputs and crashes to
# FUZZ_OUT, by default a file in a new temporary directory. It exits
# non-zero if any target crashed; scripts/fuzz prints the failing inputs.
FUZZTIME ?= 1m
FUZZ_OUT ?=

.PHONY: fuzz
fuzz:
	FUZZ_OUT="$(FUZZ_OUT)" scripts/fuzz $(FUZZTIME)
