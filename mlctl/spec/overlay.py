"""Spec overlays without copying files: ``${VAR}`` interpolation and ``--set path=value``.

Interpolation runs on the file's text before YAML parsing, so a value keeps its YAML type
(``port: ${PORT}`` is an integer) and every error keeps its line and column:

* ``${VAR}``: the variable's value; unset is an error naming it and its place.
* ``${VAR:-default}``: ``default`` when the variable is unset or empty.
* ``$$``: a literal ``$``. Comment lines are left alone.

``--set [KIND/NAME:]path=value`` sets one value after parsing: ``path`` is dotted keys and
``[index]`` (``deployment_config.port``, ``models[0]``); ``value`` is read as YAML
(``9000`` -> integer, ``[a, b]`` -> list). Without the ``KIND/NAME:`` prefix it applies to every
document whose kind has the path's first key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlctl.errors import SpecError
from mlctl.spec.frozen import FrozenRecord

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_SET = re.compile(r"^(?:(?P<kind>[A-Za-z]+)/(?P<name>[^:=]+):)?(?P<path>[^=]+)=(?P<value>.*)$", re.DOTALL)


def interpolate(text: str, file: Path, env: Mapping[str, str]) -> str:
    """``text`` with variables replaced.

    Raises:
        SpecError: unset variables (each with ``FILE:LINE:COL``).
    """
    problems: list[str] = []
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines):
        if line.lstrip().startswith("#") or "$" not in line:
            continue

        def replace(match: re.Match[str], line_number: int = number) -> str:
            return _value(match, env, file, line_number, problems)

        lines[number] = _VARIABLE.sub(replace, line)
    if problems:
        raise SpecError(
            f"unset variable(s) in {file.name}",
            details=problems,
            hint="export them, or give a default: ${VAR:-default}",
        )
    return "".join(lines)


def _value(match: re.Match[str], env: Mapping[str, str], file: Path, line: int, problems: list[str]) -> str:
    if match.group(0) == "$$":
        return "$"
    name, default = match.group(1), match.group(2)
    value = env.get(name)
    if default is not None and not value:
        return default
    if value is None:
        problems.append(f"{file}:{line + 1}:{match.start() + 1}: ${{{name}}}: variable {name} is not set")
        return ""
    return value


class Override(FrozenRecord):
    """One ``--set``: an optional ``KIND/NAME`` selector, a path and a YAML value."""

    kind: str | None
    name: str | None
    path: tuple[str | int, ...]
    value: Any
    text: str

    @classmethod
    def parse(cls, text: str) -> Override:
        """Parse ``[KIND/NAME:]path=value``.

        Raises:
            SpecError: malformed.
        """
        match = _SET.match(text)
        parts = _parse_path(match.group("path").strip()) if match else None
        if match is None or not parts:
            raise SpecError(f"--set {text!r}: expected [KIND/NAME:]path=value, e.g. deployment_config.port=9000")
        from ruamel.yaml import YAML

        value = YAML(typ="safe", pure=True).load(match.group("value")) if match.group("value") else ""
        return cls(match.group("kind"), match.group("name"), parts, value, text)

    def applies_to(self, data: dict[str, Any], kind_keys: Sequence[str]) -> bool:
        """Whether this override targets a document (``kind_keys``: the top-level keys its kind allows)."""
        if self.kind is not None:
            return data.get("kind") == self.kind and data.get("name") == self.name
        return self.path[0] in kind_keys


def apply_overrides(
    data: dict[str, Any], node: Any, overrides: Sequence[Override], kind_keys: Sequence[str]
) -> list[Override]:
    """Apply every override that targets this document, to its plain ``data`` and its ruamel
    ``node``; returns the ones applied, in order."""
    applied = []
    for override in overrides:
        if override.applies_to(data, kind_keys):
            _set(data, override, plain=True)
            _set(node, override, plain=False)
            applied.append(override)
    return applied


def _parse_path(text: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    position = 0
    for match in _PATH_PART.finditer(text):
        if match.start() not in (position, position + 1):
            return ()
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        position = match.end()
    return tuple(parts) if position == len(text) else ()


def _set(root: Any, override: Override, *, plain: bool) -> None:
    target = root
    for part, following in zip(override.path, override.path[1:], strict=False):
        target = _child(target, part, container=[] if isinstance(following, int) else {}, override=override)
    last = override.path[-1]
    if isinstance(last, int):
        if not isinstance(target, list) or last > len(target):
            raise SpecError(f"--set {override.text!r}: index {last} is out of range")
        target[last : last + 1] = [override.value]
    elif isinstance(target, dict):
        target[last] = override.value
    else:
        raise SpecError(f"--set {override.text!r}: {last!r} is not inside a mapping")


def _child(target: Any, part: str | int, *, container: Any, override: Override) -> Any:
    if isinstance(part, int):
        if not isinstance(target, list) or part >= len(target):
            raise SpecError(f"--set {override.text!r}: index {part} is out of range")
        return target[part]
    if not isinstance(target, dict):
        raise SpecError(f"--set {override.text!r}: {part!r} is not inside a mapping")
    if part not in target or not isinstance(target[part], (dict, list)):
        target[part] = container
    return target[part]
