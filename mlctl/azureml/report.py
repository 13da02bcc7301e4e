"""The import report: one entry for every key of the v1 files (and every v1 default written)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from mlctl.azureml.source import Source

# statuses
MAPPED = "mapped"  # written to the spec as ``destination``
DEFAULT = "default"  # the file was silent: v1's default written explicitly
NOT_CARRIED = "not carried"  # no mlctl equivalent (``note`` says why)
EMPTY = "empty"  # null in the file: v1 used its default, and so does mlctl
STORED = "stored"  # a secret, put in the service's key store, never in a spec
REFERENCED = "referenced"  # a secret, replaced by a reference (environment variable)
UNKNOWN = "unknown"  # v1 never read it (``note``: did you mean)
SECRET = "<secret: not shown>"


@dataclass(frozen=True)
class Entry:
    """One source key: where it went (``destination``, e.g. ``deployment_config.cpu_cores``) or why
    not (``note``). ``warn``: worth a warning (an ignored setting that changes behaviour)."""

    file: str
    key: str
    line: int
    status: str
    destination: str | None = None
    value: Any = None
    note: str = ""
    warn: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "file": self.file,
            "key": self.key,
            "line": self.line,
            "status": self.status,
            "destination": self.destination,
            "value": self.value,
            "note": self.note,
        }


def entry(src: Source, path: tuple[str, ...], status: str, **fields: Any) -> Entry:
    """An entry for the key at ``path`` of ``src``."""
    return Entry(src.shown, ".".join(path), src.line(path), status, **fields)


def unknown(src: Source, path: tuple[str, ...], known: list[str], elsewhere: dict[str, str]) -> Entry:
    """A key v1 never read for this file (or compute type): did-you-mean among ``known`` (case
    does not matter to people, it did to v1), or which compute type reads it (``elsewhere``)."""
    key = path[-1]
    if ".".join(path) == "containerResourceRequirements.gpu":  # the MIR shape; AKS read top-level gpuCores
        note = "not a key v1 read here: AKS took GPUs from the top-level gpuCores"
    elif key in elsewhere:
        note = f"v1 read it only for {elsewhere[key]}, and ignored it here"
    else:
        lowered = {k.lower(): k for k in known}
        close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
        note = f"not a key v1 read; did you mean {lowered[close[0]]!r}?" if close else "not a key v1 read"
    return entry(src, path, UNKNOWN, note=note, warn=True)


def expect(src: Source, path: tuple[str, ...], value: Any, kind: str) -> Any:
    """``value`` checked against ``kind`` (number, integer, boolean, string, object);
    numbers given as strings are not accepted (v1 sent them on as they were).

    Raises:
        SpecError: wrong type, naming the file, line and key.
    """
    ok = {
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "string": isinstance(value, str),
        "path": isinstance(value, str) and bool(value),
        "object": isinstance(value, dict),
    }[kind]
    if not ok:
        shown = "a mapping" if kind == "object" else f"a {kind}"
        raise src.error(path, f"{'.'.join(path)} must be {shown}, not {value!r}"[:300])
    return value
