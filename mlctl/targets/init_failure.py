"""What a scoring server's log says about a failed start, for the error a driver raises.

The server (``mlctl.serve``) logs one record per line, ``DATE TIME LEVEL [PID] message``, and an
``init()`` failure as one ERROR record followed by its traceback; every worker fails the same
way, so the log holds the same traceback once per worker. :func:`explain` keeps the first one,
whole (from ``Traceback (most recent call last):``), with the script's own output before it,
and turns the exception at its end into a hint naming the real cause: the package missing from
the environment file, or what the model folder holds when a model file is not found.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlctl.spec.document import display_path

if TYPE_CHECKING:
    from mlctl.spec.records import ServiceSpec

_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) \[[^\]]*\] (?P<message>.*)$")
_FAILED = ("entry script failed during load or init()", "entry script error:")
_MISSING_MODULE = re.compile(r"^(?:ModuleNotFoundError|ImportError): No module named '(?P<module>[^']+)'")
_MISSING_FILE = re.compile(r"^FileNotFoundError: \[Errno 2\] [^:]*: '(?P<path>[^']+)'")
_BEFORE = 10  # lines of the script's own output kept before the failure
_LISTED = 20  # model-folder entries listed at most
# import name -> the distribution that provides it, where the two differ (the common cases)
_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "skimage": "scikit-image",
    "dateutil": "python-dateutil",
    "google.protobuf": "protobuf",
    "bs4": "beautifulsoup4",
}


@dataclass(frozen=True)
class Failure:
    """An ``init()`` failure: ``excerpt`` (log lines to show) and ``hint`` (None: no known cause)."""

    excerpt: list[str]
    hint: str | None


def env_file_shown(spec: ServiceSpec) -> str | None:
    """The spec's conda or requirements file as the user would name it (for hints), if any."""
    env = spec.inference.environment if spec.inference is not None else None
    return display_path(env.file) if env is not None and env.file is not None else None


def explain(lines: Sequence[str], *, env_file: str | None, model_root: Path | None = None) -> Failure:
    """The first failure in a server log, shown once and from its start, with a cause-naming hint.

    Args:
        lines: the server's log, one line each (without newlines).
        env_file: the spec's conda or requirements file as the user wrote it (None: none given).
        model_root: the host folder that holds ``azureml-models`` paths named in the log (the
            deploy folder), to list what a model folder holds; None when not on this machine.

    Returns the excerpt (the last lines of the log when no failure record is found) and a hint,
    or None for the hint when the cause is not one this module recognises."""
    start = next((i for i, line in enumerate(lines) if _is_failure(line)), None)
    if start is None:
        return Failure(list(lines[-30:]), None)
    end = next((i for i in range(start + 1, len(lines)) if _RECORD.match(lines[i])), len(lines))
    block = list(lines[start:end])
    before = [line for line in lines[max(0, start - _BEFORE) : start] if not _RECORD.match(line)]
    last = next((line for line in reversed(block) if line.strip()), "")
    return Failure(before + block, _hint(last.strip(), env_file, model_root))


def _is_failure(line: str) -> bool:
    match = _RECORD.match(line)
    return bool(match) and match["level"] == "ERROR" and any(m in match["message"] for m in _FAILED)  # type: ignore[index]


def _hint(exception: str, env_file: str | None, model_root: Path | None) -> str | None:
    if match := _MISSING_MODULE.match(exception):
        return missing_package_hint(match["module"], env_file)
    if (match := _MISSING_FILE.match(exception)) and "azureml-models" in match["path"]:
        return _missing_model_file_hint(match["path"], model_root)
    return None


def missing_package_hint(module: str, env_file: str | None) -> str:
    """The fix for ``No module named MODULE``: the package to add, and to which file."""
    package = _DISTRIBUTIONS.get(module) or _DISTRIBUTIONS.get(module.split(".")[0]) or module.split(".")[0]
    if env_file and env_file.endswith((".yml", ".yaml")):
        return (
            f"the environment lacks the package providing {module!r}: add {package!r} to the "
            f"dependencies (or their pip: list) in the conda file {env_file}, then deploy again"
        )
    if env_file:
        return (
            f"the environment lacks the package providing {module!r}: add a line {package!r} to "
            f"the requirements file {env_file}, then deploy again"
        )
    return (
        f"the environment lacks the package providing {module!r}: the service runs on mlctl's own "
        f"interpreter (no conda_file or requirements in inference_config); add a requirements.txt "
        f"listing {package!r} as inference_config.requirements"
    )


def _missing_model_file_hint(path: str, model_root: Path | None) -> str:
    relative = path[path.index("azureml-models") :]
    folder = _nearest_folder(model_root / relative if model_root else None)
    if folder is None:
        return f"init() opened {relative}, which is not in the model folder: check the file name in the entry script"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    shown = ", ".join(names[:_LISTED]) + (f", ... ({len(names)} in all)" if len(names) > _LISTED else "")
    where = folder.relative_to(model_root) if model_root else folder
    return (
        f"init() opened {relative}, which does not exist; {where} holds: {shown or '(nothing)'} — "
        "use one of these names in the entry script (AZUREML_MODEL_DIR is the model's version folder)"
    )


def _nearest_folder(path: Path | None) -> Path | None:
    """The deepest existing folder on the way to ``path``, below ``azureml-models``."""
    while path is not None and "azureml-models" in path.parts:
        if path.is_dir():
            return path
        path = path.parent
    return None
