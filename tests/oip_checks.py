"""Open Inference Protocol checks shared by the tests of every model kind: real clients, spec schemas.

``tritonclient[http]`` and ``open-inference-openapi`` (from PyPI) drive a running service; every
body is validated against the JSON Schemas in ``tests/oip/schemas.json`` (derived from the
protocol's OpenAPI document).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

_SCHEMAS = json.loads((Path(__file__).parent / "oip" / "schemas.json").read_text())


def validate(body: Any, definition: str) -> None:
    """Fail unless ``body`` is a valid ``definition`` of the protocol (``inference_response``, ...)."""
    jsonschema.validate(body, {"$ref": f"#/$defs/{definition}", "$defs": _SCHEMAS["$defs"]})


def call(base: str, path: str, doc: Any = None, **headers: str) -> tuple[int, Any]:
    """GET ``path`` (or POST ``doc`` as JSON); returns (status, parsed JSON body or None)."""
    data = None if doc is None else json.dumps(doc).encode()
    request = urllib.request.Request(base + path, data=data, headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    return status, json.loads(body) if body else None


def check_with_spec_schemas(base: str, model: str) -> dict[str, Any]:
    """GET the server and model metadata and readiness by hand, validating each body; returns the model metadata."""
    status, server = call(base, "/v2")
    assert status == 200, server
    validate(server, "metadata_server_response")
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{model}/ready"):
        assert call(base, path)[0] == 200, path
    status, metadata = call(base, f"/v2/models/{model}")
    assert status == 200, metadata
    validate(metadata, "metadata_model_response")
    status, error = call(base, "/v2/models/no-such-model")
    assert status == 404
    validate(error, "error_response")
    return metadata  # type: ignore[no-any-return]


def infer(base: str, model: str, inputs: list[dict[str, Any]], **extra: Any) -> tuple[int, Any]:
    """POST an inference request; a 200 body is validated as ``inference_response``, others as errors."""
    status, body = call(base, f"/v2/models/{model}/infer", {"inputs": inputs, **extra})
    validate(body, "inference_response" if status == 200 else "error_response")
    return status, body


def triton_infer(base: str, model: str, arrays: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    """Metadata, readiness and inference through ``tritonclient.http`` (JSON tensors); returns the outputs."""
    import tritonclient.http as triton
    from tritonclient.utils import np_to_triton_dtype

    client = triton.InferenceServerClient(base.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
        metadata = client.get_model_metadata(model)
        validate(metadata, "metadata_model_response")
        inputs = []
        for name, array in arrays.items():
            tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array, binary_data=False)
            inputs.append(tensor)
        requested = [triton.InferRequestedOutput(name, binary_data=False) for name in outputs]
        result = client.infer(model, inputs, outputs=requested, request_id="triton-1")
        response = result.get_response()
        validate(response, "inference_response")
        assert response["id"] == "triton-1"
        return {name: result.as_numpy(name) for name in outputs}
    finally:
        client.close()


def openapi_infer(base: str, model: str, inputs: list[dict[str, Any]]) -> Any:
    """Metadata, readiness and inference through ``open-inference-openapi``; returns its InferenceResponse."""
    import httpx
    from open_inference.openapi.client import OpenInferenceClient

    with httpx.Client(timeout=30) as http:
        return _openapi_infer(OpenInferenceClient(base_url=base, httpx_client=http), model, inputs)


def _openapi_infer(client: Any, model: str, inputs: list[dict[str, Any]]) -> Any:
    from open_inference.openapi.types import InferenceRequest, RequestInput

    client.check_server_liveness()
    client.check_server_readiness()
    client.check_model_readiness(model)
    assert client.read_server_metadata().name == "mlctl"
    assert client.read_model_metadata(model).name == model
    request = InferenceRequest(id="oi-1", inputs=[RequestInput(**t) for t in inputs])
    response = client.model_infer(model, request=request)
    assert response.id == "oi-1" and response.model_name == model
    return response
