"""What goes into the image, in one place: the serve lock it installs and the model files it ships.

The Dockerfile takes the serve lock as a build argument (`SERVE_LOCK`, in a build stage only, so the
digest does not see how a builder renders it) and copies `models/` as the build context lets it in;
the `.dockerignore` allow-list must name the same files (a test compares them).

Issue 8 switches the serve lock by `models/serving.json`'s `"path"` (onnxruntime only, or with
scikit-learn) and the model files to model.onnx, serving.json and metadata.json (plus model.joblib on
the scikit-learn path): that is a change here and in `.dockerignore`. The store already keeps the
wheels of both serve locks.
"""

from __future__ import annotations

SERVE_LOCK = "requirements-serve.txt"
SERVE_LOCKS = ("requirements-serve.txt", "requirements-serve-sklearn.txt")
BUILD_LOCK = "requirements-build.txt"  # pip itself, run from its wheel in a build stage only
# The model files the image ships (DVC outputs), with the dvc.yaml stage that writes each.
MODEL_FILES = {
    "models/model.joblib": "train",
    "models/metadata.json": "evaluate",
    "models/model.json": "export",
}
