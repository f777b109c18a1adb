"""`make bench-batch`: 1,000-row batches against MLServer 1.7.1 at its best, and single rows, with
this tree's service and a baseline (another git ref's api/, default `main`) side by side in one run.

Servers, all up at once and measured in alternating rounds (the host is shared: a burst of other
load then hits every target alike, and each target's median round is reported):
  - lockstep (this tree) and lockstep-baseline, serving the repository's default model;
  - MLServer serving the same pipeline pickle (today's peer, bench/peer_mlserver.py), and MLServer
    serving a plain StandardScaler + LogisticRegression fitted on the same 30 columns of the same
    training split: its most favourable case (one [N, F] FP64 tensor, predict_proba, no pandas).
Bodies: lockstep /predict named and positional, lockstep V2 with one [N, F] tensor, each peer's own
best V2 form with predict_proba. Then all again with 2 workers for lockstep and its baseline; MLServer
keeps in-process inference (its parallel inference workers do not start under uvloop on these
hosts), its one working setting. Writes bench/results/serve_batch.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench.peer_mlserver import matrix_request, mlserver_serving, requests_for
from bench.serve_bench import cpu_seconds, worker_pids, write_results, wrk
from contract import load_dvc_lock, verified_bytes
from harness import DEFAULT, REPO_ROOT, Artifacts, Server, free_port, running_server, serving

RESULTS = REPO_ROOT / "bench" / "results"
V2_INFER = "/v2/models/lockstep/infer"
TARGET = 1.5  # issue 18: every lockstep batch form at least 1.5x MLServer at its best
ROWS = 1000


def plain_peer_pickle(artifacts: Artifacts, seed: int = 0) -> bytes:
    """StandardScaler + LogisticRegression on the training split's feature columns, as a matrix."""
    meta = json.loads(artifacts.metadata.read_text())
    names = [f["name"] for f in meta["features"]]
    train = pd.read_csv(REPO_ROOT / "data/prepared/train.csv")
    target = meta["target"]["name"] if isinstance(meta.get("target"), dict) else meta["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    model.fit(train[names].to_numpy(dtype=np.float64), train[target].to_numpy())
    out = io.BytesIO()
    joblib.dump(model, out)
    return out.getvalue()


def lockstep_documents(artifacts: Artifacts) -> dict[str, Any]:
    """lockstep's request bodies: the model's example row once and ROWS times, named and positional,
    and as one V2 [N, F] tensor (make bench-profile sends the same ones)."""
    meta = json.loads(artifacts.metadata.read_text())
    names = [f["name"] for f in meta["features"]]
    example = {n: meta["example"][n] for n in names}
    positional = [example[n] for n in names]
    return {
        "one": {"instances": [example]},
        "one_positional": {"instances": [positional]},
        "named": {"instances": [example] * ROWS},
        "positional": {"instances": [positional] * ROWS},
        "v2": dict(matrix_request([positional] * ROWS, proba=False).items()),
        "v2_one": matrix_request([positional], proba=False),
    }


def write_bodies(directory: Path, artifacts: Artifacts) -> dict[str, Path]:
    meta = json.loads(artifacts.metadata.read_text())
    positional = [meta["example"][f["name"]] for f in meta["features"]]
    bodies: dict[str, Any] = lockstep_documents(artifacts) | {
        "peer_plain": matrix_request([positional] * ROWS, proba=True),
        "peer_pipeline": requests_for(artifacts.model, artifacts.lock, meta, ROWS, proba=True),
    }
    paths = {}
    for name, doc in bodies.items():
        paths[name] = directory / f"{name}.json"
        paths[name].write_text(json.dumps(doc))
    return paths


@contextmanager
def baseline_server(ref: str, artifacts: Artifacts, workers: int, log: Path) -> Iterator[Server]:
    """`python -m api` from `ref`'s api/ and contract/ (git archive), on the same artifacts."""
    with tempfile.TemporaryDirectory(prefix="lockstep-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", ref, "api", "contract"], capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        port = free_port()
        env = {
            **__import__("os").environ,
            **artifacts.env(),
            "LOCKSTEP_PORT": str(port),
            "LOCKSTEP_WORKERS": str(workers),
            "LOCKSTEP_DVC_LOCK_PATH": str(artifacts.lock),
            "LOCKSTEP_REQUIREMENTS_PATH": str(REPO_ROOT / "requirements.txt"),
        }
        # The archive's folder is the working directory: its api/ comes first on sys.path.
        with serving([sys.executable, "-m", "api"], port, "/readyz", env=env, log=log, cwd=Path(tmp)) as s:
            yield s


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a server and its worker processes (uvicorn's, or MLServer's)."""
    return sum(cpu_seconds(p) for p in {pid, *worker_pids(pid)})


def run(server: Server, path: str, body: Path, connections: int, seconds: int) -> dict[str, Any]:
    """A wrk run plus the server's CPU time per request: unlike req/s, that hardly depends on how
    much of the shared host's CPU the server got while other work ran."""
    before = tree_cpu_seconds(server.process.pid)
    result = wrk(f"{server.url}{path}", body, connections, seconds)
    spent = tree_cpu_seconds(server.process.pid) - before
    result["server_cpu_us_per_request"] = spent / max(1, result["requests"]) * 1e6
    return result


def rounds(
    targets: dict[str, tuple[Server, str, Path]], connections: int, seconds: int, count: int
) -> dict[str, Any]:
    """Each target's median round (by req/s) of `count` alternating rounds, with every round's req/s."""
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in targets}
    for server, path, body in targets.values():
        wrk(f"{server.url}{path}", body, connections, 1)  # warm-up
    for _ in range(count):
        for key, (server, path, body) in targets.items():
            runs[key].append(run(server, path, body, connections, seconds))
    medians = {}
    for key, measured in runs.items():
        ordered = sorted(measured, key=lambda r: r["requests_per_s"])
        medians[key] = ordered[len(ordered) // 2] | {
            "rounds_requests_per_s": [r["requests_per_s"] for r in measured]
        }
    return medians


def ratios(results: dict[str, Any], peers: list[str], forms: list[str]) -> dict[str, float]:
    """lockstep ÷ peer by req/s, and by server CPU per request (peer's over lockstep's)."""
    by_rate = {
        f"{form}_vs_{peer}": results[form]["requests_per_s"] / results[peer]["requests_per_s"]
        for form in forms
        for peer in peers
    }
    by_cpu = {
        f"{form}_vs_{peer}_by_cpu": results[peer]["server_cpu_us_per_request"]
        / results[form]["server_cpu_us_per_request"]
        for form in forms
        for peer in peers
    }
    return by_rate | by_cpu


def measure(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    artifacts = DEFAULT
    bodies = write_bodies(scratch, artifacts)
    lock = load_dvc_lock(artifacts.lock)
    pipeline_bytes, _ = verified_bytes(artifacts.model, lock, artifacts.lock, "model")
    plain_bytes = plain_peer_pickle(artifacts)
    results: dict[str, Any] = {"baseline_ref": args.baseline, "rows_per_request": ROWS}
    for workers in args.workers:
        with ExitStack() as stack:
            served = stack.enter_context(
                running_server(
                    artifacts, LOCKSTEP_WORKERS=str(workers), log=scratch / f"lockstep-{workers}.log"
                )
            )
            base = stack.enter_context(
                baseline_server(args.baseline, artifacts, workers, scratch / f"baseline-{workers}.log")
            )
            # MLServer 1.7.1's parallel inference workers die at start under uvloop on these hosts
            # ("There is no current event loop"): in-process inference is its only working setting.
            parallel = 0
            plain = stack.enter_context(
                mlserver_serving(plain_bytes, "plain.joblib", scratch / f"peer-plain-{workers}.log", parallel)
            )
            pipeline = stack.enter_context(
                mlserver_serving(
                    pipeline_bytes, "model.joblib", scratch / f"peer-pipeline-{workers}.log", parallel
                )
            )
            connections = 4 * workers
            targets = {
                "predict_named": (served, "/predict", bodies["named"]),
                "predict_positional": (served, "/predict", bodies["positional"]),
                "v2": (served, V2_INFER, bodies["v2"]),
                "baseline_predict_named": (base, "/predict", bodies["named"]),
                "baseline_predict_positional": (base, "/predict", bodies["positional"]),
                "baseline_v2": (base, V2_INFER, bodies["v2"]),
                "mlserver_plain": (plain, V2_INFER, bodies["peer_plain"]),
                "mlserver_pipeline": (pipeline, V2_INFER, bodies["peer_pipeline"]),
            }
            batch = rounds(targets, connections, args.seconds, args.rounds)
            if workers == 1:
                single_targets = {
                    "predict_one": (served, "/predict", bodies["one"]),
                    "baseline_predict_one": (base, "/predict", bodies["one"]),
                    "v2_one": (served, V2_INFER, bodies["v2_one"]),
                    "baseline_v2_one": (base, V2_INFER, bodies["v2_one"]),
                }
                results["single_row"] = rounds(single_targets, 32, args.seconds, args.rounds)
        forms = ["predict_named", "predict_positional", "v2"]
        batch["verdict"] = ratios(batch, ["mlserver_plain", "mlserver_pipeline"], forms) | {
            f"{form}_vs_baseline": batch[form]["requests_per_s"] / batch[f"baseline_{form}"]["requests_per_s"]
            for form in forms
        }
        batch["verdict"]["meets_target"] = all(
            batch["verdict"][f"{form}_vs_mlserver_plain"] >= TARGET for form in forms
        )
        results[f"batch_{workers}_workers"] = batch
        args.out.with_suffix(".partial.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "1,000-row batches (req/s, median of alternating rounds; server CPU µs per request) and single "
        f"rows; baseline = `{results['baseline_ref']}`'s api/ in the same run.",
        "",
        "| workers | target | req/s | rows/s | server CPU µs/req | baseline req/s (CPU µs/req) "
        "| ÷ MLServer plain: req/s (CPU) | ÷ MLServer pipeline: req/s (CPU) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, batch in results.items():
        if not key.startswith("batch_"):
            continue
        workers = key.split("_")[1]
        verdict = batch["verdict"]
        for form in ("predict_named", "predict_positional", "v2"):
            r, b = batch[form], batch[f"baseline_{form}"]
            plain, pipeline = (
                f"{verdict[f'{form}_vs_{peer}']:.2f} ({verdict[f'{form}_vs_{peer}_by_cpu']:.2f})"
                for peer in ("mlserver_plain", "mlserver_pipeline")
            )
            lines.append(
                f"| {workers} | lockstep {form} | {r['requests_per_s']:.0f} | "
                f"{r['requests_per_s'] * ROWS:,.0f} | {r['server_cpu_us_per_request']:.0f} | "
                f"{b['requests_per_s']:.0f} ({b['server_cpu_us_per_request']:.0f}) | "
                f"**{plain}** | {pipeline} |"
            )
        for peer in ("mlserver_plain", "mlserver_pipeline"):
            r = batch[peer]
            lines.append(
                f"| {workers} | {peer.replace('_', ' ')} (predict_proba) | {r['requests_per_s']:.0f} | "
                f"{r['requests_per_s'] * ROWS:,.0f} | {r['server_cpu_us_per_request']:.0f} | | | |"
            )
    single = results.get("single_row")
    if single:
        lines += [
            "",
            "| single row | req/s | p50 ms | p99 ms | server CPU µs/req | baseline req/s (CPU µs/req) "
            "| ÷ baseline: req/s (CPU) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for form in ("predict_one", "v2_one"):
            r, b = single[form], single[f"baseline_{form}"]
            by_cpu = b["server_cpu_us_per_request"] / r["server_cpu_us_per_request"]
            lines.append(
                f"| {form} | {r['requests_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{r['server_cpu_us_per_request']:.0f} | {b['requests_per_s']:.0f} "
                f"({b['server_cpu_us_per_request']:.0f}) | {r['requests_per_s'] / b['requests_per_s']:.2f} "
                f"({by_cpu:.2f}) |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git ref whose api/ is the baseline")
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_batch.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lockstep-batch-") as tmp:
        results = measure(args, Path(tmp))
    write_results(args.out, results, table(results))
    args.out.with_suffix(".partial.json").unlink(missing_ok=True)  # progress only: the results are out
    return 0


if __name__ == "__main__":
    sys.exit(main())
