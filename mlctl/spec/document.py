"""Read YAML spec files into documents that remember where every value came from.

ruamel.yaml's round-trip loader keeps line/column data (``.lc``) for every mapping key and
sequence item; ``Document.position`` maps a JSON path back to it, so every error can read
``FILE:LINE:COL: $.json.path: message``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import date, time
from pathlib import Path
from typing import Any

from mlctl.errors import NotFoundError, SpecError
from mlctl.spec.frozen import FrozenRecord
from mlctl.spec.overlay import Override, apply_overrides, interpolate

JsonPath = Sequence["str | int"]


class Document(FrozenRecord):
    """One YAML document of a spec file.

    Attributes:
        file: the spec file (absolute).
        index: 0-based position of the document in the file (``---`` separated).
        node: the ruamel round-trip tree (``CommentedMap``), used for positions only.
        data: the same content as plain ``dict``/``list``/scalars.
        overrides: the ``--set`` options applied to it; a value they set is located at the
            option (``--set TEXT``), not at a line of the file.
    """

    file: Path
    index: int
    node: Any
    data: Any
    overrides: tuple[Override, ...] = ()

    @property
    def folder(self) -> Path:
        """The folder relative paths in this document resolve against."""
        return self.file.parent

    def position(self, path: JsonPath, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, column) of the value at ``path`` (of its key, with ``key``), or of its
        nearest ancestor."""
        node, line, col = self.node, *_start(self.node)
        for i, part in enumerate(path):
            found = _child_position(node, part, key=key and i == len(path) - 1)
            if found is None:
                break
            line, col = found
            node = node[part]
        return line + 1, col + 1

    def where(self, path: JsonPath, *, key: bool = False) -> str:
        """``FILE:LINE:COL: $.path`` for messages (``--set TEXT: $.path`` for a value set by ``--set``)."""
        for override in reversed(self.overrides):
            if tuple(path[: len(override.path)]) == override.path:
                return f"--set {override.text}: {json_path(path)}"
        line, col = self.position(path, key=key)
        return f"{display_path(self.file)}:{line}:{col}: {json_path(path)}"

    def error(self, path: JsonPath, message: str, *, hint: str | None = None) -> SpecError:
        """A SpecError pointing at ``path`` in this document."""
        detail = f"{self.where(path)}: {message}"
        return SpecError(f"invalid spec {display_path(self.file)}", details=[detail], hint=hint)

    def usable(self, path: JsonPath, *, hint: str = "give a file path relative to the spec file") -> Path:
        """The path named by the string at ``path``, resolved against the spec file's folder and
        checked to be usable as a path, not to exist (for a file read later, e.g. at send time).

        A spec is untrusted text: a NUL character, a name longer than the file system allows, or
        a path that cannot be resolved is a located SpecError, never an OS error.

        Raises:
            SpecError: the path is unusable.
        """
        value: Any = self.data
        for part in path:
            value = value[part]
        problem = unusable_path(str(value))
        if problem:
            raise self.error(path, problem, hint=hint)
        try:
            return (self.folder / str(value)).resolve()
        except OSError as exc:  # a loop of links, a file used as a folder...
            raise self.error(path, f"cannot use {self.folder / str(value)}: {exc.strerror or exc}") from None

    def existing(self, path: JsonPath, *, folder_ok: bool = True) -> Path:
        """The file (or folder, with ``folder_ok``) named by the string at ``path``, resolved
        against the spec file's folder (``usable``) and checked to exist.

        Raises:
            SpecError: the path is unusable, does not exist, or is a folder where a file is needed.
        """
        resolved = self.usable(path, hint="give the path of an existing file, relative to the spec file")
        try:
            is_dir = resolved.is_dir()
            if not (is_dir or resolved.exists()):
                raise self.error(path, f"file not found: {resolved}", hint="paths are relative to the spec file")
        except OSError as exc:  # permission denied, a file used as a folder...
            raise self.error(path, f"cannot use {resolved}: {exc.strerror or exc}") from None
        if is_dir and not folder_ok:
            raise self.error(path, f"expected a file, found a folder: {resolved}")
        return resolved


def load_file(
    file: Path, *, env: Mapping[str, str] | None = None, overrides: Sequence[Override] = ()
) -> list[Document]:
    """Parse every YAML document in ``file``; empty documents are skipped.

    ``${VAR}`` references are replaced from ``env`` (default: the process environment) before
    parsing, and ``overrides`` (``--set``) applied after (see ``mlctl.spec.overlay``).

    Raises:
        NotFoundError: the file does not exist.
        SpecError: YAML syntax error (with line and column), or a document is not a mapping.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    file = file.resolve()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"spec file not found: {file}", hint="check the path given to -f") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read spec file {file}: {exc}") from None
    text = interpolate(text, file, os.environ if env is None else env)
    yaml = YAML(typ="rt")
    try:
        nodes = [node for node in yaml.load_all(text) if node is not None]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{display_path(file)}:{mark.line + 1}:{mark.column + 1}" if mark else display_path(file)
        raise SpecError(
            f"YAML syntax error in {display_path(file)}", details=[f"{where}: {exc.problem or exc.context}"]
        ) from None
    except YAMLError as exc:
        where = _reader_position(file, text, exc)
        raise SpecError(f"YAML error in {display_path(file)}", details=[f"{where}: {_first_line(exc)}"]) from None
    documents = []
    for i, node in enumerate(nodes):
        doc = Document(file, i, node, _plain(node))
        if not isinstance(doc.data, dict):
            raise doc.error([], "a spec document must be a mapping with apiVersion and kind")
        if overrides:
            applied = apply_overrides(doc.data, doc.node, overrides, _kind_keys(doc.data.get("kind")))
            doc = doc.replace(overrides=tuple(applied))
        documents.append(doc)
    return documents


def unusable_path(text: str) -> str | None:
    """Why ``text`` cannot name a file on this system (NUL character, a name or path over the
    file system's limits), or None."""
    if "\0" in text:
        return "a path cannot contain a NUL character"
    name_max, path_max = _limits()
    longest = max((len(part.encode("utf-8", "surrogateescape")) for part in text.split("/")), default=0)
    if longest > name_max:
        return f"a file or folder name in this path is {longest} bytes long; the file system allows {name_max}"
    if len(text.encode("utf-8", "surrogateescape")) >= path_max:
        return f"this path is longer than the file system allows ({path_max} bytes)"
    return None


def _limits() -> tuple[int, int]:
    try:
        return os.pathconf("/", "PC_NAME_MAX"), os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # not POSIX: the common limits
        return 255, 4096


def _kind_keys(kind: Any) -> list[str]:
    from mlctl.spec.schema import KINDS, schema_for

    return list(schema_for(kind)["properties"]) if isinstance(kind, str) and kind in KINDS else []


def _reader_position(file: Path, text: str, exc: Exception) -> str:
    """``FILE:LINE:COL`` of a reader error (its character ``position``), or of the file's start."""
    position = getattr(exc, "position", None)
    if not isinstance(position, int):
        return f"{display_path(file)}:1:1"
    before = text[:position]
    line = before.count("\n") + 1
    return f"{display_path(file)}:{line}:{position - (before.rfind(chr(10)) + 1) + 1}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def json_path(path: JsonPath) -> str:
    """``['a', 0, 'b']`` -> ``$.a[0].b``."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def display_path(file: Path) -> str:
    """``file`` relative to the working directory when it is below it, else absolute."""
    try:
        return str(file.relative_to(Path.cwd()))
    except ValueError:
        return str(file)


def _start(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    return (lc.line, lc.col) if lc is not None and lc.line is not None else (0, 0)


def _child_position(node: Any, part: str | int, *, key: bool = False) -> tuple[int, int] | None:
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            return lc.item(part)  # type: ignore[no-any-return]
        if isinstance(part, str) and isinstance(node, dict) and part in node:
            use_value = _is_scalar(node[part]) and not key
            return lc.value(part) if use_value else lc.key(part)  # type: ignore[no-any-return]
    except (KeyError, IndexError, TypeError):
        return None
    return None


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _plain(node: Any) -> Any:
    """Round-trip ruamel types -> plain Python (dict, list, str, int, float, bool, None): JSON's
    types, so the schema and ``json.dumps`` see only those. Anything else YAML can express (a
    date, ``!!binary``, ``!!set``, a ``!custom`` tag) becomes its text (a set: a list)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, AbstractSet)):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, (date, time)):
        return node.isoformat()
    if isinstance(node, bytes):
        return node.decode("utf-8", "replace")
    return str(getattr(node, "value", node))  # TaggedScalar: the scalar without its tag
