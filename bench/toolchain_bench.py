"""`make bench-toolchain`: what running the stages in the locked toolchain costs, beside host mode.

Measured in one run, on a copy of the repository (its own outputs, this tree's DVC cache untouched):
  dvc repro -f        the default pipeline, toolchain vs LOCKSTEP_TRAIN=host   target <= 1.5x host
  no-op dvc repro     nothing changed: DVC checks and runs no stage              target <= 1.5 s
  per-stage overhead  each stage run alone, toolchain minus host; and the bare container start
                      (`docker run` of `python -c pass` against the host's `python -c pass`)
  toolchain build     --no-cache from the warm store, offline (LOCKSTEP_OFFLINE)  target <= 60 s
                      and `make toolchain` after it (the locked image in the engine: no build)

Each timing is the least of RUNS runs, so a busy neighbour on the 2 cores inflates it less.
Writes bench/results/toolchain_bench.{json,md} and prints the table. A benchmark, not a test: it
reports misses instead of failing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import copy_repo, venv_bin, venv_env
from imagetool.images import toolchain
from pipeline import toolchain as launcher
from pipeline.__main__ import STAGES

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = 3
TARGETS = {"repro_ratio": 1.5, "noop_repro_s": 1.5, "build_no_cache_s": 60.0}


def timed(cmd: list[str], cwd: Path, **env: str) -> float:
    """Least wall time of RUNS runs of ``cmd`` (each must succeed)."""
    best = float("inf")
    for _ in range(RUNS):
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=cwd, env=venv_env(**env), capture_output=True, text=True, check=False)
        best = min(best, time.monotonic() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"bench: {' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return round(best, 3)


def measure(repo: Path) -> dict[str, Any]:
    dvc, py = venv_bin("dvc"), sys.executable
    res: dict[str, Any] = {"runs": RUNS, "nproc": os.cpu_count(), "toolchain": toolchain.locked_digest()}
    res["repro_toolchain_s"] = timed([dvc, "repro", "-f"], repo)
    res["repro_host_s"] = timed([dvc, "repro", "-f"], repo, LOCKSTEP_TRAIN="host")
    res["repro_ratio"] = round(res["repro_toolchain_s"] / res["repro_host_s"], 2)
    res["noop_repro_s"] = timed([dvc, "repro"], repo)
    res["noop_repro_host_s"] = timed([dvc, "repro"], repo, LOCKSTEP_TRAIN="host")
    stages: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        tc = timed([py, "-m", "pipeline", stage], repo)
        host = timed([py, "-m", "pipeline", stage], repo, LOCKSTEP_TRAIN="host")
        stages[stage] = {"toolchain_s": tc, "host_s": host, "overhead_s": round(tc - host, 3)}
    res["stages"] = stages
    start = launcher.docker_command("prepare", res["toolchain"], repo, {})
    bare = [*start[: start.index(res["toolchain"]) + 1], "python", "-c", "pass"]
    res["container_start_s"] = timed(bare, repo)
    res["host_python_start_s"] = timed([py, "-c", "pass"], repo)
    return res


def measure_build(repo: Path) -> dict[str, Any]:
    """A --no-cache build of the toolchain from the warm store with the network refused, then
    `toolchain ensure` (what `make toolchain` runs) once it is in the engine."""
    cmd = [sys.executable, "-m", "imagetool", "toolchain"]
    env = venv_env(LOCKSTEP_OFFLINE="1")
    t0 = time.monotonic()
    built = subprocess.run([*cmd, "build", "--no-cache"], cwd=repo, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if built.returncode != 0:
        raise SystemExit(f"bench: toolchain build failed: {built.stderr[-2000:]}")
    return {
        "build_no_cache_s": round(seconds, 2),
        "build_digest": built.stdout.strip(),
        "ensure_cached_s": timed([*cmd, "ensure"], repo, LOCKSTEP_OFFLINE="1"),
    }


def table(res: dict[str, Any]) -> str:
    def ok(value: float, target: float) -> str:
        return "yes" if value <= target else "NO"

    rows = [
        ("dvc repro -f, toolchain", f"{res['repro_toolchain_s']} s", "", ""),
        ("dvc repro -f, host mode (baseline)", f"{res['repro_host_s']} s", "", ""),
        ("  ratio", f"{res['repro_ratio']}x", "<= 1.5x", ok(res["repro_ratio"], 1.5)),
        ("no-op dvc repro, toolchain", f"{res['noop_repro_s']} s", "<= 1.5 s", ok(res["noop_repro_s"], 1.5)),
        ("no-op dvc repro, host mode", f"{res['noop_repro_host_s']} s", "", ""),
        *(
            (f"stage {name}: toolchain / host", f"{s['toolchain_s']} / {s['host_s']} s", "", "")
            for name, s in res["stages"].items()
        ),
        ("container start (python -c pass)", f"{res['container_start_s']} s", "", ""),
        ("  host python -c pass", f"{res['host_python_start_s']} s", "", ""),
        ("toolchain build, --no-cache, offline", f"{res['build_no_cache_s']} s", "<= 60 s", ""),
        ("toolchain ensure once built", f"{res['ensure_cached_s']} s", "", ""),
    ]
    rows[-2] = (*rows[-2][:3], ok(res["build_no_cache_s"], 60.0))
    lines = ["| measure | value | target | ok |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    overhead = ", ".join(f"{n} {s['overhead_s']:+.2f} s" for n, s in res["stages"].items())
    lines.append(f"\nPer-stage overhead (toolchain - host): {overhead}. Least of {res['runs']} runs each.")
    lines.append(f"Toolchain {res['toolchain']}; the --no-cache build gave {res['build_digest']}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="lockstep-bench-toolchain-") as tmp:
        repo = copy_repo(Path(tmp) / "repo", with_outputs=True)
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        res = measure(repo)
    res.update(measure_build(Path(__file__).resolve().parents[1]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "toolchain_bench.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    text = table(res)
    (RESULTS / "toolchain_bench.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
