"""The pipeline's artifacts as tests and benchmarks use them: their paths under a root, the
service's settings for them, tampered copies, a model family trained in a repo copy, and pickles
that must never be loaded."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

import contract
from api.settings import Settings
from harness.repo import REPO_ROOT, copy_repo, venv_bin, venv_env

# Another checkout's (or an unpacked image's) artifacts can be tested by pointing this elsewhere.
ARTIFACT_ROOT = Path(os.environ.get("LOCKSTEP_TEST_ARTIFACT_ROOT", REPO_ROOT))


# Where each artifact sits under a root (the contract's paths), and the setting that points the
# service at it (LOCKSTEP_<SETTING> in the environment).
_LAYOUT = {
    "model": (contract.MODEL_FILE, "model_path"),
    "sha256": (contract.MODEL_SHA256_FILE, None),  # beside dvc.lock: the service finds it from there
    "onnx": (contract.ONNX_FILE, "onnx_path"),
    "serving": (contract.SERVING_FILE, "serving_path"),
    "metadata": (contract.METADATA_FILE, "metadata_path"),
    "lock": (contract.DVC_LOCK_FILE, "dvc_lock_path"),
    "test_split": (contract.TEST_CSV, None),
}


@dataclass(frozen=True)
class Artifacts:
    """The pipeline's outputs under `root`, laid out as in the repository (paths from contract)."""

    root: Path
    model: Path = field(init=False)
    sha256: Path = field(init=False)
    onnx: Path = field(init=False)
    serving: Path = field(init=False)
    metadata: Path = field(init=False)
    lock: Path = field(init=False)
    test_split: Path = field(init=False)

    def __post_init__(self) -> None:
        for name, (relative, _) in _LAYOUT.items():
            object.__setattr__(self, name, self.root / relative)

    def files(self) -> list[Path]:
        return [getattr(self, name) for name in _LAYOUT]

    def require(self) -> None:
        """The service tests run against what the pipeline produced; say so plainly if it has not run."""
        missing = [str(p) for p in self.files() if not p.is_file()]
        if missing:
            raise AssertionError(
                f"missing pipeline outputs {missing}: run `dvc repro` (make repro) before the API tests"
            )

    def served(self) -> dict[str, Path]:
        """The service's path settings for these artifacts."""
        return {setting: getattr(self, name) for name, (_, setting) in _LAYOUT.items() if setting}

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            **self.served(),
            "requirements_path": REPO_ROOT / "requirements.txt",
        }
        values.update(overrides)
        return Settings(**values)

    def env(self) -> dict[str, str]:
        """LOCKSTEP_* variables that point `python -m api` at these artifacts."""
        return {f"LOCKSTEP_{setting.upper()}": str(path) for setting, path in self.served().items()}

    def copy_to(self, dest: Path) -> Artifacts:
        """A private copy, free to tamper with."""
        copy = Artifacts(dest)
        for source, target in zip(self.files(), copy.files(), strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        return copy

    def edit_lock(self, change: Callable[[dict[str, Any]], None]) -> None:
        doc = yaml.safe_load(self.lock.read_text())
        change(doc)
        self.lock.write_text(yaml.safe_dump(doc, sort_keys=False))

    def relock(self, path: Path, data: bytes) -> None:
        """Write new bytes and record their md5 in dvc.lock, as a hand edit plus `dvc commit` would."""
        path.write_bytes(data)
        relative = path.relative_to(self.root).as_posix()
        new_md5 = hashlib.md5(data).hexdigest()

        def change(lock: dict[str, Any]) -> None:
            for stage in lock["stages"].values():
                for out in stage.get("outs", []):
                    if out["path"] == relative:
                        out["md5"] = new_md5

        self.edit_lock(change)

    def metadata_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(self.metadata.read_bytes())
        return doc

    def serving_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(self.serving.read_bytes())
        return doc


DEFAULT = Artifacts(ARTIFACT_ROOT)


def make_settings(**overrides: Any) -> Settings:
    """Settings pointing at the default artifacts (the repository's own `dvc repro`) unless overridden."""
    return DEFAULT.settings(**overrides)


def set_dotted(doc: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[last] = value


def train_family(dest: Path, overrides: dict[str, Any], files: dict[str, str] | None = None) -> Artifacts:
    """Copy the repository, add `files` (path -> text), apply the params overrides and run the real
    pipeline (`dvc repro`)."""
    repo = copy_repo(dest)
    for name, text in (files or {}).items():
        (repo / name).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    params_file = repo / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    for key, value in overrides.items():
        set_dotted(params, key, value)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    done = subprocess.run(
        [venv_bin("dvc"), "repro", "--quiet"],
        cwd=repo,
        env=venv_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dvc repro failed for {overrides}:\n{done.stdout}\n{done.stderr}")
    return Artifacts(repo)


def imported_after_serving(artifacts: Artifacts) -> list[str]:
    """Which of scikit-learn, scipy, joblib and pandas a fresh process has imported once it served."""
    code = (
        "import sys, warnings; warnings.simplefilter('ignore')\n"
        "from fastapi.testclient import TestClient\n"
        "from api.app import create_app\nfrom harness.artifacts import Artifacts\n"
        f"artifacts = Artifacts(__import__('pathlib').Path({str(artifacts.root)!r}))\n"
        "with TestClient(create_app(artifacts.settings())) as c:\n"
        "    assert c.get('/readyz').status_code == 200\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'joblib', 'pandas'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    imported: list[str] = orjson.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))
    return imported


class _OpensAFile:
    """Unpickling this calls open(path, "w"): a stand-in for code a poisoned pickle would run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "w")


def malicious_pickle(marker: Path) -> bytes:
    """A pickle whose loading creates `marker`: if the file exists, the payload ran."""
    return pickle.dumps(_OpensAFile(marker))
