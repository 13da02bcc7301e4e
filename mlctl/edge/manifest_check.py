"""Checks of a deployment manifest (``modulesContent``) before anything is sent to IoT Hub.

Every manifest is checked against the official schema of its version (``schemas/``, from
Azure/azure-iot-cli-extension); a layered deployment's modules are checked against the module
definition of the same schema. ``$edgeHub`` 1.3 (which only adds ``integrity``, not rendered)
has no official file: it is checked with the 1.2 file. ``createOptions`` chunks follow the
runtime's rules (edge-util ``JsonEx.ChunkedProperty``): ``createOptions``, ``createOptions01``,
... strings of at most 512 characters, at most 100 of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from mlctl.errors import SpecError

CHUNK_SIZE = 512  # TwinValueMaxSize: a twin string value holds at most 512 characters
MAX_CHUNKS = 100  # TwinValueMaxChunks
_AGENT_SCHEMAS = {"1.0": "azure-iot-edgeagent-deployment-1.0.json", "1.1": "azure-iot-edgeagent-deployment-1.1.json"}
_HUB_SCHEMAS = {
    "1.0": "azure-iot-edgehub-deployment-1.0.json",
    "1.1": "azure-iot-edgehub-deployment-1.1.json",
    "1.2": "azure-iot-edgehub-deployment-1.2.json",
    "1.3": "azure-iot-edgehub-deployment-1.2.json",  # 1.3 adds only `integrity`, which mlctl does not write
}


def chunk_name(index: int) -> str:
    """``createOptions`` for the first chunk, then ``createOptions01`` ... ``createOptions99``."""
    return "createOptions" if index == 0 else f"createOptions{index:02d}"


def validate(content: Mapping[str, Any], *, layered: bool) -> None:
    """Check ``{"modulesContent": ...}`` against the official schema of its versions and the
    runtime's createOptions chunk rules.

    Raises:
        SpecError: each problem as ``$.modulesContent...: message`` in ``details``.
    """
    modules = content.get("modulesContent", {})
    problems = _layered_problems(modules) if layered else _full_problems(modules)
    problems += _chunk_problems(modules)
    if problems:
        raise SpecError(
            f"invalid deployment manifest ({len(problems)} problem(s))",
            details=problems,
            hint="fix the EdgeDeployment spec; `mlctl edge manifest -f FILE` shows what would be sent",
        )


@cache
def _schema(file: str) -> dict[str, Any]:
    text = resources.files("mlctl.edge").joinpath("schemas", file).read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def _errors(instance: Any, file: str, prefix: str) -> list[str]:
    from jsonschema.validators import validator_for

    schema = _schema(file)
    validator = validator_for(schema)(schema)
    found = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_path([prefix, *e.absolute_path])}: {e.message} (schema {file})" for e in found]


def _full_problems(modules: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for key, table, what in (("$edgeAgent", _AGENT_SCHEMAS, "agent"), ("$edgeHub", _HUB_SCHEMAS, "hub")):
        desired = modules.get(key, {}).get("properties.desired")
        if not isinstance(desired, dict):
            problems.append(f"{_path(['modulesContent', key])}: missing 'properties.desired'")
            continue
        version = str(desired.get("schemaVersion"))
        if version not in table:
            where = _path(["modulesContent", key, "properties.desired", "schemaVersion"])
            problems.append(f"{where}: {what} schemaVersion {version!r} is not one of {', '.join(table)}")
            continue
        checked = {**desired, "schemaVersion": "1.2"} if version == "1.3" else desired  # the 1.2 file says "1.2"
        instance = {key: {**modules[key], "properties.desired": checked}}
        problems += _errors(instance, table[version], "modulesContent")
    return problems


def _layered_problems(modules: Mapping[str, Any]) -> list[str]:
    """Each ``properties.desired.modules.X`` checked as a module of an otherwise minimal 1.1 manifest."""
    problems: list[str] = []
    prefix = "properties.desired.modules."
    for key, value in modules.get("$edgeAgent", {}).items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        desired = {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "x"}},
                "edgeHub": {
                    "type": "docker",
                    "status": "running",
                    "restartPolicy": "always",
                    "settings": {"image": "x"},
                },
            },
            "modules": {name: value},
        }
        for line in _errors({"$edgeAgent": {"properties.desired": desired}}, _AGENT_SCHEMAS["1.1"], "modulesContent"):
            problems.append(line.replace(f"['properties.desired'].modules.{name}", f"['{key}']"))
    return problems


def _chunk_problems(modules: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for path, settings in _all_settings(modules):
        names = sorted((k for k in settings if k.lower().startswith("createoptions")), key=lambda k: (len(k), k))
        for i, name in enumerate(names):
            if name != chunk_name(i):
                problems.append(f"{_path([*path, name])}: chunk {i} must be named {chunk_name(i)!r}")
            elif not isinstance(settings[name], str) or len(settings[name]) > CHUNK_SIZE:
                problems.append(f"{_path([*path, name])}: each chunk is a string of at most {CHUNK_SIZE} characters")
        if len(names) > MAX_CHUNKS:
            problems.append(f"{_path(path)}: at most {MAX_CHUNKS} createOptions chunks")
    return problems


def _all_settings(modules: Mapping[str, Any]) -> list[tuple[list[Any], Mapping[str, Any]]]:
    found: list[tuple[list[Any], Mapping[str, Any]]] = []
    for key, value in modules.get("$edgeAgent", {}).items():
        if key == "properties.desired" and isinstance(value, dict):
            for group in ("systemModules", "modules"):
                for name, module in (value.get(group) or {}).items():
                    path = ["modulesContent", "$edgeAgent", key, group, name, "settings"]
                    found.append((path, module.get("settings", {}) if isinstance(module, dict) else {}))
        elif key.startswith("properties.desired.modules.") and isinstance(value, dict):
            found.append((["modulesContent", "$edgeAgent", key, "settings"], value.get("settings", {})))
    return found


def _path(parts: list[Any]) -> str:
    """``$.modulesContent.$edgeAgent['properties.desired'].modules.x`` (dotted keys bracketed)."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif "." in str(part) or " " in str(part):
            text += f"['{part}']"
        else:
            text += f".{part}"
    return text
