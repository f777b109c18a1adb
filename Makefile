# lockstep: `make` lists the targets. Recipes stay thin; the logic lives in Python
# modules (pipeline/, imagetool/, api/) that have tests.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
MAKEFLAGS += --no-builtin-rules

VENV ?= .venv
PY := $(VENV)/bin/python
# dvc.yaml's commands say `python`: it must be the venv's, with the locked libraries.
export PATH := $(abspath $(VENV))/bin:$(PATH)

# One fragment per workflow (mk/<group>.mk, its targets under a `##@ <group>` heading); `make help`
# lists the groups in this order. Fragments append to TEST_PREREQS what the tests need running.
HELP_GROUPS := train serve image deploy develop
TEST_PREREQS :=
include $(wildcard mk/*.mk)

.PHONY: help
help: ## List the targets by workflow (`make` alone does this)
	@awk -v groups="$(HELP_GROUPS)" -f mk/help.awk $(MAKEFILE_LIST)

# make all's steps, plain prerequisites in the order a fresh clone needs them (make runs them left to
# right; each also names what it needs), then the summary.
ALL_STEPS := setup engine host-tools store toolchain repro base wheels image
.PHONY: all
all: $(ALL_STEPS) ## Set up, fill the store, install the engine, retrain, build the image; then a summary
	@python3 -m imagetool summary

##@ develop

.PHONY: setup
setup: $(VENV)/.installed ## Create .venv, install the hash-pinned dev lock, then the project (editable)

# The project goes in after the lock, with the lock's setuptools (--no-build-isolation) and no index:
# installing it reaches no network and adds no dependency the lock does not pin. (setuptools warns
# that a folder named like a package in the working directory wins over the install: that is what
# lets a repo copy run its own pipeline/ and imagetool/, so the warning is silenced.)
$(VENV)/.installed: requirements.txt requirements/dev.txt pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/dev.txt
	PYTHONWARNINGS="ignore:Editable installation" \
		$(PY) -m pip install --quiet --no-deps --no-build-isolation --no-index --editable .
	@touch $@

.PHONY: lock
lock: setup ## Regenerate every lock (requirements.txt, requirements/*.txt) from its .in file; UPGRADE=0 keeps every existing pin
	$(PY) -m imagetool locks compile $(if $(filter 0,$(UPGRADE)),--no-upgrade)  # every lock and its flags: imagetool/inputs/locks.py
	$(PY) -m imagetool store lock wheels  # the store keeps exactly the locked wheels

.PHONY: check-lock
check-lock: setup ## Fail, naming the file, if a lock no longer matches what its .in resolves to
	$(PY) -m imagetool locks check

.PHONY: test
test: setup $(TEST_PREREQS) check-repro ## Run the whole test suite (installs and starts everything it needs)
	$(PY) -m pytest

.PHONY: lint
lint: setup ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy contract pipeline api imagetool harness tests bench

.PHONY: clean
clean: ## Remove the venv and build outputs (not the DVC cache)
	rm -rf $(VENV) build
