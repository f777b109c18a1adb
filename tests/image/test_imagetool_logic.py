"""imagetool's pure logic: lock parsing, source discovery, and the non-determinism report."""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from imagetool import aptsources, base, image, ocidiff, platforms, recipe, wheels
from imagetool.common import ToolError
from imagetool.locks import Requirement

ROOT = Path(__file__).resolve().parents[2]

# --- apt sources ---------------------------------------------------------------------------------

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_deb822_sources_are_split_per_suite_and_skip_deb_src() -> None:
    got = aptsources.parse_deb822(DEB822)
    assert [(s.uri, s.suite) for s in got] == [
        ("http://mirror.example/debian", "bookworm"),
        ("http://mirror.example/debian", "bookworm-updates"),
        ("http://mirror.example/debian-security", "bookworm-security"),
    ]
    assert got[0].options == ("signed-by=/usr/share/keyrings/debian-archive-keyring.gpg",)


def test_one_line_sources_keep_options_and_ignore_comments() -> None:
    text = (
        "# deb http://old bookworm main\n"
        "deb [arch=amd64 trusted=yes] http://m.example/debian/ bookworm main\n"
    )
    (src,) = aptsources.parse_one_line(text)
    assert src == aptsources.Source(
        "http://m.example/debian", "bookworm", ("main",), ("arch=amd64", "trusted=yes")
    )
    assert src.line() == "deb [arch=amd64 trusted=yes] http://m.example/debian bookworm main"


def test_sources_for_suite_picks_updates_and_security_with_wanted_components() -> None:
    picked = aptsources.sources_for_suite(aptsources.parse_deb822(DEB822), "bookworm", ["main"])
    assert [s.suite for s in picked] == ["bookworm", "bookworm-updates", "bookworm-security"]
    assert all(s.components == ("main",) for s in picked)


def test_sources_for_suite_without_the_suite_is_an_error() -> None:
    with pytest.raises(LookupError, match="trixie"):
        aptsources.sources_for_suite(aptsources.parse_deb822(DEB822), "trixie", ["main"])


# --- base lock -----------------------------------------------------------------------------------

STATUS = """\
Package: bash
Status: install ok installed
Version: 5.2.15-2+b7

Package: gone
Status: deinstall ok config-files
Version: 1.0

Package: python3
Status: install ok installed
Version: 3.11.2-1+b1
Description: multi
 line
"""


def test_dpkg_status_lists_only_installed_packages() -> None:
    assert base.parse_dpkg_status(STATUS) == {"bash": "5.2.15-2+b7", "python3": "3.11.2-1+b1"}


def test_package_changes_name_every_moved_package() -> None:
    locked = {"bash": "1", "libssl3": "3.0.1", "old": "2"}
    now = {"bash": "1", "libssl3": "3.0.2", "new": "7"}
    assert base.package_changes(locked, now) == [
        "  ~ libssl3 3.0.1 -> 3.0.2",
        "  + new 7 (new)",
        "  - old 2 (gone)",
    ]


def test_committed_base_lock_is_valid_and_matches_its_definition() -> None:
    lock = base.validate_lock(json.loads((ROOT / "image/base.lock.json").read_text()))
    assert lock["definition_sha256"] == base.definition_sha256(base.load_definition())
    assert "python3" in lock["packages"]
    assert not {"gcc", "cpp", "perl", "apt", "python3-pip", "locales"} & set(lock["packages"])


def test_edited_base_lock_is_rejected_naming_the_file() -> None:
    lock = json.loads((ROOT / "image/base.lock.json").read_text())
    lock["tarball"]["sha256"] = "not-a-hash"
    with pytest.raises(ToolError, match=r"base\.lock\.json: tarball\.sha256"):
        base.validate_lock(lock)


def test_base_definition_hash_ignores_comments_and_key_order(tmp_path: Path) -> None:
    text = (ROOT / "image/base.toml").read_text()
    a = tmp_path / "a.toml"
    a.write_text("# another comment\n" + text)
    assert base.definition_sha256(base.load_definition(a)) == base.definition_sha256(base.load_definition())


def test_base_definition_with_unknown_key_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "b.toml"
    p.write_text((ROOT / "image/base.toml").read_text() + 'surprise = "x"\n')
    with pytest.raises(ToolError, match="unknown keys"):
        base.load_definition(p)


# --- wheels --------------------------------------------------------------------------------------

H1, H2 = "a" * 64, "b" * 64
LOCK_TEXT = f"""\
#
# pip-compile header
#
Foo_Bar==1.2 \\
    --hash=sha256:{H1} \\
    --hash=sha256:{H2}
    # via -r requirements.in
numpy==2.0 ; python_version >= "3.9" \\
    --hash=sha256:{H1}
"""


def test_requirements_lock_parses_names_versions_and_hashes() -> None:
    reqs = wheels.parse_requirements(LOCK_TEXT)
    assert reqs[0] == Requirement("foo-bar", "1.2", frozenset({H1, H2}))
    assert reqs[1].name == "numpy"
    assert reqs[1].version == "2.0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo>=1 \\\n    --hash=sha256:" + H1, "not pinned"),
        ("foo==1\n", "no --hash"),
        ("-e .\n", "option line"),
    ],
)
def test_unlocked_requirements_are_rejected(text: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        wheels.parse_requirements(text, "requirements.txt")


def test_committed_locks_parse() -> None:
    names = {r.name for r in wheels.load_locks()}
    assert {"numpy", "onnxruntime", "uvicorn", "fastapi", "pip", "scikit-learn"} <= names
    onnx_path = {r.name for r in wheels.load_locks(names=("requirements/serve.txt",))}
    assert not {"scikit-learn", "scipy", "joblib", "pandas"} & onnx_path  # only the exact path needs them


def test_wheel_check_names_wrong_hash_missing_and_stale_files(tmp_path: Path) -> None:
    good = tmp_path / "foo_bar-1.2-py3-none-any.whl"
    good.write_bytes(b"good")
    bad = tmp_path / "numpy-2.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    bad.write_bytes(b"tampered")
    stale = tmp_path / "old-0.1-py3-none-any.whl"
    stale.write_bytes(b"x")
    good_hash = hashlib.sha256(b"good").hexdigest()
    reqs = [
        Requirement("foo-bar", "1.2", frozenset({good_hash})),
        Requirement("numpy", "2.0", frozenset({H1})),
        Requirement("scipy", "1.0", frozenset({H1})),
    ]
    problems = wheels.check_wheels(reqs, tmp_path)
    text = "\n".join(problems)
    assert bad.name in text
    assert "not one of the hashes locked" in text
    assert stale.name in text
    assert "stale" in text
    assert "no wheel for scipy==1.0" in text
    assert good.name not in text


# --- image inputs and lock -----------------------------------------------------------------------


def test_preflight_reads_dvc_lock_through_the_contract(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text("stages: [not, a, mapping]\n")
    with pytest.raises(ToolError, match=r"dvc.lock has no 'stages' mapping"):
        image.model_md5_problems(tmp_path)


def _inputs(**over: object) -> dict[str, object]:
    sources = {"api/a.py": "1" * 64, "Dockerfile": "2" * 64}
    d: dict[str, object] = {
        "base_lock_sha256": "b" * 64,
        "requirements_sha256": "r" * 64,
        "model_md5": "m" * 32,
        "sources": sources,
        "source_tree_sha256": image.tree_sha256(sources),
        "source_date_epoch": 1,
        "platform": "linux/amd64",
        "compression": "zstd",
    }
    d.update(over)
    return d


def test_input_differences_explain_what_moved() -> None:
    locked = _inputs()
    new_sources = {"api/a.py": "9" * 64, "Dockerfile": "2" * 64, "api/b.py": "3" * 64}
    now = _inputs(
        model_md5="n" * 32,
        sources=new_sources,
        source_tree_sha256=image.tree_sha256(new_sources),
    )
    diffs = "\n".join(image.input_differences(locked, now))
    assert "a changed model" in diffs
    assert "api/a.py (changed)" in diffs
    assert "api/b.py (added)" in diffs
    assert "base" not in diffs


def test_equal_inputs_have_no_differences() -> None:
    assert image.input_differences(_inputs(), _inputs()) == []


def test_builder_is_not_an_input_of_the_digest() -> None:
    assert "builder" not in image.INPUT_MEANING
    assert "builder" not in image.current_inputs()


def test_final_stage_has_nothing_builders_render_differently() -> None:
    """ARG, LABEL and EXPOSE in the final stage put builder-specific text into the config's history."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    final = dockerfile[dockerfile.rindex("\nFROM ") :]
    instructions = {ln.split()[0] for ln in final.splitlines() if ln and not ln.startswith((" ", "#"))}
    assert not instructions & {"ARG", "LABEL", "EXPOSE"}


def test_committed_image_lock_is_well_formed() -> None:
    lock = image.validate_image_lock(json.loads((ROOT / "image.lock").read_text()))
    assert (
        lock["inputs"]["source_date_epoch"]
        == json.loads((ROOT / "image/base.lock.json").read_text())["source_date_epoch"]
    )


def test_image_lock_inputs_match_the_tree() -> None:
    lock = json.loads((ROOT / "image.lock").read_text())
    diffs = image.input_differences(lock["inputs"], image.current_inputs())
    assert diffs == [], "image.lock is stale; run `make lock-image`"


def test_dockerignore_is_an_allow_list_of_the_image_inputs() -> None:
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln[1:] for ln in lines if ln.startswith("!")}
    assert allowed == {
        "api",
        "contract",
        "imagetool/minimal_root.py",
        *recipe.MODEL_CONTEXT,
        "dvc.lock",
        "requirements/serve*.txt",  # recipe.SERVE_LOCKS: the Dockerfile picks recipe.SERVE_LOCK
        # every platform's base and wheels (imagetool/platforms.py), and nothing else of build/
        *(p.rootfs().relative_to(ROOT).as_posix() for p in platforms.ALL),
        *(f"{p.wheels().relative_to(ROOT).as_posix()}/*.whl" for p in platforms.ALL),
    }
    assert all(fnmatch.fnmatch(lock, "requirements/serve*.txt") for lock in recipe.SERVE_LOCKS)


def test_source_files_skip_bytecode_and_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "api/__pycache__").mkdir(parents=True)
    (tmp_path / "api/__pycache__/x.cpython-311.pyc").write_bytes(b"")
    (tmp_path / "api/x.py").write_text("")
    (tmp_path / "api/.swp").write_text("")
    assert image._context_files(tmp_path, "api") == ["api/x.py"]


# --- OCI diff ------------------------------------------------------------------------------------


def _entry(**over: object) -> ocidiff.Entry:
    d: dict[str, object] = {
        "type": "file",
        "mode": 0o644,
        "uid": 0,
        "gid": 0,
        "uname": "",
        "gname": "",
        "mtime": 1,
        "size": 3,
        "sha256": "h",
        "linkname": "",
    }
    d.update(over)
    return ocidiff.Entry(**d)  # type: ignore[arg-type]


def test_compare_entries_says_how_each_file_differs() -> None:
    a = {"same": _entry(), "content": _entry(), "meta": _entry(), "gone": _entry()}
    b = {
        "same": _entry(),
        "content": _entry(sha256="x", size=4),
        "meta": _entry(mode=0o600, uid=10001, mtime=99),
        "new": _entry(),
    }
    got = {d.path: d.how for d in ocidiff.compare_entries(a, b)}
    assert got == {
        "content": ["content"],
        "meta": ["mode", "owner", "mtime"],
        "gone": ["removed"],
        "new": ["added"],
    }


def test_compare_configs_reports_dotted_keys() -> None:
    a = {"config": {"Labels": {"x": "1"}, "Env": ["A=1"]}, "history": [{"created": "t0"}]}
    b = {"config": {"Labels": {"x": "2"}, "Env": ["A=1"]}, "history": [{"created": "t1"}]}
    got = ocidiff.compare_configs(a, b)
    assert got == ['config.Labels.x: "1" -> "2"', 'history[0].created: "t0" -> "t1"']


def _layer(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, (data, mtime) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _oci(path: Path, layers: list[bytes]) -> Path:
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> str:
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return d

    descs = []
    for raw in layers:
        gz = gzip.compress(raw, mtime=0)
        descs.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": add(gz), "size": len(gz)}
        )
    config = json.dumps({"config": {}, "history": [{"created_by": f"STEP {i}"} for i in range(len(layers))]})
    cdig = add(config.encode())
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": cdig}, "layers": descs}).encode()
    mdig = add(manifest)
    index = json.dumps({"manifests": [{"digest": mdig}]}).encode()
    with tarfile.open(path, "w") as tf:
        for name, data in [("index.json", index)] + [(f"blobs/sha256/{d[7:]}", b) for d, b in blobs.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_explanation_names_the_layer_and_the_files_that_differ(tmp_path: Path) -> None:
    shared = _layer({"etc/os-release": (b"debian", 1)})
    ref = ocidiff.open_oci(_oci(tmp_path / "a.tar", [shared, _layer({"app/m.py": (b"x = 1", 1)})]))
    new = ocidiff.open_oci(_oci(tmp_path / "b.tar", [shared, _layer({"app/m.py": (b"x = 1", 2)})]))
    report = "\n".join(ocidiff.iter_explanation(ref, new, tmp_path / "work"))
    assert "layer 0" not in report
    assert "layer 1 [STEP 1]" in report
    assert "app/m.py: mtime (1 -> 2)" in report


def test_unreadable_oci_tarball_is_named(tmp_path: Path) -> None:
    p = tmp_path / "broken.tar"
    p.write_bytes(b"not a tar")
    with pytest.raises(ToolError, match=r"broken\.tar"):
        ocidiff.open_oci(p)


def test_make_image_says_whether_its_digest_is_the_locked_one(tmp_path: Path) -> None:
    locked = json.loads((ROOT / "image.lock").read_text())["digest"]
    assert image.compare_with_lock(locked).startswith("image: digest equals")
    other = "sha256:" + "0" * 64
    assert f"differs from image.lock ({locked})" in image.compare_with_lock(other)
    bad = tmp_path / "image.lock"
    bad.write_text("{")
    assert "cannot compare" in image.compare_with_lock(locked, bad)


def test_serving_plan_must_name_the_shipped_model_and_graph(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models/model.joblib").write_bytes(b"pickle bytes")
    (tmp_path / "models/model.onnx").write_bytes(b"graph bytes")
    md5 = hashlib.md5(b"pickle bytes").hexdigest()
    graph = hashlib.md5(b"graph bytes").hexdigest()
    serving = tmp_path / "models/serving.json"
    serving.write_text(json.dumps({"model": {"md5": md5}, "onnx": {"md5": graph}}))
    assert image.export_problems(tmp_path) == []
    serving.write_text(json.dumps({"model": {"md5": "0" * 32}, "onnx": {"md5": graph}}))
    [problem] = image.export_problems(tmp_path)
    assert f"made from a model with md5 {'0' * 32}, not from models/model.joblib ({md5})" in problem
    serving.write_text(json.dumps({"model": {"md5": md5}, "onnx": {"md5": "1" * 32}}))
    [problem] = image.export_problems(tmp_path)
    assert f"names a graph with md5 {'1' * 32}, not models/model.onnx ({graph})" in problem
    serving.write_text("[1, 2")
    assert "not a serving plan" in image.export_problems(tmp_path)[0]


@pytest.mark.parametrize(
    ("path", "estimator", "lock", "ships", "leaves_out"),
    [
        ("onnx", "sklearn.svm.SVC", "requirements/serve.txt", "models/model.onnx", "models/model.joblib"),
        (
            "onnx",
            "xgboost.XGBClassifier",
            "requirements/serve.txt",
            "models/model.onnx",
            "models/model.joblib",
        ),
        (
            "sklearn",
            "sklearn.svm.SVC",
            "requirements/serve-sklearn.txt",
            "models/model.joblib",
            "models/model.onnx",
        ),
        (
            "sklearn",
            "xgboost.XGBClassifier",
            "requirements/serve-xgboost.txt",
            "models/model.joblib",
            "models/model.onnx",
        ),
        (
            "sklearn",
            "lightgbm.LGBMRegressor",
            "requirements/serve-lightgbm.txt",
            "models/model.joblib",
            "models/model.onnx",
        ),
    ],
)
def test_recipe_follows_the_serving_path_and_the_models_library(
    tmp_path: Path, path: str, estimator: str, lock: str, ships: str, leaves_out: str
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models/serving.json").write_text(json.dumps({"path": path}))
    (tmp_path / "models/metadata.json").write_text(json.dumps({"estimator": {"class": estimator}}))
    assert recipe.serve_lock(tmp_path) == lock
    files = recipe.model_files(tmp_path)
    assert ships in files
    assert leaves_out not in files
    assert {"models/serving.json", "models/metadata.json"} <= files.keys()


def test_recipe_refuses_an_unknown_serving_path(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models/serving.json").write_text(json.dumps({"path": "tensorflow"}))
    with pytest.raises(ToolError, match="path 'tensorflow' is not one of"):
        recipe.serve_lock(tmp_path)
