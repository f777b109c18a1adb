"""The image's SBOM (CycloneDX 1.6 JSON), made from the locks alone: no clock, no random serial.

    python -m imagetool sbom write    # image/sbom.cdx.json (and image/sbom.arm64.cdx.json) from the locks
    python -m imagetool sbom check    # fail, naming the file, unless it equals what the locks give now

One SBOM per platform (imagetool/platforms.py): each names that platform's manifest digest, its
wheels (the aarch64 files for arm64) and its base's Debian packages; the model is the same.

Components: every wheel the image installs (version, the sha256 of the exact wheel file kept in the
store, purl), every Debian package the image keeps of the base (the runtime closure of
imagetool.minimal_root, read from the locked rootfs; version, architecture, the .deb's sha256, purl) and
the model artifacts (md5 from dvc.lock). The described component is the image itself, by digest.
The serial number is a UUID derived from the content, so the same locks give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

import contract
from imagetool import layout, minimal_root, platforms
from imagetool.common import InputError, ToolError
from imagetool.images import recipe
from imagetool.images.image_lock import LOCK_NAME, ImageLock
from imagetool.inputs import store
from imagetool.inputs.base import BaseLock
from imagetool.inputs.base import load_lock as load_base_lock
from imagetool.inputs.locks import LockError, normalize, parse_lock
from imagetool.platforms import AMD64, Platform

SBOM_FILE = layout.SBOM
STORE_LOCK = store.LOCK_NAME
DEBIAN_DISTRO = "debian-12"
# The model artifacts the image carries, as CycloneDX component types.
MODEL_FILES = {
    contract.ONNX_FILE: ComponentType.MACHINE_LEARNING_MODEL,
    contract.MODEL_FILE: ComponentType.MACHINE_LEARNING_MODEL,
    contract.METADATA_FILE: ComponentType.DATA,
    contract.SERVING_FILE: ComponentType.DATA,
}


class SbomError(InputError):
    """An input is missing or inconsistent; the message names the file."""


@dataclass(frozen=True)
class Inputs:
    """Everything the SBOM is a function of (paths relative to the repository root)."""

    image_digest: str  # the platform's manifest digest in image.lock
    serve_lock: Path
    base_lock: BaseLock
    store_files: dict[str, dict[str, Any]]
    dvc_outs: dict[str, str]
    runtime_packages: frozenset[str]  # the base packages the image keeps (imagetool.minimal_root)
    base_lock_path: Path  # the platform's base lock, for messages
    store_prefix: str = ""  # where the platform's wheels and .debs sit in the store ("arm64/")


def sbom_file(plat: Platform = AMD64) -> Path:
    return SBOM_FILE.with_name(plat.sbom_name)


def read_json(path: Path, error: type[Exception] = SbomError) -> Any:
    """A JSON file, or ``error`` naming it (the SBOM and provenance writers each raise their own)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise error(f"{path}: cannot read ({exc})") from None


def serve_lock_for(root: Path) -> Path:
    """The serve lock the image installs for the model at `root` (imagetool.images.recipe decides it)."""
    try:
        return Path(recipe.serve_lock(root))
    except ToolError as exc:
        raise SbomError(str(exc)) from None


def runtime_packages(rootfs: Path, base_lock: BaseLock) -> frozenset[str]:
    """The packages the image's runtime root keeps: minimal_root's closure over the base's own
    dpkg database, read from the locked rootfs tarball (checked against the base lock's sha256)."""
    expected = base_lock.tarball_sha256
    try:
        digest = hashlib.sha256()
        with rootfs.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            raise SbomError(f"{rootfs}: sha256 {digest.hexdigest()} is not the base lock's {expected}")
        with tarfile.open(rootfs) as tar:
            member = tar.extractfile("./var/lib/dpkg/status") or tar.extractfile("var/lib/dpkg/status")
            status = member.read().decode() if member else ""
    except (OSError, KeyError, tarfile.TarError) as exc:
        raise SbomError(f"{rootfs}: cannot read the base's dpkg status ({exc}); run `make base`") from None
    names = minimal_root.RUNTIME_PACKAGES
    roots = [n for n in names if not n.startswith("-")]
    drop = frozenset(n[1:] for n in names if n.startswith("-"))
    try:
        return frozenset(minimal_root.closure(roots, minimal_root.parse_status(status), drop))
    except SystemExit as exc:
        raise SbomError(f"{rootfs}: {exc}") from None


def read_inputs(root: Path = Path(), plat: Platform = AMD64) -> Inputs:
    """The locks, from the tree at `root`, for one platform."""
    try:
        dvc_outs = contract.locked_outs(contract.load_dvc_lock(root / contract.DVC_LOCK_FILE))
    except contract.ContractError as exc:
        raise SbomError(str(exc)) from None
    base_lock_path = plat.base_lock(Path())
    try:
        base_lock = load_base_lock(plat, root)
        store_files = store.StoreLock.read(root / STORE_LOCK).files
    except (InputError, ToolError) as exc:  # an SBOM error, naming the file, as for the other locks
        raise SbomError(str(exc)) from None
    return Inputs(
        image_digest=ImageLock.read(root / LOCK_NAME).record(plat)["digest"],
        serve_lock=root / serve_lock_for(root),
        base_lock=base_lock,
        store_files=store_files,
        dvc_outs=dvc_outs,
        runtime_packages=runtime_packages(root / plat.rootfs(Path("build")), base_lock),
        store_prefix=plat.store_prefix,
        base_lock_path=base_lock_path,
    )


def _sha256(hexdigest: str) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)]


def wheel_components(inputs: Inputs) -> list[Component]:
    """One library per locked wheel, hashed by the exact file the store keeps for it."""
    try:
        reqs = parse_lock(inputs.serve_lock)
    except (OSError, LockError) as exc:
        raise SbomError(f"{inputs.serve_lock}: {exc}") from None
    stored: dict[tuple[str, str], list[tuple[str, str]]] = {}
    folder = f"{inputs.store_prefix}wheels/"
    for name, entry in inputs.store_files.items():
        if name.startswith(folder) and name.endswith(".whl"):
            parts = name.removeprefix(folder).split("-")
            stored.setdefault((normalize(parts[0]), parts[1]), []).append((name, entry["sha256"]))
    components = []
    for req in sorted(reqs.values(), key=lambda r: r.name):
        files = [(n, h) for n, h in stored.get((req.name, req.version), []) if h in req.hashes]
        if len(files) != 1:
            raise SbomError(
                f"{STORE_LOCK}: expected one stored wheel of {req.name}=={req.version} with a hash "
                f"from {inputs.serve_lock.name}, found {len(files)}"
            )
        [(filename, digest)] = files
        purl = PackageURL(type="pypi", name=req.name, version=req.version)
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=req.name,
                version=req.version,
                purl=purl,
                bom_ref=purl.to_string(),
                hashes=_sha256(digest),
                properties=[Property(name="lockstep:file", value=filename.removeprefix(folder))],
            )
        )
    return components


def debian_components(inputs: Inputs) -> list[Component]:
    """One library per Debian package the image keeps of the base, with its architecture and .deb hash."""
    folder = f"{inputs.store_prefix}base/debs/"
    debs = {
        name.removeprefix(folder).split("_")[0]: (name, entry["sha256"])
        for name, entry in inputs.store_files.items()
        if name.startswith(folder) and name.endswith(".deb")
    }
    components = []
    for package, version in sorted(inputs.base_lock.packages.items()):
        if package not in inputs.runtime_packages:
            continue  # in the base the image is built from, not in the image
        if package not in debs:
            raise SbomError(f"{STORE_LOCK}: no stored .deb for {package} {version} ({inputs.base_lock_path})")
        filename, digest = debs[package]
        arch = filename.rsplit("_", 1)[-1].removesuffix(".deb")
        purl = PackageURL(
            type="deb",
            namespace="debian",
            name=package,
            version=version,
            qualifiers={"arch": arch, "distro": DEBIAN_DISTRO},
        )
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=package,
                version=version,
                purl=purl,
                bom_ref=purl.to_string(),
                hashes=_sha256(digest),
            )
        )
    return components


def model_components(inputs: Inputs) -> list[Component]:
    """The model artifacts the image carries, with the md5 dvc.lock records."""
    components = []
    for path, kind in MODEL_FILES.items():
        md5 = inputs.dvc_outs.get(str(path))
        if md5 is None:
            continue  # e.g. no ONNX graph in an older pipeline
        components.append(
            Component(
                type=kind,
                name=str(path),
                version=md5,
                bom_ref=f"model:{path}",
                hashes=[HashType(alg=HashAlgorithm.MD5, content=md5)],
            )
        )
    if not components:
        raise SbomError(f"{contract.DVC_LOCK_FILE}: records none of {', '.join(map(str, MODEL_FILES))}")
    return components


def build(inputs: Inputs) -> str:
    """The SBOM document as JSON text (validated against the CycloneDX 1.6 schema)."""
    digest = inputs.image_digest
    image = Component(
        type=ComponentType.CONTAINER,
        name="lockstep",
        version=digest,
        purl=PackageURL(type="oci", name="lockstep", version=digest),
        bom_ref="image",
        hashes=_sha256(digest.removeprefix("sha256:")),
    )
    components = [*wheel_components(inputs), *debian_components(inputs), *model_components(inputs)]
    # The serial is a function of the content: a random one would change the file on every run.
    seed = "\n".join([digest, *(c.bom_ref.value or "" for c in components)])
    for c in components:
        seed += "".join(h.content for h in c.hashes)
    bom = Bom(
        serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"lockstep-sbom:{seed}"),
        metadata=BomMetaData(component=image),
        components=components,
    )
    bom.register_dependency(image, components)  # the image contains every one of them
    bom.metadata.timestamp = None  # type: ignore[assignment]  # no clock: same locks, same bytes
    text = JsonV1Dot6(bom).output_as_string(indent=2) + "\n"
    problem = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if problem is not None:
        raise SbomError(f"generated SBOM fails the CycloneDX 1.6 schema: {problem}")
    return text


def write_or_check(verb: str) -> int:
    """`python -m imagetool sbom write|check`: every platform's SBOM from the locks, written, or
    compared with the committed file (1 when it differs)."""
    for plat in platforms.ALL:
        path = sbom_file(plat)
        try:
            text = build(read_inputs(Path(), plat))
        except SbomError as exc:
            raise SbomError(f"{plat.name}: {exc}") from None
        if verb == "write":
            path.write_text(text)
            print(f"sbom: wrote {path} ({plat.name})")
        elif not path.exists() or path.read_text() != text:
            print(f"error: {path} does not match the locks; run `make sbom` and commit it", file=sys.stderr)
            return 1
    return 0
