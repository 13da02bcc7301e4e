"""The spec language: YAML documents -> schema validation -> frozen records.

``load(files)`` is the one entry point the CLI uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from mlctl.errors import SpecError
from mlctl.spec.document import Document, load_file
from mlctl.spec.overlay import Override
from mlctl.spec.records import (
    DeploymentConfig,
    EnvironmentSpec,
    ImageSpec,
    InferenceConfig,
    ModelRef,
    ModelSpec,
    Record,
    ServiceSpec,
    ServiceTest,
    build,
)
from mlctl.spec.schema import check

__all__ = [
    "DeploymentConfig",
    "Document",
    "Override",
    "build",
    "load_file",
    "EnvironmentSpec",
    "ImageSpec",
    "InferenceConfig",
    "ModelRef",
    "ModelSpec",
    "Record",
    "ServiceSpec",
    "ServiceTest",
    "load",
    "load_documents",
    "spec_files",
]

_SPEC_LINE = re.compile(r"^apiVersion:\s*['\"]?mlctl/", re.MULTILINE)


def load_documents(files: Iterable[Path], overrides: Sequence[Override] = ()) -> list[Document]:
    """Parse and schema-check every document of ``files`` (with ``${VAR}`` and ``--set`` applied).

    Raises:
        NotFoundError: a file does not exist.
        SpecError: syntax or schema errors (all of them, in one error).
    """
    docs = [doc for file in files for doc in load_file(file, overrides=overrides)]
    check(docs)
    return docs


def load(files: Iterable[Path], overrides: Sequence[Override] = ()) -> list[Record]:
    """Load ``files`` into records, in file and document order.

    Raises:
        NotFoundError: a file does not exist.
        SpecError: syntax, schema or missing-file errors.
    """
    return [build(doc) for doc in load_documents(files, overrides)]


def load_one(files: Iterable[Path], kind: type[Record], overrides: Sequence[Override] = ()) -> Record:
    """The single record of type ``kind`` in ``files``.

    Raises:
        SpecError: there is none, or more than one.
    """
    files = list(files)
    records = [r for r in load(files, overrides) if isinstance(r, kind)]
    label = kind.__name__.removesuffix("Spec")
    if len(records) != 1:
        names = ", ".join(str(f) for f in files)
        raise SpecError(
            f"expected exactly one {label} document in {names}, found {len(records)}",
            hint=f"put one `kind: {label}` document in the file, or pass the right file",
        )
    return records[0]


def spec_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given; folders expanded to their mlctl spec files (``*.yaml``/``*.yml`` with an
    ``apiVersion: mlctl/...`` line; other YAML, such as conda files, is not a spec), sorted, recursive."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            candidates = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            found.extend(p for p in candidates if _SPEC_LINE.search(p.read_text(errors="replace")))
        else:
            found.append(path)
    return found
