"""Python environments for the scoring server: isolated virtual environments cached by content.

An environment is identified by the SHA-256 of (Python version, pip requirements, scoring
runtime requirements). It is built in a temporary folder and renamed into place when complete,
so an interrupted build leaves nothing half-made and two concurrent builds of one key are safe.

Conda files (``conda_file``): on the process target their pip-installable part is installed with
pip. Conda match specs are translated by ``mlctl.conda`` (``name=1.2`` -> ``name==1.2.*``,
``scipy 1.11.*`` -> ``scipy==1.11.*``); ``python`` and ``pip`` are not packages to install (Python
is the running interpreter's; a different pinned version is reported as a warning). Images install
the conda file with conda when their base image has it (see ``mlctl.images``), from
``conda_env_file``. The Azure ML SDK packages (``azureml-defaults``, ...) are left out with a
notice unless the spec keeps them (see ``mlctl.conda``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from mlctl import conda, model_kinds
from mlctl.errors import DeploymentError, SpecError
from mlctl.spec.records import EnvironmentSpec

# werkzeug: the flask Request/Response behind AMLRequest/AMLResponse (imported only by @rawhttp scripts)
RUNTIME_PACKAGES = ("uvicorn", "uvloop", "httptools", "werkzeug")
_PIP_TAIL = 25


@dataclass(frozen=True)
class PythonEnvironment:
    """An interpreter ready to run ``python -m mlctl.serve``.

    Attributes:
        python: the interpreter.
        pythonpath: folder holding the scoring runtime (``mlctl/serve``), or None when the
            interpreter already imports mlctl (``current``).
        key: the content hash, or ``current``.
        requirements: the pip requirements installed (without the runtime's).
        ready: whether it already exists (False: ``prepare`` will build it).
    """

    python: Path
    pythonpath: Path | None
    key: str
    requirements: tuple[str, ...]
    ready: bool


def plan(
    spec: EnvironmentSpec,
    home: Path,
    warn: Callable[[str], None] = lambda _: None,
    *,
    extra: tuple[str, ...] = (),
) -> PythonEnvironment:
    """Work out which environment ``spec`` needs, without building anything; ``extra``: requirements
    the deployment adds (``mlctl.modeldata.requirements``; not for ``current``, which has what it has).

    Raises:
        SpecError: the conda or requirements file cannot be parsed.
    """
    if spec.kind == "current":
        return PythonEnvironment(Path(sys.executable), None, "current", (), True)
    requirements = (*_requirements(spec, warn), *extra)
    key = _key(requirements)
    folder = home / "envs" / key
    return PythonEnvironment(
        folder / "bin" / "python", runtime_dir(home), key, requirements, (folder / "bin" / "python").exists()
    )


def prepare(env: PythonEnvironment, home: Path, progress: Callable[[str], None]) -> PythonEnvironment:
    """Build ``env`` if it does not exist yet; returns it ready.

    Raises:
        DeploymentError: phase ``environment``: venv creation or ``pip install`` failed (with
            pip's last lines of output).
    """
    if env.pythonpath is not None:
        install_runtime(home)
    if env.ready:
        return env
    folder = env.python.parent.parent
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}")
    try:
        progress("creating virtual environment")
        _run([sys.executable, "-m", "venv", str(tmp)], tmp, "venv")
        packages = [*env.requirements, *runtime_requirements()]
        progress(f"pip install {len(packages)} package(s)")
        _run(
            [
                str(tmp / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                *packages,
            ],
            tmp,
            "pip install",
            progress,
        )
        try:
            os.rename(tmp, folder)
        except OSError:  # another build of the same key won the race: use it
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PythonEnvironment(env.python, env.pythonpath, env.key, env.requirements, True)


def runtime_requirements() -> list[str]:
    """The scoring runtime's packages, pinned to the versions mlctl itself runs with."""
    pins = []
    for name in RUNTIME_PACKAGES:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def edge_requirements() -> list[str]:
    """Packages every image adds to the scoring runtime: ``azure-iot-device`` (pinned to mlctl's own
    version), so the image can score edgeHub messages when it runs as an IoT Edge module
    (``mlctl.serve.edge_messages``). Pure Python, a few MB with its dependencies; the process
    target's environments do not get it."""
    try:
        return [f"azure-iot-device=={version('azure-iot-device')}"]
    except PackageNotFoundError:
        return ["azure-iot-device>=2.14,<3"]


def runtime_dir(home: Path) -> Path:
    """Folder (``home/runtime/<hash>``) holding a copy of ``mlctl/__init__.py`` and ``mlctl/serve``."""
    return home / "runtime" / _runtime_hash()


def install_runtime(home: Path) -> Path:
    """Copy the scoring runtime to ``runtime_dir(home)`` if it is not there; returns that folder."""
    dest = runtime_dir(home)
    if dest.exists():
        return dest
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
    for source, rel in _runtime_files():
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    try:
        os.rename(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def conda_to_pip(text: str, source: str, warn: Callable[[str], None], *, keep_azureml: bool = False) -> list[str]:
    """The pip requirements of a conda environment file's content (the Azure ML SDK packages left
    out unless ``keep_azureml``).

    Raises:
        SpecError: not a conda environment file, or a dependency is not a conda match spec.
    """
    data = _load_conda(text, source)
    result: list[str] = []
    for dep in data.get("dependencies", []):
        if isinstance(dep, dict):
            result.extend(str(p) for p in dep.get("pip", []))
        elif isinstance(dep, str):
            converted = _conda_spec(dep, source, warn)
            if converted:
                result.append(converted)
    return conda.without_azureml_sdk(result, source, warn, keep=keep_azureml)


def conda_env_file(
    text: str, source: str, warn: Callable[[str], None] = lambda _: None, *, keep_azureml: bool = False
) -> str:
    """A conda environment file's content, made ready for ``conda env create --prefix``.

    ``name`` and ``prefix`` are dropped (the prefix is given on the command line), and ``python``
    and ``pip`` are added to the dependencies when missing: the scoring runtime is installed
    into the environment with its own ``python -m pip``. The Azure ML SDK packages are left out
    of the ``pip:`` list unless ``keep_azureml``. Everything else is kept as written.

    Raises:
        SpecError: not a conda environment file.
    """
    import io

    from ruamel.yaml import YAML

    data = _load_conda(text, source)
    deps = [_without_sdk(d, source, warn, keep_azureml) for d in data.get("dependencies") or []]
    names = {conda.package_name(d, source) for d in deps if isinstance(d, str)}
    for needed in ("pip", "python"):
        if needed not in names:
            deps.insert(0, needed)
    doc = {k: v for k, v in data.items() if k not in ("name", "prefix", "dependencies")}
    doc["dependencies"] = deps
    out = io.StringIO()
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.dump(doc, out)
    return f"# Written by mlctl from {Path(source).name}, for `conda env create --prefix`.\n{out.getvalue()}"


def _without_sdk(dep: Any, source: str, warn: Callable[[str], None], keep: bool) -> Any:
    if isinstance(dep, dict) and isinstance(dep.get("pip"), list):
        return {**dep, "pip": conda.without_azureml_sdk(map(str, dep["pip"]), source, warn, keep=keep)}
    return dep


def _load_conda(text: str, source: str) -> dict[str, Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise SpecError(f"cannot parse conda file {source}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("dependencies", []), list):
        raise SpecError(f"{source} is not a conda environment file (expected a 'dependencies' list)")
    return data


def _conda_spec(dep: str, source: str, warn: Callable[[str], None]) -> str | None:
    """The pip requirement for one conda dependency; None for Python, pip and build tools."""
    name = conda.package_name(dep, source)
    if name == "python":
        _check_python(dep, source, warn)
        return None
    if name in conda.NOT_PACKAGES:
        return None
    return conda.pip_requirement(dep, source, warn)


def _check_python(dep: str, source: str, warn: Callable[[str], None]) -> None:
    from rattler import Version, VersionSpec

    wanted = conda.match_spec(dep, source).version
    running = ".".join(map(str, sys.version_info[:3]))
    if wanted and not VersionSpec(str(wanted)).matches(Version(running)):
        warn(f"{source} asks for python {wanted}; the process target uses Python {running}")


def _requirements(spec: EnvironmentSpec, warn: Callable[[str], None]) -> list[str]:
    listed = _listed(spec, warn)
    if spec.model_kind == "mlflow":  # mlflow-skinny loads every pyfunc flavor; the full server is not needed
        listed = [re.sub(r"^mlflow(?=[\s=<>!~\[;]|$)", "mlflow-skinny", req) for req in listed]
    names = {re.split(r"[\s=<>!~\[;]", req, maxsplit=1)[0].lower() for req in listed}
    extra = [pkg for pkg in model_kinds.PACKAGES.get(spec.model_kind, ()) if pkg not in names]
    return listed + extra


def _listed(spec: EnvironmentSpec, warn: Callable[[str], None]) -> list[str]:
    keep = spec.keep_azureml_defaults
    if spec.python:  # an MLflow model's; the minor version matters to pickled models, the patch level does not
        minor = ".".join(spec.python.split(".")[:2])
        _check_python(f"python={minor}", "the MLflow model's environment", warn)
    if spec.kind == "python_env":  # an MLflow model's python_env.yaml, read by mlctl.mlflow_env
        return conda.without_azureml_sdk(spec.requirements, "python_env.yaml", warn, keep=keep)
    if spec.file is None:
        return []
    text = spec.file.read_text(encoding="utf-8")
    if spec.kind == "conda":
        return conda_to_pip(text, str(spec.file), warn, keep_azureml=keep)
    lines = (line.split(" #")[0].strip() for line in text.splitlines())
    requirements = [line for line in lines if line and not line.startswith("#")]
    return conda.without_azureml_sdk(requirements, str(spec.file), warn, keep=keep)


def _key(requirements: tuple[str, ...]) -> str:
    doc = {
        "python": sys.version.split()[0],
        "requirements": list(requirements),
        "runtime": runtime_requirements(),
        "platform": sys.platform,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def _runtime_files() -> list[tuple[Path, Path]]:
    package = Path(__file__).parent
    files = [(package / "__init__.py", Path("mlctl/__init__.py"))]
    for path in sorted((package / "serve").rglob("*.py")):
        files.append((path, Path("mlctl") / path.relative_to(package)))
    return files


def _runtime_hash() -> str:
    digest = hashlib.sha256()
    for source, rel in _runtime_files():
        digest.update(str(rel).encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _run(command: list[str], tmp: Path, what: str, progress: Callable[[str], None] | None = None) -> None:
    tmp.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if progress and line.startswith(("Collecting", "Downloading", "Installing", "Building")):
                progress(line.strip()[:80])
    if proc.returncode != 0:
        raise DeploymentError(
            f"{what} failed while building the service's Python environment",
            phase="environment",
            details=lines[-_PIP_TAIL:],
            hint=pip_hint(lines),
        )


def pip_hint(lines: list[str]) -> str:
    """What to do about a failed ``pip install``, from its output."""
    missing = [m.group(1) for line in lines if (m := re.search(r"No matching distribution found for (\S+)", line))]
    if missing:
        return (
            f"pip cannot find {', '.join(missing)}: check the name and version. A conda-only package "
            "cannot be installed by pip: use a pip package instead, or build an image from a base "
            "image that has conda (micromamba, mamba or conda), which mlctl then uses"
        )
    return "fix the conda or requirements file; the pip output above names the failing package"
