"""`make bench-slow-clients`: 2,000 clients that send their headers and then trickle a body, against
one real `python -m api` worker, with a normal rate-capped load (hey) beside them (issue 11).

Phases, on one server:
  1. baseline - hey at --rate single-row requests per second for --seconds: p50/p99;
  2. trickle  - --clients connections each send a POST /predict head (Content-Length 1 MiB) and then
                one byte a second; the same hey run goes on meanwhile. For each trickler: what the
                server answered (408, 503, or a close) and when, measured from its connect.
The server runs with its default read deadlines unless --body-timeout/--header-timeout say otherwise.
Writes JSON (default bench/results/slow_clients.json) and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from api.settings import Settings
from bench.serve_bench import hey_at_rate, rss_kib, server
from harness import DEFAULT, REPO_ROOT

TRICKLE_LENGTH = 1024 * 1024  # declared, never sent


async def trickle(port: int, give_up: float) -> dict[str, Any]:
    """One slow client: headers, then a byte a second until the server answers or closes."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return {"outcome": f"connect failed: {exc.__class__.__name__}", "seconds": time.monotonic() - started}
    head = (
        f"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {TRICKLE_LENGTH}\r\n\r\n{{"
    ).encode()

    async def drip() -> None:
        try:
            writer.write(head)
            while True:
                await writer.drain()
                await asyncio.sleep(1.0)
                writer.write(b" ")
        except (OSError, RuntimeError):
            return  # the server closed the connection

    dripping = asyncio.create_task(drip())
    try:
        data = await asyncio.wait_for(reader.read(), timeout=give_up)
        outcome = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "closed"
    except TimeoutError:
        outcome = "still open"
    except OSError:
        # The server answered and closed while a drip byte was in flight: the kernel's reset can
        # discard the 408 before it is read. Shed all the same.
        outcome = "reset"
    seconds = time.monotonic() - started
    dripping.cancel()
    writer.close()
    return {"outcome": outcome, "seconds": seconds}


def run_tricklers(port: int, clients: int, give_up: float, results: list[dict[str, Any]]) -> None:
    async def all_of_them() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(trickle(port, give_up) for _ in range(clients))))

    results.extend(asyncio.run(all_of_them()))


def summarise_tricklers(results: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = sorted(r["seconds"] for r in results)
    return {
        "clients": len(results),
        "outcomes": dict(Counter(r["outcome"] for r in results)),
        "shed_seconds_min": seconds[0],
        "shed_seconds_median": statistics.median(seconds),
        "shed_seconds_max": seconds[-1],
    }


def table(results: dict[str, Any]) -> str:
    base, during, slow = results["baseline"], results["during_trickle"], results["tricklers"]
    outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(slow["outcomes"].items()))
    return "\n".join(
        [
            f"Read deadlines: headers {results['header_timeout_s']:g} s, "
            f"body {results['body_timeout_s']:g} s; {slow['clients']} tricklers; "
            f"normal load {base['offered_rate_per_s']} req/s (hey)",
            "",
            "| phase | p50 ms | p99 ms | max ms | requests | errors |",
            "|---|---:|---:|---:|---:|---:|",
            *(
                f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} | {r['requests']} "
                f"| {r['errors']} |"
                for name, r in (("baseline", base), ("during trickle", during))
            ),
            "",
            f"Tricklers: {outcomes}; shed after {slow['shed_seconds_min']:.2f} s (first), "
            f"{slow['shed_seconds_median']:.2f} s (median), {slow['shed_seconds_max']:.2f} s (last). "
            f"Worker RSS: {results['rss_mib_before']:.0f} MiB before, "
            f"{results['rss_mib_peak']:.0f} MiB peak.",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="normal requests per second (hey)")
    parser.add_argument("--seconds", type=int, default=0, help="hey run length; default: body timeout + 5")
    defaults = Settings.model_fields
    parser.add_argument("--header-timeout", type=float, default=defaults["header_timeout_seconds"].default)
    parser.add_argument("--body-timeout", type=float, default=defaults["body_timeout_seconds"].default)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench" / "results" / "slow_clients.json")
    args = parser.parse_args()
    seconds = args.seconds or int(args.body_timeout + 5)
    DEFAULT.require()
    os.environ["LOCKSTEP_HEADER_TIMEOUT_SECONDS"] = str(args.header_timeout)
    os.environ["LOCKSTEP_BODY_TIMEOUT_SECONDS"] = str(args.body_timeout)
    metadata = DEFAULT.metadata_document()
    with tempfile.TemporaryDirectory() as scratch:
        body = Path(scratch) / "one.json"
        body.write_bytes(orjson.dumps({"instances": [metadata["example"]]}))
        with server(DEFAULT, 1, Path(scratch) / "server.log") as running:
            process, port, url = running.process, running.port, f"{running.url}/predict"
            hey_at_rate(url, body, args.rate, 2)  # warm-up
            baseline = hey_at_rate(url, body, args.rate, seconds)
            rss_before = rss_kib(process.pid)
            tricklers: list[dict[str, Any]] = []
            slow = threading.Thread(
                target=run_tricklers,
                args=(port, args.clients, args.body_timeout + args.header_timeout + 30, tricklers),
            )
            rss_peak = rss_before
            slow.start()
            time.sleep(1.0)  # the tricklers are connected and dripping before the normal load starts
            during: dict[str, Any] = {}
            load = threading.Thread(target=lambda: during.update(hey_at_rate(url, body, args.rate, seconds)))
            load.start()
            while slow.is_alive() or load.is_alive():
                rss_peak = max(rss_peak, rss_kib(process.pid))
                time.sleep(0.25)
    results = {
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "header_timeout_s": args.header_timeout,
        "body_timeout_s": args.body_timeout,
        "baseline": baseline,
        "during_trickle": during,
        "tricklers": summarise_tricklers(tricklers),
        "rss_mib_before": rss_before / 1024,
        "rss_mib_peak": rss_peak / 1024,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    args.output.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
