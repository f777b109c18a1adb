"""api.model: served predictions over the whole test split equal scikit-learn's in-process ones,
within the tolerance the export stage's gate states (the ONNX path), or exactly (the exact path)."""

from __future__ import annotations

from harness import DEFAULT
from tests.api.support import TestClient, served_agree_with_in_process


def test_default_model_serves_the_test_split_as_scikit_learn_predicts_it(client: TestClient) -> None:
    served_agree_with_in_process(client, DEFAULT)
