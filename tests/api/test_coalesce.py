"""Small /predict requests that arrive together share one model call, and get exactly the answers
they would have got alone: on the default model, and on the penguins forest (categorical columns,
missing values and unknown categories), in process and through a real server under concurrency."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import orjson
import pytest

from api.batch import Batch
from api.coalesce import MAX_REQUEST_ROWS, Coalescer
from api.model import ServedModel, load_model, reproduce_check
from api.predict import encode_predictions
from api.runners import Runner, Scores
from harness import Artifacts, running_server
from tests.api.support import TestClient


def penguin_rows(artifacts: Artifacts) -> list[dict[str, Any]]:
    """Valid penguins rows, with gaps in numeric and categorical columns and an unseen island."""
    meta = artifacts.metadata_document()
    numeric = [f["name"] for f in meta["features"] if f["kind"] == "numeric"]
    rows = []
    for i, (island, sex) in enumerate([("Biscoe", "male"), (None, "female"), ("Atlantis", None)] * 4):
        row = {k: (None if (i + j) % 5 == 0 else meta["example"][k] + i) for j, k in enumerate(numeric)}
        rows.append(row | {"island": island, "sex": sex})
    return rows


def numeric_rows(artifacts: Artifacts) -> list[dict[str, Any]]:
    meta = artifacts.metadata_document()
    example = {f["name"]: meta["example"][f["name"]] for f in meta["features"]}
    return [{k: (v * (1 + i / 10) if i % 4 else None) for k, v in example.items()} for i in range(12)]


def batches(model: ServedModel, rows: list[dict[str, Any]]) -> list[Batch]:
    """One-row and three-row requests, as the service parses them."""
    bodies = [[row] for row in rows] + [rows[i : i + 3] for i in range(0, len(rows), 3)]
    return [model.parser.parse(orjson.dumps({"instances": body})) for body in bodies]


class Counting:
    """The real runner, noting the rows of each call it gets."""

    def __init__(self, runner: Runner):
        self.runner, self.kind = runner, runner.kind
        self.calls: list[int] = []

    def predict(self, batch: Batch) -> Scores:
        self.calls.append(batch.rows)
        return self.runner.predict(batch)


async def coalesced(scorer: Coalescer, work: list[Batch]) -> list[Scores]:
    return list(await asyncio.gather(*(scorer.predict(batch) for batch in work)))


@pytest.fixture(params=["default", "penguins-forest"])
def served_model(
    request: pytest.FixtureRequest, default_artifacts: Artifacts, trained: Callable[[str], Artifacts]
) -> tuple[ServedModel, list[dict[str, Any]]]:
    if request.param == "default":
        return load_model(default_artifacts.settings()), numeric_rows(default_artifacts)
    artifacts = trained(request.param)
    return load_model(artifacts.settings()), penguin_rows(artifacts)


@pytest.mark.slow
def test_coalesced_requests_get_the_same_bits_as_alone(
    served_model: tuple[ServedModel, list[dict[str, Any]]],
) -> None:
    model, rows = served_model
    assert model.scorer.max_rows > 0  # the start-up check found the graph row-independent
    work = batches(model, rows)
    counting = Counting(model.runner)
    together = asyncio.run(coalesced(Coalescer(counting, model.scorer.max_rows), work))
    assert together == [model.runner.predict(batch) for batch in work]
    assert counting.calls == [sum(batch.rows for batch in work)]  # all of them in one call


def test_coalescing_respects_the_row_cap_and_leaves_big_requests_alone(
    default_artifacts: Artifacts,
) -> None:
    model = load_model(default_artifacts.settings(coalesce_max_rows=5))
    rows = numeric_rows(default_artifacts)
    small = batches(model, rows)[:12]  # twelve one-row requests
    big = model.parser.parse(orjson.dumps({"instances": rows * 3}))  # 36 rows > MAX_REQUEST_ROWS
    assert big.rows > MAX_REQUEST_ROWS
    counting = Counting(model.runner)
    together = asyncio.run(coalesced(Coalescer(counting, 5), [*small, big]))
    assert together == [model.runner.predict(batch) for batch in [*small, big]]
    assert counting.calls == [36, 5, 5, 2]  # the big one at once, alone; the small ones at most 5 a call


def failing(model: ServedModel, batch: Batch) -> Batch:
    """`batch` with a row the model cannot score (no request can carry one: the parser refuses it):
    a category holding a lone surrogate, which onnxruntime cannot encode, or for an all-numeric
    model a numeric cell that is text."""
    if batch.categorical:
        column = list(batch.categorical[0])
        column[0] = "\ud800"
        return replace(batch, categorical=[column, *batch.categorical[1:]])
    numeric = batch.numeric.astype(object)
    numeric[0, 0] = "not a number"
    return replace(batch, numeric=numeric)


@pytest.mark.slow
def test_a_failing_request_in_a_coalesced_group_changes_no_other_answer(
    served_model: tuple[ServedModel, list[dict[str, Any]]],
) -> None:
    model, rows = served_model
    work = batches(model, rows)[:6]
    bad = 2
    work[bad] = failing(model, work[bad])
    counting = Counting(model.runner)

    async def each() -> list[Any]:
        scorer = Coalescer(counting, model.scorer.max_rows)
        return list(await asyncio.gather(*(scorer.predict(b) for b in work), return_exceptions=True))

    outcomes = asyncio.run(each())
    assert counting.calls[0] == sum(b.rows for b in work)  # they did share a call, which failed
    assert isinstance(outcomes[bad], Exception)
    with pytest.raises(type(outcomes[bad])):
        model.runner.predict(work[bad])  # the same failure as alone
    for i, (batch, got) in enumerate(zip(work, outcomes, strict=True)):
        if i != bad:
            assert isinstance(got, Scores)
            alone = model.runner.predict(batch)
            assert encode_predictions(model.version, model.classes, got) == encode_predictions(
                model.version, model.classes, alone
            )


def test_a_broken_model_fails_each_request_with_its_own_call(default_artifacts: Artifacts) -> None:
    model = load_model(default_artifacts.settings())
    work = batches(model, numeric_rows(default_artifacts))[:4]

    class Broken:
        kind = "onnx"
        calls = 0

        def predict(self, batch: Batch) -> Scores:
            Broken.calls += 1
            raise RuntimeError(f"model call {Broken.calls} failed")

    async def each() -> list[Any]:
        scorer = Coalescer(Broken(), 256)
        return list(await asyncio.gather(*(scorer.predict(b) for b in work), return_exceptions=True))

    outcomes = asyncio.run(each())
    # The shared call (1) failed; each request then failed alone, with its own exception.
    assert [str(o) for o in outcomes] == [f"model call {n} failed" for n in range(2, 6)]


@pytest.mark.parametrize(("setting", "expected"), [(None, 256), (0, 0), (17, 17)])
def test_model_document_says_how_many_rows_a_shared_call_takes(
    default_artifacts: Artifacts, setting: int | None, expected: int
) -> None:
    overrides = {} if setting is None else {"coalesce_max_rows": setting}
    from api.app import create_app

    with TestClient(create_app(default_artifacts.settings(**overrides))) as client:
        assert client.get("/model").json()["serving"]["coalesce_max_rows"] == expected


def v2_body(i: int, row: dict[str, Any]) -> bytes:
    """One row as V2's [1, F] FP64 tensor; the id is echoed, so an answer's bytes are its own."""
    tensor = {"name": "X", "shape": [1, len(row)], "datatype": "FP64", "data": list(row.values())}
    return orjson.dumps({"id": f"r{i}", "inputs": [tensor]})


# Both endpoints score through ServedModel.score, so both coalesce: each is checked.
ENDPOINTS = {
    "/predict": lambda i, row: orjson.dumps({"instances": [row]}),
    "/v2/models/lockstep/infer": v2_body,
}


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_concurrent_requests_to_a_real_server_get_the_answers_they_get_alone(
    default_artifacts: Artifacts, path: str
) -> None:
    rows = numeric_rows(default_artifacts) * 20
    bodies = [ENDPOINTS[path](i, row) for i, row in enumerate(rows)]

    def post(port: int, body: bytes) -> bytes:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            return bytes(reply.read())

    with running_server(default_artifacts) as server:
        port = server.port
        alone = [post(port, body) for body in bodies]
        with ThreadPoolExecutor(max_workers=16) as pool:
            together = list(pool.map(lambda body: post(port, body), bodies))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=10) as reply:
            assert json.load(reply)["serving"]["coalesce_max_rows"] > 0
    assert together == alone


def test_a_model_whose_rows_depend_on_their_batch_is_never_coalesced(default_artifacts: Artifacts) -> None:
    model = load_model(default_artifacts.settings())
    runner = model.runner

    class BatchDependent:  # the real graph, then a last-bit change that depends on the batch size
        kind = runner.kind

        def predict(self, batch: Batch) -> Scores:
            scores = runner.predict(batch)
            assert scores.probabilities is not None
            bump = 1e-15 * (batch.rows > 1)
            return Scores(labels=scores.labels, probabilities=scores.probabilities + bump)

    plan, metadata = model.serving, model.metadata
    worst, row_independent = reproduce_check(BatchDependent(), metadata, plan, default_artifacts.serving)
    assert worst <= plan.tolerance  # still faithful within the gate's tolerance...
    assert not row_independent  # ...but not bit for bit: joining requests would change answers
    assert reproduce_check(runner, metadata, plan, default_artifacts.serving)[1]
