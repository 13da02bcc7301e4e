"""The scoring server's command line and environment for the ``process`` target (pure: nothing
is started here; ``mlctl.targets.process`` renders and launches them)."""

from __future__ import annotations

import os
from pathlib import Path

from mlctl import model_kinds
from mlctl.registry import ModelVersion
from mlctl.spec.records import ServiceSpec
from mlctl.targets import Deployment, server_options, tls_paths

CONTROL = "control.sock"  # the server's control socket, in the deploy dir


def model_dir_rel(deployment: Deployment) -> str:
    """AZUREML_MODEL_DIR, relative to the deploy dir: one model -> its version folder, else the root."""
    if len(deployment.models) == 1:
        model = deployment.models[0]
        return f"azureml-models/{model.name}/{model.version}"
    return "azureml-models"


def _model_options(spec: ServiceSpec, models: tuple[ModelVersion, ...], model_dir: str) -> list[str]:
    """What the server serves: the entry script, or the model's kind and path (no-code kinds)."""
    assert spec.inference is not None
    named = ["--model-name", spec.name]
    if len(models) == 1 and models[0].version:
        named += ["--model-version", str(models[0].version)]
    if spec.inference.entry_script is not None:
        return ["--entry-script", str(spec.inference.entry_script), *named]
    kind = model_kinds.resolve(spec, models)
    return ["--model-kind", kind, "--model-path", f"{model_dir}/{models[0].source_name}", *named]


def command(
    spec: ServiceSpec,
    python: Path,
    model_dir: str,
    deploy_dir: Path,
    *,
    models: tuple[ModelVersion, ...],
    host: str,
    listen_fds: tuple[int, ...],
    keys_file: Path | None,
) -> list[str]:
    """``python -m mlctl.serve`` with its options for ``spec``; ``listen_fds``: sockets handed over
    by the server being replaced (``lifecycle.inherit_sockets``)."""
    assert spec.inference is not None
    command = [
        str(python),
        "-m",
        "mlctl.serve",
        *_model_options(spec, models, model_dir),
        "--model-dir",
        model_dir,
        *server_options(
            spec.deployment,
            host=host,
            status_file=str(deploy_dir / "status.json"),
            control_socket=str(deploy_dir / CONTROL),
            keys_file=str(keys_file) if keys_file is not None else None,
            tls=tls_paths(spec, deploy_dir),
        ),
    ]
    return command + [arg for fd in listen_fds for arg in ("--listen-fd", str(fd))]


def environment(spec: ServiceSpec, model_dir: str, pythonpath: Path | None, *, base: dict[str, str]) -> dict[str, str]:
    """The server's environment: ``base``, the spec's variables, and Azure ML's ``AZUREML_MODEL_DIR``
    and ``AZUREML_ENTRY_SCRIPT`` as the reference server reads them."""
    assert spec.inference is not None
    env = {
        **base,
        **spec.deployment.environment_variables,
        "AZUREML_MODEL_DIR": model_dir,
        "PYTHONUNBUFFERED": "1",
    }
    if spec.inference.entry_script is not None:
        env["AZUREML_ENTRY_SCRIPT"] = spec.inference.entry_script.name
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def write_secret(path: Path, secret: str | None) -> None:
    """The connection string as a file only this user reads (the server's MLCTL_DC_STORAGE_FILE)."""
    if secret is None:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
