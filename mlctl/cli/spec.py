"""``mlctl spec``: validate spec files and print the JSON Schemas."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mlctl.cli import _state
from mlctl.errors import MlctlError, SpecError

app = typer.Typer(help="Validate spec files; print the JSON Schema of a kind.", no_args_is_help=True)


@app.command("validate")
def validate(files: list[Path] = typer.Argument(..., help="Spec files (YAML, several documents each).")) -> None:
    """Check spec files against the schemas and that every file they name exists (exit 3 if not)."""
    from mlctl.spec import build, load_file
    from mlctl.spec.schema import validate as schema_validate

    results, problems = [], []
    for file in files:
        entry: dict[str, object] = {"file": str(file), "documents": [], "errors": []}
        try:
            docs = load_file(file)
            errors = [line for doc in docs for line in schema_validate(doc)]
            if not errors:
                for doc in docs:
                    build(doc)
            entry["documents"] = [{"kind": d.data.get("kind"), "name": d.data.get("name")} for d in docs]
        except MlctlError as error:
            errors = error.details or [error.message]
        entry["errors"] = errors
        problems.extend(errors)
        results.append(entry)
    _state.reporter().result({"valid": not problems, "files": results}, _print_validation)
    if problems:
        raise SpecError(f"{len(problems)} problem(s) in {len(files)} file(s)", details=problems)


@app.command("schema")
def schema(kind: str = typer.Argument(..., help="Model, Image or Service.")) -> None:
    """Print the JSON Schema of KIND (usable as `$schema` in editors)."""
    from mlctl.spec.schema import schema_for

    typer.echo(json.dumps(schema_for(kind), indent=2))


def _print_validation(doc: dict[str, object]) -> None:
    reporter = _state.reporter()
    for entry in doc["files"]:  # type: ignore[attr-defined]
        if not entry["errors"]:
            kinds = ", ".join(f"{d['kind']} {d['name']}" for d in entry["documents"])
            reporter.ok(f"{entry['file']}: {kinds or 'no documents'}")
