# make demo | make test | make bench | make lint
# Each target sets up its own virtualenv (.venv) from pyproject.toml on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
APT_UPDATED := /tmp/.replay-apt-updated

.PHONY: demo test bench lint venv sysdeps clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || $(MAKE) -s apt-python-venv
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || (rm -rf $(VENV) && $(MAKE) -s apt-python-venv && $(PYTHON) -m venv $(VENV))
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

.PHONY: apt-python-venv
apt-python-venv:
	@test -f $(APT_UPDATED) || (apt-get update -qq && touch $(APT_UPDATED))
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null

# System tools the tests use: the zstd command line (interoperability of its files),
# Debian's chromium (the report and web page tests drive it headless through Playwright),
# trace-cmd and perf (binary recordings made here and compared with their text renderings).
sysdeps:
	@missing=""; \
	  command -v zstd >/dev/null 2>&1 || missing="$$missing zstd"; \
	  command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	  command -v trace-cmd >/dev/null 2>&1 || missing="$$missing trace-cmd"; \
	  command -v perf >/dev/null 2>&1 || missing="$$missing linux-perf"; \
	  test -z "$$missing" || { \
	    (test -f $(APT_UPDATED) || (apt-get update -qq && touch $(APT_UPDATED))) && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }

demo: $(STAMP)
	@rm -rf demo.duckdb demo.duckdb.wal demo.duckdb.batch demo-report.html
	$(VENV)/bin/replay ingest traces/compact-6.18 --name compact-6.18 --db demo.duckdb
	$(VENV)/bin/replay show compact-6.18 --db demo.duckdb
	$(VENV)/bin/replay run compact-6.18 --model buddy --fill-from-snapshot --every 1000 --db demo.duckdb
	$(VENV)/bin/replay run compact-6.18 --model mobility --fill-from-snapshot --every 1000 --db demo.duckdb
	$(VENV)/bin/replay run compact-6.18 --model mobility+pcp --fill-from-snapshot --every 1000 --db demo.duckdb
	@echo "== buddy vs mobility vs mobility+pcp on the real 6.18 capture, started as full as the machine was"
	$(VENV)/bin/replay query compare_runs --db demo.duckdb
	$(VENV)/bin/replay query run_extfrag --param run=2 --db demo.duckdb
	$(VENV)/bin/replay query fragmentation_over_time --param run=2 --param buckets=10 --db demo.duckdb
	@echo "== observed: the kernel's real buddy state rebuilt from the recorded pfns, against its buddyinfo"
	$(VENV)/bin/replay validate compact-6.18 --db demo.duckdb
	@echo "== fidelity: the kernel preset from the kernel's real state, step by step against the observed run"
	$(VENV)/bin/replay validate compact-6.18 --model kernel --db demo.duckdb -q
	@echo "== a batch: two scenarios and the real capture x buddy, mobility, compaction, exchange (2 processes)"
	$(VENV)/bin/replay batch examples/demo.toml --db demo.duckdb --jobs 2
	$(VENV)/bin/replay compare --batch demo --db demo.duckdb
	$(VENV)/bin/replay report --batch demo -o demo-report.html --db demo.duckdb
	@echo "report: $(CURDIR)/demo-report.html (self-contained, open it offline)"
	@echo "demo database: demo.duckdb (try: $(VENV)/bin/replay serve --db demo.duckdb)"

# The suite compiles numba's kernels for compile time, not speed (replay/jit.py: a cold
# clone compiles them in minutes less; no test times a kernel).
test: export REPLAY_JIT_FAST_COMPILE = 1
test: $(STAMP) sysdeps
	$(VENV)/bin/pytest -q -p no:cacheprovider -n auto --dist load

# Benchmarks time whole processes as an installed package runs them: with Python's
# bytecode cache (a PYTHONDONTWRITEBYTECODE in the environment would add ~0.3 s of
# compiling the package's sources to every child process).
bench: export PYTHONDONTWRITEBYTECODE =
bench: $(STAMP) sysdeps
	$(PY) bench/bench_ingest.py
	$(PY) bench/bench_canonical.py
	$(PY) bench/bench_replay.py
	$(PY) bench/bench_cref.py
	$(PY) bench/bench_scale.py
	$(PY) bench/bench_perl.py
	$(PY) bench/bench_observed.py
	$(PY) bench/bench_compaction.py
	$(PY) bench/bench_explain.py
	$(PY) bench/bench_batch.py
	$(PY) bench/bench_serve.py
	$(PY) bench/bench_binary.py

lint: $(STAMP)
	$(VENV)/bin/ruff check replay tests bench examples
	$(VENV)/bin/ruff format --check replay tests bench examples

clean:
	rm -rf $(VENV) *.egg-info bench/data demo.duckdb demo.duckdb.wal demo.duckdb.batch demo-report.html .pytest_cache test-artifacts
