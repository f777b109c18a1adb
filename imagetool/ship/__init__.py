"""What leaves the builder, by digest: pushing to a registry (`registry`, `registry_client`), the
deploy files (`deploy`), the SBOM and provenance (`sbom`, `provenance`), and the hardened
`docker run` of `make run` (`container`).
"""
