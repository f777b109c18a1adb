##@ image
# The hermetic, deterministic image: every external input is kept by sha256 in store/
# (DVC-tracked), every build input is checked against its lock. Logic lives in imagetool/
# (`python -m imagetool --help`); see image/README.md.
# PLATFORM: linux/amd64 or linux/arm64 (imagetool/platforms.py); empty: every platform, except for
# `make run`, which runs linux/amd64. linux/arm64 runs under qemu on other hosts (`make binfmt`).
PLATFORM ?=
RUN_PLATFORM := $(or $(PLATFORM),linux/amd64)
IMAGE_TAG ?= lockstep:latest$(if $(filter linux/arm64,$(RUN_PLATFORM)),-arm64)
RUN_PORT ?= 8000
RUN_NAME ?= lockstep-run
# The image tests need the filled store (they push it to a test remote), a running engine, the base
# rootfs and the wheels; the pipeline's emulated-CPU test needs qemu-user-static (host-tools). host-tools
# comes before the store: a fresh store re-derives the arm64 base under qemu (arch-test, binfmt).
TEST_PREREQS += engine host-tools store base wheels

.PHONY: store lock-store check-store rederive-base engine host-tools binfmt base lock-base wheels image lock-image verify verify-second-builder \
	bench-arm64-families \
	check-image-lock run stop \
	bench-build lock-build-deps

store: setup ## Complete store/ (wheels, base, engine .debs): dvc pull, else the network; says which
	$(PY) -m imagetool store ensure

lock-store: setup ## Re-fill store/ from PyPI and the Debian mirror; rewrite image/store.lock.json, store.dvc
	$(PY) -m imagetool store lock

rederive-base: setup ## Rebuild the base from the store's .debs only (no network); fail unless == its lock
	$(PY) -m imagetool store rederive-base --platform "$(PLATFORM)"

check-store: setup ## Fail, naming the file and both hashes, unless store/ matches image/store.lock.json
	$(PY) -m imagetool store check

engine: setup ## Use the engine that answers if usable (BuildKit >= 0.13); else install Debian 13's from the store and start it
	LOCKSTEP_PYTHON=$(abspath $(PY)) $(PY) -m imagetool engine install
	$(PY) -m imagetool engine start

host-tools: setup ## Install, when missing, mmdebstrap, diffoscope, zstd, gpg, qemu-user-static; register binfmt
	$(PY) -m imagetool engine host-tools

binfmt: setup ## Register qemu's aarch64 binfmt_misc handler (root; lasts until reboot): linux/arm64 runs here
	$(PY) -m imagetool engine binfmt

base: setup ## Base rootfs per platform from the store into build/base (checked against its base lock)
	$(PY) -m imagetool base build --platform "$(PLATFORM)"

lock-base: setup ## Rebuild the base rootfs with mmdebstrap (network), accept it, and re-lock its store files
	$(PY) -m imagetool engine host-tools
	$(PY) -m imagetool base lock --platform "$(PLATFORM)"
	$(PY) -m imagetool store lock $(if $(filter linux/arm64,$(PLATFORM)),arm64,$(if $(PLATFORM),base,base arm64))

wheels: setup ## The image's wheels per platform from the store into build/wheels*, hash-checked
	$(PY) -m imagetool wheels download --platform "$(PLATFORM)"

image: setup engine base wheels ## Check every input, build the image, load it as $(IMAGE_TAG), print its digest
	$(PY) -m imagetool image build --platform "$(PLATFORM)"

lock-image: setup engine base wheels ## Build the image and record its digest and inputs in image.lock
	$(PY) -m imagetool image lock --platform "$(PLATFORM)"

verify: setup engine base wheels ## Rebuild with --no-cache; fail, explaining why, unless the digest equals image.lock
	$(PY) -m imagetool image verify --platform "$(PLATFORM)"

# The deploy files are locks too: check-deploy (mk/deploy.mk) keeps them in step with image.lock.
check-image-lock: setup check-deploy ## Fail if image/base.lock.json, image.lock or a deploy file no longer match the tree (no build)
	$(PY) -m imagetool base check --platform "$(PLATFORM)"
	$(PY) -m imagetool image check --platform "$(PLATFORM)"

# The hardening, the caps and the platform's flags are imagetool/ship/container.py's (the tests, the bench
# and deploy/ share them); RUN_MEMORY=, RUN_PIDS= override the caps. The system python3, as for
# `make all`: the verb is stdlib only, so running an image needs no venv.
run: ## Run the image hardened: read-only root, no capabilities, no new privileges, non-root, memory and pids caps
	@python3 -m imagetool run --name $(RUN_NAME) --port $(RUN_PORT) --tag $(IMAGE_TAG) --platform $(RUN_PLATFORM) \
		$(if $(RUN_MEMORY),--memory $(RUN_MEMORY)) $(if $(RUN_PIDS),--pids $(RUN_PIDS))

stop: ## Stop the container `make run` started (RUN_NAME, default lockstep-run)
	@docker stop $(RUN_NAME) >/dev/null 2>&1 && echo "stopped $(RUN_NAME)" || echo "$(RUN_NAME) is not running"

bench-build: setup engine base wheels ## Benchmark image builds (cold, no-change, model-only), size and start-up
	$(PY) -m bench.build_bench

bench-arm64-families: setup toolchain engine binfmt base wheels ## Each family's gate difference with aarch64's onnxruntime (arm64 image, qemu) beside amd64's; writes bench/results/arm64_families.{json,md}
	$(PY) -m bench.arm64_families $(BENCH_ARGS)

lock-build-deps: setup ## Regenerate requirements/build.txt (the pip used inside the image build)
	$(PY) -m imagetool locks compile requirements/build.txt
	$(PY) -m imagetool store lock wheels

verify-second-builder: setup store base wheels ## Build with a second, newer BuildKit (from the store, run beside the engine); must equal image.lock
	$(PY) -m imagetool second-builder verify
