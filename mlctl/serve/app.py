"""The scoring server's ASGI application: no framework, stdlib only, one dispatch per request.

Routes (Azure ML's plus Kubernetes-style probes):

* ``POST|GET /score``: call ``run()``; its return value is JSON-serialised (numpy values via
  ``tolist()``), or sent as-is when it is an ``AMLResponse``. ``OPTIONS /score``: a ``@rawhttp``
  ``run()`` answers it (CORS preflight, as in Azure ML); otherwise 200.
* ``GET /`` (Azure ML liveness, body ``Healthy``), ``GET /healthz`` (liveness), ``GET /readyz``
  (readiness: 200 once this worker's ``init()`` succeeded, 503 while it drains on shutdown).
* ``GET /swagger.json``: from ``inference-schema`` decorators when present, else a minimal document.
* ``GET /metrics``: Prometheus metrics of every worker (see ``mlctl.serve.metrics``).

Statuses: 400/415 bad input, 404 unknown route, 405 wrong method, 413 body over the limit,
431 ``x-request-id`` over 100 characters (as Azure ML), 500 ``run()`` raised (JSON body naming the
error type and the request id; the traceback goes to the log, and to the body only in debug),
503 with ``Retry-After`` when the worker's queue is full or a request waited in it longer than
the runner's ``max_wait_s`` (``max_request_wait_time``), 504 when ``run()`` exceeds the timeout.
Every answer carries ``x-request-id``: the client's, or a new one shaped like a UUID4 (a random
prefix drawn when the worker starts, then a per-worker counter in the last 12 hex digits: unique
across workers and restarts without a random draw per request).

``answer_now`` is the synchronous fast path that ``mlctl.serve.http`` takes for plain
``POST /score`` requests; the ASGI interface serves everything (and is what uvicorn runs).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from mlctl.serve.answers import Answer, Headers, is_response, response_answer, send_answer, status_line, to_json
from mlctl.serve.answers import answer as _answer
from mlctl.serve.answers import send_simple as _send
from mlctl.serve.auth import KeyStore
from mlctl.serve.batching import Batcher, BatchFailed
from mlctl.serve.context import set_request_id
from mlctl.serve.entry import BadInput, EntryScript
from mlctl.serve.metrics import SharedMetrics
from mlctl.serve.request import Request
from mlctl.serve.runner import Overloaded, Runner, TimedOut, WaitedTooLong
from mlctl.serve.swagger import swagger_document

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger("mlctl.serve")
_JSON = (b"content-type", b"application/json")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_REQUEST_ID_LIMIT = 100
_SCORE_METHODS = {"POST", "GET"}
_UNAUTHORIZED = b'{"error":"unauthorized: send Authorization: Bearer KEY (see `mlctl service keys`)"}'
_OVERLOADED = b'{"error":"overloaded: too many requests waiting; retry after the Retry-After delay"}'


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class ScoringApp:
    """ASGI app serving one loaded (and initialised) entry script.

    Args:
        entry: the entry script, after ``init()`` succeeded.
        max_request_bytes: largest accepted body, in bytes (413 beyond).
        debug: put tracebacks of ``run()`` errors in the response body.
        runner: concurrency, queue and timeout of ``run()`` calls (503 when full, 504 past the timeout).
        keys: when given, ``/score`` needs ``Authorization: Bearer KEY`` (401 otherwise).
        metrics: shared counters behind ``GET /metrics`` (Prometheus).
        access_log: one JSON line per request on stdout (request id, route, status, latency).
        batcher: when given, POST bodies are scored in adaptive micro-batches (``run_batch``).
    """

    def __init__(
        self,
        entry: EntryScript,
        *,
        max_request_bytes: int,
        debug: bool = False,
        runner: Runner | None = None,
        keys: KeyStore | None = None,
        metrics: SharedMetrics | None = None,
        access_log: bool = False,
        batcher: Batcher | None = None,
    ) -> None:
        self.entry = entry
        self.batcher = batcher
        self.keys = keys
        self.metrics = metrics
        self.access_log = access_log
        self.runner = runner or Runner()
        self.max_request_bytes = max_request_bytes
        self.debug = debug
        self.draining = False
        self._swagger = json.dumps(swagger_document(entry)).encode()
        self._id_prefix = str(uuid.UUID(bytes=os.urandom(16), version=4))[:24]  # drawn in the worker, after fork
        self._id_counter = itertools.count(1)
        self._inline = entry.fast and batcher is None and self.runner.inline

    def new_request_id(self) -> str:
        """A request id unique across workers and restarts: ``xxxxxxxx-xxxx-4xxx-yxxx-<counter, 12 hex>``."""
        return f"{self._id_prefix}{next(self._id_counter) & 0xFFFFFFFFFFFF:012x}"

    def answer_now(self, method: bytes, url: bytes, headers: Headers, body: bytes) -> tuple[bytes, bytes] | None:
        """Answer a complete ``POST /score`` synchronously, or ``None`` when the ASGI path must.

        Taken when ``run()`` is plain (``run(raw_data)``), called inline, without batching, and the
        request passes auth with a valid ``x-request-id``; metrics and the access log are recorded as
        on the ASGI path. Returns the status line plus headers (each ending in CRLF, without the
        blank line) and the body.
        """
        if url != b"/score" or method != b"POST" or not self._inline:
            return None
        request_id = None
        for key, value in headers:
            if key == b"x-request-id" and request_id is None:
                if len(value) > _REQUEST_ID_LIMIT:
                    return None
                request_id = value.decode("latin-1")
            elif key == b"authorization" and self.keys is not None and not self.keys.allows(value):
                return None
        if self.keys is not None and not any(key == b"authorization" for key, _ in headers):
            return None
        if request_id is None:
            request_id = self.new_request_id()
        set_request_id(request_id)
        metrics, started = self.metrics, time.perf_counter()
        if metrics is not None:
            metrics.in_flight(1)
        try:
            status, payload, answer_headers = self._score_inline(body, request_id, request_id.encode("latin-1"))
        finally:
            seconds = time.perf_counter() - started
            if metrics is not None:
                metrics.in_flight(-1)
        if metrics is not None:
            metrics.observe("/score", status, seconds)
        if self.access_log:
            self._log_access("POST", "/score", status, request_id, seconds)
        parts = [status_line(status)]
        for name, value in answer_headers:
            parts += (name, b": ", value, b"\r\n")
        return b"".join(parts), payload

    def _score_inline(self, body: bytes, request_id: str, rid: bytes) -> Answer:
        try:
            result = self.runner.call_inline(self.entry.call_body, body)
        except Exception as exc:  # noqa: BLE001 - each error becomes its answer (as on the ASGI path)
            return self._error_answer(exc, request_id, rid)
        return self._result_answer(result, request_id, rid)

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

        scoring = scope["path"] == "/score"  # probes and scrapes are not load (the autoscaler reads this gauge)
        if self.metrics is not None and scoring:
            self.metrics.in_flight(1)
        try:
            await self._dispatch(scope, receive, recording_send)
        finally:
            if self.metrics is not None and scoring:
                self.metrics.in_flight(-1)
            self._record(scope, answer, time.perf_counter() - started)

    def _record(self, scope: Scope, answer: dict[str, Any], seconds: float) -> None:
        path, status = scope["path"], answer["status"]
        if self.metrics is not None:
            self.metrics.observe(path, status, seconds)
        if self.access_log:
            rid = _header(answer, b"x-request-id")  # the id the client got, theirs or generated
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
        request_id = _request_id(scope["headers"], self.new_request_id)
        if request_id is None:
            await _send(send, 431, b'{"error":"x-request-id must not exceed 100 characters"}', b"", _JSON)
            return
        rid = request_id.encode("latin-1")
        set_request_id(request_id)
        path, method = scope["path"], scope["method"]
        if path == "/score":
            if self.keys is not None and method != "OPTIONS" and not self.keys.allows(_header(scope, b"authorization")):
                await _send(send, 401, _UNAUTHORIZED, rid, _JSON, (b"www-authenticate", b"Bearer"))
            elif method in _SCORE_METHODS or (method == "OPTIONS" and self.entry.mode == "raw"):
                await self._score(scope, receive, send, request_id, rid)  # @rawhttp answers CORS preflights
            elif method == "OPTIONS":
                await _send(send, 200, b"", rid, _TEXT)
            else:
                await _send(send, 405, b'{"error":"method not allowed; use POST"}', rid, _JSON)
            return
        await self._probe(path, method, send, rid)

    async def _probe(self, path: str, method: str, send: Send, rid: bytes) -> None:
        if path not in ("/", "/healthz", "/readyz", "/swagger.json", "/metrics"):
            await _send(send, 404, b'{"error":"not found; POST /score"}', rid, _JSON)
        elif method not in ("GET", "HEAD"):
            await _send(send, 405, b'{"error":"method not allowed; use GET"}', rid, _JSON)
        elif path == "/":
            await _send(send, 200, b"Healthy", rid, _TEXT)
        elif path == "/healthz":
            await _send(send, 200, b'{"status":"alive"}', rid, _JSON)
        elif path == "/readyz":
            status, body = (503, b'{"status":"draining"}') if self.draining else (200, b'{"status":"ready"}')
            await _send(send, status, body, rid, _JSON)
        elif path == "/metrics":
            body = self.metrics.render() if self.metrics is not None else b""
            await _send(send, 200, body, rid, (b"content-type", b"text/plain; version=0.0.4"))
        else:
            await _send(send, 200, self._swagger, rid, _JSON)

    async def _score(self, scope: Scope, receive: Receive, send: Send, request_id: str, rid: bytes) -> None:
        try:
            async with self.runner.slot() as slot:
                await self._score_admitted(slot, scope, receive, send, request_id, rid)
        except Overloaded:
            await _send(send, 503, _OVERLOADED, rid, _JSON, (b"retry-after", b"1"))

    async def _score_admitted(
        self, slot: Any, scope: Scope, receive: Receive, send: Send, request_id: str, rid: bytes
    ) -> None:
        try:
            body = await self._read_body(scope, receive)
        except _TooLarge:
            msg = f'{{"error":"request body exceeds {self.max_request_bytes} bytes"}}'.encode()
            await _send(send, 413, msg, rid, _JSON)
            return
        except _Disconnected:
            return
        try:
            if self.batcher is not None and scope["method"] == "POST":
                result = await self.batcher.submit(body)
            elif self.entry.fast and scope["method"] == "POST":
                result = await slot.run(self.entry.call_body, body)
            else:
                result = await slot.run(self.entry.call, _request(scope, body))
        except Exception as exc:  # noqa: BLE001 - any error of run() becomes its answer
            await send_answer(send, self._error_answer(exc, request_id, rid))
            return
        await send_answer(send, self._result_answer(result, request_id, rid))

    def _error_answer(self, exc: Exception, request_id: str, rid: bytes) -> Answer:
        if isinstance(exc, TimedOut):
            doc = {
                "error": "timeout",
                "message": f"run() did not finish within {self.runner.timeout_s:g} s",
                "request_id": request_id,
            }
            return _answer(504, json.dumps(doc).encode(), rid, _JSON)
        if isinstance(exc, WaitedTooLong):
            doc = {
                "error": "overloaded",
                "message": f"the request waited longer than {self.runner.max_wait_s * 1000:g} ms in the queue "
                "(max_request_wait_time); retry after the Retry-After delay",
                "request_id": request_id,
            }
            return _answer(503, json.dumps(doc).encode(), rid, _JSON, (b"retry-after", b"1"))
        if isinstance(exc, BadInput):
            return _answer(exc.status, json.dumps({"error": str(exc), "request_id": request_id}).encode(), rid, _JSON)
        if isinstance(exc, BatchFailed):
            return self._run_failed(exc.__cause__ or exc, request_id, rid, what="run_batch() failed:")
        return self._run_failed(exc, request_id, rid)

    def _result_answer(self, result: Any, request_id: str, rid: bytes) -> Answer:
        if is_response(result):
            return response_answer(result, rid)
        try:
            payload = json.dumps(result, default=to_json).encode()
        except (TypeError, ValueError) as exc:
            return self._run_failed(exc, request_id, rid, what="run() returned a value that is not JSON")
        return _answer(200, payload, rid, _JSON)

    def _run_failed(self, exc: BaseException, request_id: str, rid: bytes, what: str = "run() raised") -> Answer:
        log.error(
            "request %s: %s %s\n%s",
            request_id,
            what,
            type(exc).__name__,
            "".join(traceback.format_exception(exc)).rstrip(),
        )
        doc: dict[str, Any] = {
            "error": type(exc).__name__,
            "message": f"{what} {type(exc).__name__}; see the service logs",
            "request_id": request_id,
        }
        if self.debug:
            doc["detail"] = str(exc)
            doc["traceback"] = traceback.format_exception(exc)
        return _answer(500, json.dumps(doc).encode(), rid, _JSON, (b"x-ms-run-function-failed", b"True"))

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_request_bytes
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise _TooLarge
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            if message.get("mlctl.too_large"):  # mlctl.serve.http did not buffer it
                raise _TooLarge
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.draining = True
                await send({"type": "lifespan.shutdown.complete"})
                return


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def _request_id(headers: list[tuple[bytes, bytes]], new: Callable[[], str]) -> str | None:
    for key, value in headers:
        if key == b"x-request-id":
            return value.decode("latin-1") if len(value) <= _REQUEST_ID_LIMIT else None
    return new()


def _request(scope: Scope, body: bytes) -> Request:
    return Request(
        scope["method"],
        scope["path"],
        scope.get("query_string", b""),
        scope["headers"],
        body,
        scope.get("client"),
        scope.get("scheme", "http"),
    )
