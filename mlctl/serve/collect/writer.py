"""A bounded buffer of collected rows and the background thread that writes them.

Collection never blocks or fails a request: ``put`` only appends to memory (or counts the rows as
dropped when the buffer holds ``capacity`` rows already). The writer thread appends batches to the
sink; when the sink fails (a storage outage) the rows stay buffered, counted against the bound,
and the write is retried with exponential backoff (0.1 s doubling to 5 s) until it succeeds or the
process flushes and gives up at its deadline. A batch leaves the buffer only once written; when
the store took part of a write before failing (``sinks.PartlyWritten``), the retry starts after
what landed, so no row is written twice and none is cut.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlctl.serve.collect import deferred, rows
from mlctl.serve.collect.deferred import Deferred
from mlctl.serve.collect.sinks import PartlyWritten, Sink

if TYPE_CHECKING:
    from mlctl.serve.metrics import SharedMetrics

log = logging.getLogger("mlctl.serve")
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
INTERVAL_S = 0.5  # rows are written in batches at most this old (sooner when the buffer is half full)


@dataclass
class Counters:
    """Rows offered to ``collect`` (``collected``), written, dropped (buffer full) and failed writes.

    ``add`` also adds to this worker's slot of the server's shared metrics (``/metrics``) when the
    process is a scoring server worker."""

    collected: int = 0
    written: int = 0
    dropped: int = 0
    write_errors: int = 0

    def add(self, name: str, n: int) -> None:
        """Add ``n`` to counter ``name`` (one of the four fields)."""
        self.__dict__[name] += n
        shared = _metrics_current() if _metrics_current is not None else _shared_metrics()
        if shared is not None:
            shared.add_collection(name, n)


_metrics_current: Callable[[], SharedMetrics | None] | None = None


def _shared_metrics() -> SharedMetrics | None:
    """This worker's shared metrics (``mlctl.serve.metrics.current``, imported on first use, as before)."""
    global _metrics_current
    if _metrics_current is None:
        from mlctl.serve.metrics import current

        _metrics_current = current
    return _metrics_current()


@dataclass(eq=False, slots=True)
class Batch:
    """``rows`` rows for one file of the layout (``path``), and that file's header line. ``body``:
    the rows as CSV lines in UTF-8, or a numeric array with its correlation
    (``deferred.Deferred``), whose text this thread makes, for every request of a write at once,
    before it appends (``deferred.render``)."""

    path: str
    header: str
    body: bytes | Deferred
    rows: int


@dataclass
class _State:
    batches: dict[str, list[Batch]] = field(default_factory=dict)  # file -> its batches, in order
    rows: int = 0  # buffered rows, counting those being written until they are
    flushing: int = 0  # flushes waiting (a deployer's and the graceful stop's may overlap)
    idle: bool = False  # the writer waits for a first batch with no timeout


class Writer:
    """Buffer ``capacity`` rows at most for ``sink``; a daemon thread writes them (see module doc),
    every ``interval_s`` seconds at least."""

    def __init__(
        self, sink: Sink, capacity: int, counters: Counters | None = None, *, interval_s: float = INTERVAL_S
    ) -> None:
        self.sink = sink
        self.capacity = capacity
        self.interval_s = interval_s
        self.counters = counters or Counters()
        self._state = _State()
        self._failed_writes = 0  # in a row: the store is failing since the first (logged once)
        self._lock = threading.Lock()  # ``put`` takes it directly: cheaper than the Condition's wrapper
        self._cond = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._loop, name="mlctl-data-collector", daemon=True)
        self._thread.start()

    def put(self, batch: Batch) -> bool:
        """Buffer ``batch`` whole, or drop it whole when it does not fit; True when buffered.
        Wakes the writer only when it is idle or the buffer passes half full."""
        rows = batch.rows
        state = self._state
        with self._lock:
            self.counters.collected += rows  # as ``Counters.add``, inline: this runs in every request
            shared = _metrics_current() if _metrics_current is not None else _shared_metrics()
            if shared is not None:
                shared.add_collection("collected", rows)
            if state.rows + rows > self.capacity:
                self.counters.add("dropped", rows)
                return False
            queue = state.batches.get(batch.path)
            if queue is None:
                state.batches[batch.path] = [batch]
            else:
                queue.append(batch)
            state.rows += rows
            # wake the writer when it waits for a first batch with no timeout, and when the buffer
            # passes half full; else it writes every ``interval_s`` (each wake-up costs the request
            # a hand-off of the GIL)
            if state.idle or state.rows * 2 > self.capacity >= (state.rows - rows) * 2:
                state.idle = False
                self._cond.notify()
            return True

    @property
    def buffered(self) -> int:
        """Rows waiting to be written."""
        with self._cond:
            return self._state.rows

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for every buffered row to be written (retrying now,
        without backoff pauses longer than the time left); True when none is left."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._state.flushing += 1
            self._cond.notify_all()
            try:
                while self._state.rows and time.monotonic() < deadline:
                    self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
                return self._state.rows == 0
            finally:
                self._state.flushing -= 1

    def _loop(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                if backoff:  # storage failing: only a flush cuts the pause short
                    self._cond.wait_for(lambda: self._state.flushing > 0, timeout=backoff)
                else:
                    self._cond.wait_for(self._due, timeout=self.interval_s)
                while not self._state.batches:
                    self._state.idle = True
                    self._cond.wait()
                self._state.idle = False
                flushing = self._state.flushing
                pending, self._state.batches = self._state.batches, {}
            if backoff and flushing:
                time.sleep(0.1)  # the flush deadline bounds these retries; do not spin
            if self._write(pending):
                backoff = 0.0
                self._recovered()
            else:
                backoff = min(BACKOFF_MAX_S, backoff * 2 if backoff else BACKOFF_FIRST_S)

    def _due(self) -> bool:
        return self._state.flushing > 0 or self._state.rows * 2 > self.capacity

    def _write(self, pending: dict[str, list[Batch]]) -> bool:
        """Append each file's batches to it; on a failure put what of that file's batches is not
        written, and the later files' batches, back in front of any that came since, and return False."""
        files = list(pending.items())
        for index, (path, batches) in enumerate(files):
            bodies = _render(batches)
            try:
                self.sink.append(path, batches[0].header, bodies)
            except Exception as error:  # noqa: BLE001 - any storage failure: keep the rows and retry
                self._failing(error)
                written, left = _split(batches, error)
                with self._cond:
                    self._written(sum(b.rows for b in written))
                    self.counters.add("write_errors", 1)
                    files[index] = (path, left)
                    for path_left, batches_left in files[index:]:
                        if batches_left:
                            self._state.batches[path_left] = batches_left + self._state.batches.get(path_left, [])
                return False
            with self._cond:
                self._written(sum(b.rows for b in batches))
        return True

    def _failing(self, error: Exception) -> None:
        """Log the first failed write of an outage (not each retry): the error's type, and the text
        of the system's own errors only (a full disk, a missing folder). An SDK's message may carry
        a request URL, and with a SAS its token: a secret."""
        self._failed_writes += 1
        if self._failed_writes > 1:
            return
        cause = error.__cause__ if isinstance(error, PartlyWritten) and error.__cause__ else error
        detail = f": {cause}" if isinstance(cause, OSError) and type(cause).__module__ == "builtins" else ""
        log.warning(
            "model data collection: writing to the store failed (%s%s); the rows stay buffered (up to %d) "
            "and the write is retried with backoff",
            type(cause).__name__,
            detail,
            self.capacity,
        )

    def _recovered(self) -> None:
        if self._failed_writes:
            log.warning(
                "model data collection: the store takes rows again, after %d failed writes", self._failed_writes
            )
            self._failed_writes = 0

    def _written(self, rows: int) -> None:
        """Count ``rows`` as written (the lock held)."""
        if rows:
            self._state.rows -= rows
            self.counters.add("written", rows)
            self._cond.notify_all()


def _split(batches: list[Batch], error: Exception) -> tuple[list[Batch], list[Batch]]:
    """(batches fully written, batches left to write) after ``error``: all left unless the sink
    says part landed (``PartlyWritten``); a batch cut short is left as its unwritten bytes, its rows
    counted once it is whole."""
    if not isinstance(error, PartlyWritten):
        return [], batches
    written, left = batches[: error.done], batches[error.done :]
    if left and error.offset:
        cut = left[0]
        assert isinstance(cut.body, bytes)  # rendered before it was written
        left = [Batch(cut.path, cut.header, cut.body[error.offset :], cut.rows), *left[1:]]
    return written, left


RENDER_CHUNK = 128  # batches rendered between two hand-offs of the GIL (see ``_render``)
YIELD_S = 0.0002


def _render(batches: list[Batch]) -> list[bytes]:
    """The text of ``batches``, in order; every deferred batch is given its text (in place, once:
    a retry writes the same text). Rendered ``RENDER_CHUNK`` batches at a time, giving the GIL up
    between chunks: a request's thread that wants it then waits about a chunk's formatting (~0.5 ms
    at 2 rows a request), not the interpreter's switch interval (5 ms) that a write of thousands of
    requests' rows would otherwise hold it for. (The p99 latency this leaves is measured in
    docs/benchmarks.md; what had doubled it was the garbage collector, see ``gc.freeze`` in
    ``mlctl.serve.__main__``.)"""
    bodies = [b.body for b in batches]
    if all(type(body) is bytes for body in bodies):
        return bodies  # type: ignore[return-value]
    texts: list[bytes] = []
    for start in range(0, len(bodies), RENDER_CHUNK):
        if start:
            time.sleep(YIELD_S)  # a waiting request's thread takes the GIL (a sleep(0) gets it back first)
        chunk = bodies[start : start + RENDER_CHUNK]
        try:
            texts += deferred.render(chunk)
        except Exception:  # a bug here must not stop the writer: the csv module, batch by batch
            log.exception("model data collection: formatting numeric rows failed; writing them with the csv module")
            texts += [_csv_text(body) for body in chunk]
    for batch, text in zip(batches, texts, strict=True):
        batch.body = text
    return texts


def _csv_text(body: bytes | Deferred) -> bytes:
    if isinstance(body, bytes):
        return body
    return rows.prefixed(body.correlation.prefix().decode(), body.table.tolist()).encode()
