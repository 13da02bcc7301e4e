"""The environment of an MLflow model folder, read from the files MLflow writes beside ``MLmodel``.

The precedence follows MLflow's own scoring (``mlflow models serve`` with its default virtualenv
environment manager):

1. ``python_env.yaml`` (the file the ``MLmodel`` file's ``python_function`` flavor names under
   ``env: virtualenv``): its ``python`` version, ``build_dependencies`` and ``dependencies``,
   where MLflow writes ``-r requirements.txt`` (references are read from the model's folder);
2. else ``requirements.txt``;
3. else ``conda.yaml`` (``env: conda``, or the older ``env: conda.yaml`` form): through mlctl's
   conda handling (``mlctl.conda``: its ``pip:`` list and translated conda packages on the
   process target; ``conda env create`` in an image whose base image has conda).

The result is an ``EnvironmentSpec`` like a spec's own, so it is cached by content the same way
(``mlctl.environments``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlctl import conda
from mlctl.errors import SpecError

if TYPE_CHECKING:
    from mlctl.spec.records import EnvironmentSpec

# a model file's stored path, by its path relative to the model's folder (POSIX), or None
Find = Callable[[str], "Path | None"]
_REFERENCE = ("-r", "--requirement")
_CONSTRAINT = ("-c", "--constraint")


def in_folder(folder: Path) -> Find:
    """``Find`` for a model folder on disk."""

    def find(rel: str) -> Path | None:
        path = folder / rel
        return path if path.is_file() else None

    return find


def environment(find: Find, *, keep_azureml_defaults: bool = False) -> EnvironmentSpec:
    """The environment of the MLflow model whose files ``find`` locates (see the module's docstring).

    Returns ``EnvironmentSpec`` of kind ``python_env`` (requirements already expanded), ``pip``,
    ``conda`` or ``none`` (no environment file), with ``model_kind="mlflow"``.

    Raises:
        SpecError: ``MLmodel`` or ``python_env.yaml`` cannot be parsed, or a requirements file
            it references is not in the model.
    """
    from mlctl.spec.records import EnvironmentSpec

    names = _env_files(find("MLmodel"))
    keep = keep_azureml_defaults
    python_env_name = names.get("virtualenv", "python_env.yaml")
    python_env = find(python_env_name)
    if python_env is not None:
        python, requirements = _python_env(python_env, python_env_name, find)
        return EnvironmentSpec("python_env", python_env, keep, "mlflow", requirements=requirements, python=python)
    conda_file = find(names.get("conda", "conda.yaml"))
    if (requirements_file := find("requirements.txt")) is not None:  # Python's version: conda.yaml's
        python = _conda_python(conda_file) if conda_file else None
        return EnvironmentSpec("pip", requirements_file, keep, "mlflow", python=python)
    if conda_file is not None:
        return EnvironmentSpec("conda", conda_file, keep, "mlflow")
    return EnvironmentSpec("none", model_kind="mlflow")


def _env_files(mlmodel: Path | None) -> dict[str, str]:
    """The pyfunc flavor's ``env`` entry: ``{"conda": ..., "virtualenv": ...}`` (file names)."""
    if mlmodel is None:
        return {}
    env = _yaml(mlmodel, "MLmodel").get("flavors", {}).get("python_function", {}).get("env")
    if isinstance(env, str):  # MLflow < 1.26: the conda file's name
        return {"conda": env}
    return {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}


def _conda_python(path: Path) -> str | None:
    """The version of ``python`` a conda file lists (``python=3.11.5`` -> ``3.11.5``), or None."""
    deps = _yaml(path, "conda.yaml").get("dependencies") or []
    for dep in deps:
        match = re.match(r"^python\s*=*\s*(\d+(?:\.\d+)*)", dep) if isinstance(dep, str) else None
        if match:
            return match.group(1)
    return None


def _python_env(path: Path, name: str, find: Find) -> tuple[str | None, tuple[str, ...]]:
    """``python_env.yaml``'s (``name`` in the model) Python version and its requirements, references expanded."""
    doc = _yaml(path, name)
    python = doc.get("python")
    # pip is the one the environment was created with; upgrading it mid-install helps nothing
    build = [str(d) for d in doc.get("build_dependencies") or [] if _name(str(d)) != "pip"]
    deps = _expand([str(d) for d in doc.get("dependencies") or []], find, name)
    return (str(python) if python is not None else None), tuple(build + deps)


def _expand(lines: list[str], find: Find, source: str) -> list[str]:
    """Requirement lines with ``-r FILE`` replaced by that file's lines. A ``-c FILE`` constraint
    cannot be passed on as a file (the model's files may be stored apart), so its pins replace
    the requirements of the packages the model names."""
    requirements: list[str] = []
    constraints: list[str] = []
    _collect(lines, find, source, requirements, constraints, 0)
    pins = {_name(c).lower(): c for c in constraints}
    return [pins.get(_name(r).lower(), r) for r in requirements]


def _collect(lines: list[str], find: Find, source: str, reqs: list[str], pins: list[str], depth: int) -> None:
    for raw in lines:
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()  # requirements may hold quoted markers: no shell parsing
        if words[0] in _REFERENCE + _CONSTRAINT and len(words) == 2:
            path = find(words[1])
            if path is None:
                raise SpecError(f"{source} references {words[1]}, which the MLflow model does not hold")
            if depth > 5:
                raise SpecError(f"{source}: requirements files reference each other in a loop ({words[1]})")
            more = path.read_text(encoding="utf-8").splitlines()
            _collect(more, find, words[1], reqs if words[0] in _REFERENCE else pins, pins, depth + 1)
        elif words[0].startswith("-"):
            raise SpecError(f"{source}: pip option {words[0]!r} is not supported in an MLflow model's requirements")
        else:
            reqs.append(line)


def _name(requirement: str) -> str:
    return conda.pip_name(requirement)


def _yaml(path: Path, name: str) -> dict[str, Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except YAMLError as exc:
        raise SpecError(f"cannot parse the MLflow model's {name}: {exc}") from None
    return doc if isinstance(doc, dict) else {}
