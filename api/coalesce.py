"""Scores small /predict requests that arrive together in one model call (opportunistic batching).

A model call has a cost per call whatever its row count (for onnxruntime ~30 µs of server CPU under
load: the call's own work and the caches it leaves cold), about as much as everything else /predict
does for one row. Requests that are already parsed when the event loop reaches the flush join one
call, so that cost is shared; nothing waits for a timer: a request alone is scored in the same loop
pass, on its own.

Only models whose runner gives every row bit-identical output whether scored alone or among others
are coalesced (the start-up check decides, on serving.json's check rows), so the answers, and the
responses, are the same as without coalescing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from itertools import chain

import numpy as np

from api.batch import Batch
from api.runners import Runner, Scores

# Larger requests already spread the per-call cost over their rows: they are scored on their own.
MAX_REQUEST_ROWS = 32


def merge_batches(batches: Sequence[Batch]) -> Batch:
    """One Batch holding the rows of `batches` in order (counts summed per feature)."""
    missing: dict[str, int] = {}
    unknown: dict[str, int] = {}
    for batch in batches:
        for feature, count in batch.missing.items():
            missing[feature] = missing.get(feature, 0) + count
        for feature, count in batch.unknown.items():
            unknown[feature] = unknown.get(feature, 0) + count
    by_column = zip(*(b.categorical for b in batches), strict=True)
    columns: list[Sequence[str | None]] = [list(chain.from_iterable(parts)) for parts in by_column]
    return Batch(
        rows=sum(b.rows for b in batches),
        numeric=np.concatenate([b.numeric for b in batches]),
        categorical=columns,
        missing=missing,
        unknown=unknown,
    )


class Coalescer:
    """`await predict(batch)`: the runner's scores for `batch`, computed in one call with the other
    small batches waiting in the same event-loop pass (at most `max_rows` rows per call; 0: never)."""

    def __init__(self, runner: Runner, max_rows: int):
        self.runner = runner
        self.max_rows = max_rows
        self._pending: list[tuple[Batch, asyncio.Future[Scores]]] = []

    async def predict(self, batch: Batch) -> Scores:
        if batch.rows > min(MAX_REQUEST_ROWS, self.max_rows):
            return self.runner.predict(batch)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Scores] = loop.create_future()
        self._pending.append((batch, future))
        if len(self._pending) == 1:
            # call_soon runs after the callbacks already queued: the requests parsed in this pass.
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        taken, rows = 0, 0
        while taken < len(self._pending) and (
            taken == 0 or rows + self._pending[taken][0].rows <= self.max_rows
        ):
            rows += self._pending[taken][0].rows
            taken += 1
        group, self._pending = self._pending[:taken], self._pending[taken:]
        if self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        if len(group) == 1:
            self._settle(group)
            return
        try:
            scores = self.runner.predict(merge_batches([batch for batch, _ in group]))
        except Exception:
            # One request's rows failed the joined call: each request is scored again on its own,
            # so it gets exactly what it would have got alone, and a failure stays with its request.
            for member in group:
                self._settle([member])
            return
        start = 0
        for batch, future in group:
            if not future.done():  # a request cancelled meanwhile (shutdown) takes no result
                future.set_result(scores.slice(start, start + batch.rows))
            start += batch.rows

    def _settle(self, alone: list[tuple[Batch, asyncio.Future[Scores]]]) -> None:
        """Score one request by itself: its result, or its own exception (a 500, as uncoalesced)."""
        [(batch, future)] = alone
        try:
            scores = self.runner.predict(batch)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(scores)
