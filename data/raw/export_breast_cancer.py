"""Export scikit-learn's bundled breast-cancer data to data/raw/breast_cancer.csv.

Run once; the CSV is committed so the pipeline never needs the network or sklearn's
bundled files. Feature names become snake_case so they are valid JSON/OpenAPI keys.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from sklearn.datasets import load_breast_cancer


def main(out: Path = Path("data/raw/breast_cancer.csv")) -> None:
    data = load_breast_cancer()
    names = [str(n).replace(" ", "_") for n in data.feature_names]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([*names, "diagnosis"])
        for row, label in zip(data.data, data.target, strict=True):
            writer.writerow([*(repr(float(v)) for v in row), data.target_names[label]])


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:2]))
