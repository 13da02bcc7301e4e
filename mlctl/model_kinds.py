"""Model kinds: what a web service's scoring server runs, and how it is recognised.

* ``entry_script``: an Azure ML entry script (``init()``/``run()``), given in the spec.
* ``mlflow``: an MLflow model folder (it holds an ``MLmodel`` file), served with no entry script
  through ``mlflow.pyfunc``; its environment comes from the folder's ``python_env.yaml``,
  ``requirements.txt`` or ``conda.yaml``, as MLflow writes them (``mlctl.mlflow_env``).
* ``onnx``: a ``.onnx`` file, or a folder holding exactly one, served through ONNX Runtime.

The server side of each kind is ``mlctl.serve.backends``; ``docs/model-kinds.md`` says what each
accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from mlctl.errors import SpecError

if TYPE_CHECKING:
    from mlctl.registry import ModelVersion, Registry
    from mlctl.spec.records import EnvironmentSpec, ServiceSpec

NO_CODE = ("mlflow", "onnx")
# packages the server's back-end needs for each kind, beside the model's own requirements
PACKAGES = {"mlflow": ("mlflow-skinny", "pandas", "numpy"), "onnx": ("onnxruntime", "numpy")}


def kind_of_files(name: str, rels: Iterable[str], *, is_folder: bool) -> str | None:
    """The no-code kind of a model whose file or folder is ``name`` with files ``rels`` (POSIX, relative).

    Returns ``mlflow``, ``onnx``, or ``None`` (it needs an entry script).
    """
    if not is_folder:
        return "onnx" if name.endswith(".onnx") else None
    rels = list(rels)
    if "MLmodel" in rels:
        return "mlflow"
    return "onnx" if sum(1 for rel in rels if rel.endswith(".onnx")) == 1 else None


def kind_of_path(path: Path) -> str | None:
    """``kind_of_files`` of a file or folder on disk."""
    if not path.is_dir():
        return kind_of_files(path.name, (), is_folder=False)
    rels = (str(PurePosixPath(*p.relative_to(path).parts)) for p in path.rglob("*") if p.is_file())
    return kind_of_files(path.name, rels, is_folder=True)


def resolve(spec: ServiceSpec, models: tuple[ModelVersion, ...]) -> str:
    """The kind of the spec's model (``auto``, for a registered model, resolved from its files).

    Raises:
        SpecError: no entry script, and the model is not one MLflow folder or ONNX file.
    """
    assert spec.inference is not None
    kind = spec.inference.model_kind
    return kind_of_model(models) if kind == "auto" else kind


def kind_of_model(models: tuple[ModelVersion, ...]) -> str:
    """The no-code kind of a service's models (there must be one: an MLflow folder or an ONNX file).

    Raises:
        SpecError: they are not one such model.
    """
    kind = None
    if len(models) == 1:
        rels = (rel for rel, _h, _s in models[0].files)
        kind = kind_of_files(models[0].source_name, rels, is_folder=models[0].is_folder)
    if kind is None:
        raise SpecError(
            "no entry_script is given, so the model must be one MLflow model folder (with an MLmodel file) "
            f"or one ONNX file (got {', '.join(m.ref for m in models) or 'no model'})",
            hint="add an entry_script (a file with init() and run(raw_data)), or deploy one MLflow model or ONNX file",
        )
    return kind


def environment(spec: ServiceSpec, models: tuple[ModelVersion, ...], registry: Registry) -> EnvironmentSpec:
    """The spec's environment; for a registered MLflow model with none given, the model's own."""
    assert spec.inference is not None
    env = spec.inference.environment
    if env.model_kind != "auto":
        return env
    kind = resolve(spec, models)
    return with_kind(env, kind, models, registry)


def with_kind(env: EnvironmentSpec, kind: str, models: tuple[ModelVersion, ...], registry: Registry) -> EnvironmentSpec:
    """``env`` for a registered model of ``kind``; when no environment was given (``none``) and it is
    an MLflow model, the model's own (``mlctl.mlflow_env``, read from the stored files).

    Raises:
        SpecError: the model's environment files cannot be read.
    """
    from mlctl import mlflow_env

    if kind == "mlflow" and env.kind == "none" and env.file is None:
        own = mlflow_env.environment(lambda rel: registry.stored_file(models[0], rel))
        return own.replace(keep_azureml_defaults=env.keep_azureml_defaults)
    return env.replace(model_kind=kind)
