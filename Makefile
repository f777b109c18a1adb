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
# Lock files must carry no host index/find-links lines (see imagetool/locks.py).
PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links

# One fragment per workflow (mk/<group>.mk, its targets under a `##@ <group>` heading); `make help`
# lists the groups in this order. Fragments append to TEST_PREREQS what the tests need running.
HELP_GROUPS := train serve image deploy develop
TEST_PREREQS :=
include $(wildcard mk/*.mk)

.PHONY: help
help: ## List the targets by workflow (`make` alone does this)
	@awk -v groups="$(HELP_GROUPS)" -f mk/help.awk $(MAKEFILE_LIST)

.PHONY: all
all: ## Set up, fill the store, install the engine, retrain, build the image; a line per step, a summary
	@python3 -m imagetool all

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
lock: setup ## Regenerate every lock (requirements.txt, requirements/*.txt) from its .in file
	$(PIP_COMPILE) --upgrade --output-file requirements.txt requirements.in
	$(PIP_COMPILE) --upgrade --output-file requirements/dev.txt requirements/dev.in
	$(PIP_COMPILE) --output-file requirements/serve.txt requirements/serve.in  # pins come from requirements.txt
	$(PIP_COMPILE) --output-file requirements/serve-sklearn.txt requirements/serve-sklearn.in
	$(PIP_COMPILE) --output-file requirements/serve-xgboost.txt requirements/serve-xgboost.in
	$(PIP_COMPILE) --output-file requirements/serve-lightgbm.txt requirements/serve-lightgbm.in
	$(PIP_COMPILE) --upgrade --output-file requirements/build.txt requirements/build.in
	$(PIP_COMPILE) --output-file requirements/mlserver.txt requirements/mlserver.in  # the bench's peer, in its own venv
	$(PY) -m imagetool store lock wheels  # the store keeps exactly the locked wheels

.PHONY: check-lock
check-lock: setup ## Fail, naming the file, if a lock no longer matches what its .in resolves to
	$(PY) -m imagetool locks check requirements.txt requirements/dev.txt requirements/serve.txt requirements/serve-sklearn.txt \
		requirements/serve-xgboost.txt requirements/serve-lightgbm.txt requirements/build.txt

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
