"""``mlctl target``: named compute targets and the default one (stored in the configuration)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import typer

from mlctl.cli import _state

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True)  # its help: GROUPS in mlctl/cli/__init__.py
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Target name: lowercase letters, digits, '-'."),
    kind: str = typer.Option(..., "--kind", help="Target kind, e.g. process (iot-edge: an IoT Hub for `mlctl edge`)."),
    option: list[str] = typer.Option([], "--option", help="KEY=VALUE driver option; repeatable."),
    default: bool = typer.Option(False, "--default", help="Make it the default target."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check and show; change nothing."),
) -> None:
    """Add a named compute target (refused when the name exists)."""
    from mlctl import config
    from mlctl.errors import ConflictError
    from mlctl.targets import driver_of_kind

    if not _NAME.match(name):
        raise typer.BadParameter("lowercase letters, digits and '-', starting with a letter", param_hint="NAME")
    options = _state.pairs(option, "--option")
    if kind == "iot-edge":  # not a web-service target: the IoT Hub of `mlctl edge` (mlctl.edge.hub)
        from mlctl.edge.hub import check_options

        check_options(options)
    else:
        driver = driver_of_kind(kind, registry=_state.registry(), home=_state.home(), options=options)  # validates
        if not dry_run and hasattr(driver, "attach"):
            driver.attach()  # a cluster attached by name: its credentials fetched now (kubernetes aks_cluster)
    current = config.load()
    if name in current.targets:
        raise ConflictError(f"target {name!r} already exists", hint=f"remove it first: `mlctl target remove {name}`")
    target = config.TargetConfig(name, kind, options)
    path = config.config_path()
    if not dry_run:
        targets = {**current.targets, name: target}
        config.save(replace(current, targets=targets), stored_default=name if default else None)
    doc = {**target.to_dict(), "default": default, "config_file": str(path), "dry_run": dry_run}
    verb = "would add" if dry_run else "added"
    _state.reporter().result(doc, lambda _: _state.reporter().ok(f"{verb} target {name} ({kind})"))


@app.command("list")
def list_targets() -> None:
    """List configured targets (and the target kinds, usable by name)."""
    from mlctl import config
    from mlctl.target_kinds import TARGETS

    current = config.load()
    rows = [_row(t, current.default_target) for t in current.targets.values()]
    rows += [_row(config.TargetConfig(k, k), current.default_target) for k in TARGETS if k not in current.targets]
    reporter = _state.reporter()
    reporter.result(rows, lambda _: reporter.table(rows, ["name", "kind", "options", "default"], empty="no targets"))


@app.command("show")
def show(name: str = typer.Argument(None, help="Target name (default: the default target).")) -> None:
    """Show a target: its kind, options and the options its kind takes."""
    from mlctl import config
    from mlctl.targets import options_of

    current = config.load()
    target = current.resolve(name)
    available = _edge_options() if target.kind == "iot-edge" else options_of(target.kind)
    doc = {**_row(target, current.default_target), "available_options": available}
    reporter = _state.reporter()
    reporter.result(doc, lambda d: reporter.fields(list(d.items())))


@app.command("remove")
def remove(
    name: str = typer.Argument(..., help="Target name."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show; change nothing."),
) -> None:
    """Remove a configured target (succeeds when it does not exist). Services keep running."""
    from mlctl import config

    current = config.load()
    removed = name in current.targets
    if removed and not dry_run:
        targets = {k: v for k, v in current.targets.items() if k != name}
        stored_default = config.DEFAULT_TARGET if current.default_target == name else None
        config.save(replace(current, targets=targets), stored_default=stored_default)
    message = (
        f"{'would remove' if dry_run else 'removed'} target {name}"
        if removed
        else (f"target {name} does not exist; nothing to remove")
    )
    reporter = _state.reporter()
    reporter.result({"name": name, "removed": removed, "dry_run": dry_run}, lambda _: reporter.ok(message))


def _edge_options() -> dict[str, str]:
    from mlctl.edge.hub import OPTIONS

    return dict(OPTIONS)


def _row(target: Any, default_target: str) -> dict[str, Any]:
    return {**target.to_dict(), "default": target.name == default_target}
