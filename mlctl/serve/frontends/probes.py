"""Kubernetes-style probes and Prometheus metrics, for every service whatever its protocol.

* ``GET /healthz``: liveness (this worker's event loop answers).
* ``GET /readyz``: readiness: 200 once ``init()`` succeeded (a worker serves only after it), 503
  while the worker drains on shutdown or a zero-downtime update.
* ``GET /metrics``: Prometheus text format 0.0.4, summed over every worker (``mlctl.serve.metrics``).
"""

from __future__ import annotations

from typing import Any

from mlctl.serve.answers import Answer, answer
from mlctl.serve.frontends import Call, FastHandler, Route

_JSON = (b"content-type", b"application/json")
_PROMETHEUS = (b"content-type", b"text/plain; version=0.0.4")
_GET = frozenset({"GET", "HEAD"})


class Probes:
    """Liveness, readiness and metrics of one worker.

    Args:
        pipeline: the ``ScoringApp`` (its ``draining`` flag and ``metrics``).
    """

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self._routes = {
            "/healthz": Route(_GET, self._live),
            "/readyz": Route(_GET, self._ready),
            "/metrics": Route(_GET, self._metrics),
        }

    def route(self, path: str) -> Route | None:  # noqa: D102 - see Frontend
        return self._routes.get(path)

    def error(self, status: int, message: str, request_id: str) -> Answer:  # noqa: D102 - see Frontend
        return answer(status, b'{"error":"%s"}' % message.encode(), request_id.encode("latin-1"), _JSON)

    def fast_routes(self) -> dict[bytes, FastHandler]:  # noqa: D102 - see Frontend
        return {}

    async def _live(self, call: Call) -> Answer:
        return answer(200, b'{"status":"alive"}', call.rid, _JSON)

    async def _ready(self, call: Call) -> Answer:
        if self.pipeline.draining:
            return answer(503, b'{"status":"draining"}', call.rid, _JSON)
        return answer(200, b'{"status":"ready"}', call.rid, _JSON)

    async def _metrics(self, call: Call) -> Answer:
        metrics = self.pipeline.metrics
        return answer(200, metrics.render() if metrics is not None else b"", call.rid, _PROMETHEUS)
