"""Estimator classes a pickled model may hold besides the libraries' own (imported only by
unpickling such a model: the ONNX-path service never loads this module).

XGBClassifier learns classes 0..n-1 only and its `classes_` is that range, so a target of text
labels (what `prepare` writes) cannot be fitted as it is. LabelledXGBClassifier encodes the labels
in `fit` and gives them back in `classes_` and `predict`; everything else is XGBClassifier's own,
and onnxmltools' converter reads `classes_` (the text labels) into the graph. The exact-path image
of such a model carries xgboost and this module (contract/ is in every image).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from xgboost import XGBClassifier


class LabelledXGBClassifier(XGBClassifier):
    """XGBClassifier with any labels (sorted, as np.unique sorts them)."""

    @property
    def classes_(self) -> npt.NDArray[Any]:
        labels = self.__dict__.get("labels_")
        return np.arange(self.n_classes_) if labels is None else labels

    def fit(self, X: Any, y: Any, **kwargs: Any) -> LabelledXGBClassifier:
        labels, codes = np.unique(np.asarray(y), return_inverse=True)
        self.__dict__.pop("labels_", None)  # XGBClassifier.fit checks classes_ against the codes
        super().fit(X, codes, **kwargs)
        self.labels_ = labels
        return self

    def predict(self, X: Any, **kwargs: Any) -> npt.NDArray[Any]:
        return np.asarray(self.classes_)[np.asarray(super().predict(X, **kwargs), dtype=np.intp)]
