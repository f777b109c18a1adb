"""What goes into the image, in one place: the serve lock it installs and the model files it ships.

Both follow `models/serving.json`'s `"path"` (the pipeline's export stage decides it):
  - "onnx": the service runs models/model.onnx with onnxruntime: requirements/serve.txt, and the
    image ships model.onnx, serving.json and metadata.json, not the pickle it never loads;
  - "sklearn" (the exact path): requirements/serve-sklearn.txt (scikit-learn, pandas) and the
    md5- and sha256-checked pickle models/model.joblib as well (and models/model.sha256); a model
    of another library (metadata.json's estimator class, e.g. xgboost.XGBClassifier) takes that
    library's lock instead (requirements/serve-xgboost.txt, serve-lightgbm.txt): the library only
    when the model needs it.
The Dockerfile takes both as build arguments in build stages only (SERVE_LOCK, MODEL_FILES), so
the digest does not see how a builder renders them. The `.dockerignore` allow-list lets in every
file either path may need (MODEL_CONTEXT; a test compares them). The store keeps the wheels of both
serve locks, and build/wheels holds them all: pip installs only what the chosen lock names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contract import METADATA_FILE, MODEL_FILE, MODEL_SHA256_FILE, ONNX_FILE, SERVING_FILE, ContractError
from contract.metadata import estimator_class
from contract.serving import path_of
from imagetool.common import ToolError
from imagetool.layout import EXACT_LOCK_BY_LIBRARY, SERVE_LOCK_BY_PATH

# Every model file the image may ship (DVC outputs), with the dvc.yaml stage that writes each.
MODEL_CONTEXT = {
    MODEL_FILE.as_posix(): "train",
    MODEL_SHA256_FILE.as_posix(): "train",  # the pickle's sha256, checked before unpickling
    METADATA_FILE.as_posix(): "evaluate",
    ONNX_FILE.as_posix(): "export",
    SERVING_FILE.as_posix(): "export",
}


def _document(root: Path, path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads((root / path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ToolError(f"{path}: cannot read the {what} ({e.__class__.__name__}); run `dvc repro`") from None
    if not isinstance(doc, dict):
        raise ToolError(f"{path}: cannot read the {what} (not a JSON object); run `dvc repro`")
    return doc


def serving_path(root: Path) -> str:
    """ "onnx" or "sklearn", as models/serving.json says (contract.serving.path_of)."""
    try:
        return path_of(_document(root, SERVING_FILE, "serving path"), SERVING_FILE)
    except ContractError as e:
        raise ToolError(str(e)) from None


def estimator_library(root: Path) -> str:
    """The library of the model's estimator class, as models/metadata.json names it ("sklearn", ...)."""
    try:
        dotted = estimator_class(_document(root, METADATA_FILE, "estimator class"), METADATA_FILE)
    except ContractError as e:
        raise ToolError(f"{e}; run `dvc repro`") from None
    return dotted.split(".")[0]


def serve_lock(root: Path) -> str:
    """The requirements lock the image installs for this model."""
    path = serving_path(root)
    if path == "sklearn":
        return EXACT_LOCK_BY_LIBRARY.get(estimator_library(root), SERVE_LOCK_BY_PATH[path])
    return SERVE_LOCK_BY_PATH[path]


def model_files(root: Path) -> dict[str, str]:
    """The model files the image ships for this model -> the stage that writes each."""
    # Each path ships only what the service loads: the graph, or the pickle (the graph is empty).
    unused = {MODEL_FILE, MODEL_SHA256_FILE} if serving_path(root) == "onnx" else {ONNX_FILE}
    return {path: stage for path, stage in MODEL_CONTEXT.items() if Path(path) not in unused}
