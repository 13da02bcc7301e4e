"""What ``apply`` would change: a pure plan over Model, Image and Service records (``diff``,
``--dry-run``).

Models change when the content hash, description, tags or properties differ from the latest
version. Images change when a component of their build inputs' fingerprint differs from the one
stored with the latest version (``mlctl.images.fingerprint``). Services change when any
component of their fingerprint differs from the one stored at the last deploy (see
``mlctl.services.fingerprint``); the changed components are the reasons.
Planning reads the registry and the targets; it writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlctl import images, services
from mlctl.blobfiles import content_hash
from mlctl.changes import field_changes, spec_fields
from mlctl.errors import NotFoundError
from mlctl.images import ContextPlan
from mlctl.registry import ModelVersion, Registry
from mlctl.spec.records import ImageSpec, ModelRef, ModelSpec, Record, ServiceSpec
from mlctl.targets import Deployment, check_supported, driver_for, test_record


@dataclass(frozen=True)
class Change:
    """One object's planned change. ``action``: ``create``, ``update`` or ``unchanged``."""

    kind: str
    name: str
    action: str
    reasons: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """True unless ``unchanged``."""
        return self.action != "unchanged"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "reasons": list(self.reasons),
            **self.detail,
        }


def ordered(records: Sequence[Record]) -> list[Record]:
    """Records in dependency order: models, then images, then services (file order within a kind)."""
    kinds = (ModelSpec, ImageSpec, ServiceSpec)
    return [r for kind in kinds for r in records if isinstance(r, kind)]


def plan(records: Sequence[Record], registry: Registry, home: Path) -> list[Change]:
    """The change each record would cause, in apply order. Reads only."""
    predicted: dict[str, ModelVersion] = {}
    changes = []
    for record in ordered(records):
        if isinstance(record, ModelSpec):
            change, version = plan_model(record, registry)
            predicted[record.name] = version
        elif isinstance(record, ImageSpec):
            change = plan_image(record, registry, predicted)
        else:
            assert isinstance(record, ServiceSpec)
            change = plan_service(record, registry, home, predicted)
        changes.append(change)
    return changes


def image_context(spec: ImageSpec, registry: Registry, predicted: dict[str, ModelVersion] | None = None) -> ContextPlan:
    """The build context of an Image document (models as registered, or as ``predicted`` by the
    same apply). Reads only.

    Raises:
        NotFoundError: a referenced model or version does not exist (and is not being applied).
    """
    from mlctl import config

    models = tuple(_resolve(ref, registry, predicted or {}) for ref in spec.models)
    base = spec.base_image or config.base_image()
    return images.plan_context(
        spec.name, spec.inference, models, base_image=base, description=spec.description, registry=registry
    )


def plan_image(spec: ImageSpec, registry: Registry, predicted: dict[str, ModelVersion] | None = None) -> Change:
    """The change building ``spec`` would make: ``unchanged`` when the latest version was built
    from the same inputs (its stored fingerprint, ``mlctl.images.fingerprint``), else the next version."""
    wanted = images.fingerprint(image_context(spec, registry, predicted))
    try:
        latest: dict[str, Any] | None = registry.image(spec.name)
    except NotFoundError:
        latest = None
    if latest is None:
        return Change("Image", spec.name, "create", ("new",), {"version": 1})
    current = latest.get("fingerprint") or {}
    reasons = tuple(sorted(k for k in {*wanted, *current} if wanted.get(k) != current.get(k)))
    if not reasons:
        return Change("Image", spec.name, "unchanged", detail={"version": latest["version"]})
    return Change("Image", spec.name, "update", reasons, {"version": latest["version"] + 1})


def plan_model(spec: ModelSpec, registry: Registry) -> tuple[Change, ModelVersion]:
    """The change registering ``spec`` would make, and the version it would leave as latest."""
    digest = content_hash(spec.path)
    latest = registry.latest(spec.name)
    wanted = (digest, spec.description, dict(spec.tags), dict(spec.properties))
    if latest is not None and (latest.content_hash, latest.description, latest.tags, latest.properties) == wanted:
        return Change("Model", spec.name, "unchanged", detail={"version": latest.version}), latest
    reasons = _model_reasons(latest, wanted)
    version = _predicted(spec.name, spec.path, digest, latest)
    action = "create" if latest is None else "update"
    return Change("Model", spec.name, action, reasons, {"version": version.version}), version


def plan_service(
    spec: ServiceSpec, registry: Registry, home: Path, predicted: dict[str, ModelVersion] | None = None
) -> Change:
    """The change deploying or updating ``spec`` would make."""
    driver = driver_for(spec.target, registry=registry, home=home)
    check_supported(driver.kind, spec)
    models = predicted_models(spec, registry, predicted or {})
    deployment = Deployment(spec, models)
    wanted = services.fingerprint(deployment, driver)
    try:
        state = driver.status(spec.name)
    except NotFoundError:
        return Change("Service", spec.name, "create", ("new",), {"models": [m.ref for m in models]})
    record = registry.service(spec.name) or {}
    reasons = services.changed_components(wanted, state.fingerprint)
    if record.get("test", None) != json.loads(json.dumps(test_record(spec))):
        reasons = tuple(sorted((*reasons, "test")))  # recorded without a restart (services.update)
    detail: dict[str, Any] = {"models": [m.ref for m in models], "scoring_uri": state.scoring_uri}
    if reasons:
        detail["fields"] = field_changes(record.get("spec_fields"), spec_fields(spec, models))
    return Change("Service", spec.name, "update" if reasons else "unchanged", reasons, detail)


def predicted_models(
    spec: ServiceSpec, registry: Registry, predicted: dict[str, ModelVersion]
) -> tuple[ModelVersion, ...]:
    """The model versions a deploy of ``spec`` would use, without registering anything.

    Raises:
        NotFoundError: a referenced model or version does not exist (and is not being applied).
    """
    if spec.models:
        return tuple(_resolve(ref, registry, predicted) for ref in spec.models)
    found = []
    for path in spec.model_files:
        name = services.implicit_model_name(path)
        digest, latest = content_hash(path), registry.latest(name)
        same = latest is not None and latest.content_hash == digest
        found.append(latest if same and latest is not None else _predicted(name, path, digest, latest))
    return tuple(found)


def _resolve(ref: ModelRef, registry: Registry, predicted: dict[str, ModelVersion]) -> ModelVersion:
    ahead = predicted.get(ref.name)
    if ahead is not None and (ref.version is None or ref.version == ahead.version):
        return ahead
    return registry.get(ref)


def _predicted(name: str, path: Path, digest: str, latest: ModelVersion | None) -> ModelVersion:
    template = ModelVersion(
        name=name,
        version=1,
        content_hash=digest,
        source_name=path.name,
        is_folder=path.is_dir(),
        size=0,
        description="",
        tags={},
        properties={},
        created_at="",
        files=(),
    )
    return replace(template, version=latest.version + 1 if latest else 1)


def _model_reasons(latest: ModelVersion | None, wanted: tuple[Any, ...]) -> tuple[str, ...]:
    if latest is None:
        return ("new",)
    current = (latest.content_hash, latest.description, latest.tags, latest.properties)
    names = ("content", "description", "tags", "properties")
    return tuple(n for n, a, b in zip(names, current, wanted, strict=True) if a != b)
