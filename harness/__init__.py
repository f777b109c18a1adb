"""What tests and benchmarks share: the repository and its copies (`repo`), servers and ports
(`servers`), the pipeline's artifacts (`artifacts`), the model families (`families`), the largest
request bodies (`bodies`) and generated data (`data`). Fixtures stay in tests/conftest.py files.

The names most used are importable from the package itself."""

from __future__ import annotations

from harness.artifacts import (
    ARTIFACT_ROOT,
    DEFAULT,
    Artifacts,
    imported_after_serving,
    make_settings,
    malicious_pickle,
    set_dotted,
    train_family,
)
from harness.data import dated_csv
from harness.repo import (
    REPO_ROOT,
    copy_repo,
    lock_stage_outputs,
    pipeline_workdir,
    stage_outputs,
    venv_bin,
    venv_env,
)
from harness.servers import (
    NotReadyError,
    ServedArtifacts,
    Server,
    free_port,
    running_server,
    serving,
    wait_ready,
)

__all__ = [
    "ARTIFACT_ROOT",
    "DEFAULT",
    "REPO_ROOT",
    "Artifacts",
    "NotReadyError",
    "ServedArtifacts",
    "Server",
    "copy_repo",
    "dated_csv",
    "free_port",
    "imported_after_serving",
    "lock_stage_outputs",
    "make_settings",
    "malicious_pickle",
    "pipeline_workdir",
    "running_server",
    "serving",
    "set_dotted",
    "stage_outputs",
    "train_family",
    "venv_bin",
    "venv_env",
    "wait_ready",
]
