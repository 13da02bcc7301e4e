"""The deployment manifest (``modulesContent``), rendered purely from an EdgeDeployment record.

Follows what the IoT Edge runtime accepts (Azure/iotedge; see the project's wire reference D):
``$edgeAgent`` schemaVersion 1.0 or 1.1 (the agent refuses later ones), ``$edgeHub`` 1.0-1.3;
``createOptions`` written as JSON split into ``createOptions``, ``createOptions01``, ... chunks of
at most 512 characters, at most 100 chunks (edge-util ``JsonEx.ChunkedProperty``). Every manifest
is checked against the official schema of its version before anything is sent
(``manifest_check.validate``, re-exported here).

Every module's ``env`` gets ``MLCTL_MODEL_NAME`` = its name: an mlctl server answers the Open Inference
Protocol under the module's name, as other targets' services do under theirs (``env`` may override).

Secrets: registry passwords are rendered only from the ``secrets`` argument (name -> password,
read by ``resolve_secrets`` at send time); without it they are ``<redacted ...>`` placeholders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from mlctl.edge.manifest_check import CHUNK_SIZE, MAX_CHUNKS, chunk_name
from mlctl.edge.manifest_check import validate as validate  # re-exported: callers check with manifest.validate
from mlctl.edge.messages import message_env, message_routes
from mlctl.edge.spec import EdgeDeploymentSpec, EdgeModule, EdgeRuntime, RegistryCredential
from mlctl.errors import SpecError

DEFAULT_HUB_CREATE_OPTIONS: Mapping[str, Any] = {
    "HostConfig": {"PortBindings": {p: [{"HostPort": p.split("/")[0]}] for p in ("5671/tcp", "8883/tcp", "443/tcp")}}
}
DEFAULT_ROUTES: Mapping[str, str] = {"upstream": "FROM /messages/* INTO $upstream"}


def render(
    spec: EdgeDeploymentSpec, images: Mapping[str, str], secrets: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``{"modulesContent": {...}}`` for ``spec`` (the shape `az iot edge set-modules --content` takes).

    Args:
        images: module name -> the image reference the device pulls.
        secrets: registry credential name -> password; None renders ``<redacted ...>`` instead.

    Raises:
        SpecError: create options too long for 100 chunks.
    """
    if spec.layered:
        return {"modulesContent": _layered(spec, images, secrets)}
    content: dict[str, Any] = {
        "$edgeAgent": {"properties.desired": _agent(spec, images, secrets)},
        "$edgeHub": {"properties.desired": _hub(spec.runtime, message_routes(spec.modules))},
    }
    content.update(_twins(spec.modules))
    return {"modulesContent": content}


def chunk_create_options(options: Mapping[str, Any], *, where: str = "create_options") -> dict[str, str]:
    """Docker create options as the agent reads them: compact JSON in ``createOptions``,
    ``createOptions01``, ... of at most ``CHUNK_SIZE`` characters each.

    Raises:
        SpecError: more than ``MAX_CHUNKS`` chunks would be needed.
    """
    text = json.dumps(dict(options), separators=(",", ":"), ensure_ascii=False) if options else "{}"
    parts = [text[i : i + CHUNK_SIZE] for i in range(0, len(text), CHUNK_SIZE)]
    if len(parts) > MAX_CHUNKS:
        raise SpecError(
            f"{where}: {len(text)} characters of JSON need {len(parts)} chunks; the runtime reads {MAX_CHUNKS}",
            hint=f"keep the create options under {CHUNK_SIZE * MAX_CHUNKS} characters of JSON",
        )
    return {chunk_name(i): part for i, part in enumerate(parts)}


def configuration(
    spec: EdgeDeploymentSpec, content: Mapping[str, Any], *, config_id: str, priority: int, version: int
) -> dict[str, Any]:
    """The IoT Hub Configuration body of an at-scale (or layered) deployment (wire reference C.4).

    ``labels`` carry ``mlctl.name`` and ``mlctl.version`` so the next version can find and retire
    this one; ``metrics`` add ``reportedSuccessfulCount`` and ``reportedFailedCount`` (the portal's
    defaults) to the spec's own queries."""
    assert spec.target_condition is not None  # only for at-scale specs
    labels = {**spec.labels, "mlctl.name": spec.name, "mlctl.version": str(version)}
    return {
        "id": config_id,
        "schemaVersion": "1.0",
        "labels": labels,
        "content": {"modulesContent": dict(content["modulesContent"])},
        "targetCondition": spec.target_condition,
        "priority": priority,
        "metrics": {"queries": {**default_metrics(config_id), **spec.metrics}},
    }


def default_metrics(config_id: str) -> dict[str, str]:
    """The portal's default custom metrics of a deployment: devices whose agent reported the
    deployment's desired version with status 200 (successful) or another status (failed)."""
    base = (
        "SELECT deviceId FROM devices.modules WHERE moduleId='$edgeAgent' "
        f"AND configurations.[[{config_id}]].status='Applied' "
        "AND properties.desired.$version = properties.reported.lastDesiredVersion "
        "AND properties.reported.lastDesiredStatus.code"
    )
    return {"reportedSuccessfulCount": f"{base} = 200", "reportedFailedCount": f"{base} != 200"}


def resolve_secrets(spec: EdgeDeploymentSpec) -> dict[str, str]:
    """Read every registry password the spec refers to (at send time only; never stored).

    Raises:
        SpecError: an environment variable is unset or a file unreadable (named; the value never is).
    """
    return {c.name: _password(c) for c in spec.runtime.registry_credentials}


def secret_values(spec: EdgeDeploymentSpec) -> list[str]:
    """The registry passwords (for redacting any text that might echo them)."""
    return [v for v in resolve_secrets(spec).values() if v]


# -- rendering -------------------------------------------------------------------------------


def _agent(spec: EdgeDeploymentSpec, images: Mapping[str, str], secrets: Mapping[str, str] | None) -> dict[str, Any]:
    r = spec.runtime
    settings: dict[str, Any] = {"minDockerVersion": r.min_docker_version}
    if r.registry_credentials:
        settings["registryCredentials"] = {c.name: _credential(c, secrets) for c in r.registry_credentials}
    return {
        "schemaVersion": r.agent_schema_version,
        "runtime": {"type": "docker", "settings": settings},
        "systemModules": {
            "edgeAgent": {
                "type": "docker",
                "settings": {"image": _agent_image(r), **chunk_create_options(r.agent_create_options)},
            },
            "edgeHub": {
                "type": "docker",
                "status": "running",
                "restartPolicy": "always",
                "settings": {"image": _hub_image(r), **chunk_create_options(_hub_options(r))},
            },
        },
        "modules": {m.name: _module(m, images[m.name]) for m in spec.modules},
    }


def _hub(r: EdgeRuntime, generated: Mapping[str, str] | None = None) -> dict[str, Any]:
    routes: dict[str, Any] = dict(generated or {})  # a spec route of the same name replaces a generated one
    for name, route in r.routes.items():
        if route.priority is None and route.time_to_live_secs is None:
            routes[name] = route.route
        else:
            routes[name] = {"route": route.route}
            if route.priority is not None:
                routes[name]["priority"] = route.priority
            if route.time_to_live_secs is not None:
                routes[name]["timeToLiveSecs"] = route.time_to_live_secs
    return {
        "schemaVersion": r.hub_schema_version,
        "routes": routes or dict(DEFAULT_ROUTES),
        "storeAndForwardConfiguration": {"timeToLiveSecs": r.store_and_forward_ttl_secs},
    }


def _module(m: EdgeModule, image: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": m.version,
        "type": "docker",
        "status": m.status,
        "restartPolicy": m.restart_policy,
    }
    if m.startup_order is not None:
        body["startupOrder"] = m.startup_order
    if m.image_pull_policy is not None:
        body["imagePullPolicy"] = m.image_pull_policy
    env = {"MLCTL_MODEL_NAME": m.name, **message_env(m.messages), **_collection_env(m), **m.env}
    body["env"] = {k: {"value": v} for k, v in env.items()}  # never empty: MLCTL_MODEL_NAME at least
    where = f"modules.{m.name}.create_options"
    body["settings"] = {"image": image, **chunk_create_options(_with_store(m), where=where)}
    return body


MODELDATA_MOUNT = "/var/mlctl/modeldata"  # the module's local store of collected model data


def _collection_env(m: EdgeModule) -> dict[str, str]:
    if not m.collect_model_data:
        return {}
    return {"AML_MODEL_DC_STORAGE_ENABLED": "true", "MLCTL_DC_LOCAL": MODELDATA_MOUNT, "SERVICE_NAME": m.name}


def _with_store(m: EdgeModule) -> Mapping[str, Any]:
    """``create_options`` plus the bind of ``model_data_volume`` at ``MODELDATA_MOUNT`` (collecting)."""
    if not m.collect_model_data:
        return m.create_options
    host = dict(m.create_options.get("HostConfig", {}))
    host["Binds"] = [*host.get("Binds", []), f"{m.model_data_volume}:{MODELDATA_MOUNT}"]
    return {**m.create_options, "HostConfig": host}


def _twins(modules: tuple[EdgeModule, ...]) -> dict[str, Any]:
    return {m.name: {"properties.desired": dict(m.desired_properties)} for m in modules if m.desired_properties}


def _layered(spec: EdgeDeploymentSpec, images: Mapping[str, str], secrets: Mapping[str, str] | None) -> dict[str, Any]:
    agent: dict[str, Any] = {f"properties.desired.modules.{m.name}": _module(m, images[m.name]) for m in spec.modules}
    for c in spec.runtime.registry_credentials:
        agent[f"properties.desired.runtime.settings.registryCredentials.{c.name}"] = _credential(c, secrets)
    content: dict[str, Any] = {"$edgeAgent": agent}
    hub = _hub(spec.runtime, message_routes(spec.modules))
    if spec.runtime.routes or message_routes(spec.modules):
        content["$edgeHub"] = {f"properties.desired.routes.{n}": v for n, v in hub["routes"].items()}
    content.update(_twins(spec.modules))
    return content


def _credential(c: RegistryCredential, secrets: Mapping[str, str] | None) -> dict[str, str]:
    password = secrets[c.name] if secrets is not None else f"<redacted: {c.reference}>"
    unread = f"<registry_resource:{c.registry_resource}>"  # an ACR not read yet (``with_registry_resources``)
    return {"username": c.username or unread, "password": password, "address": c.address or unread}


def with_registry_resources(spec: EdgeDeploymentSpec, options: Mapping[str, str]) -> EdgeDeploymentSpec:
    """``spec`` with each ``registry_resource`` credential's login server, admin user and password
    read through ARM (``mlctl.targets.aci.arm.acr_credentials``, the aci and kubernetes targets'
    path; ``options``: the iot-edge target's, for ``subscription_id``, ``base_url``, ``ca_bundle``).
    The password stays in memory. Raises what ``acr_credentials`` raises."""
    if not any(c.registry_resource for c in spec.runtime.registry_credentials):
        return spec
    from dataclasses import replace

    from mlctl.targets.aci.arm import acr_credentials

    resolved = []
    for c in spec.runtime.registry_credentials:
        if c.registry_resource:
            server, user, password = acr_credentials({**options, "registry_resource": c.registry_resource}, "")
            c = replace(c, address=server, username=user, password=password)
        resolved.append(c)
    return replace(spec, runtime=replace(spec.runtime, registry_credentials=tuple(resolved)))


def _agent_image(r: EdgeRuntime) -> str:
    return r.agent_image or f"mcr.microsoft.com/azureiotedge-agent:{r.version}"


def _hub_image(r: EdgeRuntime) -> str:
    return r.hub_image or f"mcr.microsoft.com/azureiotedge-hub:{r.version}"


def _hub_options(r: EdgeRuntime) -> Mapping[str, Any]:
    return DEFAULT_HUB_CREATE_OPTIONS if r.hub_create_options is None else r.hub_create_options


def _password(c: RegistryCredential) -> str:
    if c.password is not None:
        return c.password
    if c.registry_resource:
        raise SpecError(
            f"registry credential {c.name!r}: registry {c.registry_resource} was not read",
            hint="a bug: with_registry_resources must run before the secrets are resolved",
        )
    if c.password_env:
        value = os.environ.get(c.password_env)
        if not value:
            raise SpecError(
                f"registry credential {c.name!r}: environment variable {c.password_env} is not set",
                hint=f"export {c.password_env} with the password of {c.username}@{c.address}",
            )
        return value
    assert c.password_file is not None  # the schema requires one of the two
    try:
        return c.password_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SpecError(
            f"registry credential {c.name!r}: cannot read {c.password_file}: {exc.strerror}",
            hint="check password_file and its permissions",
        ) from None
