# Deploy files (deploy/): Kubernetes manifests pinned to image.lock's digest.

.PHONY: check-deploy sync-deploy

check-deploy: setup ## Fail if a deploy file pins another image digest than image.lock
	$(PY) -m tools.deploy check

sync-deploy: setup ## Pin every deploy file to image.lock's digest (after `make lock-image`)
	$(PY) -m tools.deploy sync

.PHONY: sbom check-sbom
sbom: setup ## Write image/sbom.cdx.json (CycloneDX) from the locks: wheels, Debian packages, model
	$(PY) -m tools.sbom write

check-sbom: setup ## Fail unless image/sbom.cdx.json is exactly what the locks give
	$(PY) -m tools.sbom check

.PHONY: provenance verify-provenance
provenance: setup ## Write build/provenance.intoto.json: SLSA v1 provenance of image.lock's digest
	$(PY) -m tools.provenance write

verify-provenance: setup ## Check build/provenance.intoto.json against the tree and the local image
	$(PY) -m tools.provenance verify build/provenance.intoto.json --image lockstep:latest
