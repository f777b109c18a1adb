"""Bit-for-bit retraining: independent of thread settings, BLAS kernel, the caller's CPU settings and hash
seed, and equal to dvc.lock. (CPU levels: test_cpu_levels.py; an emulated CPU: test_qemu_cpu.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from contract import load_dvc_lock, locked_outs
from harness import lock_stage_outputs, malicious_pickle, pipeline_workdir, venv_bin, venv_env

pytestmark = pytest.mark.slow


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def locked(lock_file: Path) -> dict[str, str]:
    """path -> md5 of every stage output dvc.lock records, read by the contract's one parser."""
    return locked_outs(load_dvc_lock(lock_file))


def dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv_bin("dvc"), *args],
        cwd=cwd,
        env=venv_env(),  # dvc.yaml's `python` must be this interpreter
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


THREAD_SETTINGS = [
    {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"},
    {
        "OMP_NUM_THREADS": "2",
        "OPENBLAS_NUM_THREADS": "2",
        "PYTHONHASHSEED": "4242",
        "OPENBLAS_CORETYPE": "Haswell",
        "NPY_ENABLE_CPU_FEATURES": "X86_V3",  # a caller asking numpy for AVX2: the pins drop it
    },
    {
        "OMP_NUM_THREADS": "7",
        "OPENBLAS_NUM_THREADS": "3",
        "PYTHONHASHSEED": "random",
        "OPENBLAS_CORETYPE": "Zen",
        "GLIBC_TUNABLES": "glibc.malloc.arena_max=1:glibc.cpu.hwcaps=-ERMS",  # kept, and added to
    },
]
THREAD_IDS = ["1-thread", "2-threads-avx2-kernel", "oversubscribed-zen-kernel"]
MODEL_OUTS = ("models/model.joblib", "models/model.onnx", "models/serving.json")


def run_stages(workdir: Path, stages: tuple[str, ...], env: dict[str, str]) -> None:
    """Run stages as DVC does, in subprocesses with their own thread, BLAS-kernel and hash-seed settings."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENBLAS_", "OMP_", "MKL_", "NPY_", "GLIBC_"))
    }
    for stage in stages:
        subprocess.run(
            [sys.executable, "-m", "pipeline", stage],
            cwd=workdir,
            env=inherited | env,
            check=True,
            timeout=300,
        )
        lock_stage_outputs(workdir, stage)  # as dvc repro does: export checks the model's md5


@pytest.mark.parametrize("env", THREAD_SETTINGS, ids=THREAD_IDS)
def test_training_gives_the_locked_model_bytes_under_any_thread_settings(
    repo_root: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    """train and export (predict_proba and the ONNX conversion: BLAS-kernel sensitive too) give
    the bytes dvc.lock records for the pickle, the graph and serving.json."""
    workdir = pipeline_workdir(tmp_path, data="data/prepared")
    run_stages(workdir, ("train", "export"), env)
    expected = locked(repo_root / "dvc.lock")
    assert {out: md5(workdir / out) for out in MODEL_OUTS} == {out: expected[out] for out in MODEL_OUTS}


# Every required family besides the default (which the test above checks against dvc.lock).
FAMILIES = {
    "hist-gradient-boosting": (
        "sklearn.ensemble.HistGradientBoostingClassifier",
        {"max_iter": 30},
        "species",
    ),
    "random-forest": (
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 15, "n_jobs": 2},
        "species",
    ),
    "gradient-boosting": ("sklearn.ensemble.GradientBoostingClassifier", {"n_estimators": 15}, "species"),
    "hist-gradient-boosting-regressor": (
        "sklearn.ensemble.HistGradientBoostingRegressor",
        {"max_iter": 30},
        "body_mass_g",
    ),
    "xgboost": ("xgboost.XGBClassifier", {"n_estimators": 15}, "species"),
    "lightgbm": ("lightgbm.LGBMClassifier", {"n_estimators": 15}, "species"),
}


@pytest.mark.parametrize("family", FAMILIES, ids=list(FAMILIES))
def test_every_family_gives_the_same_bytes_under_any_thread_settings(
    family: str, repo_root: Path, tmp_path: Path
) -> None:
    """Penguins through prepare, train and export under each thread/kernel/hash-seed setting:
    pickle, graph and serving.json identical. HistGradientBoosting's fitted trees depend on the
    OpenMP thread count (see the control below): the launcher's single pinned thread covers it."""
    estimator, hyper, target = FAMILIES[family]
    digests = []
    for i, env in enumerate(THREAD_SETTINGS):
        workdir = pipeline_workdir(tmp_path / str(i))
        params = yaml.safe_load((workdir / "params.yaml").read_text())
        params["prepare"].update(raw_data="data/raw/penguins.csv", target=target, drop_missing_target=True)
        params["train"]["estimator"] = {"class": estimator, "params": hyper}
        params["evaluate"]["positive_class"] = None
        (workdir / "params.yaml").write_text(yaml.safe_dump(params))
        run_stages(workdir, ("prepare", "train", "export"), env)
        digests.append({out: md5(workdir / out) for out in MODEL_OUTS})
    assert digests[0] == digests[1] == digests[2]


def test_hist_gradient_boosting_does_depend_on_the_thread_count_unpinned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control for the test above: in one process, 1 vs 2 OpenMP threads fit different bytes,
    so equal bytes under the pipeline are the pin's doing, not luck. Unpinned means unpinned: an
    exact-path service started in this process earlier (api.runners.quiet_loky) leaves
    LOKY_MAX_CPU_COUNT=1, and scikit-learn caches the CPU count it then sees for the whole
    process, which caps its OpenMP threads at one; both are undone here."""
    import pickle

    from sklearn.utils import _openmp_helpers

    monkeypatch.delenv("LOKY_MAX_CPU_COUNT", raising=False)
    monkeypatch.setattr(_openmp_helpers, "_CPU_COUNTS", {})

    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 20))
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(scale=0.5, size=4000) > 0).astype(int)

    def fit(threads: int) -> bytes:
        with threadpool_limits(limits=threads, user_api="openmp"):
            model = HistGradientBoostingClassifier(max_iter=30, early_stopping=False, random_state=0).fit(
                X, y
            )
        return pickle.dumps(model)

    assert fit(1) != fit(2)


def test_dvc_repro_on_a_fresh_copy_recreates_every_locked_output(
    fresh_clone: Callable[[], Path], repo_root: Path
) -> None:
    repo = fresh_clone()
    assert not (repo / "models/model.joblib").exists()
    proc = dvc(repo, "repro")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = locked(repo_root / "dvc.lock")
    assert {path: md5(repo / path) for path in expected} == expected
    assert (repo / "dvc.lock").read_text() == (repo_root / "dvc.lock").read_text()
    status = dvc(repo, "status", "--json")
    assert status.returncode == 0
    assert status.stdout.strip() == "{}", status.stdout
    again = dvc(repo, "repro")
    assert again.returncode == 0
    assert "Running stage" not in again.stdout, again.stdout


def test_dvc_push_then_pull_restores_outputs_from_a_local_remote(
    fresh_clone: Callable[[], Path], tmp_path: Path
) -> None:
    repo = fresh_clone()
    assert dvc(repo, "repro").returncode == 0
    remote = tmp_path / "remote"
    assert dvc(repo, "remote", "add", "--local", "-d", "store", str(remote)).returncode == 0
    pushed = dvc(repo, "push")
    assert pushed.returncode == 0, pushed.stderr
    before = md5(repo / "models/model.joblib")
    for path in ("models/model.joblib", "models/metadata.json", "data/prepared/train.csv"):
        (repo / path).unlink()
    dvc(repo, "gc", "--workspace", "--force")  # drop the local cache too: pull must fetch
    shutil.rmtree(repo / ".dvc/cache", ignore_errors=True)
    pulled = dvc(repo, "pull")
    assert pulled.returncode == 0, pulled.stderr
    assert md5(repo / "models/model.joblib") == before
    assert dvc(repo, "status", "--json").stdout.strip() == "{}"


def test_a_poisoned_remote_is_refused_by_dvc_verify_and_by_the_md5_check(
    fresh_clone: Callable[[], Path], tmp_path: Path
) -> None:
    """A remote whose model object was swapped for a pickle that runs code. Without `verify`,
    `dvc pull` checks the swapped bytes out and `dvc status` calls them up to date; the stages
    that load the model (here run by `dvc repro`) refuse it before unpickling. With
    `verify true`, `dvc pull` re-hashes what it fetched and checks nothing out."""
    repo = fresh_clone()
    assert dvc(repo, "repro").returncode == 0
    remote = tmp_path / "remote"
    assert dvc(repo, "remote", "add", "--local", "-d", "store", str(remote)).returncode == 0
    assert dvc(repo, "push").returncode == 0
    model = repo / "models/model.joblib"
    locked = md5(model)
    marker = tmp_path / "payload-ran"
    payload = malicious_pickle(marker)
    stored = remote / "files/md5" / locked[:2] / locked[2:]
    stored.chmod(0o644)
    stored.write_bytes(payload)
    stored.chmod(0o444)  # as DVC leaves its objects

    def pull_afresh() -> subprocess.CompletedProcess[str]:
        model.unlink(missing_ok=True)
        shutil.rmtree(repo / ".dvc/cache")
        return dvc(repo, "pull", "models/model.joblib")

    pulled = pull_afresh()
    assert pulled.returncode == 0, pulled.stderr
    assert md5(model) == hashlib.md5(payload).hexdigest()  # DVC trusted the remote
    # The other outputs are out of the emptied cache; the model's stage is "up to date".
    assert "train" not in json.loads(dvc(repo, "status", "--json").stdout)
    rerun = dvc(repo, "repro", "--force", "--single-item", "evaluate")
    assert rerun.returncode != 0
    refusal = (
        f"error: model models/model.joblib has md5 {hashlib.md5(payload).hexdigest()} "
        f"but dvc.lock records {locked}: refusing to load it"
    )
    assert refusal in rerun.stderr.splitlines(), rerun.stderr
    assert not marker.exists()

    assert dvc(repo, "remote", "modify", "--local", "store", "verify", "true").returncode == 0
    verified = pull_afresh()
    assert verified.returncode != 0
    assert not model.exists()
    assert not marker.exists()


def test_a_params_change_reruns_training_and_changes_the_model(fresh_clone: Callable[[], Path]) -> None:
    """Also what the md5-before-unpickle check inside `dvc repro` rests on: evaluate and export
    load the new model only if DVC recorded its md5 in dvc.lock when train finished, before they
    ran (DVC writes the lock stage by stage)."""
    repo = fresh_clone()
    assert dvc(repo, "repro").returncode == 0
    before = md5(repo / "models/model.joblib")
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("C: 1.0", "C: 0.1"))
    proc = dvc(repo, "repro")
    assert proc.returncode == 0, proc.stderr
    assert "Running stage 'train'" in proc.stdout
    assert "Running stage 'evaluate'" in proc.stdout
    assert "Running stage 'export'" in proc.stdout
    assert "Running stage 'prepare'" not in proc.stdout
    # Each stage's summary, as `dvc repro` shows it.
    assert "train: fitted sklearn.linear_model.LogisticRegression on 455 rows, 30 features" in proc.stdout
    assert "evaluate: on 114 test rows: accuracy " in proc.stdout
    assert "export: serves the ONNX graph: converted by skl2onnx" in proc.stdout
    assert "export: done in " in proc.stdout
    after = md5(repo / "models/model.joblib")
    assert after != before
    assert locked(repo / "dvc.lock")["models/model.joblib"] == after
    serving = json.loads((repo / "models/serving.json").read_text())
    assert serving["model"]["md5"] == after  # export loaded the new model, not a refusal


def test_dvc_exp_run_switches_the_estimator_class_as_the_readme_shows(
    fresh_clone: Callable[[], Path],
) -> None:
    """The README's line, also right after a failed experiment left params.yaml changed."""
    repo = fresh_clone()
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], cwd=repo, check=True)
    readme_line = [
        "-S",
        "train.estimator.class=sklearn.ensemble.RandomForestClassifier",
        "-S",
        "++train.estimator.params=null",
    ]
    failed = dvc(repo, "exp", "run", *readme_line, "-S", "++train.estimator.params={n_estimators: 0}")
    assert failed.returncode != 0
    proc = dvc(repo, "exp", "run", *readme_line, "-S", "++train.estimator.params={n_estimators: 11}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["train"]["estimator"] == {
        "class": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 11},
    }
    meta = yaml.safe_load((repo / "models/metadata.json").read_text())
    assert meta["estimator"]["class"] == "sklearn.ensemble.RandomForestClassifier"
    assert yaml.safe_load((repo / "models/serving.json").read_text())["gate"]["passed"] is True
