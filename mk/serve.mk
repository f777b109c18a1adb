##@ serve
# The prediction service (api/): serve it from the tree, benchmark it over HTTP. The built image
# runs with `make run` (image).

.PHONY: serve
serve: setup repro ## Serve the model on 127.0.0.1:8000 (python -m api; LOCKSTEP_* env vars configure it)
	$(PY) -m api

.PHONY: bench
bench: setup repro ## Benchmark /predict vs floor and ceiling per model family (wrk/hey); writes bench/results/serve.{json,md}
	@command -v wrk >/dev/null && command -v hey >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk hey; }
	$(PY) -m bench.serve_bench $(BENCH_ARGS)

.PHONY: bench-slow-clients
bench-slow-clients: setup repro ## 2,000 body-trickling clients beside a normal load (hey); writes bench/results/slow_clients.{json,md}
	@command -v hey >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hey; }
	$(PY) -m bench.slow_clients $(BENCH_ARGS)

.PHONY: bench-body-memory
bench-body-memory: setup repro ## Peak RSS of the largest body of each kind (harness/bodies.py); writes bench/results/serve_body_memory.{json,md}
	$(PY) -m bench.body_memory $(BENCH_ARGS)

.PHONY: bench-batch
bench-batch: setup repro ## 1,000-row batches vs MLServer 1.7.1 (full pipeline and plain LogisticRegression peers) and single rows, beside a baseline ref (BASELINE=main); writes bench/results/serve_batch.{json,md}
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(PY) -m bench.batch_bench --baseline $(or $(BASELINE),main) $(BENCH_ARGS)

.PHONY: bench-profile
bench-profile: setup repro ## Where a 1,000-row request's time goes (count, parse, validate, score, answer), beside a baseline ref (BASELINE=main); writes bench/results/request_profile.{json,md}
	$(PY) -m bench.request_profile --baseline $(or $(BASELINE),main) $(BENCH_ARGS)
