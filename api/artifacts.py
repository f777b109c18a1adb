"""Reads the pipeline's artifacts for serving: md5-checked against dvc.lock, then parsed.

The formats and their checks are the contract's types (`contract.metadata.Metadata`,
`contract.serving.ServingPlan`); what this module adds is what only the service checks: every file's
bytes against dvc.lock before they are parsed (orjson) or loaded, and that serving.json was written
for exactly the pickle and the graph that dvc.lock records. Anything wrong raises `ContractError`
with one line naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

import contract
from api.settings import Settings
from contract import ContractError
from contract.metadata import Metadata
from contract.serving import ServingPlan


@dataclass(frozen=True)
class VerifiedArtifacts:
    """Bytes whose md5 matched dvc.lock, and the parsed documents that describe them."""

    metadata: Metadata
    serving: ServingPlan
    model_bytes: bytes  # the pickle: unpickled only on the exact path
    onnx_bytes: bytes  # empty on the exact path
    md5s: dict[str, str]  # artifact -> md5 (model, onnx, serving, metadata)


def _load_json(raw: bytes, path: Path) -> Any:
    """orjson's parse (the contract's types check that it is an object of the right version)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ContractError(f"{path} is not valid JSON") from None


def parse_metadata(raw: bytes, path: Path) -> Metadata:
    """models/metadata.json: parsed by orjson, then checked by the contract's type."""
    return Metadata.from_json(_load_json(raw, path), path)


def parse_serving(raw: bytes, path: Path, metadata: Metadata) -> ServingPlan:
    """models/serving.json, checked against the metadata's features and task."""
    return ServingPlan.from_json(_load_json(raw, path), path, metadata)


def verify_artifacts(settings: Settings) -> VerifiedArtifacts:
    """Check every artifact's md5 against dvc.lock before parsing or using any of it."""
    lock_path = settings.dvc_lock_path
    lock = contract.load_dvc_lock(lock_path)

    def verified(path: Path, what: str) -> tuple[bytes, str]:
        return contract.verified_bytes(path, lock, lock_path, what)

    meta_raw, meta_md5 = verified(settings.metadata_path, "metadata")
    serving_raw, serving_md5 = verified(settings.serving_path, "serving plan")
    metadata = parse_metadata(meta_raw, settings.metadata_path)
    serving = parse_serving(serving_raw, settings.serving_path, metadata)
    # The pickle is the model of record (its md5 is the served version), but on the ONNX path it is
    # never loaded, and the image does not ship it: its md5 comes from dvc.lock alone.
    model_raw = b""
    if serving.path == "sklearn":  # unpickled: models/model.sha256's sha256 as well as the md5
        model_raw, model_md5 = contract.verified_pickle_bytes(settings.model_path, lock, lock_path, "model")
    else:
        model_md5 = contract.locked_md5(lock, lock_path, settings.model_path)
    if serving.model_md5 != model_md5:
        raise ContractError(
            f"{settings.serving_path} was written for a model with md5 {serving.model_md5}, "
            f"not for {settings.model_path} ({model_md5}): run `dvc repro`"
        )
    md5s = {"model": model_md5, "serving": serving_md5, "metadata": meta_md5}
    onnx_raw = b""
    if serving.path == "onnx":
        onnx_raw, md5s["onnx"] = verified(settings.onnx_path, "ONNX model")
        described = serving.onnx.md5 if serving.onnx is not None else None
        if described != md5s["onnx"]:
            raise ContractError(
                f"{settings.serving_path} describes an ONNX graph with md5 "
                f"{described}, not {settings.onnx_path} ({md5s['onnx']})"
            )
    return VerifiedArtifacts(metadata, serving, model_raw, onnx_raw, md5s)
