"""One Azure ML v1 config file, read as YAML or JSON, remembering where each key is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlctl.errors import SpecError
from mlctl.spec.document import Document, display_path


@dataclass(frozen=True)
class Source:
    """A v1 config file: ``data`` is its content (a mapping), ``document`` gives positions.

    ``label`` names the file's role in messages (``inference config``, ``deployment config``)."""

    file: Path
    data: dict[str, Any]
    document: Document
    label: str

    @property
    def folder(self) -> Path:
        """The folder relative paths in the file resolve against (v1: the working directory, which
        is the file's folder when ``az ml`` was run beside it, as Azure's samples do)."""
        return self.file.parent

    def line(self, path: tuple[str, ...]) -> int:
        """1-based line of the key at ``path`` (0 when unknown)."""
        return self.document.position(list(path), key=True)[0] if path else 0

    def error(self, path: tuple[str, ...], message: str, *, hint: str | None = None) -> SpecError:
        """A SpecError (exit 3) naming this file, the key's line and the key."""
        return self.document.error(list(path), message, hint=hint)

    @property
    def shown(self) -> str:
        """The file as shown in messages."""
        return display_path(self.file)


def read(file: Path, label: str) -> Source:
    """Read ``file`` as YAML (which JSON mostly is), else as JSON, as the v1 CLI did.

    Raises:
        SpecError: unreadable, not YAML or JSON, or not a mapping (exit 3, naming the file).
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from mlctl.spec.document import _plain

    file = file.resolve()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SpecError(f"cannot read the {label} file {display_path(file)}: {reason}", hint="check the path") from None
    try:
        node = YAML(typ="rt").load(text)
    except YAMLError:
        node = _json(text, file, label)  # JSON that is not YAML (tabs): no positions
    data = _plain(node)
    if not isinstance(data, dict):
        raise SpecError(
            f"the {label} file {display_path(file)} is not a mapping of keys to values",
            hint="an Azure ML v1 config file is one JSON object (or YAML mapping)",
        )
    return Source(file, data, Document(file, 0, node, data), label)


def _json(text: str, file: Path, label: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SpecError(
            f"the {label} file {display_path(file)} is neither YAML nor JSON: {exc}",
            hint="fix the syntax at the line named",
        ) from None
