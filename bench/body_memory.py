"""`make bench-body-memory`: a real server's peak RSS for the largest body of each kind it accepts
(harness/bodies.py), over its RSS before: the memory one request can take, per body byte.

Per kind: the worker's peak-RSS counter is reset (/proc/PID/clear_refs), the body is posted, and the
peak read back (VmHWM). The worst kind's bytes-per-body-byte is what sizes the body limit against
the deploy memory limit (api/settings.py; tests/api/test_settings.py keeps them in step).
Writes bench/results/serve_body_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from api.settings import Settings
from bench.serve_bench import write_results
from harness import DEFAULT, REPO_ROOT, running_server
from harness.bodies import LARGEST, Model, post_status

RESULTS = REPO_ROOT / "bench" / "results"


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(size: int, repeats: int) -> dict[str, Any]:
    """Per kind: status, body bytes, RSS before and peak during (MiB), and peak growth per body byte."""
    metadata = json.loads(DEFAULT.metadata.read_text())
    model = Model.of(metadata, Settings().max_rows)
    kinds: dict[str, Any] = {}
    with running_server(DEFAULT, LOCKSTEP_MAX_BODY_BYTES=str(size)) as server:
        pid = server.process.pid
        for kind, (path, build) in LARGEST.items():
            body = build(model, size)
            peaks, statuses = [], []
            for _ in range(repeats):
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
                before = status_kib(pid, "VmRSS")
                statuses.append(post_status(server.url + path, body))
                peaks.append(status_kib(pid, "VmHWM") - before)
            growth = max(peaks) * 1024
            kinds[kind] = {
                "path": path,
                "status": statuses[-1],
                "body_bytes": len(body),
                "rss_before_mib": before / 1024,
                "peak_growth_mib": growth / 2**20,
                "bytes_per_body_byte": growth / len(body),
            }
            print(f"{kind}: {statuses[-1]}, +{growth / 2**20:.1f} MiB", file=sys.stderr)
        baseline = status_kib(pid, "VmRSS") / 1024
    worst = max(kinds, key=lambda k: kinds[k]["peak_growth_mib"])
    return {
        "body_limit_bytes": size,
        "worker_rss_after_mib": baseline,
        "worst_kind": worst,
        "worst_peak_growth_mib": kinds[worst]["peak_growth_mib"],
        "kinds": kinds,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"Largest body of each kind at a {result['body_limit_bytes'] / 2**20:.0f} MiB body limit, "
        "one worker:",
        "",
        "| kind | path | status | body MiB | peak RSS growth MiB | bytes per body byte |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, r in result["kinds"].items():
        lines.append(
            f"| {kind} | {r['path']} | {r['status']} | {r['body_bytes'] / 2**20:.2f} | "
            f"{r['peak_growth_mib']:.1f} | {r['bytes_per_body_byte']:.2f} |"
        )
    lines.append("")
    lines.append(f"Worst: {result['worst_kind']}, +{result['worst_peak_growth_mib']:.1f} MiB.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=Settings().max_body_bytes, help="body limit (bytes)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_body_memory.json")
    args = parser.parse_args(argv)
    result = measure(args.size, args.repeats)
    write_results(args.out, result, table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
