"""deploy/compose.yaml and deploy/proxy/haproxy.cfg, read as data: hardened like `make run`,
healthcheck-gated start-first rolling updates with rollback, HAProxy and Prometheus finding the api
service's tasks, nothing but the proxy published, and HAProxy's limits the service's own."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from api.settings import Settings
from imagetool.ship.container import make_run_command

COMPOSE = Path("deploy/compose.yaml")
HAPROXY_CFG = Path("deploy/proxy/haproxy.cfg")


def haproxy_cfg(repo_root: Path) -> str:
    return "\n".join(
        line.split("#")[0].rstrip() for line in (repo_root / HAPROXY_CFG).read_text().splitlines()
    )


def services(repo_root: Path) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((repo_root / COMPOSE).read_text())["services"]
    return found


def test_every_service_runs_hardened_like_make_run(repo_root: Path) -> None:
    run = " ".join(make_run_command("lockstep-x", 18000, "some/image:tag", repo_root))
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
    cfg = haproxy_cfg(repo_root)
    assert "nameserver dns 127.0.0.11:53" in cfg  # Docker's embedded DNS
    [template] = re.findall(r"^\s*server-template api \d+ tasks\.api:8000 (.*)$", cfg, re.M)
    options = template.split()
    for option in ("resolvers docker", "resolve-prefer ipv4", "init-addr none"):
        assert option in " ".join(options), option
    assert "check" in options
    config = yaml.safe_load((repo_root / "deploy/prometheus/prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    [sd] = job["dns_sd_configs"]
    assert (sd["names"], sd["type"], sd["port"]) == (["tasks.api"], "A", 8000)


def test_only_the_proxy_is_published_and_statistics_stay_on_loopback(repo_root: Path) -> None:
    """Swarm binds a published port on every interface (it has no host address), so nothing but
    the service's own port is published; Prometheus and HAProxy's statistics listen on 127.0.0.1."""
    found = services(repo_root)
    assert {name for name, s in found.items() if s.get("ports")} == {"proxy"}
    assert [(p["target"], p["mode"]) for p in found["proxy"]["ports"]] == [(8080, "host")]
    assert "--web.listen-address=127.0.0.1:9090" in found["prometheus"]["command"]
    cfg = haproxy_cfg(repo_root)
    binds = re.findall(r"^\s*bind (\S+)", cfg, re.M)
    assert binds == [":8080", "127.0.0.1:8404"], binds
    stats_section = cfg[cfg.index("listen stats") :]
    assert "bind 127.0.0.1:8404" in stats_section
    assert "stats enable" in stats_section
    assert "stats" not in cfg[cfg.index("frontend public") : cfg.index("backend api")]


def test_haproxys_limits_are_the_services(repo_root: Path) -> None:
    """One source for each number: the service's defaults (api.settings), which the stack leaves
    as they are; HAProxy refuses bigger bodies and waits for headers as long as the service does."""
    settings = Settings()
    cfg = haproxy_cfg(repo_root)
    [limit] = re.findall(r"req\.hdr_val\(content-length\) gt (\d+)", cfg)
    assert int(limit) == settings.max_body_bytes
    [header_timeout] = re.findall(r"timeout http-request (\d+)s", cfg)
    assert float(header_timeout) == settings.header_timeout_seconds
    [client_timeout] = re.findall(r"timeout client (\d+)s", cfg)
    assert float(client_timeout) == settings.body_timeout_seconds
    api_env = services(repo_root)["api"].get("environment", {})
    assert not {
        "LOCKSTEP_MAX_BODY_BYTES",
        "LOCKSTEP_HEADER_TIMEOUT_SECONDS",
        "LOCKSTEP_BODY_TIMEOUT_SECONDS",
    } & set(api_env)


def test_haproxy_retries_only_what_no_replica_answered(repo_root: Path) -> None:
    cfg = haproxy_cfg(repo_root)
    [retry_on] = re.findall(r"^\s*retry-on (.+)$", cfg, re.M)
    assert set(retry_on.split()) <= {"conn-failure", "empty-response"}, retry_on
    assert re.search(r"^\s*option redispatch", cfg, re.M)
    for timeout in ("connect", "server", "client", "http-request"):
        assert re.search(rf"^\s*timeout {timeout} \d+s$", cfg, re.M), timeout
    assert re.search(r"^\s*maxconn \d+$", cfg[cfg.index("frontend public") :], re.M)


def test_check_image_lock_also_checks_the_deploy_digests(repo_root: Path) -> None:
    """CI runs `make check-image-lock`: a compose file left on an old digest must fail it."""
    plan = subprocess.run(
        ["make", "-n", "check-image-lock"], cwd=repo_root, capture_output=True, text=True, check=True
    ).stdout
    assert "-m imagetool deploy check" in plan
