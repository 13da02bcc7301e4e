"""mlctl's own operational routes, under the reserved prefix ``/-/mlctl/`` (after Prometheus's
``/-/reload``: a path no Azure ML, Open Inference Protocol or MLflow route starts with).

* ``POST /-/mlctl/model-data/flush[?timeout=S]``: every worker writes the model data rows it
  buffers (``mlctl.serve.collect``) now; answered once they are written, or after ``S`` seconds
  (default 10, at most 20). A deployer calls it before it stops a server without a SIGTERM (ACI
  replaces and deletes container groups that way), so the graceful-stop flush cannot run.
  200 ``{"written": true, "rows_left": 0, "workers": W, "workers_answered": W}`` when every row
  is written; 504 with the same fields when time ran out (``rows_left``: rows the workers that
  answered still hold; a worker that did not answer, e.g. one restarting, is not counted). With
  ``auth_enabled`` it needs the service key (401 without), as ``/score``; without, anyone who can
  reach the service can ask, which only writes buffered rows early.

How every worker flushes: the worker that got the request bumps the flush generation in the
metrics' shared memory (``SharedMetrics.request_flush``) and sends SIGUSR2 to the supervisor, which
relays it to every worker (as it relays SIGUSR1 and SIGTERM); each worker's event loop then runs
``flush_this_worker`` on a thread, which records its answer in its own slot; the requesting
worker polls the slots until all answered or the time limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any
from urllib.parse import parse_qs

from mlctl.serve.answers import Answer, answer
from mlctl.serve.frontends import Call, FastHandler, Route

PREFIX = "/-/mlctl/"
FLUSH_PATH = PREFIX + "model-data/flush"
FLUSH_DEFAULT_S = 10.0
FLUSH_MAX_S = 20.0  # mlctl.serve.collect.FLUSH_TIMEOUT_S
_POLL_S = 0.02
_JSON = (b"content-type", b"application/json")


class Internal:
    """The ``/-/mlctl/`` routes of one worker.

    Args:
        pipeline: the ``ScoringApp`` (its ``metrics``: the shared memory every worker maps).
    """

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self._routes = {FLUSH_PATH: Route(frozenset({"POST"}), self._flush, keyed=True)}

    def route(self, path: str) -> Route | None:  # noqa: D102 - see Frontend
        return self._routes.get(path)

    def error(self, status: int, message: str, request_id: str) -> Answer:  # noqa: D102 - see Frontend
        extra = ((b"www-authenticate", b"Bearer"),) if status == 401 else ()
        body = json.dumps({"error": message}).encode()
        return answer(status, body, request_id.encode("latin-1"), _JSON, *extra)

    def fast_routes(self) -> dict[bytes, FastHandler]:  # noqa: D102 - see Frontend
        return {}

    async def _flush(self, call: Call) -> Answer:
        try:
            timeout_s = flush_timeout(call.scope.get("query_string", b""))
        except ValueError as exc:
            return self.error(400, str(exc), call.request_id)
        metrics = self.pipeline.metrics
        loop = asyncio.get_running_loop()
        if metrics is None or metrics.supervisor == os.getpid():  # no supervisor: this process alone
            left = await loop.run_in_executor(None, flush_this_process, timeout_s)
            answered, workers = 1, 1
        else:
            answered, left, workers = await _flush_every_worker(metrics, timeout_s)
        written = answered == workers and left == 0
        body = {"written": written, "rows_left": left, "workers": workers, "workers_answered": answered}
        return answer(200 if written else 504, json.dumps(body).encode(), call.rid, _JSON)


async def _flush_every_worker(metrics: Any, timeout_s: float) -> tuple[int, int, int]:
    """Have the supervisor signal every worker to flush; (workers answered, rows they hold, workers)."""
    generation = metrics.request_flush(timeout_s)
    os.kill(metrics.supervisor, signal.SIGUSR2)
    deadline = time.monotonic() + timeout_s + 0.5  # a worker's own limit is timeout_s: let it answer
    while True:
        answered, left = metrics.flush_progress(generation)
        if answered >= metrics.workers or time.monotonic() > deadline:
            return answered, left, metrics.workers
        await asyncio.sleep(_POLL_S)


def flush_timeout(query: bytes) -> float:
    """The ``timeout`` query parameter in seconds (default 10, capped at 20).

    Raises:
        ValueError: it is not a number of seconds >= 0.
    """
    values = parse_qs(query.decode("latin-1")).get("timeout")
    if not values:
        return FLUSH_DEFAULT_S
    try:
        seconds = float(values[0])
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses nan
        raise ValueError("timeout must be a number of seconds >= 0")
    return min(seconds, FLUSH_MAX_S)


def flush_this_process(timeout_s: float) -> int:
    """Write this process's buffered rows (up to ``timeout_s`` s); returns the rows still held.
    Loads no collection code when the entry script never collected."""
    collect = sys.modules.get("mlctl.serve.collect")
    if collect is None:
        return 0
    collect.flush_all(timeout_s)
    return int(collect.buffered())


def flush_this_worker(metrics: Any) -> None:
    """A worker's answer to SIGUSR2 (run on a thread): flush for the generation last requested and
    record the rows left in this worker's slot."""
    generation, timeout_s = metrics.flush_wanted()
    metrics.flush_answered(generation, flush_this_process(timeout_s))
