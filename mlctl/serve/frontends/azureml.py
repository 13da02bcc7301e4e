"""Azure ML's scoring contract: ``/score``, liveness at ``/`` and ``/swagger.json``.

Source: the Azure ML SDK v1 web-service contract as azureml-inference-server-http implements it
(its ``docs/AzureMLInferenceServer.md`` and ``server/routes.py``).

* ``POST|GET /score``: the back-end's answer, JSON-serialised (numpy values via ``tolist()``), or
  sent as-is when it is a response object (``AMLResponse``). ``OPTIONS /score``: a ``@rawhttp``
  ``run()`` answers it (CORS preflight, as in Azure ML); otherwise 200 with no body.
* ``GET /``: liveness, body ``Healthy``.
* ``GET /swagger.json?version=2|3|3.1``: Swagger 2.0 / OpenAPI 3.0.3 / 3.1 (``mlctl.serve.swagger``).

Errors are Azure ML's ``{"message": ...}`` bodies, plus mlctl's ``request_id`` (a documented
difference): 400/415 bad input, 500 ``run()`` raised (Azure ML's fixed message; the traceback goes
to the log, and into the body only in debug), 500 ``Scoring timeout after N ms``, 503 with
``Retry-After`` when the request waited in the queue past ``max_request_wait_time``. Every answer
but liveness carries ``x-ms-run-function-failed`` (``True`` on a failed or timed-out ``run()`` and
on any 5xx a response object carries); a scored answer carries ``x-ms-run-fn-exec-ms``.
"""

from __future__ import annotations

import json
import logging
import traceback
from time import perf_counter
from typing import Any

from mlctl.serve.answers import Answer, JSONText, answer, is_response, response_answer, to_json
from mlctl.serve.backends.entry_script import BadInput
from mlctl.serve.batching import Batcher, BatchFailed
from mlctl.serve.frontends import Call, FastHandler, Route
from mlctl.serve.runner import Runner, TimedOut, WaitedTooLong
from mlctl.serve.swagger import SwaggerNotFound, pick, swagger_documents

log = logging.getLogger("mlctl.serve")
_JSON = (b"content-type", b"application/json")
_OK = (b"x-ms-run-function-failed", b"False")
_FAILED = (b"x-ms-run-function-failed", b"True")
# The texts Azure ML's server (flask) sends for paths and methods it does not have.
_STANDARD = {
    404: "The requested URL was not found on the server. "
    "If you entered the URL manually please check your spelling and try again.",
    405: "The method is not allowed for the requested URL.",
}
_RUN_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_GET = frozenset({"GET", "HEAD"})
_SCORE = frozenset({"POST", "GET", "OPTIONS"})


class AzureML:
    """The Azure ML front-end of one worker.

    Args:
        backend: the loaded model back-end (``init()`` done).
        runner: the worker's runner (its timeout and wait limit name themselves in error bodies).
        batcher: when given, ``POST`` bodies are scored in micro-batches (``run_batch``).
        debug: put the traceback of a failed ``run()`` into the 500 body.
        keys: the service requires keys (the swagger documents describe the Bearer scheme).
    """

    def __init__(
        self, backend: Any, *, runner: Runner, batcher: Batcher | None = None, debug: bool = False, keys: bool = False
    ) -> None:
        self.backend = backend
        self.runner = runner
        self.batcher = batcher
        self.debug = debug
        self._swagger = swagger_documents(backend, keys=keys)
        self._routes = {
            "/score": Route(_SCORE, self._score, scoring=True),
            "/": Route(_GET, self._alive),
            "/swagger.json": Route(_GET, self._swagger_json),
        }

    def route(self, path: str) -> Route | None:  # noqa: D102 - see Frontend
        return self._routes.get(path)

    def error(self, status: int, message: str, request_id: str) -> Answer:  # noqa: D102 - see Frontend
        extra: tuple[tuple[bytes, bytes], ...] = ()
        if status == 503:
            extra = ((b"retry-after", b"1"),)
        elif status == 401:
            extra = ((b"www-authenticate", b"Bearer"),)
        message = _STANDARD.get(status, message)
        return _error(status, message, request_id, request_id.encode("latin-1") if request_id else b"", *extra)

    def fast_routes(self) -> dict[bytes, FastHandler]:  # noqa: D102 - see Frontend
        if self.backend.fast and self.batcher is None and self.runner.inline:
            return {b"/score": self._score_inline}
        return {}

    def _score_inline(self, body: bytes, request_id: str, rid: bytes) -> Answer:
        started = perf_counter()
        try:
            result = self.runner.call_inline(self.backend.call_body, body)
        except Exception as exc:  # noqa: BLE001 - each error becomes its answer (as on the ASGI path)
            return self._error_answer(exc, request_id, rid)
        return self._result_answer(result, request_id, rid, perf_counter() - started)

    async def _score(self, call: Call) -> Answer:
        method = call.method
        if method == "OPTIONS" and self.backend.mode != "raw":
            return answer(200, b"", call.rid, _TEXT, _OK)  # only a @rawhttp run() answers preflights itself
        body = await call.body()
        started = perf_counter()
        try:
            if self.batcher is not None and method == "POST":
                result = await self.batcher.submit(body)
            elif self.backend.fast and method == "POST":
                result = await call.run(self.backend.call_body, body)
            else:
                result = await call.run(self.backend.call, call.request(body))
        except Exception as exc:  # noqa: BLE001 - any error of run() becomes its answer
            return self._error_answer(exc, call.request_id, call.rid)
        return self._result_answer(result, call.request_id, call.rid, perf_counter() - started)

    async def _alive(self, call: Call) -> Answer:
        return answer(200, b"Healthy", call.rid, _TEXT)

    async def _swagger_json(self, call: Call) -> Answer:
        try:
            document = pick(self._swagger, _query_value(call.scope.get("query_string", b""), "version"))
        except SwaggerNotFound as exc:
            return _error(404, str(exc), call.request_id, call.rid)
        return answer(200, document, call.rid, _JSON, _OK)

    def _error_answer(self, exc: Exception, request_id: str, rid: bytes) -> Answer:
        if isinstance(exc, TimedOut):
            log.error("request %s: run() did not finish within %g ms", request_id, self.runner.timeout_s * 1000)
            message = f"Scoring timeout after {self.runner.timeout_s * 1000:g} ms"
            return _error(500, message, request_id, rid, failed=True)
        if isinstance(exc, WaitedTooLong):
            message = (
                f"the request waited longer than {self.runner.max_wait_s * 1000:g} ms in the queue "
                "(max_request_wait_time); retry after the Retry-After delay"
            )
            return _error(503, message, request_id, rid, (b"retry-after", b"1"))
        if isinstance(exc, BadInput):
            return _error(exc.status, str(exc), request_id, rid)
        if isinstance(exc, BatchFailed):
            return self._run_failed(exc.__cause__ or exc, request_id, rid, what="run_batch() failed:")
        return self._run_failed(exc, request_id, rid)

    def _result_answer(self, result: Any, request_id: str, rid: bytes, seconds: float) -> Answer:
        took = (b"x-ms-run-fn-exec-ms", b"%.3f" % (seconds * 1000))
        if result.__class__ is JSONText:
            return answer(200, result, rid, _JSON, _OK, took)
        if is_response(result):
            return response_answer(result, rid, took)
        try:
            payload = json.dumps(result, default=to_json).encode()
        except (TypeError, ValueError) as exc:
            return self._run_failed(exc, request_id, rid, what="run() returned a value that is not JSON")
        return answer(200, payload, rid, _JSON, _OK, took)

    def _run_failed(self, exc: BaseException, request_id: str, rid: bytes, what: str = "run() raised") -> Answer:
        log.error(
            "request %s: %s %s\n%s",
            request_id,
            what,
            type(exc).__name__,
            "".join(traceback.format_exception(exc)).rstrip(),
        )
        doc: dict[str, Any] = {"message": _RUN_FAILED, "request_id": request_id}
        if self.debug:
            doc["error"] = f"{what} {type(exc).__name__}"
            doc["detail"] = str(exc)
            doc["traceback"] = traceback.format_exception(exc)
        return answer(500, json.dumps(doc).encode(), rid, _JSON, _FAILED)


def _error(
    status: int, message: str, request_id: str, rid: bytes, *extra: tuple[bytes, bytes], failed: bool = False
) -> Answer:
    """Azure ML's error answer: ``{"message": ...}`` (plus mlctl's ``request_id``), ``x-ms-run-function-failed``."""
    doc = {"message": message, "request_id": request_id} if request_id else {"message": message}
    return answer(status, json.dumps(doc).encode(), rid, _JSON, _FAILED if failed else _OK, *extra)


def _query_value(query: bytes, name: str) -> str | None:
    """The first value of ``name`` in a URL query string, percent-decoded, or None."""
    from urllib.parse import parse_qs

    values = parse_qs(query.decode("latin-1")).get(name)
    return values[0] if values else None
