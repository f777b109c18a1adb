##@ train
# Training (pipeline/): the DVC pipeline, run stage by stage in the locked training toolchain (a
# container of image/toolchain.lock.json's digest, pipeline/toolchain.py), and the check that the
# committed model reproduces. LOCKSTEP_TRAIN=host runs the stages on this host's Python instead
# (debugging only: each stage says its bits may differ from the lock).

.PHONY: repro check-repro toolchain lock-toolchain verify-toolchain check-toolchain bench-toolchain

# The toolchain, unless the stages run on the host.
TRAIN_PREREQS := $(if $(filter host,$(LOCKSTEP_TRAIN)),,toolchain)

repro: setup $(TRAIN_PREREQS) ## Run the DVC pipeline in the toolchain (prepare -> train -> evaluate, export); no-op when up to date
	$(VENV)/bin/dvc repro

check-repro: setup $(TRAIN_PREREQS) ## Run the DVC pipeline; fail, naming each output, if that changed dvc.lock
	$(PY) -m imagetool repro-check

toolchain: setup ## The locked training toolchain in the engine: a no-op if there, else built offline from the store
	$(PY) -m imagetool toolchain ensure

lock-toolchain: setup ## Build the toolchain and record its digest and inputs in image/toolchain.lock.json
	$(PY) -m imagetool toolchain lock

verify-toolchain: setup ## Rebuild the toolchain with --no-cache; fail (exit 2), naming what differs, unless == its lock
	$(PY) -m imagetool toolchain verify

check-toolchain: setup ## Fail if image/toolchain.lock.json no longer matches the tree's inputs (no build)
	$(PY) -m imagetool toolchain check

bench-toolchain: setup toolchain ## Toolchain vs host mode: dvc repro -f, no-op repro, per-stage overhead, offline build
	$(PY) -m bench.toolchain_bench

.PHONY: bench-prepare
bench-prepare: setup ## prepare and train on generated 1M and 5M-row CSVs (time, peak RSS): bench/results/prepare_scale.*
	$(PY) -m bench.prepare_scale $(BENCH_ARGS)
