"""``mlctl import``: specs from other tools' configuration files (Azure ML SDK/CLI v1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mlctl.cli import _state

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True)  # its help: GROUPS in mlctl/cli/__init__.py
_COLUMNS = ["source", "status", "destination", "note"]


@app.command("azureml")
def azureml(
    inference_config: Path = typer.Option(
        ..., "--inference-config", "--ic", help="The v1 inferenceconfig file (JSON or YAML)."
    ),
    deployment_config: Path = typer.Option(
        ..., "--deployment-config", "--dc", help="The v1 deploymentconfig file (JSON or YAML)."
    ),
    name: str = typer.Option(..., "--name", "-n", help="The service name."),
    model: list[str] = typer.Option([], "--model", "-m", help="A registered model NAME:VERSION; repeatable."),
    model_file: list[Path] = typer.Option([], "--model-file", help="A model file or folder; repeatable."),
    out: Path = typer.Option(Path("."), "--out", help="Folder the specs are written to (created)."),
    local_target: str = typer.Option(
        "docker", "--local-target", help="computeType local becomes: docker (v1's local web service) or process."
    ),
    target: str | None = typer.Option(
        None,
        "--target",
        help="Deploy to this target instead of computeType's (e.g. process, to try an ACI service here).",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite spec files that exist."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the specs and the report; write nothing."),
) -> None:
    """Turn Azure ML v1 `az ml model deploy` config files into mlctl specs, with a report of every key.

    Writes OUT/service.yaml (and OUT/models.yaml with --model-file, OUT/environment.yml from an
    inline environment), validated; keys.primaryKey/secondaryKey go to the service's key store,
    never into a spec. Deploy with `mlctl apply -f OUT`.
    """
    from mlctl import azureml

    _check_options(name, model, model_file, local_target)
    if target is not None:
        from mlctl.target_kinds import refuse_retired

        refuse_retired(target)
    inference = azureml.read(inference_config, "inference config")
    deployment = azureml.read(deployment_config, "deployment config")
    result = azureml.translate(
        inference,
        deployment,
        name=name,
        models=model,
        model_files=model_file,
        out=out,
        local_target=local_target,
        target=target,
    )
    texts = _texts(result)
    _validate_in_memory(result.out, texts)
    reporter = _state.reporter()
    for warning in result.warnings:
        reporter.warn(warning)
    if not dry_run:
        _write(result, texts, force=force)
    _report(result, texts, dry_run=dry_run)


def _check_options(name: str, models: list[str], model_files: list[Path], local_target: str) -> None:
    from mlctl.spec import ModelRef

    if bool(models) == bool(model_files):
        raise typer.BadParameter(
            "give --model NAME:VERSION or --model-file PATH (either, not both)", param_hint="--model"
        )
    for ref in models:
        try:
            ModelRef.parse(ref)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--model") from None
        if ":" not in ref and "@" not in ref:
            raise typer.BadParameter(f"{ref!r}: give the version, NAME:VERSION (or NAME@latest)", param_hint="--model")
    for path in model_files:
        if not path.exists():
            raise typer.BadParameter(f"{path} does not exist", param_hint="--model-file")
    if local_target not in ("docker", "process"):
        raise typer.BadParameter("docker or process", param_hint="--local-target")


def _texts(result: Any) -> dict[str, str]:
    """File name -> content of every file the import writes."""
    from mlctl.azureml.translate import CONDA_FILE

    header = "# Written by `mlctl import azureml`; `mlctl import azureml ... -o json` reports every source key.\n"
    texts = {"service.yaml": header + _yaml([result.service])}
    if result.models:
        texts["models.yaml"] = header + _yaml(result.models)
    if result.conda is not None:
        texts[CONDA_FILE] = "# From the inline environment of the v1 inference config.\n" + _yaml([result.conda])
    return texts


def _yaml(documents: list[dict[str, Any]]) -> str:
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")  # keeps the documents' key order
    yaml.default_flow_style = False
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    stream = io.StringIO()
    yaml.dump_all(documents, stream)
    return stream.getvalue()


def _validate_in_memory(out: Path, texts: dict[str, str]) -> None:
    """Schema-check the specs before anything is written (file references are checked after)."""
    from ruamel.yaml import YAML

    from mlctl.spec import Document
    from mlctl.spec.document import _plain
    from mlctl.spec.schema import check

    docs = []
    for file, text in texts.items():
        if file.endswith(".yaml"):
            nodes = [n for n in YAML(typ="rt").load_all(text) if n is not None]
            docs += [Document(out / file, i, n, _plain(n)) for i, n in enumerate(nodes)]
    check(docs)


def _write(result: Any, texts: dict[str, str], *, force: bool) -> None:
    """Write the files (and the keys), then load the specs as a deploy would; on a failure
    nothing written is left behind.

    Raises:
        ConflictError: a file (without --force) or the service's keys exist.
        SpecError: the written specs do not load.
    """
    from mlctl.errors import ConflictError
    from mlctl.spec import load

    existing = [result.out / f for f in texts if (result.out / f).exists()]
    if existing and not force:
        raise ConflictError(f"{existing[0]} exists", hint="choose another --out, or pass --force to overwrite")
    store = _key_store(result.target, result.name) if result.secrets else None
    if store is not None and store.exists():
        raise ConflictError(
            f"service {result.name!r} has keys already ({store})",
            hint=f"delete the service first (`mlctl service delete {result.name}`), or import under another --name",
        )
    result.out.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for file, text in texts.items():
            (result.out / file).write_text(text, encoding="utf-8")
            written.append(result.out / file)
        load([p for p in written if p.suffix == ".yaml"])
        if store is not None:
            _store_keys(store, result.target, result.secrets)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _key_store(target: str, name: str) -> Path:
    from mlctl import keys

    home = _state.home()
    return home / "services" / name / "secrets" / "keys.json" if target == "docker" else keys.keys_path(home, name)


def _store_keys(path: Path, target: str, secrets: dict[str, str]) -> None:
    import os

    from mlctl import keys

    owner = None
    if target == "docker":
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.geteuid() == 0:
            from mlctl.targets.docker.container import IMAGE_USER

            owner = IMAGE_USER
    keys.store(path, secrets, owner)


def _report(result: Any, texts: dict[str, str], *, dry_run: bool) -> None:
    from mlctl.spec.document import display_path
    from mlctl.target_kinds import TARGETS

    reporter = _state.reporter()
    shown = display_path(result.out)
    available = result.target in TARGETS
    if not available:
        reporter.warn(
            f"target {result.target!r} is not in this mlctl yet: the specs validate, and deploy once it is available"
        )
    doc: dict[str, Any] = {
        "service": result.name,
        "target": result.target,
        "target_available": available,
        "dry_run": dry_run,
        "out": str(result.out),
        "files": [str(result.out / f) for f in texts],
        "keys_stored": sorted(result.secrets) if not dry_run else [],
        "next": f"mlctl apply -f {shown}",
        "try_locally": f"mlctl apply -f {shown} --set target=process" if result.target != "process" else None,
        "report": [e.to_dict() for e in result.entries],
    }
    if dry_run:
        doc["documents"] = texts

    def human(_: Any) -> None:
        rows = [
            {**e.to_dict(), "source": f"{e.file}:{e.line} {e.key}" if e.line else f"{e.file} {e.key}"}
            for e in result.entries
        ]
        reporter.table(rows, _COLUMNS, empty="no keys")
        if dry_run:
            for file, text in texts.items():
                reporter.raw(f"--- {file}\n{text}")
            reporter.info("dry run: nothing was written")
        else:
            reporter.ok(f"wrote {', '.join(texts)} to {shown}; deploy with `{doc['next']}`")
            if doc["try_locally"]:
                reporter.info(f"try it on this machine first: `{doc['try_locally']}`")

    reporter.result(doc, human)
