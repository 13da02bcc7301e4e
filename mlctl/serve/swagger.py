"""``/swagger.json``: the scoring API as Swagger 2.0, OpenAPI 3.0.3 or OpenAPI 3.1 (``?version=2|3|3.1``).

Contract (azureml-inference-server-http ``server/swagger.py`` and its docs): the version comes
from the ``version`` query parameter (``2``, the default, or ``2.0``; ``3`` or ``3.0``; ``3.1``);
any other is a 404 naming the supported ones. A file the user ships in ``AML_APP_ROOT``
(``swagger.json`` or ``swagger2.json``, ``swagger3.json``, ``swagger3.1.json``) is served as is.
Otherwise the document is built: title ``SERVICE_NAME`` ("ML service"), version
``SERVICE_VERSION`` ("1.0"), paths under ``SERVICE_PATH_PREFIX``; input and output schemas from
``inference-schema`` decorators when ``run()`` has them (the versions they support only), else a
free-form object. The ``Bearer`` security scheme is described when the service requires keys
(the reference always describes it; mlctl only where it is true).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

VERSIONS = {"2": "2", "2.0": "2", "3": "3", "3.0": "3", "3.1": "3.1"}
_FILES = {"2": ("swagger.json", "swagger2.json"), "3": ("swagger3.json",), "3.1": ("swagger3.1.json",)}
_FREE = {"type": "object", "example": {}}
_BEARER = {"type": "apiKey", "name": "Authorization", "in": "header", "description": "For example: Bearer KEY"}
_FAILED = "The service failed to execute due to an error."


class SwaggerNotFound(Exception):
    """No document for the asked version (the answer is 404 with this message)."""


def swagger_documents(entry: Any, *, keys: bool = False) -> dict[str, bytes]:
    """The serialised documents of a loaded model back-end by version (``"2"``, ``"3"``, ``"3.1"``)."""
    run = getattr(entry, "run", None)
    schemas: tuple[Any, Any] = (_FREE, _FREE)
    supported = set(VERSIONS.values())
    if entry.mode == "schema" and "inference_schema" in sys.modules:
        from inference_schema.schema_util import get_input_schema, get_output_schema, get_supported_versions

        schemas = (get_input_schema(run), get_output_schema(run))
        supported = {VERSIONS[v] for v in get_supported_versions(run) if v in VERSIONS}
    elif callable(getattr(entry, "swagger_schemas", None)):  # no-code models: from their signature or graph
        schemas = entry.swagger_schemas()
    docs: dict[str, bytes] = {}
    for version in ("2", "3", "3.1"):
        shipped = _shipped(version)
        if shipped is not None:
            docs[version] = shipped
        elif version in supported:
            docs[version] = json.dumps(_build(version, schemas, keys)).encode()
    return docs


def pick(docs: dict[str, bytes], asked: str | None) -> bytes:
    """The document for query value ``asked`` (None: version 2).

    Raises:
        SwaggerNotFound: ``asked`` is not a version, or the script's schemas do not support it.
    """
    supported = ", ".join(sorted(docs))
    version = VERSIONS.get(asked if asked is not None else "2")
    if version is None:
        raise SwaggerNotFound(f"Swagger version [{asked}] is not valid. Supported versions: [{supported}].")
    doc = docs.get(version)
    if doc is None:
        raise SwaggerNotFound(
            f"Swagger version [{asked}] is not supported for the scoring script. "
            f"Supported swagger versions: [{supported}]."
        )
    return doc


def _shipped(version: str) -> bytes | None:
    root = Path(os.environ.get("AML_APP_ROOT") or os.getcwd())
    for name in _FILES[version]:
        path = root / name
        if path.is_file():
            return json.dumps(json.loads(path.read_text(encoding="utf-8"))).encode()
    return None


def _build(version: str, schemas: tuple[Any, Any], keys: bool) -> dict[str, Any]:
    name = os.environ.get("SERVICE_NAME", "ML service")
    prefix = os.environ.get("SERVICE_PATH_PREFIX", "").strip("/")
    base = f"/{prefix}" if prefix else ""
    info = {
        "title": name,
        "description": f"API specification for the Azure Machine Learning service {name}",
        "version": os.environ.get("SERVICE_VERSION", "1.0"),
    }
    if version == "2":
        return _swagger2(info, base, schemas, keys)
    doc = _openapi3(info, base, schemas, keys)
    doc["openapi"] = "3.1.0" if version == "3.1" else "3.0.3"
    return doc


def _swagger2(info: dict[str, Any], base: str, schemas: tuple[Any, Any], keys: bool) -> dict[str, Any]:
    error = {"description": _FAILED, "schema": {"$ref": "#/definitions/ErrorResponse"}}
    score: dict[str, Any] = {
        "operationId": "RunMLService",
        "description": "Run web service's model and get the prediction output",
        "parameters": [{"name": "serviceInputPayload", "in": "body", "schema": {"$ref": "#/definitions/ServiceInput"}}],
        "responses": {
            "200": {"description": "The prediction.", "schema": {"$ref": "#/definitions/ServiceOutput"}},
            "default": error,
        },
    }
    doc: dict[str, Any] = {
        "swagger": "2.0",
        "info": info,
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": {
            f"{base}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": "Liveness: 200 with the text 'Healthy'.",
                    "responses": {"200": {"description": "Healthy", "schema": {"type": "string"}}, "default": error},
                }
            },
            f"{base}/score": {"post": score},
            f"{base}/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "This document.",
                    "parameters": [{"name": "version", "in": "query", "required": False, "type": "string"}],
                    "responses": {"200": {"description": "The document.", "schema": {"type": "string"}}},
                }
            },
        },
        "definitions": {"ServiceInput": schemas[0], "ServiceOutput": schemas[1], "ErrorResponse": _ERROR},
    }
    if keys:
        doc["securityDefinitions"] = {"Bearer": _BEARER}
        score["security"] = [{"Bearer": []}]
    return doc


_ERROR = {"type": "object", "properties": {"message": {"type": "string"}}}


def _openapi3(info: dict[str, Any], base: str, schemas: tuple[Any, Any], keys: bool) -> dict[str, Any]:
    def body(ref: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}

    error = {"description": _FAILED, "content": body("ErrorResponse")}
    score: dict[str, Any] = {
        "operationId": "RunMLService",
        "description": "Run web service's model and get the prediction output",
        "requestBody": {"description": "The input payload.", "content": body("ServiceInput")},
        "responses": {"200": {"description": "The prediction.", "content": body("ServiceOutput")}, "default": error},
    }
    text = {"text/plain": {"schema": {"type": "string"}}}
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": info,
        "paths": {
            f"{base}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": "Liveness: 200 with the text 'Healthy'.",
                    "responses": {"200": {"description": "Healthy", "content": text}, "default": error},
                }
            },
            f"{base}/score": {"post": score},
            f"{base}/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "This document.",
                    "parameters": [{"name": "version", "in": "query", "required": False, "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "The document.", "content": text}},
                }
            },
        },
        "components": {"schemas": {"ServiceInput": schemas[0], "ServiceOutput": schemas[1], "ErrorResponse": _ERROR}},
    }
    if keys:
        doc["components"]["securitySchemes"] = {"Bearer": _BEARER}
        doc["security"] = [{"Bearer": []}]
        score["security"] = [{"Bearer": []}]
    return doc
