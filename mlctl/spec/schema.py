"""Validate spec documents against the JSON Schemas in ``specs/schemas/`` (shipped in the package).

The schemas are the single source of truth for the spec language; this module only turns
jsonschema's findings into ``FILE:LINE:COL: $.path: message`` lines with a fix where one is
obvious ("did you mean ..."). ``apiVersion`` and ``kind`` are checked first, since every other
message depends on them.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

from mlctl.errors import NotFoundError, SpecError
from mlctl.spec.document import Document, display_path

API_VERSION = "mlctl/v1"
SUPPORTED_API_VERSIONS = (API_VERSION,)
KINDS = {
    "Model": "model.json",
    "Image": "image.json",
    "Service": "service.json",
    "EdgeDeployment": "edgedeployment.json",
}


@cache
def schema_for(kind: str, api_version: str = API_VERSION) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``kind`` as a dict.

    Raises:
        NotFoundError: no such kind.
    """
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, KINDS, n=1)
        raise NotFoundError(
            f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}",
            hint=f"did you mean {close[0]!r}?" if close else None,
        )
    folder = api_version.split("/")[-1]
    text = resources.files("mlctl").joinpath("schemas", folder, KINDS[kind]).read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def validate(doc: Document) -> list[str]:
    """All problems of ``doc``, each as ``FILE:LINE:COL: $.path: message``; empty when valid."""
    header = _check_header(doc)
    if header:
        return header
    from jsonschema import Draft202012Validator

    schema = schema_for(doc.data["kind"])
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc.data), key=lambda e: doc.position(list(e.absolute_path)))
    suggested = {s for e in errors if e.validator == "additionalProperties" for s in _suggestions(e)}
    return [line for error in errors if not _explained(error, suggested) for line in _describe(doc, error)]


def _suggestions(error: Any) -> list[tuple[tuple[Any, ...], str]]:
    """(object path, key) for each key an unknown key was taken for ("did you mean")."""
    known = list(error.schema.get("properties", {}))
    found: list[tuple[tuple[Any, ...], str]] = []
    for key in error.instance:
        close = [] if key in known else difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        found.extend((tuple(error.absolute_path), c) for c in close)
    return found


def _explained(error: Any, suggested: set[tuple[tuple[Any, ...], str]]) -> bool:
    """A missing required key is not worth a line when a misspelling of it was already reported."""
    return error.validator == "required" and (tuple(error.absolute_path), _missing_key(error)) in suggested


def check(docs: list[Document]) -> None:
    """Validate every document; raise one SpecError listing every problem.

    Raises:
        SpecError: at least one document is invalid.
    """
    problems = [line for doc in docs for line in validate(doc)]
    if problems:
        files = sorted({display_path(d.file) for d in docs})
        raise SpecError(
            f"invalid spec {', '.join(files)} ({len(problems)} problem(s))",
            details=problems,
            hint="fix the lines above; `mlctl spec schema KIND` prints the schema",
        )


def _check_header(doc: Document) -> list[str]:
    data = doc.data
    api = data.get("apiVersion")
    if api is not None and not isinstance(api, str):  # a list or a map: no version, and unhashable
        return [f"{doc.where(['apiVersion'])}: apiVersion must be a string such as {API_VERSION!r}"]
    if api not in SUPPORTED_API_VERSIONS:
        where = doc.where(["apiVersion"])
        from mlctl.spec.migrate import is_older

        if is_older(api):
            return [
                f"{where}: apiVersion {api!r} is older than this mlctl reads ({API_VERSION}); "
                f"upgrade the file with `mlctl spec migrate --write {display_path(doc.file)}`"
            ]
        found = "missing apiVersion" if api is None else f"unknown apiVersion {api!r}"
        return [f"{where}: {found}; this mlctl reads {', '.join(SUPPORTED_API_VERSIONS)}"]
    kind = data.get("kind")
    if kind is not None and not isinstance(kind, str):
        return [f"{doc.where(['kind'])}: kind must be a string, one of {', '.join(KINDS)}"]
    if kind not in KINDS:
        found = "missing kind" if kind is None else f"unknown kind {kind!r}"
        close = difflib.get_close_matches(str(kind), KINDS, n=1) if kind else []
        suggestion = f"; did you mean {close[0]!r}?" if close else f"; kinds are {', '.join(KINDS)}"
        return [f"{doc.where(['kind'])}: {found}{suggestion}"]
    return []


def _describe(doc: Document, error: Any) -> list[str]:
    path = list(error.absolute_path)
    validator = error.validator
    if validator == "additionalProperties":
        return _unknown_keys(doc, error, path)
    if validator in ("oneOf", "anyOf"):
        return [f"{doc.where(path)}: {_one_of_message(error)}"]
    if validator == "required":
        return [f"{doc.where(path)}: missing required key {_missing_key(error)!r}"]
    if validator == "dependentRequired":
        return [f"{doc.where(path)}: {_dependent_message(error)}"]
    if validator == "not" and "required" in error.validator_value:
        keys = error.validator_value["required"]
        return [f"{doc.where(path)}: {' and '.join(map(repr, keys))} cannot both be given; keep one"]
    if validator == "enum":
        return [f"{doc.where(path)}: {_enum_message(error)}"]
    if validator == "pattern":
        hint = error.schema.get("description", f"must match {error.validator_value}")
        return [f"{doc.where(path)}: {error.instance!r} is not valid here: {hint}"]
    if validator == "const":
        return [f"{doc.where(path)}: must be {error.validator_value!r}, not {error.instance!r}"]
    return [f"{doc.where(path)}: {error.message}"]


# Parameters of Azure ML v1's deploy_configuration that are not deployment_config keys here: where they went.
_V1_ELSEWHERE = {
    "tags": "a Service's tags are its top-level `tags` (they become the web service's or group's tags)",
    "description": "a Service's description is its top-level `description`",
    "properties": "v1's immutable service properties have no counterpart: put them in the top-level `tags`",
    "primary_key": "keys are never written in a spec: mlctl generates them in the service's key store "
    "(`mlctl service keys NAME --reveal`, `--regenerate primary`)",
    "secondary_key": "keys are never written in a spec: mlctl generates them in the service's key store "
    "(`mlctl service keys NAME --reveal`, `--regenerate secondary`)",
}


def _unknown_keys(doc: Document, error: Any, path: list[Any]) -> list[str]:
    known = list(error.schema.get("properties", {}))
    lines = []
    for key in error.instance:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        fix = f"; did you mean {close[0]!r}?" if close else f"; allowed keys: {', '.join(known)}"
        if path == ["deployment_config"] and doc.data.get("kind") == "Service" and key in _V1_ELSEWHERE:
            fix = f" (Azure ML v1's deploy_configuration parameter): {_V1_ELSEWHERE[key]}"
        lines.append(f"{doc.where([*path, key], key=True)}: unknown key {key!r}{fix}")
    return lines


def _one_of_message(error: Any) -> str:
    branches = error.validator_value
    if all(set(b) == {"required"} and len(b["required"]) == 1 for b in branches):
        names = [b["required"][0] for b in branches]
        found = [n for n in names if isinstance(error.instance, dict) and n in error.instance]
        suffix = f" (found {', '.join(map(repr, found))})" if found else ""
        return f"needs exactly one of {', '.join(map(repr, names))}{suffix}"
    from jsonschema.exceptions import best_match

    best = best_match(error.context)
    return best.message if best is not None else str(error.message)


def _missing_key(error: Any) -> str:
    present = error.instance if isinstance(error.instance, dict) else {}
    return next((k for k in error.validator_value if k not in present), str(error.validator_value))


def _dependent_message(error: Any) -> str:
    for key, needed in error.validator_value.items():
        if key in error.instance:
            missing = [n for n in needed if n not in error.instance]
            if missing:
                return f"{missing[0]!r} is required when {key!r} is given"
    return str(error.message)


def _enum_message(error: Any) -> str:
    options = [str(o) for o in error.validator_value]
    close = difflib.get_close_matches(str(error.instance), options, n=1)
    fix = f"; did you mean {close[0]!r}?" if close else ""
    return f"{error.instance!r} is not one of {', '.join(map(repr, options))}{fix}"
