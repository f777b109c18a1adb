"""Malformed dvc.lock files, each with the one line every reader must refuse it with.

One table for every reader of dvc.lock (the contract itself, the pipeline stages, imagetool.images.repro_check
and the service's start-up), so they cannot drift apart. Each case turns the real lock's text into
a bad one; the damage is to stage `train`, whose only output is the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml


@dataclass(frozen=True)
class BadLock:
    spoil: Callable[[bytes], bytes]  # the good lock's bytes -> the bad ones
    message: str  # the refusal; {lock} and {model} are the paths as the reader names them
    # True: load_dvc_lock refuses it, so every reader does. False: the lock's shape is valid (DVC
    # records no md5 for some outputs) and only a reader of the model's own entry refuses it.
    at_load: bool

    def expected(self, lock: object, model: object) -> str:
        return self.message.format(lock=lock, model=model)


def _replace(text: bytes) -> Callable[[bytes], bytes]:
    return lambda _good: text


def _edit(change: Callable[[dict[str, Any]], object]) -> Callable[[bytes], bytes]:
    """Apply `change` to the lock document, as a hand edit or a bad merge would."""

    def spoil(good: bytes) -> bytes:
        doc = yaml.safe_load(good)
        change(doc)
        return yaml.safe_dump(doc, sort_keys=False).encode()

    return spoil


def _model_entry(change: Callable[[dict[str, Any]], object]) -> Callable[[bytes], bytes]:
    """Apply `change` to the model's entry: stage train's first (and only) output."""
    return _edit(lambda doc: change(doc["stages"]["train"]["outs"][0]))


def _md5(value: object) -> Callable[[bytes], bytes]:
    return _model_entry(lambda out: out.update(md5=value))


def _train(change: Callable[[dict[str, Any]], object]) -> Callable[[bytes], bytes]:
    return _edit(lambda doc: change(doc["stages"]))


_ENTRY = "{lock}: stages.train.outs[0]"
_NOT_HEX, _SHORT, _DIRECTORY = "z" * 32, "0" * 31, "0" * 32 + ".dir"
BAD_LOCKS = {
    "not-yaml": BadLock(
        _replace(b"stages: [unclosed\n"),
        "{lock} is not valid YAML (line 2, column 1: did not find expected ',' or ']')",
        at_load=True,
    ),
    "not-utf8": BadLock(
        _replace(b"schema: '2.0'\n\x80\n"),
        "{lock} is not valid YAML (unacceptable character #x0080: invalid leading UTF-8 octet)",
        at_load=True,
    ),
    "empty": BadLock(_replace(b""), "{lock} has no 'stages' mapping", at_load=True),
    "not-a-mapping": BadLock(_replace(b"- stages\n"), "{lock} has no 'stages' mapping", at_load=True),
    "stages-a-list": BadLock(
        _edit(lambda doc: doc.update(stages=list(doc["stages"]))),
        "{lock} has no 'stages' mapping",
        at_load=True,
    ),
    "stage-not-a-mapping": BadLock(
        _train(lambda stages: stages.update(train="python -m pipeline train")),
        "{lock}: stages.train is not a mapping",
        at_load=True,
    ),
    "outs-not-a-list": BadLock(
        _train(lambda stages: stages["train"].update(outs="models/model.joblib")),
        "{lock}: stages.train.outs is not a list",
        at_load=True,
    ),
    "out-without-path": BadLock(
        _model_entry(lambda out: out.pop("path")), _ENTRY + " has no path", at_load=True
    ),
    "md5-not-hex": BadLock(
        _md5(_NOT_HEX), _ENTRY + f" (models/model.joblib): md5 '{_NOT_HEX}' is not an md5", at_load=True
    ),
    "md5-short": BadLock(
        _md5(_SHORT), _ENTRY + f" (models/model.joblib): md5 '{_SHORT}' is not an md5", at_load=True
    ),
    "md5-a-number": BadLock(
        _md5(12345), _ENTRY + " (models/model.joblib): md5 12345 is not an md5", at_load=True
    ),
    "stage-without-outs": BadLock(
        _train(lambda stages: stages["train"].pop("outs")),
        "{lock} has no entry for {model}: refusing an untracked file",
        at_load=False,
    ),
    "out-without-md5": BadLock(
        _model_entry(lambda out: out.pop("md5")),
        _ENTRY + " (models/model.joblib) has no file md5 (found None): refusing {model}",
        at_load=False,
    ),
    "md5-of-a-directory": BadLock(
        _md5(_DIRECTORY),
        _ENTRY + f" (models/model.joblib) has no file md5 (found '{_DIRECTORY}'): refusing {{model}}",
        at_load=False,
    ),
}


def bad_lock_params(*, at_load_only: bool = False) -> list[Any]:
    """pytest params (id = case name) of BAD_LOCKS, or of those load_dvc_lock itself refuses."""
    return [
        pytest.param(case, id=name) for name, case in BAD_LOCKS.items() if case.at_load or not at_load_only
    ]
