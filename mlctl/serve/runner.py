"""Calls ``run()`` with bounded concurrency, a bounded wait queue and a timeout (per worker).

* ``concurrency``: threads calling ``run()`` at once in this worker.
* ``queue``: requests that may wait beyond those; past ``concurrency + queue`` a request is
  refused at once (503 with ``Retry-After``), before its body is read, so memory stays bounded.
* ``timeout_s``: a request whose ``run()`` takes longer gets 500 (Azure ML: ``Scoring timeout after N ms``).
* ``max_wait_s`` (Azure ML's ``max_request_wait_time``): a request that waited in this worker's
  queue longer than that before a thread took it is not run (``WaitedTooLong``: 503 with
  ``Retry-After``). It costs one monotonic timestamp when the request is queued and one check
  when a thread takes it. With ``concurrency`` 1 there is no queue in the server (``run()`` is
  called as soon as the request is read; waiting requests sit in the kernel's socket buffers,
  where the server cannot time them), so the limit applies only with ``concurrency`` > 1.

With ``concurrency`` 1 (the default), ``run()`` is called inline on the event loop's thread: a
thread hop would halve throughput for fast models (GIL contention with the loop; measured in
docs/benchmarks.md). The timeout is then a ``SIGALRM`` timer (``setitimer``) that raises inside
``run()``, as azureml-inference-server-http enforces ``SCORING_TIMEOUT_MS``; code stuck in a C
call is interrupted when it returns to Python. With ``concurrency`` > 1, ``run()`` runs on a
thread pool and the timeout only stops waiting: Python cannot stop the thread, so its slot stays
taken until ``run()`` returns, and capacity is never overcommitted.
"""

from __future__ import annotations

import asyncio
import contextvars
import signal
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any


class Overloaded(Exception):
    """No slot free: the worker has ``concurrency + queue`` requests admitted already."""


class TimedOut(Exception):
    """``run()`` did not return within the timeout."""


class WaitedTooLong(Exception):
    """The request waited in the queue longer than ``max_wait_s``; ``run()`` was not called."""


class Runner:
    """Admission control and execution of ``run()`` calls for one worker."""

    def __init__(
        self, *, concurrency: int = 1, queue: int = 64, timeout_s: float = 0.0, max_wait_s: float = 0.0
    ) -> None:
        self.capacity = concurrency + queue
        self.timeout_s = timeout_s
        self.max_wait_s = max_wait_s  # 0: no limit
        self.pending = 0  # admitted and not finished (a timed-out run() still counts until it returns)
        self.executor = None if concurrency == 1 else ThreadPoolExecutor(concurrency, thread_name_prefix="mlctl-run")
        if self.executor is None and timeout_s > 0:
            signal.signal(signal.SIGALRM, _raise_timeout)

    @property
    def inline(self) -> bool:
        """True when ``run()`` is called on the event loop's thread (``concurrency`` 1)."""
        return self.executor is None

    def call_inline(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on this thread, under the SIGALRM timer; raises TimedOut past the timeout."""
        if self.timeout_s <= 0:
            return function(*args)
        signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        try:
            return function(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[_Slot]:
        """Admit one request for the duration of the block. Raises Overloaded when full."""
        if self.pending >= self.capacity:
            raise Overloaded
        self.pending += 1
        slot = _Slot(self)
        try:
            yield slot
        finally:
            if not slot.handed_over:
                self.pending -= 1

    def _release(self, future: asyncio.Future[Any]) -> None:
        self.pending -= 1
        if not future.cancelled():
            future.exception()  # retrieved: a timed-out run()'s late error is not "never retrieved"


def _raise_timeout(_signum: int, _frame: object) -> None:
    raise TimedOut


class _Slot:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.handed_over = False

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)``, inline or on the pool; raises TimedOut past the timeout."""
        runner = self.runner
        if runner.executor is None:
            return runner.call_inline(function, *args)
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        max_wait_s = runner.max_wait_s
        queued = time.monotonic() if max_wait_s > 0 else 0.0

        def call() -> Any:
            loop.call_soon_threadsafe(started.set)  # the timeout counts run() only, not the queue wait
            if max_wait_s > 0 and time.monotonic() - queued > max_wait_s:
                raise WaitedTooLong
            return function(*args)

        # a copy of this task's context: the request id (mlctl.serve.context) reaches run()'s thread
        future = loop.run_in_executor(runner.executor, contextvars.copy_context().run, call)
        self.handed_over = True  # the slot is released when run() really ends, even after a timeout
        future.add_done_callback(runner._release)  # called on the event loop thread
        if runner.timeout_s <= 0:
            return await future
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait([future, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        try:
            return await asyncio.wait_for(asyncio.shield(future), runner.timeout_s)
        except asyncio.TimeoutError:
            raise TimedOut from None
