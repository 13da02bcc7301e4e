"""An inline Azure ML Environment (``inferenceconfig.environment``) -> a conda file, environment
variables and image options (pure).

The dict is what ``Environment._serialize_to_dict`` writes (the shape Azure's docs show):
``name``, ``version``, ``python.{condaDependencies, userManagedDependencies, interpreterPath,
baseCondaEnvironment, condaDependenciesFile}``, ``environmentVariables``, ``docker.{baseImage,
baseDockerfile, baseImageRegistry, enabled, arguments, sharedVolumes, shmSize}``, and the
training-only ``spark``, ``r``, ``databricks``, ``inferencingStackVersion``. A bare environment
*name* refers to a workspace, which mlctl cannot read offline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlctl.azureml import report
from mlctl.azureml.report import entry, expect
from mlctl.azureml.source import Source

if TYPE_CHECKING:
    from mlctl.azureml.inference import InferenceResult

_SECRETIVE = re.compile(r"key|secret|passw|token|connection|credential|sas", re.IGNORECASE)
_NAMED = "names the environment in an Azure ML workspace; in mlctl the conda file is the environment"
_RUN_SETTING = "a training-run setting: no effect on a deployment"
_DOCKER_RUN_KEYS = ("enabled", "arguments", "sharedVolumes", "shmSize", "gpuSupport", "platform", "buildContext")


def translate_environment(
    src: Source, value: Any, result: InferenceResult, *, conda_path: Path, builds_image: bool, password_env: str
) -> None:
    """Add the environment's conda file, variables and base image to ``result`` with their entries.

    Raises:
        SpecError: a bare name (or no Python section), or a malformed conda section.
    """
    path = ("environment",)
    if isinstance(value, str) or (isinstance(value, dict) and not value.get("python")):
        name = value if isinstance(value, str) else value.get("name", "?")
        raise src.error(
            path,
            f"environment {name!r} is a name in an Azure ML workspace, which mlctl cannot read offline",
            hint="export its conda file (`az ml environment download`) and give condaFile instead, "
            "or inline the environment with its python.condaDependencies",
        )
    env = expect(src, path, value, "object")
    for key, item in env.items():
        sub = (*path, key)
        if item is None:
            result.entries.append(entry(src, sub, report.EMPTY, note="null: v1's default"))
        elif key == "python":
            _python(src, sub, expect(src, sub, item, "object"), result, conda_path)
        elif key == "environmentVariables":
            variables = expect(src, sub, item, "object")
            result.environment_variables.update({str(k): str(v) for k, v in variables.items()})
            dest = "deployment_config.environment_variables"
            secretive = sorted(k for k in variables if _SECRETIVE.search(str(k)))
            note = (
                f"{', '.join(secretive)} look(s) like a secret, written to the spec as v1 kept it: consider "
                "${VAR} in the spec and the value in the environment"
                if secretive
                else ""
            )
            names = sorted(str(k) for k in variables)  # values are not repeated in the report
            result.entries.append(
                entry(src, sub, report.MAPPED, destination=dest, value=names, note=note, warn=bool(note))
            )
        elif key == "docker":
            _docker(src, sub, expect(src, sub, item, "object"), result, (builds_image, password_env))
        elif key in ("name", "version"):
            result.entries.append(entry(src, sub, report.NOT_CARRIED, value=item, note=_NAMED))
        else:
            result.entries.append(entry(src, sub, report.NOT_CARRIED, value=item, note="not used by a deployment"))
    if result.conda is None and "conda_file" not in result.config:
        raise src.error(path, "the environment has no python.condaDependencies", hint="give them, or condaFile instead")


def _python(src: Source, path: tuple[str, ...], python: dict[str, Any], result: InferenceResult, conda: Path) -> None:
    for key, item in python.items():
        sub = (*path, key)
        if item is None:
            result.entries.append(entry(src, sub, report.EMPTY, note="null: v1's default"))
        elif key == "condaDependencies":
            spec = expect(src, sub, item, "object")
            if not isinstance(spec.get("dependencies", []), list):
                raise src.error((*sub, "dependencies"), "condaDependencies.dependencies must be a list")
            first = [k for k in ("name", "channels", "dependencies") if k in spec]  # a conda file's usual order
            result.conda = {**{k: spec[k] for k in first}, **{k: v for k, v in spec.items() if k not in first}}
            result.config["conda_file"] = conda
            dest = f"inference_config.conda_file ({conda.name}, written)"
            result.entries.append(entry(src, sub, report.MAPPED, destination=dest, value=f"{len(spec)} keys"))
        elif key == "condaDependenciesFile":
            resolved = (src.folder / expect(src, sub, item, "path")).resolve()
            if not resolved.is_file():
                raise src.error(sub, f"condaDependenciesFile: file not found: {resolved}")
            result.config.setdefault("conda_file", resolved)
            result.entries.append(entry(src, sub, report.MAPPED, destination="inference_config.conda_file", value=item))
        elif key == "userManagedDependencies":
            warn = item is True
            note = (
                "the base image's Python used as it is is not available: mlctl builds the environment from the "
                "conda file"
                if warn
                else "false, as in mlctl: the environment is built from the conda file"
            )
            result.entries.append(entry(src, sub, report.NOT_CARRIED, value=item, note=note, warn=warn))
        else:  # interpreterPath, baseCondaEnvironment
            note = "mlctl's environment brings its own interpreter"
            result.entries.append(entry(src, sub, report.NOT_CARRIED, value=item, note=note))


def _docker(
    src: Source, path: tuple[str, ...], docker: dict[str, Any], result: InferenceResult, how: tuple[bool, str]
) -> None:
    from mlctl.azureml.inference import AZUREML_DEFAULT_IMAGE, registry_entry

    image, password_env = how
    for key, item in docker.items():
        sub = (*path, key)
        if item is None or item == [] or (key == "baseImageRegistry" and not (item or {}).get("address")):
            result.entries.append(entry(src, sub, report.EMPTY, note="empty: v1's default"))
        elif key in _DOCKER_RUN_KEYS:
            result.entries.append(entry(src, sub, report.NOT_CARRIED, value=item, note=_RUN_SETTING))
        elif key == "baseImage" and AZUREML_DEFAULT_IMAGE.match(str(item)):
            note = "Azure ML's default base image: mlctl's default is used (MLCTL_BASE_IMAGE, base_image in the config)"
            result.entries.append(entry(src, sub, report.NOT_CARRIED, value=item, note=note))
        elif not image:
            result.entries.append(entry(src, sub, report.NOT_CARRIED, value=item, note=result.no_image_note, warn=True))
        elif key == "baseImage":
            result.config["base_image"] = expect(src, sub, item, "string")
            result.entries.append(entry(src, sub, report.MAPPED, destination="inference_config.base_image", value=item))
        elif key == "baseImageRegistry":
            result.entries.append(registry_entry(src, sub, item, result, password_env))
        else:  # baseDockerfile: a whole Dockerfile
            note = "a whole base Dockerfile: build it as your base image and set base_image to it"
            result.entries.append(entry(src, sub, report.NOT_CARRIED, value="<Dockerfile>", note=note, warn=True))
