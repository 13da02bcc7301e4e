"""Conda match specs to pip requirements, and the Azure ML SDK packages a v1 environment lists.

Match specs are parsed by py-rattler (``rattler.MatchSpec``, the conda ecosystem's parser), so
every form conda accepts is read the way conda reads it (``name 1.11.*``, ``name=1.2``,
``name>=1,<2``, ``channel::name``, ``name[version='>=1']``, ``name=1.2=build``). What pip can
express is translated: versions, ranges, wildcards; the channel is dropped (pip has one index);
a build string is dropped with a warning; an alternative (``>=2|<1``) cannot be written as a pip
requirement, so only the name is kept, with a warning.

Azure ML SDK v1 environments almost always list ``azureml-defaults`` (Azure ML's server bundle,
which pulls in ``azureml-core``: hundreds of MB). mlctl's scoring runtime provides what an entry
script uses from those packages (the server, ``azureml.core.model.Model``,
``azureml.contrib.services``), so they are skipped with a notice unless a spec keeps them
(``keep_azureml_defaults: true``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from mlctl.errors import SpecError

AZUREML_SDK = frozenset({"azureml-defaults", "azureml-core", "azureml-contrib-services"})
NOT_PACKAGES = frozenset({"python", "pip", "setuptools", "wheel"})
_OPERATOR = re.compile(r"^(==|!=|~=|>=|<=|>|<|=)?\s*(.+)$")
_PIP_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

Warn = Callable[[str], None]


def match_spec(dep: str, source: str) -> Any:
    """``dep`` parsed as a conda match spec (a ``rattler.MatchSpec``).

    Raises:
        SpecError: conda would not accept ``dep`` either (naming the file and the spec).
    """
    from rattler import MatchSpec

    try:
        return MatchSpec(dep)
    except Exception as exc:  # noqa: BLE001 - rattler raises its own InvalidMatchSpecError
        raise SpecError(
            f"{source}: {dep!r} is not a conda match spec: {exc}",
            hint="write it as conda does, e.g. `numpy=1.26`, `scipy 1.11.*` or `conda-forge::pandas>=2`",
        ) from None


def package_name(dep: str, source: str) -> str:
    """The normalised package name of conda match spec ``dep`` (``conda-forge::NumPy>=1`` -> ``numpy``)."""
    spec = match_spec(dep, source)
    return str(spec.name.normalized) if spec.name is not None else dep.strip().lower()


def pip_requirement(dep: str, source: str, warn: Warn) -> str:
    """The pip requirement for conda match spec ``dep``, e.g. ``scipy 1.11.*`` -> ``scipy==1.11.*``.

    Raises:
        SpecError: ``dep`` is not a match spec.
    """
    spec = match_spec(dep, source)
    if spec.name is None:
        raise SpecError(f"{source}: {dep!r} names no package", hint="give a package name, e.g. `numpy=1.26`")
    name = str(spec.name.normalized)
    if spec.build:
        warn(f"{source}: {dep!r}: pip has no build strings; dropped {spec.build!r}")
    version = str(spec.version) if spec.version else ""
    if "|" in version or "(" in version:
        warn(f"{source}: {dep!r}: pip cannot express alternatives ({version}); installing any {name}")
        return name
    parts = [p for p in (_pip_constraint(part) for part in version.split(",")) if p]
    return name + ",".join(parts)


def _pip_constraint(part: str) -> str:
    """One conda version constraint as pip writes it (``1.2.*`` -> ``==1.2.*``, ``*`` -> nothing)."""
    part = part.strip()
    match = _OPERATOR.match(part)
    if not part or part == "*" or match is None:
        return ""
    operator, version = match.group(1), match.group(2).strip()
    if operator in (None, "="):
        return f"=={version}"
    if operator not in ("==", "!=") and version.endswith(".*"):
        version = version[: -len(".*")]  # pip allows a wildcard only with == and !=
    return f"{operator}{version}"


def pip_name(requirement: str) -> str:
    """The normalised project name of a pip requirement line (``Azureml_Defaults>=1`` -> ``azureml-defaults``)."""
    match = _PIP_NAME.match(requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def without_azureml_sdk(requirements: Iterable[str], source: str, warn: Warn, *, keep: bool) -> list[str]:
    """``requirements`` without the Azure ML SDK packages (unless ``keep``), with one notice for those dropped."""
    requirements = list(requirements)
    if keep:
        return requirements
    dropped = [r for r in requirements if pip_name(r) in AZUREML_SDK]
    if dropped:
        names = ", ".join(sorted({pip_name(r) for r in dropped}))
        warn(
            f"{source}: not installing {names}: mlctl's scoring server provides what entry scripts use from "
            "them (the server, azureml.core.model.Model, azureml.contrib.services); set "
            "keep_azureml_defaults: true to install them anyway"
        )
    return [r for r in requirements if pip_name(r) not in AZUREML_SDK]
