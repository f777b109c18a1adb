"""Build the lockstep container image hermetically, prove its digest, and ship it.

Layers, each importing only the ones before it (tests/test_imports.py checks it):

- ``common`` (errors, files, logging), ``layout`` (every path of the tree), ``platforms``, and
  ``engine`` (which Docker engine answers; ``engine/engine.sh`` installs and starts Debian's);
- ``inputs/``: the locked inputs: pure readers and checkers (``store``, the leaf; ``locks``,
  ``wheels``, ``base``), then what makes or fetches (``base_build``, ``rederive``, ``fetch``, the
  only module that fills the store);
- ``engine.install``: the engine's .debs from the store;
- ``images/``: the service image, the toolchain, the stack images, and checking a digest;
- ``ship/``: registry, deploy files, SBOM, provenance, ``make run``;
- ``cli`` (every verb of ``python -m imagetool``) and ``summary`` (``make all``'s last word).

``minimal_root`` stands apart: the Dockerfile runs it inside the build, and imports nothing.
"""
