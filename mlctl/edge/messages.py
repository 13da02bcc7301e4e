"""edgeHub message scoring of a module (spec key ``messages``): its routes and its server's settings.

A module with ``messages`` gets two routes in and out of the scoring server's edgeHub endpoints
(``mlctl.serve.edge_messages``) and a third for its error output, named after the module::

    <module>-input:  FROM <from> INTO BrokeredEndpoint("/modules/<module>/inputs/<input>")
    <module>-output: FROM /messages/modules/<module>/outputs/<output> INTO <to>
    <module>-errors: FROM /messages/modules/<module>/outputs/<error_output> INTO <errors_to>

(the route grammar of edgeHub: ``FROM source [WHERE condition] INTO sink``), and the environment
variables the server reads (``MLCTL_EDGE_INPUT``, ``MLCTL_EDGE_OUTPUT``,
``MLCTL_EDGE_ERROR_OUTPUT``, ``MLCTL_EDGE_RETRY_S``). A route of the same name under
``runtime.routes`` replaces the generated one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: spec.py imports this module
    from mlctl.edge.hub import Hub
    from mlctl.edge.spec import EdgeModule

LEAF_DEVICES = "/messages/* WHERE NOT IS_DEFINED($connectionModuleId)"  # telemetry of downstream devices only


@dataclass(frozen=True)
class EdgeMessages:
    """A module's edgeHub message scoring: endpoint names, where messages come from (a route source,
    optionally with ``WHERE``), where results and errors go (route sinks), reconnect interval (s)."""

    input: str = "amlInput"
    output: str = "amlOutput"
    error_output: str = "amlError"
    source: str = LEAF_DEVICES
    to: str = "$upstream"
    errors_to: str = "$upstream"
    retry_interval_secs: int | None = None


def build_messages(data: Mapping[str, Any] | None) -> EdgeMessages | None:
    """The record of a schema-valid ``messages`` mapping (None when the module has none)."""
    if data is None:
        return None
    defaults = EdgeMessages()
    return EdgeMessages(
        input=data.get("input", defaults.input),
        output=data.get("output", defaults.output),
        error_output=data.get("error_output", defaults.error_output),
        source=data.get("from", defaults.source),
        to=data.get("to", defaults.to),
        errors_to=data.get("errors_to", defaults.errors_to),
        retry_interval_secs=data.get("retry_interval_secs"),
    )


def message_routes(modules: Iterable[EdgeModule]) -> dict[str, str]:
    """Route name -> route text for every module with ``messages``."""
    routes: dict[str, str] = {}
    for module in modules:
        m = module.messages
        if m is None:
            continue
        name = module.name
        routes[f"{name}-input"] = f'FROM {m.source} INTO BrokeredEndpoint("/modules/{name}/inputs/{m.input}")'
        routes[f"{name}-output"] = f"FROM /messages/modules/{name}/outputs/{m.output} INTO {m.to}"
        routes[f"{name}-errors"] = f"FROM /messages/modules/{name}/outputs/{m.error_output} INTO {m.errors_to}"
    return routes


def message_env(messages: EdgeMessages | None) -> dict[str, Any]:
    """The scoring server's environment for ``messages`` (empty without)."""
    if messages is None:
        return {}
    env: dict[str, Any] = {
        "MLCTL_EDGE_INPUT": messages.input,
        "MLCTL_EDGE_OUTPUT": messages.output,
        "MLCTL_EDGE_ERROR_OUTPUT": messages.error_output,
    }
    if messages.retry_interval_secs is not None:
        env["MLCTL_EDGE_RETRY_S"] = messages.retry_interval_secs
    return env


def add_message_status(hub: Hub, status: dict[str, Any]) -> dict[str, Any]:
    """``status`` (``wait.device_status``) with ``messages`` on each module whose twin has the scoring
    server's reported ``mlctl`` property (messages scored, errors, last error, models, names)."""
    from mlctl.errors import NotFoundError

    for name, module in status.get("modules", {}).items():
        try:
            reported = hub.module_twin(status["device_id"], name).get("properties", {}).get("reported", {})
        except NotFoundError:
            continue
        if isinstance(reported.get("mlctl"), Mapping):
            module["messages"] = dict(reported["mlctl"])
    return status
