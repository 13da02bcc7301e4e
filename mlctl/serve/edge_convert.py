"""edgeHub messages as scoring requests and ``run()`` results as edgeHub messages (``mlctl.serve.edge_messages``).

``azure-iot-device``'s ``Message`` is imported only by ``reply``, inside the message process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlctl.serve.request import Request


def message_request(message: Any) -> Request:
    """A ``POST /score`` request for an edgeHub message: its body, content type and custom properties as headers."""
    from mlctl.serve.request import Request

    data = message.data if isinstance(message.data, bytes) else str(message.data).encode("utf-8")
    headers = [(b"content-type", (message.content_type or "application/json").encode("latin-1"))]
    for key, value in (message.custom_properties or {}).items():
        headers.append((str(key).lower().encode("latin-1", "replace"), str(value or "").encode("latin-1", "replace")))
    return Request("POST", "/score", b"", headers, data)


def output_bodies(result: Any) -> list[bytes]:
    """The output messages' bodies for a ``run()`` result: one per list item, else one (str as is, other JSON)."""
    from mlctl.serve.answers import is_response, to_json

    items = result if isinstance(result, list) else [result]
    bodies = []
    for item in items:
        if is_response(item):
            data = item.get_data()
            bodies.append(data.encode() if isinstance(data, str) else bytes(data))
        elif isinstance(item, (bytes, bytearray)):
            bodies.append(bytes(item))
        elif isinstance(item, str):
            bodies.append(item.encode("utf-8"))
        else:
            bodies.append(json.dumps(item, default=to_json).encode("utf-8"))
    return bodies


def reply(incoming: Any, body: bytes) -> Any:
    """An outgoing message for ``incoming``: its custom properties, its correlation id (else its message id)."""
    from azure.iot.device import Message

    message = Message(body, content_encoding="utf-8", content_type="application/json")  # type: ignore[no-untyped-call]
    message.correlation_id = incoming.correlation_id or incoming.message_id
    message.custom_properties = {k: v for k, v in (incoming.custom_properties or {}).items() if v is not None}
    return message


def merge_patch(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A twin patch applied to desired properties (JSON merge patch: null removes a key)."""
    merged = dict(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


def models_of(model_dir: str | None) -> list[dict[str, str]]:
    """Name and version of the image's models, from ``AZUREML_MODEL_DIR`` (``azureml-models/NAME/VERSION``)."""
    from mlctl.serve.model_path import MODELS_DIR

    if not model_dir:
        return []
    path = Path(model_dir)
    if path.parent.parent.name == MODELS_DIR:
        return [{"name": path.parent.name, "version": path.name}]
    if path.name == MODELS_DIR and path.is_dir():
        return [{"name": v.parent.name, "version": v.name} for v in sorted(path.glob("*/*")) if v.is_dir()]
    return []
