"""api.settings' body limit and the deploy memory limit stay in step: the largest body of the worst
kind, at the memory per body byte bench/body_memory.py measured (bench/results/serve_body_memory.json),
on top of a worker's own RSS, fits every memory limit `make run` and deploy/ set."""

from __future__ import annotations

import json
from typing import Any

from api.settings import Settings
from harness import REPO_ROOT
from harness.bodies import LARGEST
from tests.api.support import deploy_memory_limits, mib

MEASURED = REPO_ROOT / "bench/results/serve_body_memory.json"
# Room left for what a request holds besides its body's parse (the answer, the runner's arrays)
# and for the allocator's slack.
MARGIN_MIB = 48


def measured() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(MEASURED.read_text())
    return result


def test_the_measurement_is_of_the_current_body_limit_and_every_kind() -> None:
    result = measured()
    assert result["body_limit_bytes"] == Settings().max_body_bytes, "re-run make bench-body-memory"
    assert set(result["kinds"]) == set(LARGEST), "re-run make bench-body-memory"
    for kind, r in result["kinds"].items():
        assert 400 <= r["status"] < 500 or r["status"] == 200, kind


def test_the_largest_body_of_any_kind_fits_every_deploy_memory_limit() -> None:
    result = measured()
    worst = max(r["bytes_per_body_byte"] for r in result["kinds"].values())
    need = result["worker_rss_after_mib"] + worst * Settings().max_body_bytes / 2**20 + MARGIN_MIB
    for where, limit in deploy_memory_limits().items():
        assert need <= limit, (
            f"{where}: {limit:.0f} MiB, but a worker ({result['worker_rss_after_mib']:.0f} MiB) with the "
            f"largest {result['worst_kind']} body ({worst:.2f} bytes per body byte) and {MARGIN_MIB} MiB "
            f"margin needs {need:.0f} MiB: lower LOCKSTEP_MAX_BODY_BYTES or raise the limit"
        )


def test_memory_quantities_are_read_as_mib() -> None:
    assert [mib(q) for q in ("336m", "336Mi", "336M", "1Gi", "512k")] == [336, 336, 336, 1024, 0.5]
