"""Turns a model's scores into the /predict response body."""

import math
from itertools import chain

import orjson

from api.errors import ClientError, problem
from api.runners import Scores


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
    if scores.probabilities is None:
        rows: list[dict[str, object]] = [{"value": v} for v in scores.values or []]
    else:
        assert scores.labels is not None
        rows = [
            {"label": classes[i], "probabilities": dict(zip(classes, p, strict=True))}
            for i, p in zip(scores.labels, scores.probabilities, strict=True)
        ]
    return orjson.dumps({"model_version": version, "predictions": rows})
