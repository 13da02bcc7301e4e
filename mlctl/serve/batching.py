"""Adaptive micro-batching for entry scripts that declare they take batches.

Contract (an mlctl extension of the Azure ML one): besides ``init()`` and ``run(raw_data)``, the
script defines ``run_batch(raw_data_list)``: a list of request bodies (strings) in, a list of as
many results out, in the same order. ``run()`` stays for single calls.

Requests go into a batch; the batch is sent to ``run_batch`` when it holds ``max_batch_size``
requests, or else on the event loop's next turn (``max_wait_ms`` 0), or after ``max_wait_ms``.
So the batch size adapts to the load: requests that arrived while the model was busy are
answered together, and a lone request waits for nothing (or at most ``max_wait_ms``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from mlctl.serve.backends.entry_script import BadInput, EntryScript, EntryScriptError


class BatchFailed(Exception):
    """``run_batch`` raised (``__cause__``) or returned the wrong number of results."""


class Batcher:
    """Collects request bodies of one worker into ``run_batch`` calls.

    Raises:
        EntryScriptError: the entry script has no ``run_batch``, or its ``run`` is not the plain
            string kind (``@rawhttp``, ``@input_schema`` and ``request_headers`` are not batched).
    """

    def __init__(self, entry: EntryScript, *, max_batch_size: int, max_wait_ms: float) -> None:
        run_batch = getattr(entry.module, "run_batch", None)
        if not callable(run_batch):
            raise EntryScriptError("batching is on, but the entry script does not define run_batch(raw_data_list)")
        if not entry.fast:
            raise EntryScriptError(
                "batching needs a plain run(raw_data): not @rawhttp, @input_schema or request_headers"
            )
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.pending: list[tuple[str, asyncio.Future[Any]]] = []
        self.timer: asyncio.Handle | None = None
        self.sizes: list[int] = []  # recent batch sizes, for tests and the log

    async def submit(self, body: bytes) -> Any:
        """The result for one request body, computed in a batch.

        Raises:
            BadInput: the body is not UTF-8.
            BatchFailed: the batch failed.
        """
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"input cannot be decoded as UTF-8: {exc}") from None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending.append((text, future))
        if len(self.pending) >= self.max_batch_size:
            self._flush()
        elif self.timer is None:
            self.timer = (
                loop.call_later(self.max_wait_s, self._flush) if self.max_wait_s else loop.call_soon(self._flush)
            )
        return await future

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending = self.pending, []
        if not batch:
            return
        self.sizes = [*self.sizes[-99:], len(batch)]
        try:
            results = list(self.run_batch([text for text, _ in batch]))
            if len(results) != len(batch):
                raise BatchFailed(f"run_batch returned {len(results)} results for {len(batch)} inputs")
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
            error = exc if isinstance(exc, BatchFailed) else BatchFailed(f"run_batch raised {type(exc).__name__}")
            error.__cause__ = exc if error is not exc else None
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
