"""Every file and folder of the tree that the image tooling reads or writes, in one table.

Paths are relative to the repository root, so a module joins them to its root (`ROOT / STORE_LOCK`)
and a test or a repo copy to its own. Per-platform paths (each platform's base lock, rootfs and
wheels) are `platforms.Platform`'s, built from the names here.
"""

from __future__ import annotations

from pathlib import Path

BUILD = Path("build")  # everything derived: never committed, always re-made from the locks

# --- the requirement locks (the list of them, with their pip-compile flags: inputs/locks.py) -----
TRAIN_LOCK = "requirements.txt"  # the training toolchain's: the whole runtime lock
# The service image installs one of these, by the model's serving path (build/recipe.py).
SERVE_LOCK_BY_PATH = {"onnx": "requirements/serve.txt", "sklearn": "requirements/serve-sklearn.txt"}
# The exact path's lock for a model whose estimator comes from another library (its class's first part).
EXACT_LOCK_BY_LIBRARY = {
    "xgboost": "requirements/serve-xgboost.txt",
    "lightgbm": "requirements/serve-lightgbm.txt",
}
SERVE_LOCKS = (*SERVE_LOCK_BY_PATH.values(), *EXACT_LOCK_BY_LIBRARY.values())
BUILD_LOCK = "requirements/build.txt"  # pip itself, run from its wheel in a build stage only
DEV_LOCK = "requirements/dev.txt"
PEER_LOCK = "requirements/mlserver.txt"  # the bench's MLServer peer, in its own venv

# --- the store of inputs (inputs/store.py) ---------------------------------------------------
STORE = Path("store")
STORE_DVC = Path("store.dvc")
STORE_LOCK = Path("image/store.lock.json")
ENGINE_DEFINITION = Path("image/engine.toml")
STACK_DEFINITION = Path("image/stack.toml")

# --- the Debian base (inputs/base.py) --------------------------------------------------------
BASE_DEFINITION = Path("image/base.toml")
BASE_LOCK = Path("image/base.lock.json")  # amd64's; another platform's is base.<arch>.lock.json beside it

# --- what is built, and the locks of their digests (build/) --------------------------------------
IMAGE_LOCK = Path("image.lock")
TOOLCHAIN_LOCK = Path("image/toolchain.lock.json")
TOOLCHAIN_DOCKERFILE = Path("image/toolchain.Dockerfile")
DEPLOY = Path("deploy")
STACK_DOCKERFILE = DEPLOY / "stack.Dockerfile"
MINIMAL_ROOT = Path("imagetool/minimal_root.py")  # the Dockerfiles run it, by this path

# --- what ships with the image (ship/) -------------------------------------------------------
SBOM = Path("image/sbom.cdx.json")  # amd64's; each platform's is `Platform.sbom_name` beside it
