"""`make bench-proxy`: what a front proxy costs per request, HAProxy (the stack's) against the old
home-made proxy (bench/old_proxy.py, kept only as this baseline) and against no proxy at all.

One service container (the built image, lockstep:latest, one worker) on a Docker network of its
own under the alias `tasks.api`, as in the stack, and in front of it, each published on
127.0.0.1 like the stack's port:
  direct  - the service container's own port;
  haproxy - the stack's proxy image (lockstep-proxy:latest, `make stack-images`), config unchanged;
  old     - bench/old_proxy.py on the service image's Python (what the stack ran before).
Rounds alternate over the three (the host is shared: background load must not decide a ratio):
  wrk     - closed loop, --connections, one-row /predict: req/s and latency percentiles;
  hey     - rate-capped at --rate req/s: latency at equal offered load.
Per-request overhead = the proxy's median p50 minus direct's, per load kind; and the CPU time the
proxy process itself spends per request (/proc/PID/stat around each run), which the other jobs on a
shared host disturb far less than latency.
Writes bench/results/proxy_overhead.json and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.serve_bench import cpu_seconds, hey_at_rate, wrk
from harness import REPO_ROOT, free_port, wait_ready

RESULTS = REPO_ROOT / "bench/results/proxy_overhead.json"
TARGETS = ("direct", "haproxy", "old")


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


@contextmanager
def containers(service_image: str, proxy_image: str) -> Iterator[dict[str, tuple[str, int]]]:
    """The three targets' base URLs on 127.0.0.1 and the PIDs of the processes that answer on them
    (the service for direct, else the proxy); everything removed afterwards."""
    name = f"lockstep-bench-proxy-{os.getpid()}"
    ports = {target: free_port() for target in TARGETS}
    docker("network", "create", name)
    old = REPO_ROOT / "bench/old_proxy.py"
    hardened = ["--read-only", "--cap-drop", "ALL", "--network", name]
    runs = {
        "direct": ["--network-alias", "tasks.api", service_image],
        "haproxy": [proxy_image],
        "old": ["-v", f"{old}:/bench/old_proxy.py:ro", "-e", "PROXY_UPSTREAM=tasks.api",
                "--entrypoint", "python", service_image, "-u", "/bench/old_proxy.py"],
    }  # fmt: skip
    inner = {"direct": 8000, "haproxy": 8080, "old": 8080}
    started: list[str] = []
    try:
        for target, rest in runs.items():
            started.append(f"{name}-{target}")
            publish = f"127.0.0.1:{ports[target]}:{inner[target]}"
            docker("run", "-d", "--name", started[-1], "-p", publish, *hardened, *rest)
        urls = {target: f"http://127.0.0.1:{port}" for target, port in ports.items()}
        for url in urls.values():
            wait_ready(f"{url}/readyz", timeout=60)
        pids = {t: int(docker("inspect", "--format", "{{.State.Pid}}", f"{name}-{t}")) for t in TARGETS}
        yield {t: (urls[t], pids[t]) for t in TARGETS}
    finally:
        subprocess.run(["docker", "rm", "-f", *started], capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", name], capture_output=True, check=False)


def with_cpu(pid: int, run: Any, *args: Any) -> dict[str, Any]:
    before = cpu_seconds(pid)
    result: dict[str, Any] = run(*args)
    result["cpu_us_per_request"] = (cpu_seconds(pid) - before) * 1e6 / max(1, result["requests"])
    return result


def measure(urls: dict[str, tuple[str, int]], body: Path, args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {t: {"wrk": [], "hey": []} for t in TARGETS}
    for round_no in range(args.rounds):
        order = TARGETS[round_no % 3 :] + TARGETS[: round_no % 3]  # who goes first rotates too
        for target in order:
            base, pid = urls[target]
            url = f"{base}/predict"
            runs[target]["wrk"].append(with_cpu(pid, wrk, url, body, args.connections, args.seconds))
            runs[target]["hey"].append(with_cpu(pid, hey_at_rate, url, body, args.rate, args.seconds))
    summary: dict[str, Any] = {}
    for target, kinds in runs.items():
        summary[target] = {
            kind: {
                "median_p50_ms": statistics.median(r["p50_ms"] for r in measured),
                "median_p99_ms": statistics.median(r["p99_ms"] for r in measured),
                "median_requests_per_s": statistics.median(
                    r.get("requests_per_s", r.get("achieved_rate_per_s", 0.0)) for r in measured
                ),
                "median_cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in measured),
                "errors": sum(r["errors"] for r in measured),
                "rounds": measured,
            }
            for kind, measured in kinds.items()
        }
    for target in ("haproxy", "old"):
        for kind in ("wrk", "hey"):
            s, d = summary[target][kind], summary["direct"][kind]
            s["overhead_p50_ms"] = s["median_p50_ms"] - d["median_p50_ms"]
            s["throughput_vs_direct"] = s["median_requests_per_s"] / d["median_requests_per_s"]
    return summary


def table(summary: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"# Front proxy overhead: one-row /predict, one service worker, {args.rounds} alternating rounds",
        "",
        f"wrk: closed loop, {args.connections} connections, {args.seconds} s a round; "
        f"hey: {args.rate} req/s offered, {args.seconds} s a round. Medians over rounds.",
        "CPU us/request: the answering process's own CPU time per request (direct: the service's;",
        "haproxy, old: the proxy's, on top of the service's).",
        "",
        "| target | wrk req/s | vs direct | wrk p50 ms | wrk p99 ms | p50 overhead ms (wrk) "
        "| hey p50 ms | hey p99 ms | p50 overhead ms (hey) | CPU us/request (wrk, hey) | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for target in TARGETS:
        w, h = summary[target]["wrk"], summary[target]["hey"]
        ratio = f"{w['throughput_vs_direct']:.2f}x" if "throughput_vs_direct" in w else "1.00x"
        over_w = f"{w['overhead_p50_ms']:+.2f}" if "overhead_p50_ms" in w else "-"
        over_h = f"{h['overhead_p50_ms']:+.2f}" if "overhead_p50_ms" in h else "-"
        lines.append(
            f"| {target} | {w['median_requests_per_s']:,.0f} | {ratio} | {w['median_p50_ms']:.2f} | "
            f"{w['median_p99_ms']:.2f} | {over_w} | {h['median_p50_ms']:.2f} | {h['median_p99_ms']:.2f} | "
            f"{over_h} | {w['median_cpu_us_per_request']:.0f}, {h['median_cpu_us_per_request']:.0f} | "
            f"{w['errors'] + h['errors']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.proxy_overhead", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--rate", type=int, default=200)
    p.add_argument("--service-image", default="lockstep:latest")
    p.add_argument("--proxy-image", default="lockstep-proxy:latest")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.rounds < 1 or args.seconds < 1 or args.connections < 1 or args.rate < 1:
        print(
            "bench.proxy_overhead: --rounds, --seconds, --connections, --rate must be >= 1", file=sys.stderr
        )
        return 2
    example = json.loads((REPO_ROOT / "models/metadata.json").read_text())["example"]
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "one.json"
        body.write_text(json.dumps({"instances": [example]}))
        with containers(args.service_image, args.proxy_image) as urls:
            t0 = time.monotonic()
            summary = measure(urls, body, args)
    result = {
        "what": "one-row POST /predict through each front proxy vs direct, alternating rounds",
        "host": {"cpus": os.cpu_count(), "machine": platform.machine()},
        "images": {
            "service": docker("image", "inspect", "--format", "{{.Id}}", args.service_image),
            "proxy": docker("image", "inspect", "--format", "{{.Id}}", args.proxy_image),
        },
        "settings": {k: getattr(args, k) for k in ("rounds", "seconds", "connections", "rate")},
        "seconds": round(time.monotonic() - t0, 1),
        "targets": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(table(summary, args))
    print(table(summary, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
