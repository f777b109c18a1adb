##@ deploy
# Deploy files (deploy/): Kubernetes manifests and the Swarm stack, pinned to image.lock's digest;
# pushing the image (and its SBOM) to a registry by digest.
STACK ?= lockstep
SBOM ?= image/sbom.cdx.json
# The deploy tests start a reference registry and put the stack under load with hey.
TEST_PREREQS += deploy-tools

.PHONY: check-deploy sync-deploy deploy-tools push stack-images lock-stack-images verify-stack-images \
	bench-proxy deploy-stack require-registry

check-deploy: setup ## Fail if a deploy file pins another image digest than image.lock
	$(PY) -m imagetool deploy check

sync-deploy: setup ## Pin every deploy file to image.lock's digest (after `make lock-image`)
	$(PY) -m imagetool deploy sync

deploy-tools: ## Install the reference registry (docker-registry), htpasswd (bcrypt entries for its auth) and hey
	@command -v docker-registry >/dev/null && command -v htpasswd >/dev/null && command -v hey >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry apache2-utils hey; }

require-registry:
	@$(if $(REGISTRY),true,echo "error: set REGISTRY=host:port[/prefix] or name.domain[/prefix], e.g. make push REGISTRY=127.0.0.1:5000" >&2; exit 2)

push: require-registry setup image ## Push both platforms' images and image.lock's index to REGISTRY=host[:port][/prefix] by digest, each SBOM attached (SBOM= to skip); credentials: REGISTRY_USERNAME/REGISTRY_PASSWORD or docker login
	$(PY) -m imagetool registry push $(REGISTRY) --index $(if $(SBOM),--sbom-dir $(dir $(SBOM)))

stack-images: setup base ## Build the stack's HAProxy and Prometheus images from the store's .debs (image/stack.toml)
	$(PY) -m imagetool stack-images build

lock-stack-images: setup base ## Build both stack images; record their digests in image.lock's `stack`
	$(PY) -m imagetool stack-images lock

verify-stack-images: setup base ## Rebuild both stack images with --no-cache; fail unless == image.lock's `stack`
	$(PY) -m imagetool stack-images verify

bench-proxy: setup image stack-images ## Per-request cost of HAProxy vs the old Python proxy vs direct (wrk/hey); writes bench/results/proxy_overhead.{json,md}
	@command -v wrk >/dev/null && command -v hey >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk hey; }
	$(PY) -m bench.proxy_overhead $(BENCH_ARGS)

deploy-stack: require-registry stack-images ## Deploy deploy/compose.yaml as swarm stack $(STACK), pulling from REGISTRY
	LOCKSTEP_REGISTRY=$(REGISTRY) docker stack deploy --detach=false --resolve-image never \
		-c deploy/compose.yaml $(STACK)

.PHONY: sbom check-sbom
sbom: setup ## Write image/sbom.cdx.json (CycloneDX) from the locks: wheels, Debian packages, model
	$(PY) -m imagetool sbom write

check-sbom: setup ## Fail unless image/sbom.cdx.json is exactly what the locks give
	$(PY) -m imagetool sbom check

.PHONY: provenance verify-provenance
provenance: setup ## Write build/provenance.intoto.json: SLSA v1 provenance of image.lock's digest
	$(PY) -m imagetool provenance write

verify-provenance: setup ## Check build/provenance.intoto.json against the tree and the local image
	$(PY) -m imagetool provenance verify build/provenance.intoto.json --image lockstep:latest
