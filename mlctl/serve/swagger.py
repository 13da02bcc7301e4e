"""``/swagger.json``: an OpenAPI 2.0 document of the scoring API.

When ``run()`` carries ``inference-schema`` decorators, its input and output schemas come from
``inference_schema.schema_util`` (as Azure ML's server does); otherwise a minimal document
that describes ``POST /score`` with a free-form body.
"""

from __future__ import annotations

import sys
from typing import Any

from mlctl import __version__


def swagger_document(entry: Any) -> dict[str, Any]:
    """The swagger document for a loaded ``EntryScript``."""
    request_schema: dict[str, Any] = {"type": "object"}
    response_schema: dict[str, Any] = {}
    if entry.mode == "schema" and "inference_schema" in sys.modules:
        from inference_schema.schema_util import get_input_schema, get_output_schema

        request_schema = get_input_schema(entry.run) or request_schema
        response_schema = get_output_schema(entry.run) or response_schema
    elif callable(getattr(entry, "swagger_schemas", None)):  # no-code models: from their signature or graph
        request_schema, response_schema = entry.swagger_schemas()
    return {
        "swagger": "2.0",
        "info": {
            "title": "mlctl web service",
            "version": __version__,
            "description": "Scoring API of an mlctl web service (Azure ML entry-script contract).",
        },
        "schemes": ["http"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": {
            "/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": "Liveness (Azure ML).",
                    "responses": {"200": {"description": "Healthy"}},
                }
            },
            "/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": "Run the model on the request body.",
                    "parameters": [
                        {"name": "serviceInputPayload", "in": "body", "required": True, "schema": request_schema}
                    ],
                    "responses": {
                        "200": {"description": "The prediction", "schema": response_schema},
                        "default": {
                            "description": "An error",
                            "schema": {"type": "object", "properties": {"error": {"type": "string"}}},
                        },
                    },
                }
            },
        },
    }
