# lanscope: the two commands are `make run` (continuous observation with the embedded
# NATS and DuckDB) and `make test` (the whole suite, with the lab). Everything they need
# is installed on first use: a virtualenv in .venv and, for the tests, Debian packages.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LAB_PACKAGES := tests/lab/packages.txt
PYTEST_ARGS ?=

.PHONY: run test lab-up lab-down lab-status lab-run lab-watch lab-shell bench lint typecheck clean install

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

# Debian packages for the lab's real servers (and, for `make bench`, the peers); only
# what is missing is installed.
.lab-packages: $(LAB_PACKAGES)
	@$(MAKE) --no-print-directory .debian-packages PACKAGES_FILE=$(LAB_PACKAGES)
	@touch .lab-packages

.bench-packages: bench/packages.txt
	@$(MAKE) --no-print-directory .debian-packages PACKAGES_FILE=bench/packages.txt
	@touch .bench-packages

.PHONY: .debian-packages
.debian-packages:
	@missing=$$(for p in $$(grep -v '^#' $(PACKAGES_FILE)); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  created=; if [ ! -e /usr/sbin/policy-rc.d ]; then created=1; \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $$missing > /dev/null; status=$$?; \
	  [ -z "$$created" ] || rm -f /usr/sbin/policy-rc.d; \
	  exit $$status; \
	fi

lab-up: $(STAMP) .lab-packages
	$(BIN)/python -m tests.lab up

lab-down: $(STAMP)
	$(BIN)/python -m tests.lab down

lab-status: $(STAMP)
	$(BIN)/python -m tests.lab status

## `lanscope run` inside the lab's scanner namespace (state in var/lab).
lab-run: lab-up
	ip netns exec $${LANSCOPE_LAB_PREFIX:-ls}-scan $(BIN)/lanscope -c tests/lab/lanscope.yaml run

## `lanscope watch` on the pipeline of `make lab-run` (run it from another shell).
lab-watch: $(STAMP)
	$(BIN)/lanscope -c tests/lab/lanscope.yaml watch

lab-shell: lab-up
	$(BIN)/python -m tests.lab shell

## Peer-vs-lanscope benchmarks on the lab (see bench/README.md).
bench: lab-up .bench-packages
	for b in discovery ports pipeline replicas; do \
	  ip netns exec $${LANSCOPE_LAB_PREFIX:-ls}-scan $(BIN)/python -m bench.$$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .lab-packages .bench-packages var .pytest_cache
