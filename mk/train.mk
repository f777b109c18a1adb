##@ train
# Training (pipeline/): the DVC pipeline, and the check that the committed model reproduces.

.PHONY: repro check-repro

repro: setup ## Run the DVC pipeline (prepare -> train -> evaluate, export); no-op when up to date
	$(VENV)/bin/dvc repro

check-repro: setup ## Run the DVC pipeline; fail, naming each output, if that changed dvc.lock
	$(PY) -m imagetool repro-check

.PHONY: bench-prepare
bench-prepare: setup ## prepare and train on generated 1M and 5M-row CSVs (time, peak RSS): bench/results/prepare_scale.*
	$(PY) -m bench.prepare_scale $(BENCH_ARGS)
