# Hermetic, deterministic image (issue 4). Logic lives in imagetool/; see image/README.md.
IMAGE_TAG ?= lockstep:latest
# The image tests need a running engine, the base rootfs and the wheels.
TEST_PREREQS += engine base wheels
RUN_PORT ?= 8000

.PHONY: engine base lock-base wheels image lock-image verify check-image-lock run bench-build lock-build-deps

engine: ## Install (Debian: trixie's docker.io + buildx) and start the Docker engine; host tools too
	scripts/docker-engine.sh install
	scripts/install-host-tools.sh
	scripts/docker-engine.sh start

base: setup ## Build the Debian base rootfs with mmdebstrap (cached while it matches image/base.lock.json)
	scripts/install-host-tools.sh
	$(PY) -m imagetool.base build

lock-base: setup ## Rebuild the base rootfs and accept what the archive yields now into image/base.lock.json
	scripts/install-host-tools.sh
	$(PY) -m imagetool.base lock

wheels: setup ## Download exactly the locked wheels (linux x86_64, CPython 3.11) into build/wheels, hash-checked
	$(PY) -m imagetool.wheels download

image: setup engine base wheels ## Check every input, build the image, load it as $(IMAGE_TAG), print its digest
	$(PY) -m imagetool.image build

lock-image: setup engine base wheels ## Build the image and record its digest and inputs in image.lock
	$(PY) -m imagetool.image lock

verify: setup engine base wheels ## Rebuild with --no-cache; fail, explaining why, unless the digest equals image.lock
	$(PY) -m imagetool.image verify

check-image-lock: setup ## Fail if image/base.lock.json or image.lock no longer match the tree (no build)
	$(PY) -m imagetool.base check
	$(PY) -m imagetool.image check --no-builder

run: ## Run the image hardened: read-only root, no capabilities, no new privileges, non-root
	docker run --rm --init=false --read-only --tmpfs /tmp:rw,noexec,nosuid,size=16m \
		--cap-drop=ALL --security-opt no-new-privileges --user 10001:10001 \
		-p 127.0.0.1:$(RUN_PORT):8000 $(IMAGE_TAG)

bench-build: setup engine base wheels ## Benchmark image builds (cold, no-change, model-only), size and start-up
	$(PY) bench/build_bench.py

lock-build-deps: setup ## Regenerate requirements-build.txt (the pip used inside the image build)
	$(PIP_COMPILE) --upgrade --output-file requirements-build.txt requirements-build.in
