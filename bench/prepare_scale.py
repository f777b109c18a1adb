"""`make bench-prepare`: `prepare` and `train` on generated mixed-type CSVs (numbers, categories,
gaps; 30 columns), for the default model and HistGradientBoosting. Each stage runs as DVC runs it
(`python -m pipeline STAGE` in a working directory, in the toolchain); wall time and the stage
process's peak RSS (which the stage reports from inside the container) are recorded. Writes
bench/results/prepare_scale.{json,md}.

    python -m bench.prepare_scale --rows 1000000 5000000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness import lock_stage_outputs, pipeline_workdir

RESULTS = Path(__file__).resolve().parent / "results"
REPO_ROOT = RESULTS.parents[1]
# The last revision whose prepare held every cell as a Python string (one list per column), before
# the chunked reader; only up to 1M rows: at 5M it would need about 20 GiB.
BASELINE = "4e58161"
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


PEAK = re.compile(r"done in [0-9.]+ s, peak memory ([0-9,]+) MiB")


def run_stage(workdir: Path, stage: str) -> dict[str, Any]:
    """One stage as DVC runs it (`python -m pipeline STAGE`, in the toolchain): wall seconds, and
    the stage process's own peak RSS, which its summary's last line reports from inside the
    container (a getrusage of the child here would measure the docker client)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", stage], cwd=workdir, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    found = PEAK.search(done.stdout)
    result: dict[str, Any] = {
        "rc": done.returncode,
        "seconds": seconds,
        "peak_rss_mib": float(found.group(1).replace(",", "")) if found else float("nan"),
        "stderr": done.stderr[-300:],
    }
    if done.returncode == 0:
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


def baseline_copy(workdir: Path, rev: str) -> Path:
    """A copy of `workdir` whose pipeline/ is revision `rev`'s (the reader before this one), except
    errors.py, whose summary line reports the stage's peak memory from inside the toolchain."""
    copy = workdir.with_name(workdir.name + "-baseline")
    shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns("data"))
    (copy / "data").mkdir()
    shutil.copytree(workdir / "data/raw", copy / "data/raw", copy_function=os.link)  # the same CSV
    archive = subprocess.run(
        ["git", "archive", rev, "pipeline"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    errors = (copy / "pipeline/errors.py").read_bytes()
    subprocess.run(["tar", "-x", "-C", str(copy)], input=archive, check=True)
    (copy / "pipeline/errors.py").write_bytes(errors)
    return copy


def bench(rows: int, root: Path, baseline: str | None) -> list[dict[str, Any]]:
    """prepare once (both models are classifiers: the same split), then train each model on it;
    the same for the baseline revision's pipeline, on the same CSV, when asked."""
    workdir = pipeline_workdir(root / str(rows), data="data/raw")
    generate(workdir / "data/raw/scale.csv", rows)
    csv_mib = (workdir / "data/raw/scale.csv").stat().st_size / 2**20
    out = []
    runs = [("this tree", workdir)] + (
        [(f"baseline {baseline}", baseline_copy(workdir, baseline))] if baseline else []
    )
    for code, where in runs:
        prepared: dict[str, Any] | None = None
        for name, (estimator, hyper) in ESTIMATORS.items():
            set_estimator(where, estimator, hyper)
            if prepared is None:
                prepared = run_stage(where, "prepare")
                report(rows, f"{code}: (any classifier)", "prepare", prepared)
            record: dict[str, Any] = {
                "rows": rows,
                "columns": COLUMNS,
                "model": name,
                "csv_mib": csv_mib,
                "code": code,
            }
            record["prepare"] = prepared
            if prepared["rc"] == 0:
                record["train"] = run_stage(where, "train")
                report(rows, f"{code}: {name}", "train", record["train"])
            out.append(record)
        shutil.rmtree(where)
    return out


def _cell(record: dict[str, Any], stage: str, key: str) -> str:
    result = record.get(stage)
    if result is None:
        return "-"
    return f"{result[key]:.1f}" if result["rc"] == 0 else f"failed ({result['rc']})"


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "# prepare and train at scale (generated CSVs, 30 columns: numbers, categories, 5% gaps)",
        "",
        "Each stage as DVC runs it (`python -m pipeline STAGE`, in the locked toolchain), on a 2-core "
        "host; peak RSS is the stage process's own (its summary line). Baseline: an earlier "
        "revision's pipeline/ (every cell a Python string) on the same CSV, up to 1M rows. Targets: "
        "1M rows `prepare` <= 30 s and <= 3 GiB; 5M rows within the host's 24 GiB.",
        "",
        "| rows | code | model | CSV MiB | prepare s | prepare peak RSS MiB | train s | train peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        cells = [
            _cell(r, stage, key) for stage in ("prepare", "train") for key in ("seconds", "peak_rss_mib")
        ]
        row = f"| {r['rows']:,} | {r.get('code', 'this tree')} | {r['model']} | {r['csv_mib']:.0f} |"
        lines.append(f"{row} {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        help="git revision whose pipeline/ runs beside this tree's on the same CSVs ('' for none)",
    )
    parser.add_argument("--baseline-max-rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        for rows in args.rows:
            baseline = args.baseline if rows <= args.baseline_max_rows else None
            records += bench(rows, Path(tmp), baseline or None)
    RESULTS.mkdir(exist_ok=True)
    doc = {"host_cpus": os.cpu_count(), "records": records}
    (RESULTS / "prepare_scale.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "prepare_scale.md").write_text(table(records))
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
