"""The export gate's worst difference per model family, measured again with onnxruntime's aarch64
kernels: the same graph and the same feed, run inside the linux/arm64 image under qemu, against the
same scikit-learn outputs. Side by side with amd64's onnxruntime (the gate's own number).

    python -m bench.arm64_families [--families NAME,...]   # `make bench-arm64-families`

Each family of README's table is trained by the real pipeline (`dvc repro` in the locked amd64
toolchain, in a repo copy). On this host, scikit-learn's outputs on the gate's rows (test split
and probes) and the graph's feed are computed once (pipeline.export's own functions); the feed goes
to the arm64 image as JSON (floats round-trip exactly) and its outputs come back the same way.
Writes bench/results/arm64_families.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from contract import load_verified_pickle
from harness import REPO_ROOT, train_family
from imagetool.images import image
from imagetool.platforms import ARM64
from pipeline.data import read_table
from pipeline.export import measure, onnx_feed, reference_outputs, run_onnx, with_probes
from pipeline.features import model_input
from pipeline.schema import read_schema

RESULTS = REPO_ROOT / "bench/results"
PENGUINS = {"prepare.raw_data": "data/raw/penguins.csv", "prepare.drop_missing_target": True}
SPECIES = {**PENGUINS, "prepare.target": "species", "evaluate.positive_class": None}
MASS = {**PENGUINS, "prepare.target": "body_mass_g", "evaluate.positive_class": None}


def _est(cls: str, **params: Any) -> dict[str, Any]:
    return {"train.estimator": {"class": cls, "params": params}}


# README's family table: (row, data set) -> params overrides. Defaults, as the table's rows say.
CASES: dict[str, dict[str, Any]] = {
    "LogisticRegression; breast cancer": {},
    "LogisticRegression; penguins": {
        **SPECIES,
        **_est("sklearn.linear_model.LogisticRegression", max_iter=1000),
    },
    "RandomForestClassifier; breast cancer": _est("sklearn.ensemble.RandomForestClassifier"),
    "RandomForestClassifier; penguins": {**SPECIES, **_est("sklearn.ensemble.RandomForestClassifier")},
    "HistGradientBoostingClassifier; breast cancer": _est("sklearn.ensemble.HistGradientBoostingClassifier"),
    "HistGradientBoostingClassifier; penguins": {
        **SPECIES,
        **_est("sklearn.ensemble.HistGradientBoostingClassifier"),
    },
    "GradientBoostingClassifier; breast cancer": _est("sklearn.ensemble.GradientBoostingClassifier"),
    "GradientBoostingClassifier; penguins": {
        **SPECIES,
        **_est("sklearn.ensemble.GradientBoostingClassifier"),
    },
    "HistGradientBoostingRegressor; penguins": {
        **MASS,
        **_est("sklearn.ensemble.HistGradientBoostingRegressor"),
    },
    "XGBClassifier; breast cancer": _est("xgboost.XGBClassifier"),
    "XGBClassifier; penguins": {**SPECIES, **_est("xgboost.XGBClassifier")},
    "XGBRegressor; penguins": {**MASS, **_est("xgboost.XGBRegressor")},
    "LGBMClassifier; breast cancer": _est("lightgbm.LGBMClassifier"),
    "LGBMClassifier; penguins": {**SPECIES, **_est("lightgbm.LGBMClassifier")},
    "LGBMRegressor; penguins": {**MASS, **_est("lightgbm.LGBMRegressor")},
}

# Run by the image's own Python and onnxruntime: the feed in, the outputs out, one thread as the gate.
SCORE = """
import json, sys
import numpy as np, onnxruntime as ort
doc = json.load(open("/bench/feed.json"))
types = {"double": np.float64, "float": np.float32}
feed = {i["name"]: np.asarray(i["values"], dtype=types.get(i["type"], object)) for i in doc["inputs"]}
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
s = ort.InferenceSession("/bench/model.onnx", o, providers=["CPUExecutionProvider"])
out = s.run(None, feed)
json.dump([np.asarray(x).tolist() for x in out], sys.stdout)
"""


def arm64_outputs(folder: Path, tag: str) -> list[Any]:
    cmd = ["docker", "run", "--rm", "--platform", ARM64.name, "--network=none", "--user", "10001:10001"]
    # onnxruntime's cpuinfo aborts on the x86 host's topology read as aarch64 (see the Dockerfile).
    cmd += ["--mount", "type=tmpfs,destination=/sys/devices/system/cpu"]
    cmd += ["-v", f"{folder}:/bench:ro", "--entrypoint", "python", tag, "-c", SCORE]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the arm64 image could not score: {done.stderr[-2000:]}")
    return list(json.loads(done.stdout))


def measure_case(name: str, overrides: dict[str, Any], workdir: Path, tag: str) -> dict[str, Any]:
    t0 = time.monotonic()
    repo = train_family(workdir / "repo", overrides).root
    serving = json.loads((repo / "models/serving.json").read_text())
    row: dict[str, Any] = {"case": name, "path": serving["path"]}
    if serving["path"] != "onnx":
        return {**row, "note": "exact path: nothing to measure on aarch64"}
    schema = read_schema(repo / "data/prepared/schema.json")
    test = read_table(repo / "data/prepared/test.csv", schema)
    model, _ = load_verified_pickle(repo / "models/model.joblib", repo / "dvc.lock")
    X = model_input(with_probes(test.X, schema), schema)
    ref = reference_outputs(model, X, schema)
    feed = onnx_feed(X, serving["onnx"]["inputs"])
    graph = (repo / "models/model.onnx").read_bytes()
    amd64 = [np.asarray(o) for o in run_onnx(graph, feed)]
    bench = workdir / "bench"
    bench.mkdir()
    (bench / "model.onnx").write_bytes(graph)
    spec = {i["name"]: i["type"] for i in serving["onnx"]["inputs"]}
    inputs = [{"name": k, "type": spec[k], "values": v.tolist()} for k, v in feed.items()]
    (bench / "feed.json").write_text(json.dumps({"inputs": inputs}))
    bench.chmod(0o755)
    arm64 = [np.asarray(o) for o in arm64_outputs(bench, tag)]
    gate = json.loads((repo / "reports/gate.json").read_text())
    taken = next(a for a in gate["attempts"] if a["precision"] == serving["onnx"]["precision"])
    worst_amd64, labels_amd64 = measure(amd64, ref)
    worst_arm64, labels_arm64 = measure(arm64, ref)
    scores = -1 if ref.labels is None else 1  # values (regression) or probabilities
    between = float(np.max(np.abs(amd64[scores].astype(np.float64) - arm64[scores].astype(np.float64))))
    return {
        **row,
        "precision": serving["onnx"]["precision"],
        "rows": len(X),
        "tolerance": serving["gate"]["tolerance"],
        "worst_gate": taken["worst"],  # the export stage's own, in the toolchain
        "worst_amd64": worst_amd64,
        "worst_arm64": worst_arm64,
        "labels_identical_arm64": labels_arm64,
        "labels_identical_amd64": labels_amd64,
        "max_amd64_vs_arm64": between,
        "seconds": round(time.monotonic() - t0, 1),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| family; data set | precision | tolerance | gate (toolchain) | worst, amd64 "
        "| worst, aarch64 (qemu) "
        "| amd64 vs aarch64 | labels |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "worst_arm64" not in r:
            lines.append(f"| {r['case']} | {r['path']} | | | | | | {r.get('note', '')} |")
            continue
        labels = {True: "identical", False: "DIFFER", None: "(regression)"}[r["labels_identical_arm64"]]
        lines.append(
            f"| {r['case']} | {r['precision']} | {r['tolerance']:g} | {r['worst_gate']:.2g} | "
            f"{r['worst_amd64']:.2g} | "
            f"{r['worst_arm64']:.2g} | {r['max_amd64_vs_arm64']:.2g} | {labels} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", help="comma-separated case names (substrings), default: all")
    args = p.parse_args()
    wanted = [c for c in CASES if not args.families or any(f in c for f in args.families.split(","))]
    result, _ = image.build(REPO_ROOT, plat=ARM64)  # cached when its inputs are unchanged; loads the tag
    tag = image.latest_tag(ARM64)
    rows = []
    with tempfile.TemporaryDirectory(prefix="arm64-families-") as tmp:
        for i, name in enumerate(wanted):
            workdir = Path(tmp) / str(i)
            workdir.mkdir()
            rows.append(measure_case(name, CASES[name], workdir, tag))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    doc = {
        "host": {
            "machine": platform.machine(),
            "image": result.digest,
            "emulator": "qemu-user (binfmt_misc)",
        },
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "arm64_families.json").write_text(json.dumps(doc, indent=2) + "\n")
    text = (
        "# The export gate's worst difference, amd64 vs aarch64 onnxruntime (same graph, same feed)\n\n"
        f"arm64 image {result.digest}, run under qemu on an {platform.machine()} host.\n\n" + table(rows)
    )
    (RESULTS / "arm64_families.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
