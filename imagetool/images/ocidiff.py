"""Read OCI image tarballs and explain, layer by layer and file by file, how two builds differ.

Used by ``imagetool.images.image verify`` when a rebuild does not reproduce the locked digest: the
report says which layers differ and, inside them, which files differ and how (content, mode,
owner, mtime, type, link target), then hands content differences to diffoscope when installed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from imagetool.common import ToolError, rel


@dataclass(frozen=True)
class Entry:
    """One file of a layer, as far as a build can make it differ."""

    type: str
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    mtime: int
    size: int
    sha256: str
    linkname: str


@dataclass
class FileDiff:
    path: str
    how: list[str]
    detail: list[str] = field(default_factory=list)

    def line(self) -> str:
        extra = f" ({'; '.join(self.detail)})" if self.detail else ""
        return f"{self.path}: {', '.join(self.how)}{extra}"


@dataclass
class OciImage:
    path: Path
    digest: str
    manifest: dict[str, Any]
    config: dict[str, Any]
    manifest_size: int = 0  # bytes of the manifest: an image index's descriptor records them

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.manifest["layers"])


def _blob_name(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    return f"blobs/{algo}/{hexd}"


def _read_member(tf: tarfile.TarFile, name: str) -> bytes:
    for candidate in (name, "./" + name):
        try:
            f = tf.extractfile(candidate)
        except KeyError:
            continue
        if f is not None:
            return f.read()
    raise KeyError(name)


def open_oci(path: Path) -> OciImage:
    """Manifest digest, manifest and config of a single-platform OCI image tarball."""
    try:
        with tarfile.open(path) as tf:
            index = json.loads(_read_member(tf, "index.json"))
            desc = index["manifests"][0]
            manifest_bytes = _read_member(tf, _blob_name(desc["digest"]))
            manifest = json.loads(manifest_bytes)
            config = json.loads(_read_member(tf, _blob_name(manifest["config"]["digest"])))
    except (OSError, KeyError, IndexError, tarfile.TarError, json.JSONDecodeError) as e:
        raise ToolError(f"{rel(path)}: not a readable OCI image tarball ({e})") from None
    digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    if digest != desc["digest"]:
        raise ToolError(f"{rel(path)}: manifest does not match its digest {desc['digest']}")
    return OciImage(path, digest, manifest, config, len(manifest_bytes))


def layer_bytes(image: OciImage, index: int) -> bytes:
    """The uncompressed tar stream of one layer."""
    layer = image.layers[index]
    with tarfile.open(image.path) as tf:
        blob = _read_member(tf, _blob_name(layer["digest"]))
    media = layer["mediaType"]
    if media.endswith("+gzip"):
        return gzip.decompress(blob)
    if media.endswith("+zstd"):
        if shutil.which("zstd") is None:
            raise ToolError(
                "zstd: not installed (it reads zstd layers); `python -m imagetool engine host-tools`"
            )
        return subprocess.run(["zstd", "-dcq"], input=blob, capture_output=True, check=True).stdout
    return blob


def uncompressed_size(image: OciImage) -> int:
    return sum(len(layer_bytes(image, i)) for i in range(len(image.layers)))


def _kind(m: tarfile.TarInfo) -> str:
    if m.isreg():
        return "file"
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    return "special"


def read_entries(layer_tar: bytes) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    with tarfile.open(fileobj=io.BytesIO(layer_tar)) as tf:
        for m in tf:
            digest = ""
            if m.isreg():
                f: IO[bytes] | None = tf.extractfile(m)
                digest = hashlib.sha256(f.read() if f else b"").hexdigest()
            name = m.name.lstrip("./").rstrip("/") or "/"
            out[name] = Entry(
                _kind(m), m.mode, m.uid, m.gid, m.uname, m.gname, int(m.mtime), m.size, digest, m.linkname
            )
    return out


def compare_entries(a: dict[str, Entry], b: dict[str, Entry]) -> list[FileDiff]:
    """How the files of two layers differ; ``a`` is the reference."""
    diffs: list[FileDiff] = []
    for path in sorted(a.keys() | b.keys()):
        ea, eb = a.get(path), b.get(path)
        if ea == eb:
            continue
        if ea is None:
            diffs.append(FileDiff(path, ["added"]))
            continue
        if eb is None:
            diffs.append(FileDiff(path, ["removed"]))
            continue
        d = FileDiff(path, [])
        if ea.type != eb.type:
            d.how.append("type")
            d.detail.append(f"{ea.type} -> {eb.type}")
        if ea.sha256 != eb.sha256 or ea.size != eb.size:
            d.how.append("content")
            d.detail.append(f"{ea.size} -> {eb.size} bytes")
        if ea.mode != eb.mode:
            d.how.append("mode")
            d.detail.append(f"{ea.mode:04o} -> {eb.mode:04o}")
        if (ea.uid, ea.gid, ea.uname, ea.gname) != (eb.uid, eb.gid, eb.uname, eb.gname):
            d.how.append("owner")
            d.detail.append(f"{ea.uid}:{ea.gid} -> {eb.uid}:{eb.gid}")
        if ea.mtime != eb.mtime:
            d.how.append("mtime")
            d.detail.append(f"{ea.mtime} -> {eb.mtime}")
        if ea.linkname != eb.linkname:
            d.how.append("link")
            d.detail.append(f"{ea.linkname} -> {eb.linkname}")
        diffs.append(d)
    return diffs


def compare_configs(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two image configs (history, labels, env ...)."""
    out: list[str] = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(a.keys() | b.keys()):
            out += compare_configs(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += compare_configs(x, y, f"{prefix}[{i}]")
    elif a != b:
        out.append(f"{prefix}: {json.dumps(a)[:120]} -> {json.dumps(b)[:120]}")
    return out


def layer_label(config: dict[str, Any], index: int) -> str:
    """The Dockerfile instruction that made layer ``index`` (history minus empty layers)."""
    made = [h for h in config.get("history", []) if not h.get("empty_layer")]
    return made[index].get("created_by", "?") if index < len(made) else "?"


def _diffoscope(a: bytes, b: bytes, name: str, workdir: Path, limit: int = 4000) -> list[str]:
    if shutil.which("diffoscope") is None:
        return ["    (install diffoscope for a content diff: `python -m imagetool engine host-tools`)"]
    workdir.mkdir(parents=True, exist_ok=True)
    base = name.replace("/", "_")
    fa, fb = workdir / f"a_{base}", workdir / f"b_{base}"
    fa.write_bytes(a)
    fb.write_bytes(b)
    try:
        proc = subprocess.run(
            ["diffoscope", "--text", "-", "--no-progress", str(fa), str(fb)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        text = proc.stdout[:limit]
    except subprocess.TimeoutExpired:
        text = "(diffoscope timed out)"
    return ["    " + line for line in text.splitlines()]


def _member_bytes(layer_tar: bytes, path: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(layer_tar)) as tf:
        for m in tf:
            if (m.name.lstrip("./").rstrip("/") or "/") == path and m.isreg():
                f = tf.extractfile(m)
                return f.read() if f else b""
    return b""


def iter_explanation(ref: OciImage, new: OciImage, workdir: Path, max_files: int = 40) -> Iterator[str]:
    """Report lines: differing config keys, then per differing layer the files and how."""
    yield f"reference {ref.digest} ({rel(ref.path)})"
    yield f"rebuilt   {new.digest} ({rel(new.path)})"
    for line in compare_configs(ref.config, new.config):
        yield f"  config {line}"
    if len(ref.layers) != len(new.layers):
        yield f"  layer count {len(ref.layers)} -> {len(new.layers)}"
    for i, (la, lb) in enumerate(zip(ref.layers, new.layers, strict=False)):
        if la["digest"] == lb["digest"]:
            continue
        yield f"  layer {i} [{layer_label(new.config, i)}]: {la['digest'][:19]} -> {lb['digest'][:19]}"
        ta, tb = layer_bytes(ref, i), layer_bytes(new, i)
        if ta == tb:
            yield "    same files, different compressed bytes (compressor or compression setting differs)"
            continue
        diffs = compare_entries(read_entries(ta), read_entries(tb))
        if not diffs:
            yield "    same files and metadata, different tar stream (entry order or tar headers)"
        for d in diffs[:max_files]:
            yield f"    {d.line()}"
        if len(diffs) > max_files:
            yield f"    ... and {len(diffs) - max_files} more"
        for d in [d for d in diffs if "content" in d.how][:3]:
            yield f"    diffoscope {d.path}:"
            yield from _diffoscope(_member_bytes(ta, d.path), _member_bytes(tb, d.path), d.path, workdir)
