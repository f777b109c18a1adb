"""File layout of the pipeline's outputs (must agree with dvc.yaml)."""

from pathlib import Path

TRAIN_CSV = Path("data/prepared/train.csv")
TEST_CSV = Path("data/prepared/test.csv")
MODEL_FILE = Path("models/model.joblib")
EXPORT_FILE = Path("models/model.json")
METADATA_FILE = Path("models/metadata.json")
METRICS_FILE = Path("reports/metrics.json")
CONFUSION_FILE = Path("reports/plots/confusion.json")
ROC_FILE = Path("reports/plots/roc.json")
