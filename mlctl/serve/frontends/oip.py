"""The Open Inference Protocol (KServe v2 / Triton HTTP/REST), on every service.

Source: the open-inference-protocol REST specification (``specification/protocol/
open_inference_rest.yaml`` and ``inference_rest.md``) and KServe's ``docs/predict-api/v2``.

* ``GET /v2``: server metadata ``{"name", "version", "extensions"}``.
* ``GET /v2/health/live``, ``/v2/health/ready``: 200 (ready: 503 while the worker drains).
* ``GET /v2/models/{name}[/versions/{v}]``: model metadata (``name``, ``versions``, ``platform``,
  ``inputs``, ``outputs``: ``metadata_tensor`` objects from the back-end's ``TensorModel``).
* ``GET /v2/models/{name}[/versions/{v}]/ready``: 200 once ``init()`` succeeded.
* ``POST /v2/models/{name}[/versions/{v}]/infer``: an ``inference_request`` (``inputs`` with
  ``name``, ``shape``, ``datatype``, ``data`` nested or flat; optional ``outputs``, ``id``,
  ``parameters``) answered by an ``inference_response`` (flat data; ``id`` and ``parameters``
  echoed; only the requested ``outputs`` when it names some).

The service serves one model, named by ``--model-name`` (the service's name). When the server
was given no ``--model-version`` any version path reaches it. Errors are ``{"error": "..."}``:
400 bad request or tensors that do not fit the model (naming the tensor), 404 another model,
500 the model raised, 503 overloaded, 504 past the scoring timeout. Triton's binary tensor
extension is not supported (400; clients send JSON with ``binary_data=False``).
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from mlctl import __version__
from mlctl.serve.answers import Answer, answer, to_json
from mlctl.serve.fastjson import loads
from mlctl.serve.frontends import Call, FastHandler, Route
from mlctl.serve.runner import TimedOut, WaitedTooLong
from mlctl.serve.tensors import TensorError, decode, encode_json

log = logging.getLogger("mlctl.serve")
_JSON = (b"content-type", b"application/json")
_GET = frozenset({"GET", "HEAD"})
_POST = frozenset({"POST"})
_BINARY_HEADER = b"inference-header-content-length"
_ENCODER = json.JSONEncoder(default=to_json)  # one for all answers: json.dumps(default=...) builds one a call


class OIP:
    """The Open Inference Protocol front-end of one worker.

    Args:
        pipeline: the ``ScoringApp`` (its ``backend``, ``runner``, ``draining`` flag).
        model_name: the name clients address the model by.
        model_version: its version, when it has one.
        debug: put the model's error message into 500 bodies.
    """

    def __init__(self, pipeline: Any, *, model_name: str, model_version: str | None, debug: bool = False) -> None:
        self.pipeline = pipeline
        self.name = model_name
        self.version = model_version
        self.debug = debug
        self._model: Any = None
        self._input_names: frozenset[str] | None = None  # the model's declared inputs (None: not read yet)
        head = {"model_name": model_name, **({"model_version": model_version} if model_version else {})}
        self._reply_head = _ENCODER.encode(head)[:-1]  # '{"model_name": ..., "model_version": ...' without '}'
        self._server = json.dumps({"name": "mlctl", "version": __version__, "extensions": []}).encode()
        self._fixed = {
            "/v2": Route(_GET, self._server_metadata),
            "/v2/": Route(_GET, self._server_metadata),
            "/v2/health/live": Route(_GET, self._live),
            "/v2/health/ready": Route(_GET, self._ready),
        }
        self._model_routes = {
            "": Route(_GET, self._metadata),
            "/ready": Route(_GET, self._model_ready),
            "/infer": Route(_POST, self._infer, scoring=True),
        }

    @property
    def model(self) -> Any:
        """The back-end as a ``TensorModel`` (built on first use: entry-script schemas are read then)."""
        if self._model is None:
            from mlctl.serve.backends import tensor_model

            self._model = tensor_model(self.pipeline.backend)
        return self._model

    def route(self, path: str) -> Route | None:  # noqa: D102 - see Frontend
        if not path.startswith("/v2"):
            return None
        fixed = self._fixed.get(path)
        if fixed is not None or not path.startswith("/v2/models/"):
            return fixed
        name, version, rest = _model_path(path[len("/v2/models/") :])
        route = self._model_routes.get(rest)
        if route is None:
            return None
        if name != self.name or (version is not None and self.version is not None and version != self.version):
            return Route(route.methods, self._not_found)
        return route

    def error(self, status: int, message: str, request_id: str) -> Answer:  # noqa: D102 - see Frontend
        extra: tuple[tuple[bytes, bytes], ...] = ()
        if status == 503:
            extra = ((b"retry-after", b"1"),)
        elif status == 401:
            extra = ((b"www-authenticate", b"Bearer"),)
        return answer(status, json.dumps({"error": message}).encode(), request_id.encode("latin-1"), _JSON, *extra)

    def fast_routes(self) -> dict[bytes, FastHandler]:  # noqa: D102 - see Frontend
        if not self.pipeline.runner.inline:
            return {}
        paths = [f"/v2/models/{self.name}/infer"]
        if self.version:
            paths.append(f"/v2/models/{self.name}/versions/{self.version}/infer")
        return {path.encode(): self._infer_inline for path in paths}

    async def _server_metadata(self, call: Call) -> Answer:
        return answer(200, self._server, call.rid, _JSON)

    async def _live(self, call: Call) -> Answer:
        return answer(200, b'{"live":true}', call.rid, _JSON)

    async def _ready(self, call: Call) -> Answer:
        if self.pipeline.draining:
            return answer(503, b'{"ready":false}', call.rid, _JSON)
        return answer(200, b'{"ready":true}', call.rid, _JSON)

    async def _model_ready(self, call: Call) -> Answer:
        body = json.dumps({"name": self.name, "ready": not self.pipeline.draining}).encode()
        return answer(503 if self.pipeline.draining else 200, body, call.rid, _JSON)

    async def _not_found(self, call: Call) -> Answer:
        known = self.name + (f" version {self.version}" if self.version else "")
        return self.error(404, f"model not found: {call.path}; this service serves {known}", call.request_id)

    async def _metadata(self, call: Call) -> Answer:
        model = self.model
        doc = {
            "name": self.name,
            "versions": [self.version] if self.version else [],
            "platform": model.platform,
            "inputs": [t.metadata() for t in model.inputs],
            "outputs": [t.metadata() for t in model.outputs],
        }
        return answer(200, json.dumps(doc).encode(), call.rid, _JSON)

    async def _infer(self, call: Call) -> Answer:
        if call.header(_BINARY_HEADER) is not None:
            message = "the binary tensor extension is not supported: send JSON tensors (binary_data=False)"
            return self.error(400, message, call.request_id)
        body = await call.body()
        try:
            request = _parse_request(body)
            outputs = await call.run(self._infer_doc, request)
        except Exception as exc:  # noqa: BLE001 - each error becomes its answer
            return self._failed(exc, call.request_id)
        return self._reply(request, outputs, call.rid)

    def _infer_inline(self, body: bytes, request_id: str, rid: bytes) -> Answer:
        """The synchronous fast path (``fast_routes``): the same answer, without the ASGI round trip."""
        try:
            request = _parse_request(body)
            outputs = self.pipeline.runner.call_inline(self._infer_doc, request)
        except Exception as exc:  # noqa: BLE001 - each error becomes its answer
            return self._failed(exc, request_id)
        return self._reply(request, outputs, rid)

    def _reply(self, request: dict[str, Any], outputs: list[str], rid: bytes) -> Answer:
        """The ``inference_response``: written around the outputs' JSON text, as ``json.dumps`` of the dict would."""
        head = self._reply_head
        if "id" in request or "parameters" in request:
            for key in ("id", "parameters"):
                if key in request:
                    head += f', "{key}": {_ENCODER.encode(request[key])}'
        return answer(200, f'{head}, "outputs": [{", ".join(outputs)}]}}'.encode(), rid, _JSON)

    def _infer_doc(self, request: dict[str, Any]) -> list[str]:
        """Decode the inputs, run the model, encode the (requested) outputs as JSON text: on the runner thread."""
        model = self.model
        inputs = {}
        for tensor in request["inputs"]:
            array = decode(tensor)  # first: it refuses a tensor that is not an object, or has no name
            inputs[tensor["name"]] = array
        names = self._input_names
        if names is None:
            names = self._input_names = frozenset(t.name for t in model.inputs)
        if names and not names.issuperset(inputs):
            _refuse_unknown(inputs, model.inputs)
        results = model.infer(inputs)
        wanted = [o["name"] for o in request.get("outputs") or []]
        missing = [name for name in wanted if name not in results]
        if missing:
            raise TensorError(f"output {missing[0]!r} is not an output of the model; its outputs: {', '.join(results)}")
        return [encode_json(name, results[name]) for name in (wanted or results)]

    def _failed(self, exc: Exception, request_id: str) -> Answer:
        from mlctl.serve.backends.entry_script import BadInput

        if isinstance(exc, (TensorError, BadInput)):
            return self.error(400, str(exc), request_id)
        if isinstance(exc, TimedOut):
            return self.error(504, f"inference did not finish within {self.pipeline.runner.timeout_s:g} s", request_id)
        if isinstance(exc, WaitedTooLong):
            return self.error(
                503, "the request waited too long in the queue; retry after the Retry-After delay", request_id
            )
        log.error(
            "request %s: infer raised %s\n%s", request_id, type(exc).__name__, "".join(traceback.format_exception(exc))
        )
        detail = f": {exc}" if self.debug else "; see the service logs"
        return self.error(500, f"the model raised {type(exc).__name__}{detail}", request_id)


def _model_path(rest: str) -> tuple[str, str | None, str]:
    """``name[/versions/v][/ready|/infer]`` -> (name, version or None, ``''``/``'/ready'``/``'/infer'``)."""
    tail = ""
    for suffix in ("/ready", "/infer"):
        if rest.endswith(suffix):
            rest, tail = rest[: -len(suffix)], suffix
            break
    name, sep, version = rest.partition("/versions/")
    if "/" in name or (sep and (not version or "/" in version)):
        return "", None, "?"
    return name, (version if sep else None), tail


def _parse_request(body: bytes) -> dict[str, Any]:
    """The inference request of ``body``, its shape checked (tensors are decoded on the runner)."""
    try:
        doc = loads(body)
    except ValueError as exc:
        raise TensorError(
            f"the inference request is not JSON ({exc}); the binary tensor extension is not supported: "
            "send JSON tensors (binary_data=False)"
        ) from None
    if not isinstance(doc, dict):
        raise TensorError("the inference request must be a JSON object with inputs")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise TensorError("the inference request needs inputs: a non-empty list of tensors")
    if "outputs" in doc:  # (most requests have none: no generator to build)
        outputs = doc["outputs"]
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and "name" in o for o in outputs):
            raise TensorError("outputs must be a list of objects with a name")
    return doc


def _refuse_unknown(inputs: dict[str, Any], declared: list[Any]) -> None:
    """Unknown input names are refused here; missing ones by the back-end (some inputs are optional)."""
    names = [t.name for t in declared]
    unknown = [name for name in inputs if name not in names]
    raise TensorError(f"input {unknown[0]!r} is not an input of the model; its inputs: {', '.join(names)}")
