"""Turns probabilities into the /predict response body."""

import math
from itertools import chain

import orjson

from api.errors import ClientError, problem
from api.model import ServedModel


def check_finite(probabilities: list[list[float]]) -> None:
    """Large valid inputs can still overflow some models' arithmetic: refuse those rows."""
    if all(map(math.isfinite, chain.from_iterable(probabilities))):
        return
    bad_rows = [i for i, row in enumerate(probabilities) if not all(map(math.isfinite, row))]
    problems = [problem(row, None, "feature values too large for the model to score") for row in bad_rows]
    raise ClientError(422, "out_of_range", f"row {bad_rows[0]}: feature values too large to score", problems)


def encode_predictions(model: ServedModel, probabilities: list[list[float]]) -> tuple[bytes, list[int]]:
    """JSON response bytes and each row's class index (the most probable class, first on ties)."""
    classes = model.classes
    if len(classes) == 2:
        first, second = classes
        indices = [0 if p0 >= p1 else 1 for p0, p1 in probabilities]
        rows = [
            {"label": classes[i], "probabilities": {first: p0, second: p1}}
            for i, (p0, p1) in zip(indices, probabilities, strict=True)
        ]
    else:
        indices = [max(range(len(p)), key=p.__getitem__) for p in probabilities]
        rows = [
            {"label": classes[i], "probabilities": dict(zip(classes, p, strict=True))}
            for i, p in zip(indices, probabilities, strict=True)
        ]
    return orjson.dumps({"model_version": model.version, "predictions": rows}), indices
