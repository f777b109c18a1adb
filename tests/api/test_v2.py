"""api.v2: the Open Inference Protocol (V2) endpoints against the default model (all features
numeric): the protocol's own request and response shapes, agreement with /predict over the whole
test split, and (below) the specification's own text and schema. The codec's refusals are in
test_v2_codec.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import numpy as np
import orjson
import pytest
import yaml

from api.v2_codec import DATATYPES
from harness import DEFAULT
from tests.api.support import INFER, TestClient, matrix, per_feature, split_rows


def test_server_health_and_metadata_follow_the_protocol(client: TestClient, metadata: dict[str, Any]) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    server = client.get("/v2").json()
    assert set(server) == {"name", "version", "extensions"}
    ready = client.get("/v2/models/lockstep/ready")
    assert ready.status_code == 200
    model = client.get("/v2/models/lockstep").json()
    version = client.get("/model").json()["model_version"]
    assert model["name"] == "lockstep"
    assert model["versions"] == [version]
    assert isinstance(model["platform"], str)
    assert [(i["name"], i["datatype"], i["shape"]) for i in model["inputs"]] == [
        (f["name"], "FP64", [-1, 1]) for f in metadata["features"]
    ]
    assert [(o["name"], o["datatype"]) for o in model["outputs"]] == [
        ("label", "BYTES"),
        ("probabilities", "FP64"),
    ]
    assert model["outputs"][1]["shape"] == [-1, len(metadata["classes"])]
    assert client.get(f"/v2/models/lockstep/versions/{version}").json() == model
    assert client.get(f"/v2/models/lockstep/versions/{version}/ready").status_code == 200


def test_infer_answers_the_protocols_response_shape(client: TestClient, example: dict[str, Any]) -> None:
    names = list(example)
    request = {"id": "42", "inputs": per_feature([example, example], names), "outputs": [{"name": "label"}]}
    reply = client.post(INFER, json=request)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"model_name", "model_version", "id", "outputs"}
    assert body["id"] == "42"  # echoed, as the protocol says
    assert body["model_name"] == "lockstep"
    assert body["model_version"] == client.get("/model").json()["model_version"]
    [label] = body["outputs"]  # only the requested output
    assert label["name"] == "label"
    assert label["datatype"] == "BYTES"
    assert label["shape"] == [2]
    assert len(label["data"]) == 2


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param(lambda rows, names: per_feature(rows, names), id="per-feature-[N,1]"),
        pytest.param(lambda rows, names: per_feature(rows, names, shape1=False), id="per-feature-[N]"),
        pytest.param(lambda rows, names: [matrix(rows, names)], id="matrix-flat"),
        pytest.param(lambda rows, names: [matrix(rows, names, nested=True)], id="matrix-nested"),
    ],
)
def test_infer_agrees_with_predict_over_the_test_split(
    client: TestClient, inputs: Callable[[list[dict[str, Any]], list[str]], list[dict[str, Any]]]
) -> None:
    _, rows = split_rows(DEFAULT)
    names = list(rows[0])
    reply = client.post(INFER, json={"inputs": inputs(rows, names)})
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    predictions = client.post("/predict", json={"instances": rows}).json()["predictions"]
    classes = list(predictions[0]["probabilities"])
    assert outputs["label"]["data"] == [p["label"] for p in predictions]
    assert outputs["probabilities"]["shape"] == [len(rows), len(classes)]
    probabilities = np.array(outputs["probabilities"]["data"]).reshape(len(rows), len(classes))
    expected = np.array([[p["probabilities"][c] for c in classes] for p in predictions])
    assert np.array_equal(probabilities, expected)  # the same runner on the same Batch: bit for bit


def test_infer_without_content_type_is_read_as_json(client: TestClient, example: dict[str, Any]) -> None:
    body = orjson.dumps({"inputs": [matrix([example], list(example))]})
    assert client.post(INFER, content=body).status_code == 200


def test_infer_is_counted_under_its_route(client: TestClient, example: dict[str, Any]) -> None:
    client.post(INFER, json={"inputs": [matrix([example], list(example))]})
    text = client.get("/metrics").text
    assert f'lockstep_http_requests_total{{method="POST",route="{INFER}",status="200"}}' in text


def test_unknown_model_metadata_and_readiness_are_404(client: TestClient) -> None:
    for path in ("/v2/models/other", "/v2/models/other/ready", "/v2/models/lockstep/versions/v0/ready"):
        reply = client.get(path)
        assert reply.status_code == 404, path
        assert "error" in reply.json()


def test_the_model_name_is_a_setting(example: dict[str, Any]) -> None:
    from api.app import create_app

    with TestClient(create_app(DEFAULT.settings(v2_model_name="breast-cancer"))) as other:
        body = {"inputs": [matrix([example], list(example))]}
        assert other.post("/v2/models/breast-cancer/infer", json=body).status_code == 200
        assert other.post(INFER, json=body).status_code == 404
        assert other.get("/v2/models/breast-cancer").json()["name"] == "breast-cancer"


# -------------------------------------------------------------------------------------------------
# The V2 endpoints against the Open Inference Protocol's own text, not a memory of it.
#
# Source: github.com/kserve/open-inference-protocol at commit d49cc23f89d709d87b210ef9449e273ae243984e,
# - specification/protocol/open_inference_rest.yaml, copied unchanged to spec/open_inference_rest.yaml
#   (Apache-2.0, its header kept): every body below is validated against its `components.schemas`;
# - specification/protocol/inference_rest.md: its example request and response, its data type table,
#   its row-major/nested tensor example and its ready/metadata objects, quoted below.
# Where an example names tensors of a model with inputs input0/input1 and output output0, the adapted
# copy renames them (and sizes them) for this model; each adaptation says so.
# -------------------------------------------------------------------------------------------------


SPEC_DIR = Path(__file__).parent / "spec"
# inference_rest.md, "Inference Request Examples": the request, verbatim.
SPEC_REQUEST = (SPEC_DIR / "infer_request_example.json").read_text()
# ... and its response, verbatim but for one character: the text lacks the comma after "id" : "42"
# (not JSON as printed). It also has no model_name, which the OpenAPI file requires.
SPEC_RESPONSE = (SPEC_DIR / "infer_response_example.json").read_text()
SPEC = yaml.safe_load((SPEC_DIR / "open_inference_rest.yaml").read_text())
# inference_rest.md, "Tensor Data Types", the table's first column.
SPEC_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"]
SPEC_DATATYPES += ["FP16", "FP32", "FP64", "BYTES"]
# inference_rest.md, "Tensor Data": [[1 2] [4 5]] as nested and as flattened (row-major) data.
SPEC_NESTED, SPEC_FLAT = [[1, 2], [4, 5]], [1, 2, 4, 5]


def check(body: Any, schema: str) -> None:
    """`body` against components.schemas[schema] of the specification's OpenAPI file."""
    document = {"components": SPEC["components"], "$ref": f"#/components/schemas/{schema}"}
    jsonschema.Draft202012Validator(document).validate(body)


def adapted_request(example: dict[str, Any]) -> dict[str, Any]:
    """The spec's example request with its names and sizes made this model's: input0, a [2, 2] UINT32
    matrix with flat data, becomes the [2, F] UINT32 matrix of two rows (whole numbers near the
    example row); input1 (BOOL, a tensor this model has no use for) is left out; output0 -> label."""
    request: dict[str, Any] = json.loads(SPEC_REQUEST)
    rows = [[round(abs(v)) for v in example.values()], [round(abs(v)) + 1 for v in example.values()]]
    request["inputs"] = [
        dict(request["inputs"][0], shape=[2, len(example)], data=[v for row in rows for v in row])
    ]
    request["outputs"] = [{"name": "label"}]
    return request


def test_the_specifications_examples_are_valid_against_its_own_schema() -> None:
    """The verbatim bodies meet the OpenAPI file (the response once given the model_name it lacks)."""
    check(json.loads(SPEC_REQUEST), "inference_request")
    response = json.loads(SPEC_RESPONSE)
    with pytest.raises(jsonschema.ValidationError, match="'model_name' is a required property"):
        check(response, "inference_response")
    check({"model_name": "mymodel", **response}, "inference_response")


def test_the_specifications_example_request_is_refused_by_name_with_the_error_object(
    client: TestClient,
) -> None:
    reply = client.post(INFER, content=SPEC_REQUEST, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400, reply.text
    check(reply.json(), "inference_error_response")
    assert "input1" in reply.json()["error"]  # shape [3] with one value: refused, named


def test_the_adapted_example_gets_the_example_responses_shape(
    client: TestClient, example: dict[str, Any]
) -> None:
    reply = client.post(INFER, json=adapted_request(example))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    check(body, "inference_response")
    spec = json.loads(SPEC_RESPONSE)
    assert body["id"] == spec["id"] == "42"  # echoed, as the specification says it must be
    assert set(body) == set(spec) | {"model_name", "model_version"}  # this server has versions
    assert body["model_name"] == "lockstep"
    assert body["model_version"] == client.get("/model").json()["model_version"]
    [output] = body["outputs"]  # the requested output only, as "output0" was the only one there
    assert set(output) == set(spec["outputs"][0])
    assert (output["name"], output["shape"], output["datatype"]) == ("label", [2], "BYTES")
    data, width = adapted_request(example)["inputs"][0]["data"], len(example)
    rows = [dict(zip(example, data[:width], strict=True)), dict(zip(example, data[width:], strict=True))]
    predictions = client.post("/predict", json={"instances": rows}).json()["predictions"]
    assert output["data"] == [p["label"] for p in predictions]


def test_nested_and_flattened_data_are_the_same_tensor(client: TestClient, example: dict[str, Any]) -> None:
    """The specification's [[1, 2], [4, 5]] == [1, 2, 4, 5], here as a [2, F] matrix of this model."""
    assert [v for row in SPEC_NESTED for v in row] == SPEC_FLAT
    flat = adapted_request(example)
    width = len(example)
    nested = json.loads(json.dumps(flat))
    data = nested["inputs"][0]["data"]
    nested["inputs"][0]["data"] = [data[:width], data[width:]]
    answers = [client.post(INFER, json=body) for body in (flat, nested)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()


def test_the_datatypes_are_the_specifications_table(client: TestClient) -> None:
    assert set(SPEC_DATATYPES) == DATATYPES
    model = client.get("/v2/models/lockstep").json()
    assert {t["datatype"] for t in model["inputs"] + model["outputs"]} <= set(SPEC_DATATYPES)


def test_server_and_model_metadata_follow_the_specification(client: TestClient) -> None:
    server = client.get("/v2").json()
    check(server, "metadata_server_response")
    assert set(server) == {"name", "version", "extensions"}
    model = client.get("/v2/models/lockstep").json()
    check(model, "metadata_model_response")
    # $metadata_model_response has these fields and no others; each tensor is a $metadata_tensor.
    assert set(model) == {"name", "versions", "platform", "inputs", "outputs"}
    for tensor in model["inputs"] + model["outputs"]:
        check(tensor, "metadata_tensor")
        assert set(tensor) == {"name", "datatype", "shape"}
    # "Platform names use the format <project>_<format>"; onnx_onnxv1 is the spec's ONNX Runtime name.
    assert model["platform"] in {"onnx_onnxv1", "sklearn_joblib"}
    version = model["versions"][0]
    assert client.get(f"/v2/models/lockstep/versions/{version}").json() == model


def test_ready_objects_follow_the_specification(client: TestClient) -> None:
    # $ready_model_response = {"name": $string, "ready": $bool}
    assert client.get("/v2/models/lockstep/ready").json() == {"name": "lockstep", "ready": True}
    version = client.get("/v2/models/lockstep").json()["versions"][0]
    assert client.get(f"/v2/models/lockstep/versions/{version}/ready").json() == {
        "name": "lockstep",
        "ready": True,
    }
    # $live_server_response = {"live": $bool}; the server-ready object is printed as `live` too (a
    # copy): this server answers `ready`, as KServe's, Triton's and MLServer's do.
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


@pytest.mark.parametrize(
    ("change", "outputs"),
    [
        (lambda r: r.pop("outputs"), ["label", "probabilities"]),  # optional: all outputs
        (lambda r: r.update(outputs=[{"name": "probabilities"}]), ["probabilities"]),
        (
            lambda r: r.update(outputs=[{"name": "probabilities"}, {"name": "label"}]),
            ["probabilities", "label"],
        ),
    ],
    ids=["no-outputs-all", "one-by-name", "order-as-asked"],
)
def test_outputs_are_selected_by_name(
    client: TestClient, example: dict[str, Any], change: Any, outputs: list[str]
) -> None:
    request = adapted_request(example)
    change(request)
    reply = client.post(INFER, json=request)
    assert reply.status_code == 200, reply.text
    check(reply.json(), "inference_response")
    assert [o["name"] for o in reply.json()["outputs"]] == outputs


def test_optional_fields_may_be_given_or_left_out(client: TestClient, example: dict[str, Any]) -> None:
    """id, parameters (request, input, output) are optional; without an id the server's request id
    (a string, as $inference_response's id is) is answered."""
    request = adapted_request(example)
    request["parameters"] = {"content_type": "np", "priority": 1, "binary": False}
    request["inputs"][0]["parameters"] = {"content_type": "np"}
    request["outputs"][0]["parameters"] = {"binary_data": False}
    check(request, "inference_request")
    assert client.post(INFER, json=request).status_code == 200
    del request["id"]
    reply = client.post(INFER, json=request)
    assert reply.status_code == 200
    check(reply.json(), "inference_response")
    assert reply.json()["id"] == reply.headers["x-request-id"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda r: r["inputs"][0].update(parameters=[1]), "parameters must be an object"),
        (lambda r: r.update(outputs=[{"name": "label", "parameters": "x"}]), "outputs must be an array"),
        (lambda r: r.update(outputs=[{"name": 5}]), "outputs must be an array"),
        (lambda r: r.update(outputs=[{"name": "label"}, {"name": "label"}]), "twice"),
        (lambda r: r["inputs"][0].update(datatype="BF16"), "BF16"),  # not in the table
        (lambda r: r["inputs"][0].update(shape=[2, 2]), "shape"),  # the spec's own [2, 2], not [2, F]
        (lambda r: r["inputs"].append(json.loads(SPEC_REQUEST)["inputs"][1]), "input1"),
    ],
    ids=[
        "input-parameters",
        "output-parameters",
        "output-name-number",
        "output-twice",
        "bf16",
        "shape",
        "name",
    ],
)
def test_bad_v2_inputs_get_400_with_the_error_object(
    client: TestClient, example: dict[str, Any], change: Any, words: str
) -> None:
    request = adapted_request(example)
    change(request)
    reply = client.post(INFER, content=orjson.dumps(request), headers={"Content-Type": "application/json"})
    assert reply.status_code == 400, reply.text
    check(reply.json(), "inference_error_response")
    assert words in reply.json()["error"]


@pytest.mark.parametrize(
    "path", ["/v2/models/other", "/v2/models/other/ready", "/v2/models/lockstep/versions/v0"]
)
def test_unknown_model_answers_the_error_object(client: TestClient, path: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 404
    check(reply.json(), "metadata_model_error_response")
