"""The validated rows a request becomes, by column kind: what the model runners take. Both request
formats (api.validation for /predict, api.v2 for V2) produce it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Batch:
    """Validated rows, by column kind: what the model runners feed to the model."""

    rows: int
    numeric: np.ndarray  # (rows, numeric features) float64 in metadata order; NaN = missing
    categorical: list[Sequence[str | None]]  # one column per categorical feature; None = missing
    missing: dict[str, int] = field(default_factory=dict)  # feature -> rows with null
    unknown: dict[str, int] = field(default_factory=dict)  # feature -> rows with an unseen category
