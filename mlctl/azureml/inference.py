"""inferenceconfig.json -> the Service's ``inference_config`` (pure, besides existence checks).

The keys are those the v1 CLI's ``file_to_inference_config`` passed to ``InferenceConfig``:
``entryScript``, ``runtime``, ``condaFile``, ``extraDockerfileSteps``, ``sourceDirectory``,
``enableGpu``, ``baseImage``, ``baseImageRegistry``, ``cudaVersion`` and ``environment`` (an
inline Environment, as ``Environment._serialize_to_dict`` writes it). Paths are relative to
``sourceDirectory`` (itself relative to the file's folder), as in v1. v1 refused ``environment``
together with the keys it replaces (``condaFile``, ``baseImage``, ...), and so does this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl.azureml import report
from mlctl.azureml.report import Entry, entry, expect
from mlctl.azureml.source import Source

KEYS = (
    "entryScript",
    "runtime",
    "condaFile",
    "extraDockerfileSteps",
    "sourceDirectory",
    "enableGpu",
    "baseImage",
    "baseImageRegistry",
    "cudaVersion",
    "environment",
)
REPLACED_BY_ENVIRONMENT = (
    "condaFile",
    "extraDockerfileSteps",
    "enableGpu",
    "baseImage",
    "baseImageRegistry",
    "cudaVersion",
)
IMAGE_ONLY = {"extraDockerfileSteps", "enableGpu", "baseImage", "baseImageRegistry", "cudaVersion"}
# Azure ML's own default base images (every serialized Environment names one): not the user's choice
AZUREML_DEFAULT_IMAGE = re.compile(r"^mcr\.microsoft\.com/azureml/(base|openmpi|intelmpi)[^/]*(:.*)?$")


@dataclass
class InferenceResult:
    """``config``: the ``inference_config`` (paths absolute); ``conda``: a conda environment to write
    (from an inline environment) at ``conda_path``; ``environment_variables`` for the
    deployment; ``password_env``: the variable the registry password is referred to by."""

    config: dict[str, Any] = field(default_factory=dict)
    conda: dict[str, Any] | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    no_image_note: str = ""  # why an image key is not carried, and the import option that keeps it


def translate_inference(
    src: Source, *, conda_path: Path, builds_image: bool, password_env: str, keep_option: str = "--local-target docker"
) -> InferenceResult:
    """Translate an inferenceconfig file. ``builds_image``: the target builds an image (else image
    keys are not carried, and the note names ``keep_option``, the import option that keeps them);
    ``password_env``: the environment variable a registry password becomes.

    Raises:
        SpecError: missing entry script, a file that does not exist, ``environment`` with the keys
            it replaces, a bare environment name, an unsupported runtime, a value of the wrong type.
    """
    data, result = src.data, InferenceResult()
    result.no_image_note = f"the process target builds no image: import with {keep_option} to keep it"
    _refuse_environment_conflicts(src)
    base = _base(src, result)
    if data.get("entryScript") is None:
        raise src.error((), "entryScript is missing", hint="name the entry script (the file with init() and run())")
    for key, value in data.items():
        path = (key,)
        if key == "sourceDirectory":
            continue
        if key not in KEYS:
            result.entries.append(report.unknown(src, path, list(KEYS), {}))
        elif value is None:
            result.entries.append(entry(src, path, report.EMPTY, note="null: v1's default, as in mlctl"))
        elif key in IMAGE_ONLY and not builds_image:
            result.entries.append(
                entry(src, path, report.NOT_CARRIED, value=value, note=result.no_image_note, warn=True)
            )
        elif key == "environment":
            _environment(src, value, result, conda_path, (builds_image, password_env))
        else:
            result.entries.append(_key(src, key, value, base, result, password_env))
    if builds_image and data.get("sourceDirectory"):
        _source_dependencies(base, result)
    return result


def _refuse_environment_conflicts(src: Source) -> None:
    if src.data.get("environment") is None:
        return
    both = [k for k in REPLACED_BY_ENVIRONMENT if src.data.get(k) is not None]
    if both:
        raise src.error(
            (both[0],),
            f"environment and {both[0]} are both given: v1 refused that too (the environment replaces it)",
            hint=f"keep one: remove {both[0]}, or remove environment",
        )


def _base(src: Source, result: InferenceResult) -> Path:
    value = src.data.get("sourceDirectory")
    if value is None:
        if "sourceDirectory" in src.data:
            result.entries.append(entry(src, ("sourceDirectory",), report.EMPTY, note="null: the file's folder"))
        return src.folder
    expect(src, ("sourceDirectory",), value, "path")
    folder = (src.folder / str(value)).resolve()
    if not folder.is_dir():
        raise src.error(("sourceDirectory",), f"sourceDirectory: folder not found: {folder}")
    note = "the other paths are relative to it; an image also gets its files (inference_config.dependencies)"
    result.entries.append(
        entry(src, ("sourceDirectory",), report.MAPPED, destination="(paths)", value=value, note=note)
    )
    return folder


def _existing(src: Source, path: tuple[str, ...], value: Any, base: Path) -> Path:
    expect(src, path, value, "path")
    resolved = (base / str(value)).resolve()
    if not resolved.is_file():
        raise src.error(
            path, f"{'.'.join(path)}: file not found: {resolved}", hint="paths are relative to sourceDirectory"
        )
    return resolved


def _key(src: Source, key: str, value: Any, base: Path, result: InferenceResult, password_env: str) -> Entry:
    path, config = (key,), result.config
    if key == "entryScript":
        config["entry_script"] = _existing(src, path, value, base)
    elif key == "condaFile":
        config["conda_file"] = _existing(src, path, value, base)
    elif key == "extraDockerfileSteps":
        config["docker_file"] = _existing(src, path, value, base)
    elif key == "runtime":
        if str(expect(src, path, value, "string")).lower() != "python":
            raise src.error(path, f"runtime {value!r} is not available: only python", hint="use runtime: python")
        config["runtime"] = "python"
    elif key == "enableGpu":
        if expect(src, path, value, "boolean") is False:
            return entry(src, path, report.NOT_CARRIED, value=value, note="false, as in mlctl")
        config["enable_gpu"] = True
    elif key == "cudaVersion":
        if src.data.get("enableGpu") is not True:
            return entry(src, path, report.NOT_CARRIED, value=value, note="v1 used it only with enableGpu", warn=True)
        config["cuda_version"] = str(value)
    elif key == "baseImage":
        config["base_image"] = expect(src, path, value, "string")
    else:  # baseImageRegistry
        return registry_entry(src, path, value, result, password_env)
    dest = {"entryScript": "entry_script", "condaFile": "conda_file", "extraDockerfileSteps": "docker_file"}
    name = dest.get(key) or re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()
    return entry(src, path, report.MAPPED, destination=f"inference_config.{name}", value=value)


def registry_entry(src: Source, path: tuple[str, ...], value: Any, result: InferenceResult, password_env: str) -> Entry:
    """A ContainerRegistry: an address string, or {address, username, password}; the password is
    never written -- the spec refers to ``password_env`` instead."""
    if isinstance(value, str):
        result.config["base_image_registry"] = {"address": value}
        return entry(src, path, report.MAPPED, destination="inference_config.base_image_registry.address", value=value)
    registry = expect(src, path, value, "object")
    if not registry.get("address"):
        return entry(src, path, report.EMPTY, note="no address: the base image's own registry")
    target: dict[str, Any] = {"address": expect(src, (*path, "address"), registry["address"], "string")}
    if registry.get("username"):
        target["username"] = expect(src, (*path, "username"), registry["username"], "string")
    if registry.get("password"):
        target["password_env"] = password_env
        result.entries.append(
            entry(
                src,
                (*path, "password"),
                report.REFERENCED,
                destination=f"inference_config.base_image_registry.password_env ({password_env})",
                value=report.SECRET,
                note=f"never written to a spec: export {password_env} with it before building",
                warn=True,
            )
        )
    result.config["base_image_registry"] = target
    return entry(src, path, report.MAPPED, destination="inference_config.base_image_registry", value=target["address"])


def _source_dependencies(base: Path, result: InferenceResult) -> None:
    """v1 put all of sourceDirectory in the image; mlctl brings the entry script's ``*.py``, so the
    rest of the folder becomes ``dependencies`` (copied beside the entry script)."""
    entry_dir = Path(result.config["entry_script"]).parent
    deps = []
    for item in sorted(base.iterdir()):
        if item.name.startswith(".") or item.name == "__pycache__":
            continue
        if item.suffix == ".py" and item.is_file() and item.parent == entry_dir:
            continue
        deps.append(item)
    if deps:
        result.config["dependencies"] = deps


def _environment(src: Source, value: Any, result: InferenceResult, conda_path: Path, how: tuple[bool, str]) -> None:
    from mlctl.azureml.environment import translate_environment

    translate_environment(src, value, result, conda_path=conda_path, builds_image=how[0], password_env=how[1])
