"""What the contract's tests share: the bytes the pipeline writes for a document, and the committed files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import REPO_ROOT


def written(doc: dict[str, Any]) -> bytes:
    """What the pipeline's write_json writes for `doc` (pipeline/data.py)."""
    return (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode()


def committed(path: Path) -> tuple[bytes, dict[str, Any]]:
    raw = (REPO_ROOT / path).read_bytes()
    return raw, json.loads(raw)
