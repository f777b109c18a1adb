"""`make bench-build`: how fast the image builds and starts, and how big it is.

Measured with the base rootfs and wheels already present (they are cached inputs):
  cold build          --no-cache BuildKit run of the whole Dockerfile          target <= 90 s
  no-change rebuild   `make image` again (inputs unchanged -> no BuildKit run)  target <= 5 s
                      (and, for reference, a BuildKit run that hits its cache)
  model-only rebuild  a changed model in a copy of the repo; checks that only the model layer moved
  image size          sum of the uncompressed layers                          target <= 350 MB
  start to ready      `docker run` (hardened) to the first 200 from /readyz    target <= 2 s
  arm64               the same tree for linux/arm64 under qemu: cold build, size (<= 300 MB),
                      `make run PLATFORM=linux/arm64` to ready

Writes bench/results/build_bench.json and prints a table. A benchmark, not a test: it reports
misses instead of failing.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import free_port
from imagetool import platforms
from imagetool.common import ROOT, file_digest
from imagetool.images import image, ocidiff
from imagetool.ship.container import hardened_container, made_run

RESULTS = ROOT / "bench/results/build_bench.json"
TARGETS = {"cold_build_s": 90.0, "no_change_rebuild_s": 5.0, "image_mb": 350.0, "start_to_ready_s": 2.0}


def timed(fn: Any, *args: Any, **kw: Any) -> tuple[Any, float]:
    t0 = time.monotonic()
    out = fn(*args, **kw)
    return out, time.monotonic() - t0


def copy_repo(dest: Path) -> Path:
    skip = {".venv", "build", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache", "reports", "data"}
    shutil.copytree(ROOT, dest, ignore=lambda d, names: {n for n in names if Path(d) == ROOT and n in skip})
    (dest / "build/base").mkdir(parents=True)
    os.link(ROOT / "build/base/rootfs.tar", dest / "build/base/rootfs.tar")
    (dest / "build/wheels").mkdir()
    for whl in (ROOT / "build/wheels").glob("*.whl"):
        os.link(whl, dest / "build/wheels" / whl.name)
    return dest


def change_model(repo: Path) -> None:
    """A retrained-looking model: the same graph with other bytes (its doc string), which
    serving.json names and dvc.lock records, as `dvc repro` would leave them."""
    import onnx

    path, serving = repo / "models/model.onnx", repo / "models/serving.json"
    old, old_serving = file_digest(path, "md5"), file_digest(serving, "md5")
    graph = onnx.load(path)
    graph.doc_string = f"bench marker {time.time_ns()}"
    onnx.save(graph, path)
    new = file_digest(path, "md5")
    serving.write_text(serving.read_text().replace(old, new))
    lock = repo / "dvc.lock"
    lock.write_text(lock.read_text().replace(old, new).replace(old_serving, file_digest(serving, "md5")))


def start_to_ready(tag: str, runs: int = 5) -> list[float]:
    """Seconds from `docker run` (hardened) to the first ready answer, `runs` times."""
    out = []
    for _ in range(runs):
        with hardened_container(tag) as running:
            out.append(running.ready_seconds)
    return out


def main() -> int:
    image.preflight(ROOT)
    inputs = image.current_inputs(ROOT)
    res: dict[str, Any] = {"builder": image.builder_identity(), "nproc": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="lockstep-bench-") as tmp_s:
        tmp = Path(tmp_s)
        cold, res["cold_build_s"] = timed(image.buildx, ROOT, inputs, tmp / "cold.oci.tar", True)
        res["digest"] = cold.digest
        _, res["load_s"] = timed(image.load_and_tag, cold, ["lockstep:bench"])
        res["image_mb"] = round(ocidiff.uncompressed_size(cold.oci) / 1e6, 1)
        res["compressed_mb"] = round(sum(layer["size"] for layer in cold.oci.layers) / 1e6, 1)

        # No change: prime `make image`'s record, then time it again.
        image.build(ROOT)
        _, res["no_change_rebuild_s"] = timed(image.build, ROOT)
        _, res["no_change_buildkit_s"] = timed(image.buildx, ROOT, inputs, tmp / "cached.oci.tar", False)

        repo = copy_repo(tmp / "repo")
        before = image.buildx(repo, image.current_inputs(repo), tmp / "m0.oci.tar", False)
        change_model(repo)
        after, res["model_only_rebuild_s"] = timed(
            image.buildx, repo, image.current_inputs(repo), tmp / "m1.oci.tar", False
        )
        moved = [
            i
            for i, (a, b) in enumerate(zip(before.oci.layers, after.oci.layers, strict=True))
            if a["digest"] != b["digest"]
        ]
        res["model_only_layers_changed"] = [ocidiff.layer_label(after.oci.config, i) for i in moved]
        res["model_only_just_model_layer"] = moved == [len(after.oci.layers) - 1]

        ready = start_to_ready("lockstep:bench")
        res["start_to_ready_runs_s"] = [round(x, 3) for x in ready]
        res["start_to_ready_s"] = round(statistics.median(ready), 3) if ready else None
        subprocess.run(["docker", "rmi", "lockstep:bench"], capture_output=True, check=False)

        # linux/arm64 beside it, in the same run: its RUN steps and its container under qemu.
        arm = platforms.ARM64
        image.preflight(ROOT, plat=arm)
        arm_inputs = image.current_inputs(ROOT, arm)
        arm_cold, res["arm64_cold_build_s"] = timed(
            image.buildx, ROOT, arm_inputs, tmp / "arm64.oci.tar", True, plat=arm
        )
        res["arm64_digest"] = arm_cold.digest
        res["arm64_image_mb"] = round(ocidiff.uncompressed_size(arm_cold.oci) / 1e6, 1)
        res["arm64_compressed_mb"] = round(sum(layer["size"] for layer in arm_cold.oci.layers) / 1e6, 1)
        image.load_and_tag(arm_cold, ["lockstep:bench-arm64"])
        arm_ready = []
        for i in range(3):
            with made_run("lockstep:bench-arm64", f"lockstep-bench-arm64-{i}", free_port(), timeout=120,
                          platform=arm.name) as running:  # fmt: skip
                arm_ready.append(running.ready_seconds)
        res["arm64_start_to_ready_runs_s"] = [round(x, 3) for x in arm_ready]
        res["arm64_start_to_ready_s"] = round(statistics.median(arm_ready), 3)
        subprocess.run(["docker", "rmi", "lockstep:bench-arm64"], capture_output=True, check=False)

    for k in (
        "cold_build_s",
        "no_change_rebuild_s",
        "no_change_buildkit_s",
        "model_only_rebuild_s",
        "load_s",
        "arm64_cold_build_s",
    ):
        res[k] = round(res[k], 2)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")

    rows = [
        ("cold build (--no-cache)", f"{res['cold_build_s']} s", "<= 90 s", res["cold_build_s"] <= 90),
        (
            "no-change rebuild (make image)",
            f"{res['no_change_rebuild_s']} s",
            "<= 5 s",
            res["no_change_rebuild_s"] <= 5,
        ),
        ("  same, BuildKit cache hit", f"{res['no_change_buildkit_s']} s", "", None),
        (
            "model-only rebuild",
            f"{res['model_only_rebuild_s']} s",
            "model layer only",
            res["model_only_just_model_layer"],
        ),
        ("image size (uncompressed)", f"{res['image_mb']} MB", "<= 350 MB", res["image_mb"] <= 350),
        ("  compressed (zstd)", f"{res['compressed_mb']} MB", "", None),
        ("arm64 cold build (emulated)", f"{res['arm64_cold_build_s']} s", "", None),
        ("arm64 image size", f"{res['arm64_image_mb']} MB", "<= 300 MB", res["arm64_image_mb"] <= 300),
        ("  compressed (zstd)", f"{res['arm64_compressed_mb']} MB", "", None),
        ("arm64 start to ready (emulated)", f"{res['arm64_start_to_ready_s']} s", "", None),
        (
            "start to first ready",
            f"{res['start_to_ready_s']} s",
            "<= 2 s",
            res["start_to_ready_s"] is not None and res["start_to_ready_s"] <= 2,
        ),
    ]
    print(json.dumps(res, indent=2, sort_keys=True))
    print(f"\n{'measure':34} {'value':>10}  {'target':16} ok")
    for name, value, target, ok in rows:
        print(f"{name:34} {value:>10}  {target:16} {'' if ok is None else 'yes' if ok else 'NO'}")
    print(f"\ndigest {res['digest']} (written to {RESULTS.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
