"""Container images of web services: the build context, rendered purely, then written to disk.

Inside the image (Azure ML's layout; its containers listen on 5001)::

    /var/azureml-app/                        the entry script and the *.py files beside it
    /var/azureml-app/azureml-models/NAME/VERSION/<file or folder>
    /opt/mlctl/venv/                         the Python environment (pip requirements)
    /opt/mlctl/runtime/mlctl/serve/          the scoring runtime (no CLI dependency)

Layers go from what changes least to what changes most: base image, environment (cached by the
requirements' content), runtime, entry script, models; so a new model version rebuilds only the
last layers. The image runs as a non-root user, exposes the port, has a HEALTHCHECK on the
liveness route, and carries OCI labels plus one label per model (``NAME:VERSION`` and its
content hash).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlctl import __version__, environments
from mlctl.errors import SpecError
from mlctl.registry import ModelVersion, Registry
from mlctl.spec.records import InferenceConfig

APP_ROOT = "/var/azureml-app"
PORT = 5001
USER = "1000:1000"  # numeric: works with base images that have no user database entry for it


@dataclass(frozen=True)
class ContextPlan:
    """Everything an image build context holds, before anything is written."""

    name: str
    base_image: str
    entry_script: Path
    app_files: tuple[Path, ...]
    requirements: tuple[str, ...]
    models: tuple[ModelVersion, ...]
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def model_dir(self) -> str:
        """AZUREML_MODEL_DIR in the image (one model: its version folder; several: their root)."""
        if len(self.models) == 1:
            return f"{APP_ROOT}/azureml-models/{self.models[0].name}/{self.models[0].version}"
        return f"{APP_ROOT}/azureml-models"

    def dockerfile(self) -> str:
        """The Dockerfile text."""
        run = [
            "/opt/mlctl/venv/bin/python",
            "-m",
            "mlctl.serve",
            "--entry-script",
            f"{APP_ROOT}/{self.entry_script.name}",
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
        ]
        probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}/', timeout=3)"
        check = json.dumps(["/opt/mlctl/venv/bin/python", "-c", probe])
        labels = " \\\n      ".join(f"{k}={json.dumps(v)}" for k, v in sorted(self.labels.items()))
        return "\n".join(
            [
                "# Written by mlctl: layers go from what changes least to what changes most.",
                f"FROM {self.base_image}",
                "ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1",
                "COPY requirements.txt /opt/mlctl/requirements.txt",
                "RUN python3 -m venv /opt/mlctl/venv && /opt/mlctl/venv/bin/pip install -r /opt/mlctl/requirements.txt",
                "COPY runtime/ /opt/mlctl/runtime/",
                f"COPY app/ {APP_ROOT}/",
                f"COPY azureml-models/ {APP_ROOT}/azureml-models/",
                f"ENV PYTHONPATH=/opt/mlctl/runtime AZUREML_MODEL_DIR={self.model_dir} "
                f"AZUREML_ENTRY_SCRIPT={self.entry_script.name}",
                f"WORKDIR {APP_ROOT}",
                f"USER {USER}",
                f"EXPOSE {PORT}",
                f"HEALTHCHECK --interval=10s --timeout=5s --start-period=60s CMD {check}",
                f"CMD {json.dumps(run)}",
                f"LABEL {labels}",
                "",
            ]
        )


def plan_context(
    name: str,
    inference: InferenceConfig,
    models: tuple[ModelVersion, ...],
    *,
    base_image: str,
    description: str = "",
    warn: Callable[[str], None] = lambda _: None,
) -> ContextPlan:
    """The build context of image ``name`` (reads the spec's files; writes nothing).

    Raises:
        SpecError: the environment is ``current`` (an image needs its own: give conda_file or requirements).
    """
    env = inference.environment
    if env.kind == "current":
        raise SpecError(
            f"image {name!r}: an image needs its own environment, not the current interpreter",
            hint="give inference_config.conda_file or requirements",
        )
    requirements = (
        *environments.plan(env, Path("/nonexistent"), warn).requirements,
        *environments.runtime_requirements(),
    )
    app_files = tuple(sorted({inference.entry_script, *inference.entry_script.parent.glob("*.py")}))
    labels = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.description": description,
        "org.opencontainers.image.vendor": "mlctl",
        "mlctl.version": __version__,
        "mlctl.image": name,
        **{f"mlctl.model.{i}": m.ref for i, m in enumerate(models)},
        **{f"mlctl.model.{i}.sha256": m.content_hash for i, m in enumerate(models)},
    }
    return ContextPlan(name, base_image, inference.entry_script, app_files, requirements, models, labels)


def write_context(plan: ContextPlan, dest: Path, registry: Registry) -> Path:
    """Write the build context into ``dest`` (created; must be empty). Returns ``dest``.

    Raises:
        IntegrityError: a model blob is corrupt (checked while copying).
    """
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise SpecError(f"{dest} is not empty", hint="give an empty or new folder")
    (dest / "Dockerfile").write_text(plan.dockerfile())
    (dest / "requirements.txt").write_text("".join(f"{r}\n" for r in plan.requirements))
    shutil.copytree(environments.install_runtime(registry.home), dest / "runtime")
    (dest / "app").mkdir()
    for source in plan.app_files:
        shutil.copy2(source, dest / "app" / source.name)
    models = dest / "azureml-models"
    models.mkdir()
    for model in plan.models:
        registry.materialize(model, models / model.name / str(model.version), link=False)
    return dest
