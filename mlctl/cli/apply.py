"""``mlctl apply`` and ``mlctl diff``: make the registry and targets match spec files, idempotently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mlctl.cli import _state

FILES = typer.Option(..., "--file", "-f", help="Spec file or folder (*.yaml, *.yml, recursively); repeatable.")
SET = typer.Option([], "--set", help=_state.SET_HELP)
_SYMBOL = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}
DRY_RUN = typer.Option(False, "--dry-run", help="Only show what would change; change nothing.")


def apply(
    files: list[Path] = FILES,
    set_: list[str] = SET,
    dry_run: bool = DRY_RUN,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until new services are ready."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for each service's readiness."),
) -> None:
    """Register models, build images and deploy or update services so they match the specs (in that order).

    An unchanged spec changes nothing and says so.
    """
    from mlctl import plan

    records = plan.ordered(_load(files, set_))
    registry = _state.registry()
    changes = plan.plan(records, registry, _state.home())
    docs = [c.to_dict() for c in changes]
    if not dry_run:
        _check_credentials(records, changes)
        for record, change, doc in zip(records, changes, docs, strict=True):
            if change.changed:
                uri = _apply_one(record, change.action, registry, wait=wait, timeout=timeout)
                if uri is not None:
                    doc["scoring_uri"] = uri
    report(docs, dry_run=dry_run)


def _check_credentials(records: list[Any], changes: list[Any]) -> None:
    """A registry password an image build will need is there (before anything changes)."""
    from mlctl import builder
    from mlctl.spec import ImageSpec

    for record, change in zip(records, changes, strict=True):
        if change.changed and isinstance(record, ImageSpec) and record.inference.image.base_image_registry:
            builder.registry_credentials(record.inference.image.base_image_registry)


def _apply_one(record: Any, action: str, registry: Any, *, wait: bool, timeout: float) -> str | None:
    """Register a model, build an image, or deploy/update a service (``action``: create or
    update); returns a service's scoring URI."""
    from mlctl import builder, plan, services
    from mlctl.spec import ImageSpec, ModelSpec
    from mlctl.targets import driver_for

    home, reporter = _state.home(), _state.reporter()
    if isinstance(record, ModelSpec):
        registry.register(
            record.name,
            record.path,
            description=record.description,
            tags=dict(record.tags),
            properties=dict(record.properties),
        )
    elif isinstance(record, ImageSpec):
        context = plan.image_context(record, registry)
        for note in context.notes:
            reporter.warn(note)
        with reporter.step(f"building image {record.name}") as progress:
            builder.build(context, registry, progress)
    else:
        driver = driver_for(record.target, registry=registry, home=home)
        deployment = services.deployment_for(record, registry, reporter, driver)
        run = services.deploy if action == "create" else services.update
        state = run(driver, deployment, reporter, registry, wait=wait or action == "update", timeout_s=timeout)
        return str(state.scoring_uri) if state.scoring_uri else None
    return None


def diff(files: list[Path] = FILES, set_: list[str] = SET) -> None:
    """Show what `apply` would change. Exit 0: nothing; 1: changes; 2 or more: an error (as diff)."""
    from mlctl import plan

    changes = plan.plan(plan.ordered(_load(files, set_)), _state.registry(), _state.home())
    report([c.to_dict() for c in changes], dry_run=True, notice=False)  # diff never changes anything
    if any(c.changed for c in changes):
        raise typer.Exit(1)


def _load(files: list[Path], set_: list[str]) -> list[Any]:
    from mlctl.spec import load, spec_files

    expanded = spec_files(files)
    if not expanded:
        raise typer.BadParameter("no *.yaml or *.yml files found", param_hint="-f")
    return load(expanded, _state.overrides(set_))


def report(
    changes: list[dict[str, Any]], *, dry_run: bool, extra: dict[str, Any] | None = None, notice: bool = True
) -> None:
    """Print planned or applied changes: ``{"changed", "dry_run", "changes": [...], **extra}``.

    For people: a line per object, then each changed field ``old -> new`` (a change's
    ``fields``), a service's scoring URI once applied, and (``notice``) that a dry run changed nothing."""
    reporter = _state.reporter()
    doc = {
        "changed": any(c["action"] != "unchanged" for c in changes),
        "dry_run": dry_run,
        "changes": changes,
        **(extra or {}),
    }

    def human(_: Any) -> None:
        for c in changes:
            _print_change(c, applied=not dry_run)
        if isinstance(doc.get("plan"), dict):
            _print_plan(doc["plan"])
        if not doc["changed"]:
            reporter.ok("no changes")
        elif dry_run and notice:
            reporter.info("dry run: nothing was changed")

    reporter.result(doc, human)


def _print_change(change: dict[str, Any], *, applied: bool) -> None:
    from mlctl.changes import shown

    out = _state.reporter().out
    why = f" ({', '.join(change['reasons'])})" if change["reasons"] and change["action"] == "update" else ""
    out.print(f"{_SYMBOL[change['action']]} {change['kind']} {change['name']}: {change['action']}{why}", markup=False)
    for f in change.get("fields", []):
        out.print(f"    {f['field']}: {shown(f['old'])} -> {shown(f['new'])}", markup=False)
    if applied and change.get("scoring_uri"):
        out.print(f"    scoring_uri  {change['scoring_uri']}", markup=False)


def _print_plan(rendered: dict[str, Any]) -> None:
    """The rendered plan (what the target would run: command, environment, scoring URI, ...),
    one field a line: the scoring URI first, a command as one shell line, mappings ``k=v`` a line."""
    import json
    import shlex

    order = sorted(rendered, key=lambda k: (k != "scoring_uri", k == "manifests"))
    pairs: list[tuple[str, Any]] = []
    for key in order:
        value = rendered[key]
        if key in ("name", "target") or value in (None, [], {}):
            continue
        if key == "command" and isinstance(value, list):
            value = shlex.join(str(v) for v in value)
        elif isinstance(value, dict):
            value = "\n".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in value.items())
        elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
            value = "\n".join(json.dumps(v) for v in value)
        pairs.append((key, value))
    if pairs:
        _state.reporter().fields(pairs)
