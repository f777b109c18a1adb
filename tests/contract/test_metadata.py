"""contract.metadata: the model's metadata.json (with serving.json) round-trips byte for byte, and the
estimator class the image tooling reads alone is checked."""

from __future__ import annotations

import pytest

from contract import METADATA_FILE, SERVING_FILE, ContractError
from contract.metadata import Metadata, estimator_class
from contract.serving import ServingPlan
from tests.contract.support import committed, written


def test_metadata_and_serving_round_trip_the_models_files_byte_for_byte() -> None:
    meta_raw, meta_doc = committed(METADATA_FILE)
    metadata = Metadata.from_json(meta_doc, METADATA_FILE)
    assert written(metadata.to_json()) == meta_raw
    serving_raw, serving_doc = committed(SERVING_FILE)
    plan = ServingPlan.from_json(serving_doc, SERVING_FILE, metadata)
    assert written(plan.to_json()) == serving_raw
    assert plan.model_md5 == serving_doc["model"]["md5"]
    assert plan.tolerance == serving_doc["gate"]["tolerance"]


def test_the_estimator_class_the_image_tooling_reads_alone() -> None:
    _, meta_doc = committed(METADATA_FILE)
    assert estimator_class(meta_doc, METADATA_FILE) == meta_doc["estimator"]["class"]
    with pytest.raises(ContractError, match=r"^m.json: estimator is missing or not an object$"):
        estimator_class({}, "m.json")
