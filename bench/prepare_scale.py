"""`make bench-prepare`: `prepare` and `train` on generated mixed-type CSVs (numbers, categories,
gaps; 30 columns), for the default model and HistGradientBoosting. Each stage runs as DVC runs it
(`python -m pipeline STAGE` in a working directory); wall time and the stage process's peak RSS
(getrusage of the child) are recorded. Writes bench/results/prepare_scale.{json,md}.

    python -m bench.prepare_scale --rows 1000000 5000000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.helpers import lock_stage_outputs, pipeline_workdir

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = 30  # 20 numeric (5 with gaps), 9 categorical (3 with gaps), and the target
ESTIMATORS = {
    "LogisticRegression (default)": ("sklearn.linear_model.LogisticRegression", {"max_iter": 200}),
    "HistGradientBoosting": ("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 50}),
}


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """A CSV of `rows` rows written in chunks (the generator's own memory stays small)."""
    rng = np.random.default_rng(seed)
    header = [f"num_{i}" for i in range(20)] + [f"cat_{i}" for i in range(9)] + ["label"]
    levels = np.array([f"level_{i}" for i in range(12)])
    with path.open("w") as fh:
        fh.write(",".join(header) + "\n")
        for start in range(0, rows, 200_000):
            n = min(200_000, rows - start)
            numbers = rng.normal(size=(n, 20)).round(6).astype(str)
            numbers[:, :5][rng.random((n, 5)) < 0.05] = ""
            cats = levels[rng.integers(0, len(levels), size=(n, 9))]
            cats[:, :3][rng.random((n, 3)) < 0.05] = ""
            label = np.where(rng.random(n) < 0.4, "yes", "no")
            table = np.concatenate([numbers, cats, label[:, None]], axis=1)
            fh.write("\n".join(",".join(row) for row in table.tolist()) + "\n")


def run_stage(workdir: Path, stage: str) -> dict[str, Any]:
    """One stage in a child process: wall seconds and that child's peak RSS (MiB)."""
    # The child's ru_maxrss alone: a fresh helper process runs the stage and reports its own usage.
    code = (
        "import resource, subprocess, sys, time, json;"
        "t = time.perf_counter();"
        f"p = subprocess.run([sys.executable, '-m', 'pipeline', {stage!r}], capture_output=True, text=1);"
        "dt = time.perf_counter() - t;"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024;"
        "err = p.stderr[-300:];"
        "print(json.dumps({'rc': p.returncode, 'seconds': dt, 'peak_rss_mib': rss, 'stderr': err}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    if result["rc"] == 0:
        lock_stage_outputs(workdir, stage)
    return result


def set_estimator(workdir: Path, estimator: str, hyper: dict[str, Any]) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["prepare"].update(raw_data="data/raw/scale.csv", target="label")
    params["train"]["estimator"] = {"class": estimator, "params": hyper}
    params["evaluate"]["positive_class"] = "yes"
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


def report(rows: int, name: str, stage: str, result: dict[str, Any]) -> None:
    print(
        f"{rows:>9} rows  {name:<30} {stage:<8} {result['seconds']:8.1f} s  "
        f"{result['peak_rss_mib']:8.0f} MiB  rc={result['rc']}",
        flush=True,
    )


def bench(rows: int, root: Path) -> list[dict[str, Any]]:
    """prepare once (both models are classifiers: the same split), then train each model on it."""
    workdir = pipeline_workdir(root / str(rows), data="data/raw")
    generate(workdir / "data/raw/scale.csv", rows)
    csv_mib = (workdir / "data/raw/scale.csv").stat().st_size / 2**20
    out = []
    prepared: dict[str, Any] | None = None
    for name, (estimator, hyper) in ESTIMATORS.items():
        set_estimator(workdir, estimator, hyper)
        if prepared is None:
            prepared = run_stage(workdir, "prepare")
            report(rows, "(any classifier)", "prepare", prepared)
        record: dict[str, Any] = {"rows": rows, "columns": COLUMNS, "model": name, "csv_mib": csv_mib}
        record["prepare"] = prepared
        if prepared["rc"] == 0:
            record["train"] = run_stage(workdir, "train")
            report(rows, name, "train", record["train"])
        out.append(record)
    shutil.rmtree(workdir)
    return out


def _cell(record: dict[str, Any], stage: str, key: str) -> str:
    result = record.get(stage)
    if result is None:
        return "-"
    return f"{result[key]:.1f}" if result["rc"] == 0 else f"failed ({result['rc']})"


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| rows | model | CSV MiB | prepare s | prepare peak RSS MiB | train s | train peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        cells = [
            _cell(r, stage, key) for stage in ("prepare", "train") for key in ("seconds", "peak_rss_mib")
        ]
        lines.append(f"| {r['rows']:,} | {r['model']} | {r['csv_mib']:.0f} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    args = parser.parse_args(argv)
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        for rows in args.rows:
            records += bench(rows, Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    doc = {"host_cpus": os.cpu_count(), "records": records}
    (RESULTS / "prepare_scale.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "prepare_scale.md").write_text(table(records))
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
