"""``mlctl edge push``: images resolved (built and pushed when needed), the manifest rendered and
checked, then sent to one device or as a versioned at-scale deployment, then waited for.

At-scale deployments are immutable in IoT Hub (only labels, metrics, priority and target
condition can change), so an update is a new Configuration ``NAME-vN`` with a priority above
every older version's; once it has applied to the wanted share of devices the older versions are
deleted. Nothing is sent before the manifest validates and every secret is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mlctl.edge import manifest, wait
from mlctl.edge.hub import Hub, connect, target_options
from mlctl.edge.spec import EdgeDeploymentSpec, EdgeModule
from mlctl.errors import NotFoundError, SpecError, TargetError
from mlctl.output import Reporter
from mlctl.registry import Registry

NAME_LABEL, VERSION_LABEL = "mlctl.name", "mlctl.version"
_MLCTL_IMAGE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_.-]*):(?P<version>[1-9][0-9]*)$")


def resolve_images(spec: EdgeDeploymentSpec, registry: Registry, reporter: Reporter, *, build: bool) -> dict[str, str]:
    """Module name -> the reference the device pulls. ``build``: build ``build:`` modules and push
    images that were never pushed (else such modules use the latest pushed version, and an image
    never pushed is an error).

    Raises:
        NotFoundError: an mlctl image does not exist. TargetError: not pushed / nowhere to push.
    """
    found = {m.name: _image(m, registry, reporter, build=build) for m in spec.modules}
    hosts = {c.address for c in spec.runtime.registry_credentials}
    for name, ref in found.items():
        host = ref.split("/", 1)[0]
        if "/" in ref and _is_host(host) and host not in hosts and not host.endswith("mcr.microsoft.com"):
            reporter.warn(f"module {name}: no registry_credentials for {host}; the device pulls it anonymously")
    return found


def _is_host(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost"


def _image(module: EdgeModule, registry: Registry, reporter: Reporter, *, build: bool) -> str:
    if module.build is not None:
        return _built(module, registry, reporter, build=build)
    assert module.image is not None  # the schema requires image or build
    if "/" in module.image and _is_host(module.image.split("/", 1)[0]):
        return module.image
    match = _MLCTL_IMAGE.match(module.image)
    if not match:
        raise SpecError(
            f"module {module.name}: image {module.image!r} is neither NAME:VERSION of an mlctl image "
            "nor a reference with a registry host",
            hint="e.g. image: diabetes:1 (see `mlctl image list`) or myacr.azurecr.io/diabetes:1",
        )
    name, version = match.group("name"), int(match.group("version"))
    record = registry.image(name, version)
    if record.get("pushed"):
        return str(record["pushed"])
    if not build:
        raise TargetError(
            f"image {name}:{version} was never pushed, so no device can pull it",
            hint=f"push it: `mlctl image push {name}:{version}` (MLCTL_REGISTRY names the registry)",
        )
    return _push(registry, reporter, name, version)


def _push(registry: Registry, reporter: Reporter, name: str, version: int) -> str:
    from mlctl import builder, config

    target = config.image_registry()
    if target is None:
        raise TargetError(
            f"image {name}:{version} must be pushed for the devices, but no registry is set",
            hint="set MLCTL_REGISTRY=host:port, or `registry:` in the configuration",
        )
    with reporter.step(f"pushing {name}:{version} to {target}") as progress:
        return str(builder.push(registry, name, version, target, progress)["pushed"])


def _built(module: EdgeModule, registry: Registry, reporter: Reporter, *, build: bool) -> str:
    from mlctl import builder, config, images
    from mlctl.spec import ImageSpec
    from mlctl.spec import load_one as load_one_spec

    assert module.build is not None
    spec = load_one_spec([module.build], ImageSpec)
    assert isinstance(spec, ImageSpec)
    if not build:
        pushed = [r for r in registry.images(spec.name) if r.get("pushed")]
        if not pushed:
            raise TargetError(
                f"module {module.name}: image {spec.name} has no pushed version yet",
                hint="`mlctl edge push` builds and pushes it; or `mlctl image build --push -f FILE`",
            )
        return str(pushed[-1]["pushed"])
    models = tuple(registry.get(ref) for ref in spec.models)
    base = spec.base_image or config.base_image()
    plan = images.plan_context(
        spec.name, spec.inference, models, base_image=base, description=spec.description, registry=registry
    )
    with reporter.step(f"building image {spec.name} for module {module.name}") as progress:
        record = builder.build(plan, registry, progress)
    return _push(registry, reporter, record["name"], record["version"])


def checked(spec: EdgeDeploymentSpec, images: Mapping[str, str], secrets: Mapping[str, str] | None) -> dict[str, Any]:
    """The rendered manifest after validation. Raises SpecError (exit 3)."""
    content = manifest.render(spec, images, secrets)
    manifest.validate(content, layered=spec.layered)
    return content


def push(
    spec: EdgeDeploymentSpec,
    registry: Registry,
    reporter: Reporter,
    *,
    wait_for: bool,
    timeout_s: float,
    min_success: float,
) -> dict[str, Any]:
    """Deploy ``spec`` (see the module docstring); returns the result document (no secrets).

    Raises:
        SpecError: invalid manifest or unreadable secret (nothing sent). NotFoundError: unknown
        device or image. TargetError: an image has no variant for the device's platform (see
        ``platform``). TargetError, DeploymentError, WaitTimeout: see ``hub`` and ``wait``.
    """
    checked(spec, {m.name: "registry.invalid/check:1" for m in spec.modules}, None)  # before any side effect
    spec = manifest.with_registry_resources(spec, target_options(spec.target))
    secrets = manifest.resolve_secrets(spec)
    hub = connect(spec.target)
    if spec.device_id is not None:
        _edge_device(hub, spec.device_id)
    images = resolve_images(spec, registry, reporter, build=True)
    content = checked(spec, images, secrets)
    if spec.device_id is not None:
        from mlctl.edge import platform  # the images' platforms against the device's (exit 6)

        platform.check(hub, spec.device_id, images, registry, reporter)
        return _to_device(hub, spec, content, reporter, wait_for=wait_for, timeout_s=timeout_s)
    return _at_scale(hub, spec, content, reporter, wait_for=wait_for, timeout_s=timeout_s, min_success=min_success)


def _edge_device(hub: Hub, device_id: str) -> None:
    try:
        device = hub.device(device_id)
    except NotFoundError:
        raise NotFoundError(
            f"device {device_id} does not exist in IoT Hub {hub.host}",
            hint=f"register it: `mlctl edge device create {device_id}`",
        ) from None
    if not (device.get("capabilities") or {}).get("iotEdge"):
        raise TargetError(
            f"device {device_id} is not an IoT Edge device", hint="create it with `mlctl edge device create`"
        )


def _to_device(
    hub: Hub, spec: EdgeDeploymentSpec, content: dict[str, Any], reporter: Reporter, *, wait_for: bool, timeout_s: float
) -> dict[str, Any]:
    assert spec.device_id is not None
    with reporter.step(f"setting the modules of device {spec.device_id}"):
        hub.apply_content(spec.device_id, content)
    doc: dict[str, Any] = {"name": spec.name, "device_id": spec.device_id, "modules": [m.name for m in spec.modules]}
    if not wait_for:
        return {**doc, "waited": False}
    expected = [m.name for m in spec.modules if m.status == "running"]
    with reporter.step(f"waiting for device {spec.device_id}") as progress:
        status = wait.wait_device(hub, spec.device_id, expected, timeout_s=timeout_s, progress=progress)
    return {**doc, "waited": True, "status": status}


def versions(hub: Hub, name: str) -> list[dict[str, Any]]:
    """The hub's deployments of spec ``name`` (label ``mlctl.name``), oldest version first."""
    found = [c for c in hub.configurations() if (c.get("labels") or {}).get(NAME_LABEL) == name]
    return sorted(found, key=lambda c: int((c.get("labels") or {}).get(VERSION_LABEL, 0)))


def _at_scale(
    hub: Hub,
    spec: EdgeDeploymentSpec,
    content: dict[str, Any],
    reporter: Reporter,
    *,
    wait_for: bool,
    timeout_s: float,
    min_success: float,
) -> dict[str, Any]:
    old = versions(hub, spec.name)
    latest = old[-1] if old else None
    if latest is not None and _same(latest, spec, content):
        return {"name": spec.name, "deployment": latest["id"], "unchanged": True, "retired": []}
    version = int(latest["labels"][VERSION_LABEL]) + 1 if latest else 1
    priority = max([spec.priority, *(int(c.get("priority") or 0) + 1 for c in old)])
    config_id = f"{spec.name}-v{version}"
    body = manifest.configuration(spec, content, config_id=config_id, priority=priority, version=version)
    with reporter.step(f"creating deployment {config_id} (priority {priority})"):
        hub.create_configuration(body)
    doc: dict[str, Any] = {"name": spec.name, "deployment": config_id, "version": version, "priority": priority}
    if not wait_for:
        return {**doc, "waited": False, "retired": [], "previous": [c["id"] for c in old]}
    with reporter.step(f"waiting for deployment {config_id}") as progress:
        counts = wait.wait_deployment(hub, config_id, min_success=min_success, timeout_s=timeout_s, progress=progress)
    retired = [c["id"] for c in old if hub.delete_configuration(c["id"])]
    return {**doc, "waited": True, "counts": counts, "retired": retired}


def _same(latest: dict[str, Any], spec: EdgeDeploymentSpec, content: dict[str, Any]) -> bool:
    """Whether ``latest`` already is what ``spec`` asks for: content, target condition, labels and
    metric queries, and at least its priority (versions raise it, so a lower one is no change)."""
    stored = (latest.get("content") or {}).get("modulesContent")
    labels = {k: v for k, v in (latest.get("labels") or {}).items() if k not in (NAME_LABEL, VERSION_LABEL)}
    queries = ((latest.get("metrics") or {}).get("queries")) or {}
    return bool(
        stored == content["modulesContent"]
        and latest.get("targetCondition") == spec.target_condition
        and labels == dict(spec.labels)
        and queries == {**manifest.default_metrics(latest["id"]), **spec.metrics}
        and int(latest.get("priority") or 0) >= spec.priority
    )


def redact(value: Any) -> Any:
    """A copy of ``value`` with every ``password`` replaced by ``<redacted>`` (for show/list)."""
    if isinstance(value, dict):
        return {k: "<redacted>" if k == "password" else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
