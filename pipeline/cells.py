"""A CSV column as read by `prepare` and the later stages: its gaps, and its numbers or its text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class RawColumn:
    """One column as read. `gaps` marks the missing cells. A column whose every present cell is a
    finite number (as float() reads it) keeps only `numbers` (float64, NaN at a gap): 8 bytes a
    cell instead of a string's 50-60. Any other column, or one asked for as text, keeps `text`
    (the cells as written, None at a gap; a repeated value is one shared string)."""

    gaps: npt.NDArray[np.bool_]
    numbers: npt.NDArray[np.float64] | None = None
    text: npt.NDArray[np.object_] | None = None

    def __len__(self) -> int:
        return len(self.gaps)

    def take(self, index: npt.NDArray[np.intp]) -> RawColumn:
        return RawColumn(
            self.gaps[index],
            None if self.numbers is None else self.numbers[index],
            None if self.text is None else self.text[index],
        )


def numbers_of(column: RawColumn) -> npt.NDArray[np.float64]:
    """A column's cells as float64 (NaN at a gap); every present cell must be a number."""
    if column.numbers is not None:
        return column.numbers
    assert column.text is not None
    out = np.full(len(column), np.nan)
    out[~column.gaps] = column.text[~column.gaps].astype(np.float64)
    return out
