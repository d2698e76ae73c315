# raftnode: the two newcomer commands are `make lab` (or `make start-cluster`) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SEEDS ?= 500

# Fragments under mk/ add their own targets and append to TEST_TARGETS: mk/cluster.mk (local
# processes), mk/deploy.mk (Ansible tools, lint, deploy), mk/lab.mk (lab hosts, lab tests).
TEST_TARGETS := lint test-unit test-sim
.DEFAULT_GOAL := help

.PHONY: help venv lint check test test-unit test-sim sim bench-log

## List the documented targets: the `## ` comments right above each target, in every fragment.
help:
	@awk '/^## / { doc[++n] = substr($$0, 4); next } \
		n && /^[A-Za-z0-9_. -]+:([^=]|$$)/ { \
			split($$0, t, ":"); printf "\n  %s\n", t[1]; \
			for (i = 1; i <= n; i++) printf "      %s\n", doc[i]; \
		} \
		{ n = 0 }' $(MAKEFILE_LIST)

## The project virtualenv (.venv) with raftnode and its dev tools.
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Every Python tree in the repository. Molecule scenarios are checked one at a time: each has its
# own tests/test_*.py (same module names), and they import molecule/shared/lab_probe.py.
PY_TREES := raftnode tests bench lab examples molecule chaos roles/haproxy/files
MOLECULE_PY_DIRS := $(patsubst %/,%,$(dir $(wildcard molecule/*/tests/*.py molecule/*/*.py)))

## ruff (lint and format), mypy over the Python trees and each Molecule scenario's tests.
lint: venv
	$(VENV)/bin/ruff check $(PY_TREES)
	$(VENV)/bin/ruff format --check $(PY_TREES)
	$(VENV)/bin/mypy raftnode tests bench lab examples chaos roles/haproxy/files
	@set -e; for scenario in $(sort $(patsubst %/tests,%,$(MOLECULE_PY_DIRS))); do \
		echo "mypy $$scenario"; \
		MYPYPATH=molecule/shared $(VENV)/bin/mypy $$(find $$scenario -name '*.py' | sort); \
	done

## Unit tests, and the embedding example's tests (examples/, on raftnode.testing: in memory). With
## the bench extra: the chaos report's picture test draws with matplotlib, and must not be skipped.
test-unit: bench-venv
	$(PY) -m pytest -q -p no:cacheprovider tests/unit examples

## The deterministic cluster simulation (500 seeds in make test; make sim SEEDS=20000 for a long run)
test-sim sim: venv
	$(PY) -m tests.sim.runner --seeds $(SEEDS)

## Appends and compacts 1M entries through the core and the WAL; prints the figures.
bench-log: venv
	$(PY) -m bench.log_append

-include mk/*.mk
# Last, as the slowest: the Molecule scenarios on lab hosts (mk/lab.mk).
TEST_TARGETS += test-molecule

## The quick tier, no root and no lab hosts (minutes): lint, unit, simulation, integration.
check: lint test-unit test-sim test-integration

## Every test: lint, unit, simulation, integration, Ansible lint, lab, Molecule scenarios.
test: $(TEST_TARGETS)
