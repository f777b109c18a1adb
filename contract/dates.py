"""The `date` feature kind: a column of ISO 8601 dates or date-times, which the model takes as
three numbers. Training (`prepare`, `pipeline.features.model_input`) and the service (request
parsing) both compute them here, so a date gives the same numbers on both sides, bit for bit.

The parts, each a numeric model column named `<column>:<part>`:
- `days`: days since 1970-01-01, with the time of day as a fraction (12:00 is .5). A value with a
  UTC offset (`Z`, `+02:00`) is converted to UTC first; one without is taken as written.
- `month`: 1 to 12 (seasonality).
- `weekday`: 0 (Monday) to 6 (Sunday).

Accepted: `YYYY-MM-DD`, optionally followed by `T` or a space and `HH:MM`, `HH:MM:SS` or
`HH:MM:SS.ffffff`, optionally followed by `Z` or an offset `+HH:MM` / `-HHMM`. Surrounding spaces
are ignored. A missing date (a gap in the CSV, null in a request) makes all three parts missing,
which the model's imputer fills as it does for any numeric gap.

Standard library only: it ships in the image beside `api/`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime

DATE_PARTS = ("days", "month", "weekday")
ISO_8601 = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?)?", re.ASCII
)
_EPOCH = datetime(1970, 1, 1)
_SECONDS_PER_DAY = 86400


def part_names(column: str) -> list[str]:
    """The model columns a date column becomes, in DATE_PARTS order."""
    return [f"{column}:{part}" for part in DATE_PARTS]


def date_parts(text: str) -> tuple[float, float, float] | None:
    """(days, month, weekday) of an ISO 8601 date or date-time, or None if `text` is not one."""
    value = text.strip()
    if not ISO_8601.fullmatch(value):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:  # e.g. 2023-02-30, 24:00
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    since = moment - _EPOCH
    days = since.days + (since.seconds + since.microseconds / 1e6) / _SECONDS_PER_DAY
    return (days, float(moment.month), float(moment.weekday()))


_GAP = (math.nan, math.nan, math.nan)  # one per DATE_PARTS


def parts_rows(values: Iterable[object]) -> tuple[list[tuple[float, float, float]], list[int]]:
    """Each value's parts, NaN in each for a gap (None or NaN) or a value that is not a date, and
    the positions of the values that are not dates. A value is read as its text. Each distinct
    value is parsed once: a million rows hold a few thousand days. Training and the service both
    take their date columns through here (as a (rows, parts) float64 matrix)."""
    seen: dict[str, tuple[float, float, float] | None] = {}
    rows: list[tuple[float, float, float]] = []
    bad: list[int] = []
    for i, value in enumerate(values):
        if value is None or value != value:
            rows.append(_GAP)
            continue
        text = str(value)
        parts = seen[text] if text in seen else seen.setdefault(text, date_parts(text))
        if parts is None:
            bad.append(i)
        rows.append(_GAP if parts is None else parts)
    return rows, bad


def model_order(features: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(name, kind) of the model's input columns, from the features' (name, kind): every feature
    that is not a date, in order, then each date's parts as numeric columns. Both the pipeline's
    preprocessing and the service's runners take this order."""
    items = list(features)
    plain = [(name, kind) for name, kind in items if kind != "date"]
    parts = [(part, "numeric") for name, kind in items if kind == "date" for part in part_names(name)]
    return plain + parts
