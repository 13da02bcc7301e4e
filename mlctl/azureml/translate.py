"""Both v1 files + the models -> the Service (and Model) spec documents and the full report (pure)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlctl.azureml import report
from mlctl.azureml.deployment import translate_deployment
from mlctl.azureml.inference import translate_inference
from mlctl.azureml.report import Entry
from mlctl.azureml.source import Source

LOCAL_TARGETS = ("docker", "process")
KEY_STORE_TARGETS = ("docker", "process")  # targets whose key store mlctl can fill before deploying
CONDA_FILE = "environment.yml"


@dataclass
class Translation:
    """The result of an import: ``service`` and ``models`` are spec documents (paths relative to
    ``out``), ``conda`` a conda environment to write as ``out/environment.yml`` (from an inline
    environment), ``secrets`` the service keys (``primary``/``secondary``) for its key store --
    never written to a spec -- and ``entries`` the report, one entry per source key."""

    name: str
    target: str
    out: Path
    service: dict[str, Any]
    models: list[dict[str, Any]] = field(default_factory=list)
    conda: dict[str, Any] | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """One line per entry worth a warning (an unknown key, a setting not carried)."""
        return [f"{e.file}:{e.line}: {e.key}: {e.status}: {e.note}" for e in self.entries if e.warn]


def translate(
    inference: Source,
    deployment: Source,
    *,
    name: str,
    models: Sequence[str] = (),
    model_files: Sequence[Path] = (),
    out: Path,
    local_target: str = "docker",
    target: str | None = None,
) -> Translation:
    """Translate the two v1 files for service ``name`` with registered ``models`` (``NAME:VERSION``)
    or ``model_files`` (each becomes a Model spec named after its file name, as v1 registered a
    deployed file, and the service uses its latest version). ``target``: another target than the
    computeType's (a kind of this mlctl: keys it does not have are reported, not written).

    Raises:
        SpecError: see ``translate_deployment`` and ``translate_inference``.
        TargetError: a retired compute type (FPGA).
    """
    out = out.resolve()
    dep = translate_deployment(deployment, local_target=local_target, target=target)
    dep.entries = _honoured(dep.target, dep.config, dep.entries)
    password_env = re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_REGISTRY_PASSWORD"
    inf = translate_inference(
        inference,
        conda_path=out / CONDA_FILE,
        builds_image=dep.target != "process",
        password_env=password_env,
        keep_option="--local-target docker" if target is None else "--target docker",
    )
    config = dict(dep.config)
    if inf.environment_variables:
        config["environment_variables"] = inf.environment_variables
    model_docs = [_model_doc(path, out) for path in model_files]
    refs = list(models) or [f"{doc['name']}@latest" for doc in model_docs]
    service: dict[str, Any] = {
        "apiVersion": "mlctl/v1",
        "kind": "Service",
        "name": name,
        "target": dep.target,
        "description": f"imported from {inference.file.name} and {deployment.file.name} (Azure ML v1)",
        "models": refs,
        "inference_config": _relative(inf.config, out),
        "deployment_config": _relative(config, out),
    }
    entries, secrets = _keys(dep.entries, dep.secrets, dep.target, config)
    return Translation(name, dep.target, out, service, model_docs, inf.conda, secrets, [*inf.entries, *entries])


def _honoured(target: str, config: dict[str, Any], entries: list[Entry]) -> list[Entry]:
    """Drop the keys a target of this mlctl does not have (it would refuse the spec), saying so;
    targets not in this mlctl yet get every key (their issues defined the names)."""
    from mlctl.target_kinds import TARGETS
    from mlctl.targets import deployment_keys

    if target not in TARGETS:
        return entries
    dropped = {f"deployment_config.{k}" for k in config if k not in deployment_keys(target)}
    for key in [k for k in config if f"deployment_config.{k}" in dropped]:
        del config[key]
    note = f"the {target} target does not have it"
    return [
        replace(e, status=report.NOT_CARRIED, destination=None, note=note, warn=True) if e.destination in dropped else e
        for e in entries
    ]


def _model_doc(path: Path, out: Path) -> dict[str, Any]:
    model = re.sub(r"[^A-Za-z0-9_.-]", "-", path.name).strip("-._") or "model"
    return {
        "apiVersion": "mlctl/v1",
        "kind": "Model",
        "name": model,
        "path": os.path.relpath(path.resolve(), out),
        "description": "imported: deployed from a model file with Azure ML v1 (registered under its file name)",
    }


def _relative(config: dict[str, Any], out: Path) -> dict[str, Any]:
    def rel(value: Any) -> Any:
        if isinstance(value, Path):
            return os.path.relpath(value, out)
        if isinstance(value, list):
            return [rel(v) for v in value]
        return value

    return {k: rel(v) for k, v in config.items()}


def _keys(
    entries: list[Entry], secrets: dict[str, str], target: str, config: dict[str, Any]
) -> tuple[list[Entry], dict[str, str]]:
    """Keys go to the key store of a local target when authentication is on; otherwise they are
    refused, saying why (the entries say so; the secrets are dropped)."""
    if not secrets:
        return entries, {}
    if not config.get("auth_enabled"):
        why = "auth_enabled is false: no key is used (as in v1)"
    elif target not in KEY_STORE_TARGETS:
        why = (
            f"refused: the {target} target generates its keys; after deploying, give clients the new ones "
            "(`mlctl service keys NAME --reveal`)"
        )
    else:
        return entries, secrets
    refused = [
        replace(e, status=report.NOT_CARRIED, note=why, warn=True) if e.status == report.STORED else e for e in entries
    ]
    return refused, {}
