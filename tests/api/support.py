"""Shared helpers for the service tests: artifact paths, settings, TestClient, tampered copies."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.exceptions import StarletteDeprecationWarning

from api.settings import Settings

# Starlette 1.x prefers httpx2 for its TestClient and warns (an error under this project's
# filterwarnings) when only httpx is installed; the client works the same either way.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = ["TestClient"]

REPO_ROOT = Path(__file__).resolve().parents[2]
# Another checkout's (or an unpacked image's) artifacts can be tested by pointing this elsewhere.
ARTIFACT_ROOT = Path(os.environ.get("LOCKSTEP_TEST_ARTIFACT_ROOT", REPO_ROOT))
MODEL = ARTIFACT_ROOT / "models" / "model.joblib"
EXPORT = ARTIFACT_ROOT / "models" / "model.json"
METADATA = ARTIFACT_ROOT / "models" / "metadata.json"
DVC_LOCK = ARTIFACT_ROOT / "dvc.lock"
TEST_SPLIT = ARTIFACT_ROOT / "data" / "prepared" / "test.csv"


def require_artifacts() -> None:
    """The service tests run against what `dvc repro` produced; say so plainly if it has not run."""
    missing = [str(p) for p in (MODEL, EXPORT, METADATA, DVC_LOCK, TEST_SPLIT) if not p.is_file()]
    if missing:
        pytest.fail(f"missing pipeline outputs {missing}: run `dvc repro` (make repro) before the API tests")


def make_settings(**overrides: Any) -> Settings:
    """Settings pointing at the real artifacts unless overridden."""
    values: dict[str, Any] = {
        "model_path": MODEL,
        "export_path": EXPORT,
        "metadata_path": METADATA,
        "dvc_lock_path": DVC_LOCK,
        "requirements_path": REPO_ROOT / "requirements.txt",
        "enable_ceiling_route": True,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class ArtifactCopy:
    """Model, export, metadata and dvc.lock copied to a temporary directory with the repository's layout."""

    root: Path

    @property
    def model(self) -> Path:
        return self.root / "models" / "model.joblib"

    @property
    def export(self) -> Path:
        return self.root / "models" / "model.json"

    @property
    def metadata(self) -> Path:
        return self.root / "models" / "metadata.json"

    @property
    def lock(self) -> Path:
        return self.root / "dvc.lock"

    def settings(self, **overrides: Any) -> Settings:
        return make_settings(
            model_path=self.model,
            export_path=self.export,
            metadata_path=self.metadata,
            dvc_lock_path=self.lock,
            **overrides,
        )

    def edit_lock(self, change: Callable[[dict[str, Any]], None]) -> None:
        doc = yaml.safe_load(self.lock.read_text())
        change(doc)
        self.lock.write_text(yaml.safe_dump(doc, sort_keys=False))

    def env(self) -> dict[str, str]:
        """LOCKSTEP_* variables that point `python -m api` at this copy."""
        return {
            "LOCKSTEP_MODEL_PATH": str(self.model),
            "LOCKSTEP_EXPORT_PATH": str(self.export),
            "LOCKSTEP_METADATA_PATH": str(self.metadata),
            "LOCKSTEP_DVC_LOCK_PATH": str(self.lock),
        }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> float:
    """Seconds until GET /readyz answered 200; fails if the server exits first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise AssertionError(f"server exited early with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
                if reply.status == 200:
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not become ready")


@contextmanager
def running_server(**env: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A real `python -m api` on a free loopback port, serving the real artifacts; killed on exit."""
    port = free_port()
    full_env = {
        **os.environ,
        "LOCKSTEP_PORT": str(port),
        "LOCKSTEP_MODEL_PATH": str(MODEL),
        "LOCKSTEP_EXPORT_PATH": str(EXPORT),
        "LOCKSTEP_METADATA_PATH": str(METADATA),
        "LOCKSTEP_DVC_LOCK_PATH": str(DVC_LOCK),
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "api"],
        cwd=REPO_ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(port, process)
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)  # also closes the pipes
