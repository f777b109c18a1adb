"""`make all` as a new user sees it: one line per step saying what it does, the tools' own output
indented beneath, a note when a step is quiet for a while, its time, and a summary at the end.

    python3 -m imagetool all      # run by `make all` with the system python3 (stdlib only:
                                        # the venv does not exist before the first step)
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from imagetool.common import ROOT, ToolError
from imagetool.images import ocidiff

# (make target, what it does): the order is the dependency order `make all` needs.
ALL_STEPS = [
    ("setup", "Python: create .venv and install the hash-locked dev requirements (~30 s the first time)"),
    ("engine", "Docker engine: if none suitable, install it from the store (system-wide, root); start it"),
    ("host-tools", "Host tools: mmdebstrap, qemu-user-static and its aarch64 binfmt handler (for arm64)"),
    ("store", "Store: every file checked against image/store.lock.json; what is missing from the DVC remote"),
    ("toolchain", "Training toolchain: the image the stages run in, from the store (~35 s the first time)"),
    ("repro", "Model: dvc repro (prepare, train, evaluate, export); nothing to do when up to date"),
    ("base", "Base root filesystems (amd64, arm64): from the store, checked against their base locks"),
    ("wheels", "Wheels: from the store, checked against the requirement locks"),
    ("image", "Images (amd64, arm64 emulated): buildx --network=none from the checked inputs, load, tag"),
]
QUIET_NOTE_SECONDS = 10.0


def fmt_seconds(s: float) -> str:
    return f"{s:.1f}s" if s < 60 else f"{int(s // 60)}m{int(s % 60):02d}s"


def lines_with_heartbeat(
    proc: subprocess.Popen[str], every: float, clock: Callable[[], float] = time.monotonic
) -> Iterator[str | float]:
    """The process's output lines; while it is silent, the elapsed seconds every ``every`` s."""
    q: queue.Queue[str | None] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout

    def pump() -> None:
        for line in stdout:
            q.put(line.rstrip("\n"))
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    start = last = clock()
    while True:
        try:
            item = q.get(timeout=every)
        except queue.Empty:
            if clock() - last >= every:
                yield clock() - start
            continue
        if item is None:
            return
        last = clock()
        yield item


def run_step(target: str, what: str, index: int, total: int, out: Callable[[str], None]) -> int:
    out(f"==> [{index}/{total}] {what}")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        ["make", "--no-print-directory", target],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for item in lines_with_heartbeat(proc, QUIET_NOTE_SECONDS):
        if isinstance(item, float):
            out(f"    ... still working ({fmt_seconds(item)})")
        else:
            out(f"    {item}")
    code = proc.wait()
    took = fmt_seconds(time.monotonic() - t0)
    out(f"    {target}: done in {took}" if code == 0 else f"==> {target} FAILED after {took} (exit {code})")
    return code


def summary(root: Path = ROOT) -> list[str]:
    """Digest, whether it equals image.lock, size, and what to do next."""
    try:
        last = json.loads((root / "build/image/last-build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ["    no image was built (see the output above)"]
    digest = last["digest"]
    try:
        locked = json.loads((root / "image.lock").read_text(encoding="utf-8")).get("digest")
    except (OSError, ValueError):
        locked = None
    if digest == locked:
        verdict = "equals image.lock (`make verify` rebuilds from scratch to prove it)"
    else:
        verdict = f"differs from image.lock ({locked}): `make verify` says why, `make lock-image` accepts it"
    compressed = sum(layer["size"] for layer in last.get("layers", []))
    try:
        oci = ocidiff.open_oci(root / "build/image/lockstep.oci.tar")
        unpacked = f"{ocidiff.uncompressed_size(oci) / 1e6:.0f} MB, "
    except (OSError, ValueError, ToolError):
        unpacked = ""
    return [
        f"    digest   {digest}",
        f"    lock     {verdict}",
        f"    size     {unpacked}{compressed / 1e6:.0f} MB compressed, {len(last.get('layers', []))} layers",
        "    next     make run     # serve it hardened on 127.0.0.1:8000",
        "             make test    # the whole test suite",
    ]


def run_all() -> int:
    """`make all`'s steps, a line each, then the summary; the first failing step's status."""

    def out(line: str) -> None:
        print(line, flush=True)

    t0 = time.monotonic()
    for i, (target, what) in enumerate(ALL_STEPS, start=1):
        code = run_step(target, what, i, len(ALL_STEPS), out)
        if code:
            return code
    out(f"==> Done in {fmt_seconds(time.monotonic() - t0)}")
    for line in summary():
        out(line)
    return 0
