"""Turns a model's scores into the /predict response body."""

import math
from functools import lru_cache
from itertools import chain

import orjson

from api.errors import ClientError, problem
from api.runners import Scores

# A single row costs less as Python objects for orjson than spliced; from two rows splicing wins,
# and for many rows those per-row objects (two dicts a row) were most of an answer's cost.
_SPLICE_ROWS = 2


def check_finite(scores: Scores) -> None:
    """Extreme valid inputs can still overflow a model's arithmetic (e.g. in float32): refuse those rows."""
    rows = scores.probabilities if scores.probabilities is not None else [[v] for v in scores.values or []]
    if all(map(math.isfinite, chain.from_iterable(rows))):
        return
    bad_rows = [i for i, row in enumerate(rows) if not all(map(math.isfinite, row))]
    problems = [problem(row, None, "feature values too large for the model to score") for row in bad_rows]
    raise ClientError(422, "out_of_range", f"row {bad_rows[0]}: feature values too large to score", problems)


def encode_predictions(version: str, classes: tuple[str, ...], scores: Scores) -> bytes:
    """{"model_version", "predictions": [{"label", "probabilities": {class: p}} | {"value"}]}."""
    rows = len(scores.probabilities if scores.probabilities is not None else scores.values or [])
    if rows < _SPLICE_ROWS:
        return orjson.dumps({"model_version": version, "predictions": _prediction_objects(classes, scores)})
    head = b'{"model_version":' + orjson.dumps(version) + b',"predictions":['
    return head + _spliced_predictions(classes, scores, rows) + b"]}"


def _prediction_objects(classes: tuple[str, ...], scores: Scores) -> list[dict[str, object]]:
    if scores.probabilities is None:
        return [{"value": v} for v in scores.values or []]
    assert scores.labels is not None
    return [
        {"label": classes[i], "probabilities": dict(zip(classes, p, strict=True))}
        for i, p in zip(scores.labels, scores.probabilities, strict=True)
    ]


@lru_cache(maxsize=8)
def _fragments(classes: tuple[str, ...]) -> tuple[list[bytes], list[bytes]]:
    """Per label, the JSON before a row's first probability; per later class, the JSON before its own."""
    keys = [orjson.dumps(c) for c in classes]
    heads = [b'{"label":' + key + b',"probabilities":{' + keys[0] + b":" for key in keys]
    return heads, [b"," + key + b":" for key in keys]


def _spliced_predictions(classes: tuple[str, ...], scores: Scores, rows: int) -> bytes:
    """The predictions array's items, byte for byte what orjson writes for `_prediction_objects`,
    spliced from fragments and orjson's own text of every number: no Python object per row."""
    pieces: list[bytes]
    if scores.probabilities is None:
        pieces = [b'{"value":'] * (3 * rows)
        pieces[1::3] = orjson.dumps(scores.values)[1:-1].split(b",")
        pieces[2::3] = [b"},"] * rows
        pieces[-1] = b"}"
        return b"".join(pieces)
    assert scores.labels is not None
    width = len(classes)
    numbers = orjson.dumps(list(chain.from_iterable(scores.probabilities)))[1:-1].split(b",")
    heads, separators = _fragments(classes)
    step = 2 * width + 1  # per row: head, p0, (separator, p)..., closing
    pieces = [b"}},"] * (rows * step)
    pieces[0::step] = [heads[i] for i in scores.labels]
    for k in range(width):
        pieces[2 * k + 1 :: step] = numbers[k::width]
        if k:
            pieces[2 * k :: step] = [separators[k]] * rows
    pieces[-1] = b"}}"
    return b"".join(pieces)
