"""Push the built image to a registry by digest, byte for byte, and attach the SBOM to it.

    python -m imagetool registry push HOST:PORT[/PREFIX] [--tag latest] [--sbom image/sbom.cdx.json]
    python -m imagetool registry referrers HOST:PORT[/PREFIX] [DIGEST]
    python -m imagetool registry reference HOST:PORT[/PREFIX]    # REGISTRY/lockstep@<image.lock's digest>

`push` uploads the blobs and the manifest of `build/image/lockstep.oci.tar` exactly as BuildKit
wrote them (the compressed layers that `make verify` proved are the ones uploaded: nothing is
recompressed or re-serialised), after checking that the tarball holds image.lock's digest, and then
checks that the registry serves the manifest under that same digest. With `--sbom`, the CycloneDX
document goes up as an OCI artifact whose `subject` is the image manifest: the image's digest does
not change. Registries with the OCI 1.1 referrers API index it by `subject`; for the others (the
reference registry 2.8) the referrers tag schema is kept up to date too: tag `sha256-<hex>` is an
image index listing the artifacts that refer to the image.

REGISTRY is `HOST:PORT[/PREFIX]`, or `NAME.DOMAIN[/PREFIX]` for a registry on HTTPS's port
(`ghcr.io/owner/repo`). Plain HTTP is used for loopback registries only; anything else is HTTPS.
A registry that asks for credentials gets them from REGISTRY_USERNAME/REGISTRY_PASSWORD or docker's
`config.json` (imagetool/ship/registry_client.py: Basic and the Bearer token flow), never from the
command line, and they go to the registry's own origin and its token realm only. Answers are
size-limited and the whole run has a deadline (`--deadline`); a malformed answer is one line and exit 2.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin

from imagetool import layout, platforms
from imagetool.images.image_lock import LOCK_NAME, ImageLock
from imagetool.ship.registry_client import (
    DEADLINE,
    CredentialLookup,
    Credentials,
    RegistryError,
    Reply,
    Session,
    base_of,
    find_credentials,
    parse_json,
)

__all__ = ["Credentials", "Registry", "RegistryError", "Reply"]

OCI_TAR = Path("build/image/lockstep.oci.tar")
SBOM_FILE = layout.SBOM
REPOSITORY = "lockstep"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SBOM_TYPE = "application/vnd.cyclonedx+json"
# The OCI 1.1 "empty" config of artifacts that have no configuration: the two bytes `{}`.
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
_MANIFEST_ACCEPT = ", ".join(
    [OCI_MANIFEST, OCI_INDEX, "application/vnd.docker.distribution.manifest.v2+json"]
)
# A port, or a dotted name (HTTPS's port): `localhost/x` or `lockstep/x` would be a repository, not a host.
_REGISTRY = re.compile(
    r"(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(:(?P<port>\d{1,5}))?(?P<prefix>(/[a-z0-9._-]+)*)"
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MAX_BLOB = 512 * 1024 * 1024  # what fetch_blob reads into memory at most


@dataclass(frozen=True)
class Registry:
    """One repository in one registry: `host[:port][/prefix]` plus the image's repository name, and
    the session that talks to it (with credentials, if any)."""

    host: str
    prefix: str
    repository: str = REPOSITORY
    session: Session | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.session is None:  # anonymous until given credentials (Registry.parse)
            object.__setattr__(self, "session", Session(self.host))

    @classmethod
    def parse(
        cls,
        text: str,
        repository: str = REPOSITORY,
        credentials: Credentials | CredentialLookup | None = None,
        deadline: float = DEADLINE,
    ) -> Registry:
        m = _REGISTRY.fullmatch(text)
        port_ok = m is not None and (0 < int(m["port"]) < 65536 if m["port"] else "." in m["host"])
        if not m or not port_ok:
            raise RegistryError(
                f"registry {text!r} is not HOST:PORT[/PREFIX] or NAME.DOMAIN[/PREFIX] "
                "(e.g. 127.0.0.1:5000/team, ghcr.io/owner/repo)"
            )
        host = f"{m['host']}:{m['port']}" if m["port"] else m["host"]
        return cls(host, m["prefix"].lstrip("/"), repository, Session(host, credentials, deadline))

    @property
    def name(self) -> str:
        """The repository path in the registry, e.g. `team/lockstep`."""
        return f"{self.prefix}/{self.repository}" if self.prefix else self.repository

    @property
    def reference(self) -> str:
        """What `docker pull` and compose files name, e.g. `127.0.0.1:5000/team/lockstep`."""
        return f"{self.host}/{self.name}"

    @property
    def base_url(self) -> str:
        return f"{base_of(self.host)}/v2/{self.name}"

    def request(self, method: str, url: str, **options: Any) -> Reply:
        """One exchange through the session (RegistrySession.request: authenticated when challenged)."""
        assert self.session is not None  # __post_init__
        return self.session.request(method, url, **options)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- the OCI tarball ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OciTarball:
    path: Path
    digest: str
    media_type: str
    manifest: bytes  # the exact bytes the digest is the sha256 of

    @property
    def blobs(self) -> list[dict[str, Any]]:
        doc = json.loads(self.manifest)  # open_tarball checked its shape
        return [doc["config"], *doc["layers"]]

    @contextmanager
    def blob(self, digest: str) -> Iterator[IO[bytes]]:
        with tarfile.open(self.path) as tf:
            member = tf.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            if member is None:
                raise RegistryError(f"{self.path}: blob {digest} is not a file")
            yield member


def open_tarball(path: Path = OCI_TAR) -> OciTarball:
    """The single image of an OCI tarball, its manifest digest checked against the manifest bytes."""
    try:
        with tarfile.open(path) as tf:
            index = json.load(_member(tf, "index.json"))
            [desc] = index["manifests"]
            manifest = _member(tf, f"blobs/sha256/{desc['digest'].removeprefix('sha256:')}").read()
            doc = json.loads(manifest)
            for blob in [doc["config"], *doc["layers"]]:
                str(blob["digest"]), int(blob["size"])
    except (OSError, KeyError, ValueError, TypeError, tarfile.TarError) as exc:
        raise RegistryError(f"{path}: not a single-image OCI tarball ({exc}); run `make image`") from None
    if sha256(manifest) != desc["digest"]:
        raise RegistryError(f"{path}: manifest bytes do not hash to {desc['digest']}")
    return OciTarball(path, desc["digest"], desc["mediaType"], manifest)


def _member(tf: tarfile.TarFile, name: str) -> IO[bytes]:
    member = tf.extractfile(name)
    if member is None:
        raise KeyError(name)
    return member


# --- push --------------------------------------------------------------------------------------


def push_blob(reg: Registry, digest: str, size: int, data: IO[bytes] | bytes) -> bool:
    """Upload one blob unless the registry has it (True when uploaded). The registry checks
    the bytes against `digest` itself and refuses the upload if they differ."""
    if reg.request("HEAD", f"{reg.base_url}/blobs/{digest}", ok=(200, 404)).status == 200:
        return False
    start = reg.request("POST", f"{reg.base_url}/blobs/uploads/", ok=(202,))
    location = start.headers.get("location", "")
    if not location:
        raise RegistryError(f"POST {reg.base_url}/blobs/uploads/: HTTP 202 without a Location")
    location = urljoin(reg.base_url, location)  # on another origin, it gets no credentials (Session)
    sep = "&" if "?" in location else "?"
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    reg.request("PUT", f"{location}{sep}digest={digest}", body=data, headers=headers, ok=(201,))
    return True


def put_manifest(reg: Registry, ref: str, media_type: str, body: bytes) -> Reply:
    """PUT a manifest; the registry must answer with the digest of exactly these bytes."""
    reply = reg.request(
        "PUT", f"{reg.base_url}/manifests/{ref}", body=body, headers={"Content-Type": media_type}, ok=(201,)
    )
    said = reply.headers.get("docker-content-digest")
    if said is not None and said != sha256(body):
        raise RegistryError(f"{reg.reference}:{ref}: registry stored {said}, not {sha256(body)}")
    return reply


def get_manifest(reg: Registry, ref: str, ok: tuple[int, ...] = (200,)) -> Reply:
    return reg.request("GET", f"{reg.base_url}/manifests/{ref}", headers={"Accept": _MANIFEST_ACCEPT}, ok=ok)


def push_image(reg: Registry, oci: OciTarball, expected: str, tag: str | None = None) -> str:
    """Push the tarball's image; returns its digest, which the registry then serves unchanged."""
    if oci.digest != expected:
        raise RegistryError(
            f"{oci.path} holds {oci.digest}, image.lock says {expected}: "
            "`make image` builds the locked one (`make verify` says why they differ)"
        )
    for desc in oci.blobs:
        with oci.blob(desc["digest"]) as data:
            push_blob(reg, desc["digest"], desc["size"], data)
    for ref in [oci.digest, *([tag] if tag else [])]:
        put_manifest(reg, ref, oci.media_type, oci.manifest)
    served = get_manifest(reg, tag or oci.digest).body
    if sha256(served) != expected:
        raise RegistryError(f"{reg.reference}: serves {sha256(served)} after the push, not {expected}")
    return expected


# --- the SBOM as an artifact that refers to the image -----------------------------------------


def referrers_tag(digest: str) -> str:
    """The referrers tag schema's tag for `digest` (OCI distribution spec 1.1)."""
    return digest.replace(":", "-")


def sbom_manifest(sbom: bytes, subject: dict[str, Any]) -> bytes:
    """The artifact manifest; serialised with sorted keys, so the same SBOM gives the same digest."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_TYPE,
        "config": {"mediaType": EMPTY_TYPE, "digest": sha256(EMPTY_BLOB), "size": len(EMPTY_BLOB)},
        "layers": [
            {
                "mediaType": SBOM_TYPE,
                "digest": sha256(sbom),
                "size": len(sbom),
                "annotations": {"org.opencontainers.image.title": "sbom.cdx.json"},
            }
        ],
        "subject": subject,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def check_sbom(sbom: bytes, source: Path, digest: str) -> None:
    """The SBOM must be CycloneDX JSON that describes this very image digest."""
    try:
        doc = json.loads(sbom)
        described = doc["metadata"]["component"]["version"]
        fmt = doc["bomFormat"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"{source}: not a CycloneDX JSON document ({exc!r} missing)") from None
    if fmt != "CycloneDX":
        raise RegistryError(f"{source}: bomFormat is {fmt!r}, not 'CycloneDX'")
    if described != digest:
        raise RegistryError(
            f"{source}: describes {described}, not the pushed image {digest}; run `make sbom`"
        )


def attach_sbom(reg: Registry, image_digest: str, sbom: bytes) -> str:
    """Push the SBOM artifact referring to `image_digest`; returns the artifact's manifest digest."""
    image = get_manifest(reg, image_digest)
    subject = {
        "mediaType": image.headers.get("content-type", OCI_MANIFEST).split(";")[0],
        "digest": image_digest,
        "size": len(image.body),
    }
    push_blob(reg, sha256(EMPTY_BLOB), len(EMPTY_BLOB), EMPTY_BLOB)
    push_blob(reg, sha256(sbom), len(sbom), sbom)
    manifest = sbom_manifest(sbom, subject)
    digest = sha256(manifest)
    reply = put_manifest(reg, digest, OCI_MANIFEST, manifest)
    if "oci-subject" not in reply.headers:  # no referrers API: maintain the fallback tag
        _add_to_referrers_tag(reg, image_digest, digest, len(manifest))
    return digest


def _add_to_referrers_tag(reg: Registry, subject: str, digest: str, size: int) -> None:
    tag = referrers_tag(subject)
    found = get_manifest(reg, tag, ok=(200, 404))
    manifests = _descriptors(found.body, f"{reg.reference}:{tag}") if found.status == 200 else []
    if any(m["digest"] == digest for m in manifests):
        return
    manifests.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "artifactType": SBOM_TYPE})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    put_manifest(reg, tag, OCI_INDEX, json.dumps(index, sort_keys=True, separators=(",", ":")).encode())


def referrers(reg: Registry, digest: str) -> list[dict[str, Any]]:
    """Descriptors of the artifacts referring to `digest`: the referrers API, else the tag schema."""
    api = reg.request(
        "GET", f"{reg.base_url}/referrers/{digest}", headers={"Accept": OCI_INDEX}, ok=(200, 404)
    )
    if api.status == 200 and api.headers.get("content-type", "").startswith(OCI_INDEX):
        return _descriptors(api.body, f"{reg.base_url}/referrers/{digest}")
    tagged = get_manifest(reg, referrers_tag(digest), ok=(200, 404))
    return (
        _descriptors(tagged.body, f"{reg.reference}:{referrers_tag(digest)}") if tagged.status == 200 else []
    )


def _descriptors(body: bytes, what: str) -> list[dict[str, Any]]:
    """The `manifests` of an image index, each a descriptor with a digest; else one line saying so."""
    doc = parse_json(body, what)
    found = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(found, list) or not all(isinstance(d, dict) and "digest" in d for d in found):
        raise RegistryError(f"{what}: not an image index (no list of descriptors in `manifests`)")
    return found


def fetch_blob(reg: Registry, digest: str, limit: int = MAX_BLOB) -> bytes:
    """A blob (at most `limit` bytes), checked against its digest."""
    data = reg.request("GET", f"{reg.base_url}/blobs/{digest}", limit=limit).body
    if sha256(data) != digest:
        raise RegistryError(f"{reg.reference}: blob {digest} has other bytes ({sha256(data)})")
    return data


# --- the multi-platform index -----------------------------------------------------------------


def push_index(
    reg: Registry, index: dict[str, Any], amd64_tar: Path, tag: str | None, sboms: Path | None
) -> list[str]:
    """Push every platform's image (``amd64_tar`` and the other platforms' tarballs beside it) by
    digest, each with its SBOM (from ``sboms``) attached, then the index over them, by digest and
    ``tag``. Every digest is image.lock's: a tarball or SBOM of another build is refused before
    the index goes up."""
    said = []
    manifests = index["manifests"]
    for plat in platforms.ALL:
        expected = manifests[plat.name]["digest"]
        sbom = None
        if sboms is not None:
            source = sboms / plat.sbom_name
            try:
                sbom = source.read_bytes()
            except OSError as exc:
                raise RegistryError(
                    f"{source}: cannot read the {plat.name} SBOM ({exc.strerror}); `make sbom`"
                ) from None
            check_sbom(sbom, source, expected)
        digest = push_image(reg, open_tarball(plat.beside(amd64_tar)), expected)
        said.append(f"pushed {reg.reference}@{digest} ({plat.name})")
        if sbom is not None:
            said.append(f"attached {reg.reference}@{attach_sbom(reg, digest, sbom)} (SBOM, subject {digest})")
    body = platforms.index_bytes(manifests)
    if sha256(body) != index["digest"]:
        raise RegistryError(
            f"image.lock: index {index['digest']} does not follow from its manifests ({sha256(body)})"
        )
    for ref in [index["digest"], *([tag] if tag else [])]:
        put_manifest(reg, ref, OCI_INDEX, body)
    served = get_manifest(reg, tag or index["digest"]).body
    if sha256(served) != index["digest"]:
        raise RegistryError(f"{reg.reference}: serves {sha256(served)} after the push, not {index['digest']}")
    said.append(f"pushed {reg.reference}@{index['digest']} (index: {', '.join(manifests)})")
    return said


# --- CLI ---------------------------------------------------------------------------------------


def print_reference(registry: str) -> int:
    """`python -m imagetool registry reference REGISTRY`: REGISTRY/lockstep@<image.lock's index>."""
    print(f"{Registry.parse(registry).reference}@{ImageLock.read(LOCK_NAME).pinned}")
    return 0


def _session(registry: str, deadline: float) -> Registry:
    Registry.parse(registry)  # a malformed name is refused before any credential is looked up
    # Credentials are asked for at a 401 only.
    return Registry.parse(registry, credentials=find_credentials, deadline=deadline)


def print_referrers(registry: str, digest: str | None, deadline: float) -> int:
    """`python -m imagetool registry referrers REGISTRY [DIGEST]`: the artifacts attached to it."""
    reg = _session(registry, deadline)
    digest = digest or ImageLock.read(LOCK_NAME).digest
    if not _DIGEST.fullmatch(digest):
        raise RegistryError(f"digest {digest!r} is not sha256:<64 hex>")
    for desc in referrers(reg, digest):
        print(f"{desc['digest']} {desc.get('artifactType', '?')}")
    return 0


def push(
    registry: str,
    tag: str,
    oci: Path,
    sbom_file: Path | None,
    index: bool,
    sbom_dir: Path | None,
    deadline: float,
) -> int:
    """`python -m imagetool registry push REGISTRY`: image.lock's image (or, with `index`, every
    platform's and the index over them) by digest, each with its SBOM when given."""
    reg = _session(registry, deadline)
    if index:
        print("\n".join(push_index(reg, ImageLock.read(LOCK_NAME).index(), oci, tag, sbom_dir)))
        return 0
    expected = ImageLock.read(LOCK_NAME).digest
    sbom = None
    if sbom_file is not None:
        try:
            sbom = sbom_file.read_bytes()
        except OSError as exc:
            raise RegistryError(
                f"{sbom_file}: cannot read the SBOM ({exc.strerror}); "
                "`make sbom` writes it (`make push SBOM=` pushes without it)"
            ) from None
        check_sbom(sbom, sbom_file, expected)
    digest = push_image(reg, open_tarball(oci), expected, tag)
    print(f"pushed {reg.reference}@{digest}")
    if sbom is not None:
        print(f"attached {reg.reference}@{attach_sbom(reg, digest, sbom)} (SBOM, subject {digest})")
    return 0
