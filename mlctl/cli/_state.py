"""Per-invocation state shared by the command modules: the reporter and the registry."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from mlctl.output import Reporter

if TYPE_CHECKING:
    from mlctl.registry import Registry


class OutputFormat(str, Enum):
    """Values of ``--output``."""

    human = "human"
    json = "json"


_reporter = Reporter()


def configure(output: OutputFormat, debug: bool) -> None:
    """Set the output mode for this invocation (called by the root callback)."""
    global _reporter
    _reporter = Reporter("json" if output is OutputFormat.json else "human", debug=debug)


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
