# lanscope: the two commands are `make run` (continuous observation with the embedded
# NATS and DuckDB) and `make test` (the whole suite, with the lab). Everything they need
# is installed on first use: a virtualenv in .venv and, for the tests, Debian packages.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LAB_PACKAGES := tests/lab/packages.txt
PYTEST_ARGS ?=

.PHONY: run test lab-up lab-down lab-status lab-run lab-shell bench lint typecheck clean install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job: watch the attached LAN continuously (embedded NATS + DuckDB in ./var).
run: $(STAMP)
	$(BIN)/lanscope run

## The whole test suite, inside the network-namespace lab (needs root).
test: $(STAMP) .lab-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian packages for the lab's real servers and the benchmark peers; only what is missing.
.lab-packages: $(LAB_PACKAGES)
	@missing=$$(for p in $$(grep -v '^#' $(LAB_PACKAGES)); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  [ -e /usr/sbin/policy-rc.d ] || printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	  chmod +x /usr/sbin/policy-rc.d; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $$missing > /dev/null; \
	fi
	@touch .lab-packages

lab-up: $(STAMP) .lab-packages
	$(BIN)/python -m tests.lab up

lab-down: $(STAMP)
	$(BIN)/python -m tests.lab down

lab-status: $(STAMP)
	$(BIN)/python -m tests.lab status

## `lanscope run` inside the lab's scanner namespace (state in var/lab).
lab-run: lab-up
	ip netns exec $${LANSCOPE_LAB_PREFIX:-ls}-scan env LANSCOPE_DATA_DIR=var/lab $(BIN)/lanscope run

lab-shell: lab-up
	$(BIN)/python -m tests.lab shell

## Peer-vs-lanscope benchmarks on the lab (see bench/README.md).
bench: lab-up
	for b in discovery ports pipeline; do \
	  ip netns exec $${LANSCOPE_LAB_PREFIX:-ls}-scan $(BIN)/python -m bench.$$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .lab-packages var .pytest_cache
