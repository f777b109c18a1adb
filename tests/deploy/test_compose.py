"""deploy/compose.yaml, read as data: hardened like `make run`, healthcheck-gated start-first
rolling updates with rollback, and a Prometheus config that scrapes the api service's tasks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path("deploy/compose.yaml")


def services(repo_root: Path) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((repo_root / COMPOSE).read_text())["services"]
    return found


def test_every_service_runs_hardened_like_make_run(repo_root: Path) -> None:
    makefile = (repo_root / "mk/image.mk").read_text()
    run = makefile[makefile.index("\nrun:") :].split("\n\n")[0]
    for flag in ("--read-only", "--cap-drop=ALL", "no-new-privileges", "--user 10001:10001"):
        assert flag in run, f"make run lost {flag}: compose.yaml's hardening no longer matches it"
    for name, service in services(repo_root).items():
        assert service["user"] == "10001:10001", name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name


def test_api_rolls_start_first_gated_by_health_and_rolls_back_on_failure(repo_root: Path) -> None:
    api = services(repo_root)["api"]
    assert api["healthcheck"]["test"] == ["CMD", "python", "-m", "api.healthcheck"]
    deploy = api["deploy"]
    assert deploy["replicas"] >= 2
    assert deploy["endpoint_mode"] == "dnsrr"  # no IPVS: the proxy balances over tasks.api
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["failure_action"] == "rollback"
    assert deploy["rollback_config"]["order"] == "start-first"
    assert [m["target"] for m in api["volumes"] if m["type"] == "tmpfs"] == ["/tmp"]


def test_proxy_and_prometheus_find_the_api_tasks(repo_root: Path) -> None:
    found = services(repo_root)
    assert found["proxy"]["environment"]["PROXY_UPSTREAM"] == "tasks.api"
    assert all(p["mode"] == "host" for p in found["proxy"]["ports"])
    config = yaml.safe_load((repo_root / "deploy/prometheus/prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    [sd] = job["dns_sd_configs"]
    assert (sd["names"], sd["type"], sd["port"]) == (["tasks.api"], "A", 8000)


def test_check_image_lock_also_checks_the_deploy_digests(repo_root: Path) -> None:
    """CI runs `make check-image-lock`: a compose file left on an old digest must fail it."""
    plan = subprocess.run(
        ["make", "-n", "check-image-lock"], cwd=repo_root, capture_output=True, text=True, check=True
    ).stdout
    assert "-m imagetool deploy check" in plan
