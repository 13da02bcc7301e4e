"""Frozen records of ``kind: EdgeDeployment`` documents (built from schema-valid documents only).

Secrets never enter a record: registry passwords are kept as references (``password_env`` or
``password_file``), read by ``manifest.resolve_secrets`` only when a manifest is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from mlctl.edge.messages import EdgeMessages, build_messages

if TYPE_CHECKING:  # only annotations: importing mlctl.spec here would be circular (its records import this)
    from mlctl.spec.document import Document

RestartPolicy = Literal["never", "on-failure", "on-unhealthy", "always"]


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class EdgeModule:
    """One custom module. Exactly one of ``image`` (``NAME:VERSION`` built by mlctl, or a full
    reference with a registry host) and ``build`` (an Image spec file built and pushed first).
    ``env`` values are strings, numbers or booleans; ``create_options`` is Docker
    ``CreateContainerParameters`` as a mapping; ``desired_properties`` go to the module twin."""

    name: str
    image: str | None = None
    build: Path | None = None
    version: str = "1.0"
    env: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    create_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    restart_policy: RestartPolicy = "always"
    status: Literal["running", "stopped"] = "running"
    startup_order: int | None = None
    image_pull_policy: str | None = None
    desired_properties: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    messages: EdgeMessages | None = None  # edgeHub message scoring (mlctl.edge.messages)
    collect_model_data: bool = False  # rows to the local store on model_data_volume (mlctl.edge.manifest)
    model_data_volume: str = "mlctl-modeldata"


@dataclass(frozen=True)
class Route:
    """An ``$edgeHub`` route: the route text, with a priority (0-9) and TTL (seconds) from schema 1.1."""

    route: str
    priority: int | None = None
    time_to_live_secs: int | None = None


@dataclass(frozen=True)
class RegistryCredential:
    """Credentials of one registry, by reference: the password comes from ``password_env`` (an
    environment variable name) or ``password_file`` (a path), read only at send time."""

    name: str
    address: str
    username: str
    password_env: str | None = None
    password_file: Path | None = None
    registry_resource: str | None = None  # GROUP/NAME of an ACR: address, username and password from ARM
    password: str | None = field(default=None, repr=False, compare=False)  # read from the ACR; in memory only

    @property
    def reference(self) -> str:
        """Where the password comes from, for messages (never the password)."""
        if self.registry_resource:
            return f"registry_resource {self.registry_resource}"
        return f"env {self.password_env}" if self.password_env else f"file {getattr(self.password_file, 'name', '')}"


@dataclass(frozen=True)
class EdgeRuntime:
    """edgeAgent/edgeHub settings. ``version`` is the runtime image version (1.5), distinct from the
    manifest ``*_schema_version`` (agent <= 1.1, hub 1.0-1.3)."""

    version: str = "1.5"
    agent_image: str | None = None
    hub_image: str | None = None
    agent_create_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    hub_create_options: Mapping[str, Any] | None = None  # None: the usual 443/5671/8883 bindings
    agent_schema_version: str = "1.1"
    hub_schema_version: str = "1.2"
    min_docker_version: str = "v1.25"
    routes: Mapping[str, Route] = field(default_factory=lambda: MappingProxyType({}))
    store_and_forward_ttl_secs: int = 7200
    registry_credentials: tuple[RegistryCredential, ...] = ()


@dataclass(frozen=True)
class EdgeDeploymentSpec:
    """A ``kind: EdgeDeployment`` document. Exactly one of ``device_id`` (single device, content set
    directly) and ``target_condition`` (an at-scale deployment with ``priority``, ``labels`` and
    custom ``metrics``; ``layered`` puts its modules on top of a base deployment)."""

    name: str
    target: str
    spec_file: Path
    modules: tuple[EdgeModule, ...]
    runtime: EdgeRuntime = EdgeRuntime()
    device_id: str | None = None
    target_condition: str | None = None
    priority: int = 10
    layered: bool = False
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    metrics: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    description: str = ""


def build_edge(doc: Document) -> EdgeDeploymentSpec:
    """The record of a schema-valid EdgeDeployment document.

    Raises:
        SpecError: a path it names is unusable (NUL character, too long) or its Image spec does not exist.
    """
    d = doc.data
    runtime = d.get("runtime", {})
    return EdgeDeploymentSpec(
        name=d["name"],
        target=d["target"],
        spec_file=doc.file,
        modules=tuple(_module(doc, name) for name in d["modules"]),
        runtime=_runtime(doc, runtime),
        device_id=d.get("device_id"),
        target_condition=d.get("target_condition"),
        priority=d.get("priority", 10),
        layered=d.get("layered", False),
        labels=_frozen({k: str(v) for k, v in d.get("labels", {}).items()}),
        metrics=_frozen(d.get("metrics")),
        description=d.get("description", ""),
    )


def _module(doc: Document, name: str) -> EdgeModule:
    m = doc.data["modules"][name]
    build = None
    if "build" in m:
        build = doc.existing(["modules", name, "build"], folder_ok=False)  # NUL or too long: located too
    return EdgeModule(
        name=name,
        image=m.get("image"),
        build=build,
        version=str(m.get("version", "1.0")),
        env=_frozen(m.get("env")),
        create_options=_frozen(m.get("create_options")),
        restart_policy=m.get("restart_policy", "always"),
        status=m.get("status", "running"),
        startup_order=m.get("startup_order"),
        image_pull_policy=m.get("image_pull_policy"),
        desired_properties=_frozen(m.get("desired_properties")),
        messages=build_messages(m.get("messages")),
        collect_model_data=bool(m.get("collect_model_data", False)),
        model_data_volume=m.get("model_data_volume", "mlctl-modeldata"),
    )


def _runtime(doc: Document, r: dict[str, Any]) -> EdgeRuntime:
    routes = {
        name: Route(value)
        if isinstance(value, str)
        else Route(value["route"], value.get("priority"), value.get("time_to_live_secs"))
        for name, value in r.get("routes", {}).items()
    }
    if any(route.priority is not None or route.time_to_live_secs is not None for route in routes.values()):
        if r.get("hub_schema_version", "1.2") == "1.0":
            raise doc.error(
                ["runtime", "routes"], "route priority and time_to_live_secs need hub_schema_version 1.1 or later"
            )
    credentials = tuple(_credential(doc, name, c) for name, c in r.get("registry_credentials", {}).items())
    return EdgeRuntime(
        version=str(r.get("version", "1.5")),
        agent_image=r.get("agent_image"),
        hub_image=r.get("hub_image"),
        agent_create_options=_frozen(r.get("agent_create_options")),
        hub_create_options=_frozen(r["hub_create_options"]) if "hub_create_options" in r else None,
        agent_schema_version=r.get("agent_schema_version", "1.1"),
        hub_schema_version=r.get("hub_schema_version", "1.2"),
        min_docker_version=r.get("min_docker_version", "v1.25"),
        routes=_frozen(routes),
        store_and_forward_ttl_secs=r.get("store_and_forward_ttl_secs", 7200),
        registry_credentials=credentials,
    )


def _credential(doc: Document, name: str, c: dict[str, Any]) -> RegistryCredential:
    password_file = None
    if "password_file" in c:  # read only at send time, but a NUL or too long a path is a spec error now
        password_file = doc.usable(["runtime", "registry_credentials", name, "password_file"])
    return RegistryCredential(
        name, c.get("address", ""), c.get("username", ""), c.get("password_env"), password_file,
        c.get("registry_resource"),
    )  # fmt: skip
