"""Container images of web services: the build context, rendered purely, then written to disk.

Inside the image (Azure ML's layout; its containers listen on 5001)::

    /var/azureml-app/                        the entry script and the *.py files beside it
    /var/azureml-app/azureml-models/NAME/VERSION/<file or folder>
    /opt/mlctl/env/                          the Python environment (a conda prefix or a venv)
    /opt/mlctl/environment/                  how it was made: install.sh and its input files
    /opt/mlctl/runtime/mlctl/serve/          the scoring runtime (no CLI dependency)

The environment: a conda file is installed with conda (``env create --prefix``) when the base
image has it (micromamba, mamba or conda, looked up on its PATH at build time, as Azure ML's
conda base images are used), the scoring runtime then with that environment's pip; otherwise
(or for a requirements file) the pip-installable part goes into a venv of the base image's
``python3``. So a conda-only package needs a base image with conda, and without one the build
fails at ``pip install`` with a hint saying so.

Layers go from what changes least to what changes most: base image, environment (cached by the
requirements' content), runtime, the spec's extra Dockerfile steps (``docker_file``, run as
root), entry script, extra files (``dependencies``), models; so a new model version rebuilds
only the last layers. ``enable_gpu`` sets the NVIDIA container runtime's variables
(``NVIDIA_VISIBLE_DEVICES``, ``NVIDIA_DRIVER_CAPABILITIES``) and ``cuda_version`` a label and
``CUDA_VERSION``: mlctl installs no CUDA, which comes from the base image or the framework's
wheels. The image runs as a non-root user, exposes the port, has a HEALTHCHECK on the
liveness route, and carries OCI labels plus one label per model (``NAME:VERSION`` and its
content hash).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlctl import __version__, environments, model_kinds
from mlctl.errors import SpecError
from mlctl.registry import ModelVersion, Registry
from mlctl.spec.records import InferenceConfig, RegistryAuth

APP_ROOT = "/var/azureml-app"
PYTHON = "/opt/mlctl/env/bin/python"
PORT = 5001
USER = "1000:1000"  # numeric: works with base images that have no user database entry for it


# Run by the image's environment step (POSIX sh: base images need not have bash).
INSTALL_SCRIPT = """\
#!/bin/sh
# Written by mlctl: installs the web service's Python environment at /opt/mlctl/env.
set -eu
cd /opt/mlctl/environment
if [ -f conda.yml ]; then
  for tool in micromamba mamba conda; do
    if command -v "$tool" >/dev/null 2>&1; then
      echo "mlctl: installing conda.yml with $tool ($(command -v "$tool"))"
      if [ "$tool" = micromamba ]; then
        micromamba create --yes --prefix /opt/mlctl/env --file conda.yml
      else
        "$tool" env create --prefix /opt/mlctl/env --file conda.yml
      fi
      /opt/mlctl/env/bin/python -m pip install -r runtime-requirements.txt
      "$tool" clean --all --yes >/dev/null 2>&1 || true  # only saves space
      exit 0
    fi
  done
  echo "mlctl: the base image has no conda (micromamba, mamba or conda):" \\
    "installing the conda file's pip-installable part with pip"
fi
python3 -m venv /opt/mlctl/env
/opt/mlctl/env/bin/pip install -r requirements.txt
"""


@dataclass(frozen=True)
class ContextPlan:
    """Everything an image build context holds, before anything is written."""

    name: str
    base_image: str
    entry_script: Path | None  # None: a no-code model (``model_kind``)
    app_files: tuple[Path, ...]
    requirements: tuple[str, ...]
    models: tuple[ModelVersion, ...]
    labels: dict[str, str] = field(default_factory=dict)
    conda_file: str | None = None
    runtime_requirements: tuple[str, ...] = ()
    extra_steps: str | None = None  # the docker_file's content
    dependencies: tuple[Path, ...] = ()
    enable_gpu: bool = False
    cuda_version: str | None = None
    registry: RegistryAuth | None = None
    notes: tuple[str, ...] = ()  # warnings for the person building (a GPU image on a CPU base, ...)
    model_kind: str = "entry_script"

    @property
    def model_dir(self) -> str:
        """AZUREML_MODEL_DIR in the image (one model: its version folder; several: their root)."""
        if len(self.models) == 1:
            return f"{APP_ROOT}/azureml-models/{self.models[0].name}/{self.models[0].version}"
        return f"{APP_ROOT}/azureml-models"

    def dockerfile(self) -> str:
        """The Dockerfile text."""
        run = [
            PYTHON,
            "-m",
            "mlctl.serve",
            *(["--entry-script", f"{APP_ROOT}/{self.entry_script.name}"] if self.entry_script else []),
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
        ]
        probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}/', timeout=3)"
        check = json.dumps([PYTHON, "-c", probe])
        labels = " \\\n      ".join(f"{k}={json.dumps(v)}" for k, v in sorted(self.labels.items()))
        return "\n".join(
            [
                "# Written by mlctl: layers go from what changes least to what changes most.",
                f"FROM {self.base_image}",
                "USER root",  # base images may end as another user (mambaorg/micromamba does)
                "ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1",
                "COPY environment/ /opt/mlctl/environment/",
                "RUN sh /opt/mlctl/environment/install.sh",
                "COPY runtime/ /opt/mlctl/runtime/",
                *self._gpu_lines(),
                *self._extra_lines(),
                f"COPY app/ {APP_ROOT}/",
                *([f"COPY dependencies/ {APP_ROOT}/"] if self.dependencies else []),
                f"COPY azureml-models/ {APP_ROOT}/azureml-models/",
                f"ENV PYTHONPATH=/opt/mlctl/runtime AZUREML_MODEL_DIR={self.model_dir} {self._model_env()}",
                f"WORKDIR {APP_ROOT}",
                f"USER {USER}",
                f"EXPOSE {PORT}",
                f"HEALTHCHECK --interval=10s --timeout=5s --start-period=60s CMD {check}",
                f"CMD {json.dumps(run)}",
                f"LABEL {labels}",
                "",
            ]
        )

    def _model_env(self) -> str:
        """What the server serves, for any command that does not say (``python -m mlctl.serve`` reads it)."""
        if self.entry_script is not None:
            return f"AZUREML_ENTRY_SCRIPT={self.entry_script.name}"
        return f"MLCTL_MODEL_KIND={self.model_kind} MLCTL_MODEL_PATH={self.model_dir}/{self.models[0].source_name}"

    def _gpu_lines(self) -> list[str]:
        if not self.enable_gpu:
            return []
        cuda = f" CUDA_VERSION={self.cuda_version}" if self.cuda_version else ""
        return [f"ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility{cuda}"]

    def _extra_lines(self) -> list[str]:
        if self.extra_steps is None:
            return []
        return ["# extra steps (docker_file), run as root:", self.extra_steps.rstrip("\n"), "USER root"]


def plan_context(
    name: str,
    inference: InferenceConfig,
    models: tuple[ModelVersion, ...],
    *,
    base_image: str,
    description: str = "",
    warn: Callable[[str], None] = lambda _: None,
    extra: tuple[str, ...] = (),
    registry: Registry | None = None,
) -> ContextPlan:
    """The build context of image ``name`` (reads the spec's files; writes nothing). ``warn``
    gets notices about the environment (e.g. the Azure ML SDK packages left out); ``extra``:
    requirements the deployment adds (``mlctl.modeldata.requirements``); ``registry``: where a
    registered MLflow model's own environment files are read (``mlctl.mlflow_env``) when the
    spec gives none.

    Raises:
        SpecError: the environment is ``current`` (an image needs its own: give conda_file or requirements).
    """
    env = inference.environment
    kind = inference.model_kind
    if inference.entry_script is None:
        kind = model_kinds.kind_of_model(models)
        env = model_kinds.with_kind(env, kind, models, registry) if registry else env.replace(model_kind=kind)
    if env.kind == "current":
        raise SpecError(
            f"image {name!r}: an image needs its own environment, not the current interpreter",
            hint="give inference_config.conda_file or requirements",
        )
    runtime = (*environments.runtime_requirements(), *environments.edge_requirements())  # edge: any image
    requirements = (*environments.plan(env, Path("/nonexistent"), warn, extra=extra).requirements, *runtime)
    conda_file = None
    if env.kind == "conda" and env.file is not None:
        text = env.file.read_text(encoding="utf-8")
        conda_file = environments.conda_env_file(text, str(env.file), keep_azureml=env.keep_azureml_defaults)
    script = inference.entry_script
    app_files = tuple(sorted({script, *script.parent.glob("*.py")})) if script else ()
    labels = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.description": description,
        "org.opencontainers.image.vendor": "mlctl",
        "mlctl.version": __version__,
        "mlctl.image": name,
        **{f"mlctl.model.{i}": m.ref for i, m in enumerate(models)},
        **{f"mlctl.model.{i}.sha256": m.content_hash for i, m in enumerate(models)},
    }
    options = inference.image
    labels.update(_gpu_labels(options.enable_gpu, options.cuda_version))
    base = _from_registry(base_image, options.base_image_registry)
    return ContextPlan(
        name,
        base,
        script,
        app_files,
        requirements,
        models,
        labels,
        conda_file,
        runtime,
        extra_steps=_read_steps(options.docker_file),
        dependencies=_dependencies(name, options.dependencies, app_files),
        enable_gpu=options.enable_gpu,
        cuda_version=options.cuda_version,
        registry=options.base_image_registry,
        notes=_gpu_notes(base, options.enable_gpu),
        model_kind=kind,
    )


def _from_registry(base_image: str, registry: RegistryAuth | None) -> str:
    """``base_image`` as pulled from ``registry`` (prefixed with its address unless it has it)."""
    if registry is None or base_image.startswith(registry.address.rstrip("/") + "/"):
        return base_image
    return f"{registry.address.rstrip('/')}/{base_image}"


def _read_steps(docker_file: Path | None) -> str | None:
    if docker_file is None:
        return None
    text = docker_file.read_text(encoding="utf-8")
    if re.search(r"^\s*FROM\s", text, re.MULTILINE | re.IGNORECASE):
        raise SpecError(
            f"{docker_file}: docker_file holds extra Dockerfile steps, not a whole Dockerfile (it has FROM)",
            hint="build that Dockerfile as your base image and name it in base_image",
        )
    return text


def _dependencies(name: str, deps: tuple[Path, ...], app_files: tuple[Path, ...]) -> tuple[Path, ...]:
    taken = {p.name for p in app_files}
    for dep in deps:
        if dep.name in taken:
            raise SpecError(
                f"image {name!r}: dependency {dep} would overwrite {dep.name} in {APP_ROOT}",
                hint="rename it, or leave out a file the entry script's folder already brings",
            )
        taken.add(dep.name)
    return deps


def _gpu_labels(enable_gpu: bool, cuda_version: str | None) -> dict[str, str]:
    if not enable_gpu:
        return {}
    return {"mlctl.gpu": "true", **({"mlctl.cuda_version": cuda_version} if cuda_version else {})}


def _gpu_notes(base_image: str, enable_gpu: bool) -> tuple[str, ...]:
    if not enable_gpu or re.search(r"cuda|nvidia|gpu", base_image, re.IGNORECASE):
        return ()
    return (
        f"enable_gpu: the base image {base_image} is not a CUDA image (by its name) and mlctl installs "
        "no CUDA: frameworks whose wheels bring CUDA (PyTorch) can use the GPU, others need a "
        "base_image such as nvidia/cuda:12.4.1-runtime-ubuntu22.04 (with python3)",
    )


def fingerprint(plan: ContextPlan) -> dict[str, str]:
    """SHA-256 per component of what an image is built from (``apply`` rebuilds an Image document
    when one differs from the latest version's): ``base`` (base image and registry), ``environment``,
    ``source`` (the entry script's folder), ``dependencies``, ``dockerfile`` (the generated
    Dockerfile without its labels: extra steps, GPU settings, layout, mlctl version), ``models``
    (refs and content hashes) and ``metadata`` (the other labels)."""
    registry = plan.registry
    model_labels = {k for k in plan.labels if k.startswith("mlctl.model.")}
    parts = {
        "base": [plan.base_image, registry.address if registry else None, registry.username if registry else None],
        "environment": [list(plan.requirements), plan.conda_file, list(plan.runtime_requirements)],
        "source": files_digest(plan.app_files),
        "dependencies": files_digest(plan.dependencies),
        "dockerfile": plan.dockerfile().split("\nLABEL ")[0],
        "models": [(m.ref, m.content_hash) for m in plan.models],
        "metadata": {k: v for k, v in plan.labels.items() if k not in model_labels},
    }
    return {k: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest() for k, v in parts.items()}


def files_digest(paths: tuple[Path, ...]) -> str:
    """SHA-256 over the names and contents of ``paths`` (folders walked, in sorted order)."""
    digest = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            digest.update(str(path.relative_to(root.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def write_context(plan: ContextPlan, dest: Path, registry: Registry) -> Path:
    """Write the build context into ``dest`` (created; must be empty). Returns ``dest``.

    Raises:
        IntegrityError: a model blob is corrupt (checked while copying).
    """
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise SpecError(f"{dest} is not empty", hint="give an empty or new folder")
    (dest / "Dockerfile").write_text(plan.dockerfile())
    environment = dest / "environment"
    environment.mkdir()
    (environment / "install.sh").write_text(INSTALL_SCRIPT)
    (environment / "requirements.txt").write_text("".join(f"{r}\n" for r in plan.requirements))
    (environment / "runtime-requirements.txt").write_text("".join(f"{r}\n" for r in plan.runtime_requirements))
    if plan.conda_file is not None:
        (environment / "conda.yml").write_text(plan.conda_file)
    shutil.copytree(environments.install_runtime(registry.home), dest / "runtime")
    (dest / "app").mkdir()
    for source in plan.app_files:
        shutil.copy2(source, dest / "app" / source.name)
    if plan.dependencies:
        (dest / "dependencies").mkdir()
        for dep in plan.dependencies:
            copy = shutil.copytree if dep.is_dir() else shutil.copy2
            copy(dep, dest / "dependencies" / dep.name)
    models = dest / "azureml-models"
    models.mkdir()
    for model in plan.models:
        registry.materialize(model, models / model.name / str(model.version), link=False)
    return dest
