"""MLflow's scoring protocol, for services of MLflow model folders.

Source: MLflow's scoring server (``mlflow/pyfunc/scoring_server``) as its documentation
("Deploy MLflow models", local REST API) describes it.

* ``POST /invocations``: the request formats of ``mlctl.serve.backends.mlflow``; the answer
  ``{"predictions": ...}``.
* ``GET /ping``, ``GET /health``: 200 once the model is loaded.
* ``GET /version``: the MLflow version serving the model.

Errors are MLflow's shape: ``{"error_code": "BAD_REQUEST", "message": "..."}`` (400: the body does
not parse or fit the signature; 415: a content type other than JSON or CSV; 500 the model raised;
503/504 as every route).
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from mlctl.serve.answers import Answer, answer, to_json
from mlctl.serve.frontends import Call, FastHandler, Route
from mlctl.serve.runner import TimedOut, WaitedTooLong

log = logging.getLogger("mlctl.serve")
_JSON = (b"content-type", b"application/json")
_GET = frozenset({"GET", "HEAD"})
_CODES = {400: "BAD_REQUEST", 415: "BAD_REQUEST", 401: "UNAUTHENTICATED", 404: "ENDPOINT_NOT_FOUND"}


class MLflow:
    """The MLflow front-end of one worker.

    Args:
        backend: the loaded ``MlflowModel``.
        debug: put the model's error message into 500 bodies.
    """

    def __init__(self, backend: Any, *, debug: bool = False) -> None:
        self.backend = backend
        self.debug = debug
        self._routes = {
            "/invocations": Route(frozenset({"POST"}), self._invocations, scoring=True),
            "/ping": Route(_GET, self._ping),
            "/health": Route(_GET, self._ping),
            "/version": Route(_GET, self._version),
        }

    def route(self, path: str) -> Route | None:  # noqa: D102 - see Frontend
        return self._routes.get(path)

    def error(self, status: int, message: str, request_id: str) -> Answer:  # noqa: D102 - see Frontend
        code = _CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
        extra: tuple[tuple[bytes, bytes], ...] = ((b"retry-after", b"1"),) if status == 503 else ()
        body = json.dumps({"error_code": code, "message": message}).encode()
        return answer(status, body, request_id.encode("latin-1"), _JSON, *extra)

    def fast_routes(self) -> dict[bytes, FastHandler]:  # noqa: D102 - see Frontend
        return {}

    async def _ping(self, call: Call) -> Answer:
        return answer(200, b"\n", call.rid, _JSON)

    async def _version(self, call: Call) -> Answer:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("mlflow-skinny")
        except PackageNotFoundError:
            text = version("mlflow")
        return answer(200, text.encode(), call.rid, _JSON)

    async def _invocations(self, call: Call) -> Answer:
        from mlctl.serve.backends.entry_script import BadInput

        body = await call.body()
        mimetype = (call.header(b"content-type") or b"application/json").decode("latin-1").split(";")[0].strip()
        try:
            predictions = await call.run(self.backend.predictions, mimetype.lower(), body)
        except BadInput as exc:
            return self.error(exc.status, str(exc), call.request_id)
        except TimedOut:
            return self.error(504, "the prediction did not finish within the scoring timeout", call.request_id)
        except WaitedTooLong:
            return self.error(503, "the request waited too long in the queue; retry later", call.request_id)
        except Exception as exc:  # noqa: BLE001 - the model's failure becomes a 500
            log.error("request %s: predict raised\n%s", call.request_id, "".join(traceback.format_exception(exc)))
            detail = f": {exc}" if self.debug else "; see the service logs"
            return self.error(500, f"the model raised {type(exc).__name__}{detail}", call.request_id)
        payload = json.dumps({"predictions": predictions}, default=to_json).encode()
        return answer(200, payload, call.rid, _JSON)
