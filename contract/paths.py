"""The artifact contract's file names, vocabularies and format versions: what the pipeline writes and
every reader looks for. Paths are relative to the repository root (the image's WORKDIR)."""

from __future__ import annotations

from pathlib import Path

# --- file names (relative to the repository root / the image's WORKDIR) -------------------------
PARAMS_FILE = Path("params.yaml")
DVC_LOCK_FILE = Path("dvc.lock")
TRAIN_CSV = Path("data/prepared/train.csv")
TEST_CSV = Path("data/prepared/test.csv")
SCHEMA_FILE = Path("data/prepared/schema.json")
MODEL_FILE = Path("models/model.joblib")
MODEL_SHA256_FILE = Path("models/model.sha256")  # sha256 of each pickle, git-tracked
ONNX_FILE = Path("models/model.onnx")
SERVING_FILE = Path("models/serving.json")
METADATA_FILE = Path("models/metadata.json")
METRICS_FILE = Path("reports/metrics.json")
PLOTS_DIR = Path("reports/plots")
CONFUSION_FILE = PLOTS_DIR / "confusion.json"  # classification; [] for a regressor
ROC_FILE = PLOTS_DIR / "roc.json"  # classification; [] for a regressor
RESIDUALS_FILE = PLOTS_DIR / "residuals.json"  # regression; [] for a classifier

# --- vocabularies --------------------------------------------------------------------------------
FEATURE_KINDS = ("numeric", "categorical", "date")
TASKS = ("binary", "multiclass", "regression")
SERVING_PATHS = ("onnx", "sklearn")
# What a missing categorical value becomes before it reaches the model (pickle and ONNX graph
# alike): ONNX string tensors cannot hold None. A missing number is NaN on both paths.
MISSING_STRING = "__missing__"
SCHEMA_VERSION = 1  # data/prepared/schema.json
METADATA_SCHEMA_VERSION = 2
SERVING_SCHEMA_VERSION = 1
