"""User configuration: named compute targets and defaults, like ``az configure`` defaults or
kubectl contexts.

Stored as YAML in ``$MLCTL_CONFIG``, else ``$MLCTL_HOME/config.yaml``::

    default_target: local            # used by Service specs that name no target
    targets:
      local: {kind: process, options: {host: 127.0.0.1}}

Every setting can be overridden by an environment variable: ``default_target`` by
``MLCTL_DEFAULT_TARGET``; ``base_image`` (of Image specs that name none) by
``MLCTL_BASE_IMAGE``; ``registry`` (where ``image build --push`` pushes) by ``MLCTL_REGISTRY``,
with credentials from the Docker configuration or ``MLCTL_REGISTRY_USERNAME``/``_PASSWORD``;
the output format by ``MLCTL_OUTPUT`` (and ``MLCTL_QUIET``,
``MLCTL_DEBUG``, ``MLCTL_HOME``, ``MLCTL_CONFIG``). A target kind's name (``process``) is always a
valid target, with default options.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl.errors import SpecError, TargetError

DEFAULT_TARGET = "process"
DEFAULT_BASE_IMAGE = "python:3.11-slim"


@dataclass(frozen=True)
class TargetConfig:
    """A named compute target: its kind and the driver options (``mlctl.targets.options_of``)."""

    name: str
    kind: str
    options: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "kind": self.kind, "options": dict(self.options)}


@dataclass(frozen=True)
class Config:
    """The loaded configuration (after environment overrides)."""

    default_target: str = DEFAULT_TARGET
    targets: Mapping[str, TargetConfig] = field(default_factory=dict)

    def resolve(self, name: str | None) -> TargetConfig:
        """The target called ``name`` (None: the default): a configured one, or a bare kind.

        Raises:
            TargetError: no such target.
        """
        from mlctl.target_kinds import TARGETS, refuse_retired

        wanted = name or self.default_target
        if wanted in self.targets:
            return self.targets[wanted]
        refuse_retired(wanted)
        if wanted in TARGETS:
            return TargetConfig(wanted, wanted)
        known = [*self.targets, *TARGETS]
        close = difflib.get_close_matches(wanted, known, n=1)
        raise TargetError(
            f"unknown compute target {wanted!r}; known: {', '.join(known)}",
            hint=f"did you mean {close[0]!r}?" if close else "add one with `mlctl target add`",
        )


def base_image() -> str:
    """The base image of specs that name none: ``MLCTL_BASE_IMAGE``, else the configuration's
    ``base_image``, else a standard public Python image."""
    return os.environ.get("MLCTL_BASE_IMAGE") or str(_read(config_path()).get("base_image") or DEFAULT_BASE_IMAGE)


def image_registry() -> str | None:
    """The OCI registry images are pushed to (``host[:port]``): ``MLCTL_REGISTRY``, else the
    configuration's ``registry``; None when neither is set."""
    value = os.environ.get("MLCTL_REGISTRY") or _read(config_path()).get("registry")
    return str(value).rstrip("/") if value else None


def config_path() -> Path:
    """``$MLCTL_CONFIG``, else ``$MLCTL_HOME/config.yaml``."""
    from mlctl.home import mlctl_home

    explicit = os.environ.get("MLCTL_CONFIG")
    return Path(explicit) if explicit else mlctl_home() / "config.yaml"


def load() -> Config:
    """Read the configuration (a missing file is the default configuration).

    Raises:
        SpecError: the file is not valid YAML or has the wrong shape.
    """
    path = config_path()
    data = _read(path)
    targets = {}
    for name, entry in (data.get("targets") or {}).items():
        if not isinstance(entry, dict) or "kind" not in entry:
            raise SpecError(f"{path}: target {name!r} needs a 'kind'")
        targets[str(name)] = TargetConfig(
            str(name), str(entry["kind"]), {str(k): str(v) for k, v in (entry.get("options") or {}).items()}
        )
    default = os.environ.get("MLCTL_DEFAULT_TARGET") or str(data.get("default_target") or DEFAULT_TARGET)
    return Config(default_target=default, targets=targets)


def save(config: Config, *, stored_default: str | None = None) -> Path:
    """Write ``config`` atomically; returns the file. ``stored_default`` is the default to write
    (an environment override is not persisted)."""
    from ruamel.yaml import YAML

    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "default_target": stored_default or _read(path).get("default_target") or DEFAULT_TARGET,
        "targets": {n: {"kind": t.kind, "options": dict(t.options)} for n, t in config.targets.items()},
    }
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        YAML(typ="safe", pure=True).dump(doc, out)
    os.replace(tmp, path)
    return path


def _read(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if not path.exists():
        return {}
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text())
    except YAMLError as exc:
        raise SpecError(f"cannot read configuration {path}: {exc}", hint="fix or remove the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"configuration {path} must be a mapping", hint="fix or remove the file")
    return data
