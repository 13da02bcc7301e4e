"""What ``apply`` would change: a pure plan over Model and Service records (``diff``, ``--dry-run``).

Models change when the content hash, description, tags or properties differ from the latest
version. Services change when any component of their fingerprint differs from the one stored at
the last deploy (see ``mlctl.services.fingerprint``); the changed components are the reasons.
Planning reads the registry and the targets; it writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlctl import services
from mlctl.errors import NotFoundError, TargetError
from mlctl.registry import ModelVersion, Registry, content_hash
from mlctl.spec.records import ImageSpec, ModelRef, ModelSpec, Record, ServiceSpec
from mlctl.targets import Deployment, check_supported, driver_for


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


def ordered(records: Sequence[Record]) -> list[ModelSpec | ServiceSpec]:
    """Records in dependency order: models, then images, then services (file order within a kind).

    Raises:
        TargetError: Image documents (building images arrives with the docker target).
    """
    images = [r for r in records if isinstance(r, ImageSpec)]
    if images:
        raise TargetError(
            f"image {images[0].name!r}: building images needs `mlctl image build`, which this mlctl does not have yet",
            hint="leave Image documents out of apply for now",
        )
    models: list[ModelSpec | ServiceSpec] = [r for r in records if isinstance(r, ModelSpec)]
    return models + [r for r in records if isinstance(r, ServiceSpec)]


def plan(records: Sequence[Record], registry: Registry, home: Path) -> list[Change]:
    """The change each record would cause, in apply order. Reads only."""
    predicted: dict[str, ModelVersion] = {}
    changes = []
    for record in ordered(records):
        if isinstance(record, ModelSpec):
            change, version = plan_model(record, registry)
            predicted[record.name] = version
        else:
            assert isinstance(record, ServiceSpec)
            change = plan_service(record, registry, home, predicted)
        changes.append(change)
    return changes


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
        current = driver.status(spec.name).fingerprint
    except NotFoundError:
        return Change("Service", spec.name, "create", ("new",), {"models": [m.ref for m in models]})
    reasons = tuple(sorted(k for k in wanted if wanted[k] != current.get(k)))
    action = "update" if reasons else "unchanged"
    return Change("Service", spec.name, action, reasons, {"models": [m.ref for m in models]})


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
