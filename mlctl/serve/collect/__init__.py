"""Model data collection inside the scoring server: what ``azureml.monitoring.ModelDataCollector``
(the stand-in in ``mlctl/serve/_compat``) hands its rows to.

One ``Writer`` per worker process (created on the first collector, after the fork), shared by every
collector of the entry script. ``flush_all`` writes what is buffered; the worker calls it, through
``flush_before_exit``, when it stops serving (``mlctl.serve.__main__``, since workers leave with
``os._exit``, which skips ``atexit``) and when a deployer asks every worker to (``POST /-/mlctl/model-data/flush``,
``mlctl.serve.frontends.internal``), and an ``atexit`` hook covers any other process that collected.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING

from mlctl.serve.collect.settings import DEFAULT_FLUSH_TIMEOUT_S, Settings, from_env
from mlctl.serve.collect.writer import Batch, Counters, Writer

if TYPE_CHECKING:
    from mlctl.serve.collect.sinks import Sink

__all__ = [
    "Batch",
    "Counters",
    "Settings",
    "buffered",
    "counters",
    "flush_all",
    "flush_before_exit",
    "settings",
    "writer",
]

FLUSH_TIMEOUT_S = DEFAULT_FLUSH_TIMEOUT_S  # within the 30 s every target waits before SIGKILL, after requests drained

_lock = threading.Lock()
_writer: Writer | None = None
_pid = 0
_counters = Counters()


def settings() -> Settings:
    """The settings of this process (read from its environment on every call; cheap)."""
    return from_env()


def counters() -> Counters:
    """This process's collection counters."""
    return _counters


def writer(current: Settings) -> Writer:
    """The writer of this process for ``current`` settings (created once per process).

    Raises:
        ImportError: the blob sink needs ``azure-storage-blob`` and it is not installed.
    """
    global _writer, _pid
    with _lock:
        if _writer is None or _pid != os.getpid():
            _writer = Writer(_sink(current), current.buffer_rows, _counters, interval_s=current.interval_s)
            _pid = os.getpid()
        return _writer


def _sink(current: Settings) -> Sink:
    from mlctl.serve.collect import sinks

    if current.connection_string or current.account_url:
        return sinks.BlobSink(current.connection_string, current.account_url, current.api_version)
    assert current.local_root is not None
    return sinks.LocalSink(current.local_root)


def flush_all(timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
    """Write every buffered row (waiting up to ``timeout_s`` s); True when nothing is left."""
    active = _writer
    if active is None or _pid != os.getpid():
        return True
    return active.flush(timeout_s)


def flush_before_exit(log: logging.Logger) -> int:
    """Write every buffered row before the process leaves, waiting ``MLCTL_DC_FLUSH_TIMEOUT_S``
    seconds at most (20). Rows the store did not take by then are lost with the process: they are
    counted dropped and logged as an error with their number, never lost silently. Returns that
    number (0 when everything was written or nothing collected)."""
    timeout_s = settings().flush_timeout_s
    if flush_all(timeout_s):
        return 0
    left = buffered()
    _counters.add("dropped", left)
    log.error(
        "model data collection: %d buffered rows were not written within %.0f s of stopping (the store did "
        "not take them) and are lost",
        left,
        timeout_s,
    )
    return left


def buffered() -> int:
    """Rows this process holds that are not written yet (0 when it never collected)."""
    active = _writer
    if active is None or _pid != os.getpid():
        return 0
    return active.buffered


atexit.register(flush_all)
