"""`make all`'s last word: the built image's digest, whether it equals image.lock, its size, and
what to do next.

    python3 -m imagetool summary   # `make all`'s recipe, after its steps (plain prerequisites), with
                                   # the system python3: stdlib only, like every verb before the venv
"""

from __future__ import annotations

import json
from pathlib import Path

from imagetool.common import ROOT, ToolError
from imagetool.images import ocidiff


def summary(root: Path = ROOT) -> list[str]:
    """Digest, whether it equals image.lock, size, and what to do next."""
    try:
        last = json.loads((root / "build/image/last-build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ["    no image was built (see the output above)"]
    digest = last["digest"]
    try:
        locked = json.loads((root / "image.lock").read_text(encoding="utf-8")).get("digest")
    except (OSError, ValueError):
        locked = None
    if digest == locked:
        verdict = "equals image.lock (`make verify` rebuilds from scratch to prove it)"
    else:
        verdict = f"differs from image.lock ({locked}): `make verify` says why, `make lock-image` accepts it"
    compressed = sum(layer["size"] for layer in last.get("layers", []))
    try:
        oci = ocidiff.open_oci(root / "build/image/lockstep.oci.tar")
        unpacked = f"{ocidiff.uncompressed_size(oci) / 1e6:.0f} MB, "
    except (OSError, ValueError, ToolError):
        unpacked = ""
    return [
        f"    digest   {digest}",
        f"    lock     {verdict}",
        f"    size     {unpacked}{compressed / 1e6:.0f} MB compressed, {len(last.get('layers', []))} layers",
        "    next     make run     # serve it hardened on 127.0.0.1:8000",
        "             make test    # the whole test suite",
    ]
