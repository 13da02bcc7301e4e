"""``Model.get_model_path`` inside the scoring server (stdlib only), as azureml-core answers it there.

Contract (azureml-core ``Model.get_model_path(model_name, version=None, _workspace=None)``,
``_get_model_path_local``, the path taken inside a deployed web service):

1. ``version`` must be an int or None (else ``WebserviceException``);
2. ``azureml-models/<model_name>/<version, or the highest>/`` (relative to the working directory,
   the app root) must hold exactly one entry, the registered file or folder, whose path is
   returned; more than one entry is an error;
3. otherwise ``./<model_name>`` when it exists;
4. otherwise ``ModelNotFoundException`` naming the model and both places looked in.

mlctl adds one step between 2 and 3, because Azure ML SDK v1's deploy-from-model-file registered a
file under its file name, so scripts ask for ``sklearn_regression_model.pkl`` where mlctl
registered model ``sklearn_regression_model``: a registered entry of that file name
(``azureml-models/*/<highest version>/<model_name>``) is returned when exactly one model has it.
The models folder is found from the working directory, as Azure ML does, and else from
``AZUREML_MODEL_DIR`` (its ``azureml-models`` ancestor).
"""

from __future__ import annotations

import os
from pathlib import Path

MODELS_DIR = "azureml-models"


class WebserviceException(Exception):
    """azureml-core's error for a bad call (here: a non-int version, an ambiguous model folder)."""


class ModelNotFoundException(WebserviceException):
    """No registered model, and no file or folder, answers to the name asked for."""


def get_model_path(model_name: str, version: int | None = None) -> str:
    """The path of the model file or folder registered as ``model_name`` (see the module docstring).

    Raises:
        WebserviceException: ``version`` is not an int, or a version folder holds more than one entry.
        ModelNotFoundException: nothing answers to ``model_name``.
    """
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise WebserviceException(f"version should be an int, not {version!r}")
    if not model_name:
        raise WebserviceException("model_name is None")
    roots = _roots()
    for root in roots:
        found = _registered(root, model_name, version)
        if found is not None:
            return found
    for root in roots:
        found = _by_file_name(root, model_name, version)
        if found is not None:
            return found
    if os.path.exists(model_name):
        return model_name
    looked = " or ".join(str(Path(r) / model_name) for r in roots)
    raise ModelNotFoundException(
        f"Model {model_name} not found in cache at {looked} or in current working directory {os.getcwd()}"
    )


def _roots() -> list[str]:
    roots = [MODELS_DIR]
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    if model_dir:
        path = Path(model_dir)
        for candidate in (path, *path.parents):
            if candidate.name == MODELS_DIR and Path(MODELS_DIR).resolve() != candidate.resolve():
                roots.append(str(candidate))
                break
    return roots


def _registered(root: str, name: str, version: int | None) -> str | None:
    folder = os.path.join(root, name)
    if not os.path.isdir(folder):
        return None
    chosen = version if version is not None else _highest(folder)
    if chosen is None or not os.path.isdir(os.path.join(folder, str(chosen))):
        return None
    return _only_entry(os.path.join(folder, str(chosen)))


def _by_file_name(root: str, file_name: str, version: int | None) -> str | None:
    if not os.path.isdir(root):
        return None
    matches = []
    for model in sorted(os.listdir(root)):
        chosen = version if version is not None else _highest(os.path.join(root, model))
        candidate = os.path.join(root, model, str(chosen), file_name)
        if chosen is not None and os.path.exists(candidate):
            matches.append(candidate)
    if len(matches) > 1:
        raise WebserviceException(
            f"{file_name} is registered by several models ({', '.join(matches)}); ask for one by its model name"
        )
    return matches[0] if matches else None


def _highest(folder: str) -> int | None:
    try:
        versions = [int(v) for v in os.listdir(folder) if v.isdigit()]
    except OSError:
        return None
    return max(versions) if versions else None


def _only_entry(folder: str) -> str:
    entries = os.listdir(folder)
    if len(entries) != 1:
        raise WebserviceException(f"Dir {folder} can contain only 1 file or folder. Found {sorted(entries)}")
    return os.path.join(folder, entries[0])
