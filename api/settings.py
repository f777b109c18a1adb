"""Service settings, read from `LOCKSTEP_*` environment variables."""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

import contract


class Settings(BaseSettings):
    """Everything the service can be configured with; defaults suit a checkout after `dvc repro`."""

    model_config = SettingsConfigDict(env_prefix="LOCKSTEP_", extra="ignore")

    # The pipeline's outputs (all md5-checked against dvc.lock): serving.json says whether the ONNX
    # graph or the pickle (the exact path, which unpickles only verified bytes) is served.
    model_path: Path = contract.MODEL_FILE
    onnx_path: Path = contract.ONNX_FILE
    serving_path: Path = contract.SERVING_FILE
    metadata_path: Path = contract.METADATA_FILE
    dvc_lock_path: Path = contract.DVC_LOCK_FILE
    # Optional: its hash is reported by GET /model when the file is present.
    requirements_path: Path | None = Path("requirements.txt")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    # One row of named features is ~0.8 kB of JSON, so the body limit admits MAX_ROWS named rows.
    max_rows: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # The model's name in the Open Inference Protocol (V2) paths: /v2/models/{name}/infer.
    v2_model_name: str = Field(default="lockstep", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    # Small /predict requests that arrive together are scored in one model call of at most this many
    # rows (api.coalesce), when the model gives each row the same bits either way; 0 turns it off.
    coalesce_max_rows: int = Field(default=256, ge=0)
    # Swagger UI at /docs: off by default, because FastAPI's page loads swagger-ui's JavaScript and CSS
    # from a CDN (jsdelivr) without integrity hashes. /openapi.json (the schema) is always served.
    enable_docs: bool = False
    # Seconds uvicorn waits for in-flight requests after SIGTERM before closing them.
    graceful_timeout_seconds: int = Field(default=30, ge=1)
    # Read deadlines per connection (api.read_timeouts): a client that has not sent its headers, or
    # then its body, in time gets a 408 and is disconnected. The body's allows a full-size body over
    # a slow link (16 MiB at ~0.6 MB/s).
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    # Open connections per worker; beyond it a new one gets a 503 at once. Above any legitimate
    # client pool, it bounds file descriptors and per-connection state when clients stall.
    max_connections: int = Field(default=4096, ge=1)
