"""``mlctl model``: the local model registry (register, list, show, download, delete)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlctl.cli import _state

if TYPE_CHECKING:
    from mlctl.registry import ModelVersion

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True)  # its help: GROUPS in mlctl/cli/__init__.py
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


@app.command("register")
def register(
    file: Path | None = typer.Option(None, "--file", "-f", help="A spec file with `kind: Model` documents."),
    name: str | None = typer.Option(None, "--name", help="Model name (without -f)."),
    path: Path | None = typer.Option(None, "--path", help="Model file or folder (without -f)."),
    tag: list[str] = typer.Option([], "--tag", help="KEY=VALUE; repeatable."),
    prop: list[str] = typer.Option([], "--property", help="KEY=VALUE; repeatable."),
    description: str = typer.Option("", "--description", help="Free text."),
    set_: list[str] = typer.Option([], "--set", help=_state.SET_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the version it would create; change nothing."),
) -> None:
    """Register a model file or folder as the next version of its name.

    With -f, every Model document of the file is registered and the JSON result is a list;
    with --name/--path, one model and the JSON result is an object.
    """
    registry = _state.registry()
    if file is not None:
        if name or path:
            raise typer.BadParameter("give either -f or --name/--path, not both", param_hint="-f")
        from mlctl.spec import ModelSpec, load

        specs = [r for r in load([file], _state.overrides(set_)) if isinstance(r, ModelSpec)]
        if not specs:
            raise typer.BadParameter(f"{file} has no `kind: Model` document", param_hint="-f")
        if dry_run:
            _dry_run(specs, registry)
            return
        models = [
            registry.register(
                s.name, s.path, description=s.description, tags=dict(s.tags), properties=dict(s.properties)
            )
            for s in specs
        ]
        _state.reporter().result([m.to_dict() for m in models], lambda _: _print_all_registered(models))
        return
    if not name or path is None:
        raise typer.BadParameter("give -f SPEC, or both --name and --path", param_hint="--name/--path")
    if not _NAME.match(name):
        raise typer.BadParameter("letters, digits, '-', '_', '.'; starting with a letter or digit", param_hint="--name")
    if dry_run:
        from mlctl.spec import ModelSpec

        tags, props = _state.pairs(tag, "--tag"), _state.pairs(prop, "--property")
        _dry_run([ModelSpec(name, path.resolve(), description, tags, props)], registry)
        return
    model = registry.register(
        name,
        path,
        description=description,
        tags=_state.pairs(tag, "--tag"),
        properties=_state.pairs(prop, "--property"),
    )
    _state.reporter().result(model.to_dict(), lambda _: _print_registered(model))


@app.command("list")
def list_models(
    name: str | None = typer.Option(None, "--name", help="Only this model."),
    tag: list[str] = typer.Option([], "--tag", help="KEY=VALUE that must match; repeatable."),
) -> None:
    """List registered model versions."""
    models = _state.registry().models(name=name, tags=_state.pairs(tag, "--tag"))
    rows = [_summary(m) for m in models]
    _state.reporter().result(
        rows,
        lambda _: _state.reporter().table(
            rows, ["name", "version", "size", "tags", "created_at"], empty="no models registered"
        ),
    )


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="NAME, NAME:VERSION or NAME@latest.", autocompletion=_state.complete_models),
) -> None:
    """Show one model version (the latest without a version)."""
    model = _state.registry().get(_ref(ref))
    doc = model.to_dict()
    _state.reporter().result(
        doc,
        lambda _: _state.reporter().fields(
            [
                ("name", model.name),
                ("version", model.version),
                ("description", model.description or None),
                ("tags", model.tags),
                ("properties", model.properties),
                ("content_hash", model.content_hash),
                ("size", _size(model.size)),
                ("files", len(model.files)),
                ("created_at", model.created_at),
            ]
        ),
    )


@app.command("download")
def download(
    ref: str = typer.Argument(..., help="NAME:VERSION or NAME@latest.", autocompletion=_state.complete_models),
    to: Path = typer.Option(Path("."), "--to", help="Folder to write the model file or folder into."),
) -> None:
    """Write a model version's file or folder into a local folder (verifying its hashes)."""
    registry = _state.registry()
    model = registry.get(_ref(ref))
    written = registry.materialize(model, to, link=False)
    doc = {"model": model.ref, "path": str(written.resolve())}
    _state.reporter().result(doc, lambda _: _state.reporter().ok(f"{model.ref} -> {written}"))


@app.command("delete")
def delete(
    ref: str = typer.Argument(..., help="NAME:VERSION.", autocompletion=_state.complete_models),
    force: bool = typer.Option(False, "--force", help="Delete even while a service uses it."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check and show; delete nothing."),
) -> None:
    """Delete one model version (refused while a service uses it, unless --force)."""
    parsed = _ref(ref)
    if parsed.version is None:
        raise typer.BadParameter("name the version to delete: NAME:VERSION", param_hint="REF")
    model = _state.registry().delete(parsed, force=force, dry_run=dry_run)
    if dry_run:
        from mlctl.cli.apply import report

        report(
            [{"kind": "Model", "name": model.name, "action": "delete", "reasons": [], "version": model.version}],
            dry_run=True,
        )
        return
    doc = {"model": model.ref, "deleted": True}
    _state.reporter().result(doc, lambda _: _state.reporter().ok(f"deleted model {model.ref}"))


def _dry_run(specs: list[Any], registry: Any) -> None:
    from mlctl import plan
    from mlctl.cli.apply import report

    report([plan.plan_model(spec, registry)[0].to_dict() for spec in specs], dry_run=True)


def _ref(text: str) -> Any:
    from mlctl.spec.records import ModelRef

    try:
        return ModelRef.parse(text)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="REF") from None


def _summary(model: ModelVersion) -> dict[str, Any]:
    return {
        "name": model.name,
        "version": model.version,
        "size": _size(model.size),
        "size_bytes": model.size,
        "tags": model.tags,
        "description": model.description,
        "content_hash": model.content_hash,
        "created_at": model.created_at,
    }


def _print_all_registered(models: list[ModelVersion]) -> None:
    for model in models:
        _print_registered(model)


def _print_registered(model: ModelVersion) -> None:
    _state.reporter().ok(
        f"registered model {model.ref} ({len(model.files)} file(s), {_size(model.size)}, "
        f"sha256 {model.content_hash[:12]})"
    )


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"
