"""`imagetool.images.ocidiff`: how two OCI images differ, file by file."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from harness import REPO_ROOT
from imagetool.common import ToolError
from imagetool.images import ocidiff

ROOT = REPO_ROOT


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
