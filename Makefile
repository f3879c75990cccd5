# One entry point for humans and CI. Every target installs what it needs itself.
## The newest Python >= 3.11 on the PATH that runs (a pyenv shim for a version not selected does
## not); `make PYTHON=/path/to/python3` to choose.
SUPPORTED := python3.13 python3.12 python3.11 python3
ifeq ($(origin PYTHON), undefined)
PYTHON := $(shell for p in $(SUPPORTED); do $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
endif
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck unit demo sandbox bench clean chaos monitoring-tools

$(BIN)/python:
	@[ -n "$(PYTHON)" ] || { echo "Python >= 3.11 is required: none of $(SUPPORTED) runs here (or run make PYTHON=/path/to/python3)"; exit 1; }
	@echo "creating $(VENV) with $(PYTHON): $$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])')"
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml devtools/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./devtools
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## promtool and prometheus for tests/monitoring (Debian's `prometheus` package), installed once
## when missing and apt-get runs as root (CI); elsewhere those tests skip with one line (fail in CI)
APT_PROMETHEUS := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
monitoring-tools:
	@command -v promtool >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { $(APT_PROMETHEUS) >/dev/null 2>&1 || { apt-get update -qq && $(APT_PROMETHEUS) >/dev/null; }; }; } || \
	  echo "promtool not installed (needs root and apt-get): tests/monitoring will be skipped"

## make test: lint, type-check, the test suite (private redis-server, sandbox, real workers) and
## the chaos fuzz and SIGTERM tests; the other chaos scenarios run with `make chaos`
test: lint typecheck monitoring-tools
	$(BIN)/python -m pytest --ignore=tests/chaos --durations=15
	$(BIN)/python -m pytest tests/chaos/test_fuzz.py tests/chaos/test_graceful_stop.py

## make chaos: kill -9, SIGTERM, Redis restarts, Zalo faults, quota/night/pause, RabbitMQ, fuzz;
## every scenario at full size (~20 min), a results table at the end and in bench-results/chaos.json
chaos: $(STAMP)
	$(BIN)/python -m pytest tests/chaos --chaos-full

## make demo: sandbox Zalo + worker + a sample logistics journey set, with progress and a summary
demo: $(STAMP)
	$(BIN)/zns demo

## make bench: raw vs naive vs ours at 0/100 ms, 1 and 2 processes; enqueue and rate limit
bench: $(STAMP)
	$(BIN)/zns bench

sandbox: $(STAMP)
	$(BIN)/zns sandbox

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
