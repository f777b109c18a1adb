"""The served predictor: a scaler plus a binary logistic regression, from the model's JSON export.

scikit-learn spends ~200 µs of validation and dispatch per predict_proba call, more than the
arithmetic of a scaler plus a logistic regression on thousands of rows, and importing it costs
more than a second of start-up. The export (`models/model.json`, written by the pipeline's
`export` stage) holds the fitted arrays; this module replays sklearn's operations on them in the
same order, with the same exp() (glibc's, through the math module, as scipy's expit uses), and
gets the same floats. Neither scikit-learn nor scipy is imported, and nothing is unpickled.
"""

import math
from operator import mul, sub, truediv
from typing import Protocol

import numpy as np

# Agreement required between this predictor and the probabilities recorded in the export.
AGREEMENT_TOLERANCE = 1e-12


class Predictor(Protocol):
    """Maps a (rows, features) float64 matrix to (rows, classes) probabilities."""

    kind: str
    # True when no input within the validated range can make a probability inf or NaN.
    always_finite: bool

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray: ...

    def probabilities(self, matrix: np.ndarray) -> list[list[float]]:
        """Probabilities as Python floats, ready to serialise."""
        ...


def expit(decisions: list[float]) -> list[float]:
    """1 / (1 + exp(-x)) elementwise, exactly as scipy.special.expit computes it.

    numpy's own exp() picks a SIMD kernel by CPU (AVX-512 differs from libm in the last bit),
    so it is not used here: math.exp is libm's exp, the one scipy's expit calls.
    """
    exp = math.exp
    try:
        return [1.0 / (1.0 + exp(-x)) for x in decisions]
    except OverflowError:  # rare: redo element by element
        return [_expit_one(x) for x in decisions]


def _expit_one(x: float) -> float:
    try:
        return 1.0 / (1.0 + math.exp(-x))
    except OverflowError:  # exp(-x) beyond float range: scipy gives 1 / (1 + inf) = 0.0
        return 0.0


class ScaledBinaryLogisticPredictor:
    """StandardScaler + binary LogisticRegression, replaying sklearn's own operation order."""

    kind = "compiled-linear"

    def __init__(
        self,
        mean: np.ndarray | None,
        scale: np.ndarray | None,
        coef: np.ndarray,
        intercept: float,
        max_abs_input: float,
    ):
        self._mean = mean
        self._scale = scale
        self._coef = coef
        self._intercept = intercept
        n = len(coef)
        # The same parameters as Python floats, for the single-row path.
        self._row_params = (
            mean.tolist() if mean is not None else [0.0] * n,
            scale.tolist() if scale is not None else [1.0] * n,
            coef.tolist(),
        )
        # Worst case of |decision function| over inputs bounded by max_abs_input: if even that stays
        # far from overflow, no valid input can produce inf/NaN and the per-call guard can be skipped.
        reach = np.full_like(coef, max_abs_input) + (np.abs(mean) if mean is not None else 0.0)
        with np.errstate(all="ignore"):
            worst = float(np.sum(reach / (scale if scale is not None else 1.0) * np.abs(coef))) + abs(
                intercept
            )
        self.always_finite = bool(np.isfinite(worst) and worst < 1e300)

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Same steps as StandardScaler.transform, decision_function and _predict_proba_lr."""
        return np.array(self._batch(matrix), dtype=np.float64).reshape(len(matrix), 2)

    def probabilities(self, matrix: np.ndarray) -> list[list[float]]:
        """Python floats; one row is computed without numpy (agreement is checked at start-up)."""
        if len(matrix) == 1 and self.always_finite:
            return [self.one_row(matrix[0].tolist())]
        return self._batch(matrix)

    def one_row(self, row: list[float]) -> list[float]:
        """One row in plain floats: in a server, a dozen numpy calls cost more than this arithmetic.

        Summation order differs from BLAS's dot, so results may differ from predict_proba in the
        last bits; the start-up check requires agreement within AGREEMENT_TOLERANCE.
        """
        mean, scale, coef = self._row_params
        decision = sum(map(mul, map(truediv, map(sub, row, mean), scale), coef)) + self._intercept
        [positive] = expit([decision])
        return [1.0 - positive, positive]

    def _batch(self, matrix: np.ndarray) -> list[list[float]]:
        if self.always_finite:  # np.errstate costs ~2 µs a call
            decisions = self._decisions(matrix)
        else:  # extreme inputs may overflow to inf/NaN; the caller refuses such rows by index
            with np.errstate(all="ignore"):
                decisions = self._decisions(matrix)
        # sklearn returns stack([1 - p, p], axis=1); the same subtraction in Python floats.
        return [[1.0 - p, p] for p in expit(decisions)]

    def _decisions(self, matrix: np.ndarray) -> list[float]:
        scaled = matrix - self._mean if self._mean is not None else matrix.copy()
        if self._scale is not None:
            scaled /= self._scale
        decisions: list[float] = (scaled @ self._coef + self._intercept).tolist()
        return decisions
