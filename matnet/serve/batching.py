"""Micro-batching: the rows of concurrent requests go through the model as one matrix.

A prediction of one row costs a Python call per layer whatever the row count, and a matrix product of
64 rows costs little more than one of a single row, so rows that arrive together are cheaper answered
together. The batcher is one asyncio task: it takes the first waiting request, then gathers the rows of
more requests for at most ``wait_s`` (but only while requests that have arrived are still on their way
to the queue: a lone client never waits), runs the model once on the stacked rows (on the event
loop's thread for a small batch, in a worker thread for a large one: see :data:`INLINE_ROWS`), and
hands each request its own slice of the answer.

Nothing here knows HTTP or the model: ``compute(X, want_proba)`` is whatever answers a matrix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["MicroBatcher", "Answer", "run_model"]

#: Batches up to this many rows run on the event loop's own thread. In a worker thread each of the
#: model's NumPy calls must win the GIL back from the busy event loop (up to the 5 ms switch
#: interval each time), which measured slower than the sub-millisecond product it waits to run.
INLINE_ROWS = 512

#: ``compute(X, want_proba)`` returns ``(decisions, probabilities or None)``, row-aligned with X.
Answer = tuple[np.ndarray, np.ndarray | None]


async def run_model(
    compute: Callable[[np.ndarray, bool], Answer], X: np.ndarray, want_proba: bool
) -> Answer:
    """``compute(X, want_proba)``: inline for a small matrix, in a worker thread for a large one."""
    if X.shape[0] <= INLINE_ROWS:
        return compute(X, want_proba)
    return await asyncio.to_thread(compute, X, want_proba)


@dataclass
class _Item:
    X: np.ndarray
    proba: bool
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Gather concurrent requests' rows into one model call.

    Parameters
    ----------
    compute : callable ``(X, want_proba) -> (decisions, P or None)``
        ``X`` of shape (n, n_features); ``decisions`` of shape (n, ...) and ``P`` of shape (n, k).
    wait_s : float
        The longest a batch waits for more requests after its first (0: only those already queued).
    max_rows : int
        A batch stops gathering at this many rows (a single larger request still runs whole).
    """

    def __init__(
        self, compute: Callable[[np.ndarray, bool], Answer], wait_s: float, max_rows: int
    ) -> None:
        self.compute = compute
        self.wait_s = wait_s
        self.max_rows = max_rows
        #: Requests that have arrived but not yet been queued (their bodies are being read/parsed).
        self.incoming = 0
        #: How many model calls and rows so far (the service reports them at /health).
        self.calls = 0
        self.rows = 0
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def submit(self, X: np.ndarray, proba: bool) -> Answer:
        """Queue ``X`` (already validated) and wait for its rows' answers."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(X, proba, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            rows = batch[0].X.shape[0]
            deadline = loop.time() + self.wait_s
            while rows < self.max_rows:
                if not self._queue.empty():
                    item = self._queue.get_nowait()
                    batch.append(item)
                    rows += item.X.shape[0]
                    continue
                # Wait only for requests already on their way (nobody else is coming otherwise):
                # one turn of the event loop lets each of them read and check its body. A timer
                # per wait (asyncio.wait_for) measured as costly as the product it would save.
                if self.incoming == 0 or loop.time() >= deadline:
                    break
                await asyncio.sleep(0)
            await self._answer(batch)

    async def _answer(self, batch: list[_Item]) -> None:
        want_proba = any(item.proba for item in batch)
        X = batch[0].X if len(batch) == 1 else np.concatenate([item.X for item in batch])
        try:
            decisions, P = await run_model(self.compute, X, want_proba)
        except Exception:
            # Every request was validated on its own, so this is rare; answer each alone so one
            # request's failure is never another's.
            for item in batch:
                await self._answer_alone(item)
            return
        self.calls += 1
        self.rows += X.shape[0]
        start = 0
        for item in batch:
            stop = start + item.X.shape[0]
            if not item.future.done():  # the client may have gone away
                part = P[start:stop] if P is not None and item.proba else None
                item.future.set_result((decisions[start:stop], part))
            start = stop

    async def _answer_alone(self, item: _Item) -> None:
        try:
            answer: Any = await run_model(self.compute, item.X, item.proba)
        except Exception as exc:
            if not item.future.done():
                item.future.set_exception(exc)
            return
        self.calls += 1
        self.rows += item.X.shape[0]
        if not item.future.done():
            item.future.set_result(answer)
