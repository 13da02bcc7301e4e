"""A Service spec as flat fields, and what changes between two of them (old → new).

The fingerprint (``mlctl.services.fingerprint``) says *which components* changed, as hashes;
``diff`` and ``--dry-run`` also show *what* changed, as a Terraform plan or ``kubectl diff``
would: each field path with its old and new value. The fields of the last applied spec are
stored with the service's record (``spec_fields``) when it is deployed, updated or its test is
recorded; a service deployed before that was stored shows only its reasons.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlctl.registry import ModelVersion
from mlctl.spec.records import DeploymentConfig, ServiceSpec

_SHOWN = 120  # characters of a long value shown in a table


def spec_fields(spec: ServiceSpec, models: Sequence[ModelVersion]) -> dict[str, Any]:
    """``{"deployment_config.port": 8890, "models": ["iris:1"], ...}``: the spec's values as plain
    JSON (paths as given in the spec's own terms, every deployment_config key with its default)."""
    fields: dict[str, Any] = {
        "target": spec.target,
        "models": [m.ref for m in models],
        "image": spec.image,
        "description": spec.description,
        "tags": dict(spec.tags),
    }
    if spec.inference is not None:
        env = spec.inference.environment
        script = spec.inference.entry_script
        fields["inference_config.entry_script"] = script.name if script is not None else None
        fields["inference_config.model_kind"] = spec.inference.model_kind
        fields["inference_config.environment"] = env.kind
        fields["inference_config.environment_file"] = env.file.name if env.file else None
    for name in DeploymentConfig.field_names():
        if name != "given":
            fields[f"deployment_config.{name}"] = _plain(getattr(spec.deployment, name))
    if spec.test is not None:
        fields["test.input"] = _body(spec.test.body)
        fields["test.expected"] = spec.test.expected if spec.test.has_expected else None
        fields["test.tolerance"] = spec.test.tolerance
    return json.loads(json.dumps(fields, default=str))  # type: ignore[no-any-return]


def field_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``[{"field", "old", "new"}]`` for every field whose value differs (none when ``old`` is
    unknown, i.e. None), in the order of ``new``'s fields."""
    if old is None:
        return []
    paths = [*new, *(k for k in old if k not in new)]
    return [{"field": p, "old": old.get(p), "new": new.get(p)} for p in paths if old.get(p) != new.get(p)]


def shown(value: Any) -> str:
    """A value on one line, as in the spec (JSON), shortened past ``_SHOWN`` characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return value.name
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return base64.b64encode(body).decode()
