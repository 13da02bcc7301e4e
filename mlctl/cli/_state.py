"""Per-invocation state shared by the command modules: the reporter and the registry."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlctl.output import Reporter

if TYPE_CHECKING:
    from mlctl.registry import Registry


class OutputFormat(str, Enum):
    """Values of ``--output``."""

    table = "table"
    json = "json"
    yaml = "yaml"


_reporter = Reporter()


def configure(output: OutputFormat, *, debug: bool, quiet: bool) -> None:
    """Set the output mode for this invocation (called by the root callback)."""
    global _reporter
    _reporter = Reporter(output.value, debug=debug, quiet=quiet)


def reporter() -> Reporter:
    """The reporter of this invocation."""
    return _reporter


def home() -> Path:
    """``MLCTL_HOME``."""
    from mlctl.home import mlctl_home

    return mlctl_home()


def registry() -> Registry:
    """The registry under ``MLCTL_HOME``."""
    from mlctl.registry import Registry

    return Registry(home())


SET_HELP = "[KIND/NAME:]path=value: override a spec value (repeatable), e.g. deployment_config.port=9000."


def overrides(values: list[str]) -> list[Any]:
    """Parse ``--set`` values (see ``mlctl.spec.overlay``). Raises SpecError when malformed."""
    from mlctl.spec.overlay import Override

    return [Override.parse(v) for v in values]


def pairs(values: list[str], option: str) -> dict[str, str]:
    """``['k=v', ...]`` -> dict.

    Raises:
        typer.BadParameter: an item has no ``=``.
    """
    import typer

    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        result[key] = value
    return result


def complete_services(incomplete: str) -> list[str]:
    """Shell completion: service names from the registry (nothing on any error)."""
    try:
        return [r["name"] for r in registry().services() if r["name"].startswith(incomplete)]
    except Exception:  # noqa: BLE001 - completion must never print an error into the shell
        return []


def complete_models(incomplete: str) -> list[str]:
    """Shell completion: ``NAME:VERSION`` of registered model versions, and ``NAME@latest``."""
    try:
        models = registry().models()
    except Exception:  # noqa: BLE001 - completion must never print an error into the shell
        return []
    refs = [m.ref for m in models] + sorted({f"{m.name}@latest" for m in models})
    return [r for r in refs if r.startswith(incomplete)]
