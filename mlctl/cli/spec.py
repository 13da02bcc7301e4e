"""``mlctl spec``: validate spec files and print the JSON Schemas."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mlctl.cli import _state
from mlctl.errors import MlctlError, SpecError

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True)  # its help: GROUPS in mlctl/cli/__init__.py


@app.command("validate")
def validate(
    files: list[Path] = typer.Argument(
        ..., help="Spec files (YAML, several documents each) or folders (their mlctl spec files, recursively)."
    ),
    set_: list[str] = typer.Option([], "--set", help=_state.SET_HELP),
) -> None:
    """Check spec files against the schemas and that every file they name exists (exit 3 if not)."""
    from mlctl.spec import build, load_file, spec_files
    from mlctl.spec.schema import validate as schema_validate

    results, problems = [], []
    if any(path.is_dir() for path in files):  # as `apply -f FOLDER` reads it
        files = spec_files(files)
        if not files:
            raise SpecError(
                "no mlctl spec files in the folders given",
                hint="a spec file is *.yaml or *.yml with an `apiVersion: mlctl/...` line",
            )
    for file in files:
        entry: dict[str, object] = {"file": str(file), "documents": [], "errors": []}
        try:
            docs = load_file(file, overrides=_state.overrides(set_))
            errors = [line for doc in docs for line in schema_validate(doc)]
            if not errors:
                for doc in docs:
                    _warn_unavailable_target(build(doc))
            entry["documents"] = [{"kind": d.data.get("kind"), "name": d.data.get("name")} for d in docs]
        except MlctlError as error:
            errors = error.details or [error.message]
        entry["errors"] = errors
        problems.extend(errors)
        results.append(entry)
    _state.reporter().result({"valid": not problems, "files": results}, _print_validation)
    if problems:
        raise SpecError(f"{len(problems)} problem(s) in {len(files)} file(s)", details=problems)


def _warn_unavailable_target(record: object) -> None:
    """A valid spec may name a target this mlctl cannot deploy to (yet): say so, without failing."""
    from mlctl.spec import ServiceSpec
    from mlctl.target_kinds import TARGETS

    # a target kind always resolves (to a configured target of that name, else to the bare kind),
    # so the configuration is read only for other names (configured targets, retired kinds, typos)
    if not isinstance(record, ServiceSpec) or record.target is None or record.target in TARGETS:
        return
    from mlctl import config

    try:
        config.load().resolve(record.target)
    except MlctlError as error:
        _state.reporter().warn(f"service {record.name}: {error.message}; the spec is valid, a deploy is refused")


@app.command("migrate")
def migrate(
    files: list[Path] = typer.Argument(..., help="Spec files of an older apiVersion."),
    write: bool = typer.Option(False, "--write", help="Rewrite the files in place (otherwise print the result)."),
) -> None:
    """Upgrade specs to the current apiVersion, keeping comments and key order."""
    import os

    from mlctl.errors import NotFoundError
    from mlctl.spec.migrate import migrate_text
    from mlctl.spec.schema import API_VERSION

    if not write and len(files) != 1:
        raise typer.BadParameter("give one file, or --write to rewrite several in place", param_hint="FILES")
    results = []
    for file in files:
        if not file.is_file():
            raise NotFoundError(f"spec file not found: {file}")
        text, upgraded = migrate_text(file.read_text(encoding="utf-8"))
        if write and upgraded:
            tmp = file.with_name(f".{file.name}.migrating")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, file)
        results.append(
            {
                "file": str(file),
                "from": upgraded,
                "to": API_VERSION,
                "changed": bool(upgraded),
                "written": write and bool(upgraded),
                **({} if write else {"content": text}),
            }
        )
    reporter = _state.reporter()
    reporter.result({"files": results}, lambda doc: _print_migration(doc["files"], write))


def _print_migration(results: list[dict[str, object]], write: bool) -> None:
    reporter = _state.reporter()
    if not write:
        content = str(results[0]["content"])
        reporter.raw(content if content.endswith("\n") else content + "\n")
        return
    for entry in results:
        state = f"migrated from {', '.join(entry['from'])}" if entry["changed"] else "already current"  # type: ignore[arg-type]
        reporter.ok(f"{entry['file']}: {state}")


@app.command("schema")
def schema(kind: str = typer.Argument(..., help="Model, Image or Service.")) -> None:
    """Print the JSON Schema of KIND (usable as `$schema` in editors; JSON unless -o yaml)."""
    from mlctl.spec.schema import schema_for

    document = schema_for(kind)
    _state.reporter().result(document, lambda doc: typer.echo(json.dumps(doc, indent=2)))


def _print_validation(doc: dict[str, object]) -> None:
    reporter = _state.reporter()
    for entry in doc["files"]:  # type: ignore[attr-defined]
        if not entry["errors"]:
            kinds = ", ".join(f"{d['kind']} {d['name']}" for d in entry["documents"])
            reporter.ok(f"{entry['file']}: {kinds or 'no documents'}")
