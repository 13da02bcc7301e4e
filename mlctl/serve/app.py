"""The scoring server's request pipeline: one ASGI application, protocol front-ends behind it.

Every request goes through the same steps, whatever its protocol: a request id (the client's
``x-request-id``, else a new one; 431 over 100 characters, as Azure ML) and the request-tracking
and CORS headers every answer carries (``mlctl.serve.tracking``), the route of its path
from the front-ends (``mlctl.serve.frontends``: Azure ML's ``/score``, the probes, mlctl's own
``/-/mlctl/`` routes; 404 when none has it, 405 for a method the route does not answer), auth for
routes that reach the model and for mlctl's own (401 without a valid ``Authorization: Bearer KEY``;
preflight ``OPTIONS`` is exempt), admission to the
model (a runner slot: 503 with ``Retry-After`` when the worker is full), the body limit (413),
then the front-end's handler; metrics and the access log record the answer.

Request ids are shaped like a UUID4: a random prefix drawn when the worker starts, then a
per-worker counter in the last 12 hex digits (unique across workers and restarts without a
random draw per request). The id of the request being scored is also the context variable of
``mlctl.serve.context``, for log lines and collected data.

``answer_now`` is the synchronous fast path that ``mlctl.serve.http`` takes for a complete
``POST`` to a front-end's fast route (``/score`` of a plain ``run()`` called inline); the ASGI
interface serves everything (and is what uvicorn runs).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from mlctl.serve.answers import Answer, Body, Headers, send_answer, status_line
from mlctl.serve.auth import KeyStore
from mlctl.serve.batching import Batcher
from mlctl.serve.context import set_request_id
from mlctl.serve.frontends import BodyTooLarge, Call, Disconnected, FastHandler, Frontend, Route
from mlctl.serve.metrics import SharedMetrics
from mlctl.serve.runner import Overloaded, Runner
from mlctl.serve.tracking import MS_IDS_TOO_LONG, Tracking

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger("mlctl.serve")
_REQUEST_ID_LIMIT = 100
_ID_TOO_LONG = "x-request-id must not exceed 100 characters"
_UNAUTHORIZED = "unauthorized: send Authorization: Bearer KEY (see `mlctl service keys`)"
_OVERLOADED = "overloaded: too many requests waiting; retry after the Retry-After delay"


def frontends_for(app: ScoringApp, backend: Any, *, batcher: Batcher | None, debug: bool) -> list[Frontend]:
    """The protocol front-ends every service serves, in the order their paths are looked up.

    The first one also shapes the errors of paths no front-end has (404).
    """
    from mlctl.serve.frontends.azureml import AzureML
    from mlctl.serve.frontends.internal import Internal
    from mlctl.serve.frontends.oip import OIP
    from mlctl.serve.frontends.probes import Probes

    frontends: list[Frontend] = [
        AzureML(backend, runner=app.runner, batcher=batcher, debug=debug, keys=app.keys is not None),
        Probes(app),
        Internal(app),
        OIP(app, model_name=app.model_name, model_version=app.model_version, debug=debug),
    ]
    if getattr(backend, "platform", None) == "mlflow":  # MLflow model folders also answer /invocations
        from mlctl.serve.frontends.mlflow import MLflow

        frontends.append(MLflow(backend, debug=debug))
    return frontends


class ScoringApp:
    """ASGI app serving one loaded (and initialised) model back-end through its front-ends.

    Args:
        backend: the model back-end, after ``init()`` succeeded (``mlctl.serve.backends``).
        max_request_bytes: largest accepted body, in bytes (413 beyond).
        debug: put tracebacks of ``run()`` errors in the response body.
        runner: concurrency, queue and timeout of model calls (503 when full, 500 past the timeout, as Azure ML).
        keys: when given, routes that reach the model need ``Authorization: Bearer KEY`` (401 otherwise).
        metrics: shared counters behind ``GET /metrics`` (Prometheus).
        access_log: one JSON line per request on stdout (request id, route, status, latency).
        batcher: when given, ``POST /score`` bodies are scored in adaptive micro-batches (``run_batch``).
        cors_origins: CORS origins allowed (``("*",)``: all; empty: off), see ``mlctl.serve.tracking``.
        model_name: the model's name in the Open Inference Protocol's paths (``/v2/models/NAME``).
        model_version: its version there, when it has one.
    """

    def __init__(
        self,
        backend: Any,
        *,
        max_request_bytes: int,
        debug: bool = False,
        runner: Runner | None = None,
        keys: KeyStore | None = None,
        metrics: SharedMetrics | None = None,
        access_log: bool = False,
        batcher: Batcher | None = None,
        cors_origins: tuple[str, ...] = (),
        model_name: str = "model",
        model_version: str | None = None,
    ) -> None:
        self.backend = backend
        self.tracking = Tracking(cors_origins)
        self.model_name = model_name
        self.model_version = model_version
        self.keys = keys
        self.metrics = metrics
        self.access_log = access_log
        self.runner = runner or Runner()
        self.max_request_bytes = max_request_bytes
        self.draining = False
        self.frontends = frontends_for(self, backend, batcher=batcher, debug=debug)
        self._fast: dict[bytes, FastHandler] = {}
        for frontend in reversed(self.frontends):
            self._fast.update(frontend.fast_routes())
        self._id_prefix = str(uuid.UUID(bytes=os.urandom(16), version=4))[:24]  # drawn in the worker, after fork
        self._id_counter = itertools.count(1)

    def new_request_id(self) -> str:
        """A request id unique across workers and restarts: ``xxxxxxxx-xxxx-4xxx-yxxx-<counter, 12 hex>``."""
        return f"{self._id_prefix}{next(self._id_counter) & 0xFFFFFFFFFFFF:012x}"

    def answer_now(self, method: bytes, url: bytes, headers: Headers, body: bytes) -> tuple[bytes, Body] | None:
        """Answer a complete ``POST`` to a fast route synchronously, or ``None`` when the ASGI path must.

        Taken when a front-end offers ``url`` as a fast route and the request passes auth with a
        valid ``x-request-id``; metrics and the access log are recorded as on the ASGI path.
        Returns the status line plus headers (each ending in CRLF, without the blank line) and the
        body (``Chunks`` for a streamed answer: ``mlctl.serve.http`` sends it chunked).
        """
        handler = self._fast.get(url) if method == b"POST" else None
        if handler is None:
            return None
        request_id = legacy = client = trace = origin = None
        for key, value in headers:
            if key == b"x-request-id" and request_id is None:
                if len(value) > _REQUEST_ID_LIMIT:
                    return None
                request_id = value.decode("latin-1")
            elif key == b"authorization" and self.keys is not None and not self.keys.allows(value):
                return None
            elif key == b"x-ms-request-id":
                legacy = value
            elif key == b"x-ms-client-request-id":
                client = value
            elif key == b"traceid":
                trace = value
            elif key == b"origin":
                origin = value
        if self.keys is not None and not any(key == b"authorization" for key, _ in headers):
            return None
        if request_id is None:
            request_id = self.new_request_id()
        rid, extra = request_id.encode("latin-1"), None
        if legacy is not None or client is not None or trace is not None:
            extra = self.tracking.headers(rid, legacy, client, trace)
            if extra is None:
                return None  # the ASGI path answers 431
        if self.tracking.origins:
            extra = (extra or self.tracking.headers(rid, None, None, None) or []) + self.tracking.cors(
                origin, None, None
            )
        set_request_id(request_id)
        path = url.decode("latin-1")
        metrics, started = self.metrics, time.perf_counter()
        if metrics is not None:
            metrics.in_flight(1)
        try:
            status, payload, answer_headers = handler(body, request_id, rid)
        finally:
            seconds = time.perf_counter() - started
            if metrics is not None:
                metrics.in_flight(-1)
        if metrics is not None:
            metrics.observe(path, status, seconds)
        if self.access_log:
            self._log_access("POST", path, status, request_id, seconds)
        parts = [status_line(status)]
        if extra is None:  # the common case: the tracking headers serialised inline
            parts += (b"x-ms-request-id: ", rid, b"\r\n", self.tracking.server_line)
        else:
            answer_headers.extend(extra)
        for name, value in answer_headers:
            parts += (name, b": ", value, b"\r\n")
        return b"".join(parts), payload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.metrics is None and not self.access_log:
            await self._dispatch(scope, receive, send)
            return
        started, answer = time.perf_counter(), {"status": 0, "headers": []}

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.update(message)
            await send(message)

        try:
            await self._dispatch(scope, receive, recording_send)
        finally:
            self._record(scope, answer, time.perf_counter() - started)

    def _record(self, scope: Scope, answer: dict[str, Any], seconds: float) -> None:
        path, status = scope["path"], answer["status"]
        if self.metrics is not None:
            self.metrics.observe(path, status, seconds)
        if self.access_log:
            rid = _header(answer["headers"], b"x-request-id")  # the id the client got, theirs or generated
            self._log_access(scope["method"], path, status, rid.decode("latin-1") if rid else None, seconds)

    @staticmethod
    def _log_access(method: str, path: str, status: int, request_id: str | None, seconds: float) -> None:
        line = {
            "ts": round(time.time(), 3),
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "ms": round(seconds * 1000, 3),
        }
        sys.stdout.write(json.dumps(line) + "\n")

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        default = self.frontends[0]
        request_id, extra, refused = self._tracking(scope)
        if refused:
            message = _ID_TOO_LONG if request_id is None else MS_IDS_TOO_LONG
            await send_answer(send, _with(default.error(431, message, request_id or ""), extra))
            return
        assert request_id is not None
        set_request_id(request_id)
        path, method = scope["path"], scope["method"]
        frontend, route = self._route(path)
        if route is None:
            await send_answer(send, _with(default.error(404, f"not found: {path}; POST /score", request_id), extra))
        elif method not in route.methods:
            preferred = "POST" if "POST" in route.methods else "GET"
            reply = frontend.error(405, f"method not allowed; use {preferred}", request_id)
            await send_answer(send, _with(reply, extra))
        elif (
            (route.scoring or route.keyed)
            and self.keys is not None
            and method != "OPTIONS"
            and not self.keys.allows(_header(scope["headers"], b"authorization"))
        ):
            await send_answer(send, _with(frontend.error(401, _UNAUTHORIZED, request_id), extra))
        else:
            call = Call(scope, receive, request_id, request_id.encode("latin-1"), self.max_request_bytes)
            await self._answer(frontend, route, call, send, extra)

    def _tracking(self, scope: Scope) -> tuple[str | None, Headers, bool]:
        """The request id (None: over 100 characters), the tracking and CORS headers, and whether an id is refused."""
        rid = legacy = client = trace = origin = preflight = wanted = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                rid = rid if rid is not None else value
            elif key == b"x-ms-request-id":
                legacy = value
            elif key == b"x-ms-client-request-id":
                client = value
            elif key == b"traceid":
                trace = value
            elif key == b"origin":
                origin = value
            elif key == b"access-control-request-method":
                preflight = value
            elif key == b"access-control-request-headers":
                wanted = value
        cors: Headers = []
        if self.tracking.origins:
            cors = self.tracking.cors(origin, preflight if scope["method"] == "OPTIONS" else None, wanted)
        if rid is not None and len(rid) > _REQUEST_ID_LIMIT:
            return None, self.tracking.server_only() + cors, True
        request_id = rid.decode("latin-1") if rid is not None else self.new_request_id()
        extra = self.tracking.headers(request_id.encode("latin-1"), legacy, client, trace)
        if extra is None:
            return request_id, self.tracking.server_only() + cors, True
        return request_id, extra + cors, False

    def _route(self, path: str) -> tuple[Frontend, Route | None]:
        for frontend in self.frontends:
            route = frontend.route(path)
            if route is not None:
                return frontend, route
        return self.frontends[0], None

    async def _answer(self, frontend: Frontend, route: Route, call: Call, send: Send, extra: Headers) -> None:
        # only requests for the model are load: probes and scrapes are not (the concurrency
        # autoscaler reads the in-flight gauge per pod)
        metrics = self.metrics if route.scoring else None
        if metrics is not None:
            metrics.in_flight(1)
        try:
            if route.scoring:
                async with self.runner.slot() as slot:
                    call.slot = slot
                    reply = await route.handler(call)
            else:
                reply = await route.handler(call)
        except Overloaded:
            reply = frontend.error(503, _OVERLOADED, call.request_id)
        except BodyTooLarge:
            reply = frontend.error(413, f"request body exceeds {self.max_request_bytes} bytes", call.request_id)
        except Disconnected:
            return
        finally:
            if metrics is not None:
                metrics.in_flight(-1)
        await send_answer(send, _with(reply, extra))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.draining = True
                await send({"type": "lifespan.shutdown.complete"})
                return


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _with(reply: Answer, extra: Headers) -> Answer:
    reply[2].extend(extra)
    return reply
