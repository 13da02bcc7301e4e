"""Frozen, typed records built from validated spec documents.

Everything past this module (registry, drivers, builders) sees only these records, never a raw
YAML dict. Relative paths are resolved against the spec file's folder, and every file a spec
names is checked to exist here, where the error can still point at its line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from mlctl import mlflow_env, model_kinds
from mlctl.spec.document import Document, display_path
from mlctl.spec.frozen import FrozenRecord

EnvironmentKind = Literal["current", "conda", "pip", "python_env", "none"]
EMPTY_MAP: Mapping[str, str] = MappingProxyType({})  # the default of every map field (immutable)
_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?::(?P<version>[1-9][0-9]*)|@latest)$")


def _frozen_map(value: Mapping[str, Any] | None) -> Mapping[str, str]:
    return MappingProxyType({str(k): _scalar_text(v) for k, v in (value or {}).items()})


def _scalar_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class ModelRef(FrozenRecord):
    """A registered model reference: ``NAME:VERSION`` or ``NAME@latest`` (``version`` None)."""

    name: str
    version: int | None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse ``NAME:VERSION``, ``NAME@latest`` or a bare ``NAME`` (meaning latest).

        Raises:
            ValueError: ``text`` is not a reference.
        """
        match = _REF.match(text)
        if match:
            version = match.group("version")
            return cls(match.group("name"), int(version) if version else None)
        if re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", text):
            return cls(text, None)
        raise ValueError(f"{text!r} is not a model reference (NAME:VERSION or NAME@latest)")

    def __str__(self) -> str:
        return f"{self.name}:{self.version}" if self.version else f"{self.name}@latest"


class ModelSpec(FrozenRecord):
    """A ``kind: Model`` document: a file or folder to register."""

    name: str
    path: Path
    description: str = ""
    tags: Mapping[str, str] = EMPTY_MAP
    properties: Mapping[str, str] = EMPTY_MAP


class EnvironmentSpec(FrozenRecord):
    """The Python environment a scoring server runs in.

    ``kind``: ``conda`` (pip-installable part of a conda file), ``pip`` (requirements file),
    ``current`` (the interpreter running mlctl) or ``none`` (an isolated environment with only the
    scoring runtime). ``file`` is the conda or requirements file, when there is one.
    ``keep_azureml_defaults``: install the Azure ML SDK packages the file lists (skipped by default).
    ``model_kind``: what the server runs (``mlctl.model_kinds``); ``onnx`` and ``mlflow`` add the
    packages their back-end needs (``mlflow`` also reads ``mlflow`` in the file as ``mlflow-skinny``).
    ``python_env``: an MLflow model's ``python_env.yaml`` (``file``), read already
    (``mlctl.mlflow_env``): ``requirements`` are its expanded pip requirements and ``python`` the
    Python version it was saved with (a different one is reported as a warning).
    """

    kind: EnvironmentKind
    file: Path | None = None
    keep_azureml_defaults: bool = False
    model_kind: str = "entry_script"
    requirements: tuple[str, ...] = ()
    python: str | None = None


class RegistryAuth(FrozenRecord):
    """A private registry the base image comes from (Azure ML's ``ContainerRegistry``): ``address``
    (``host[:port]``) and a username whose password is given BY REFERENCE only -- an environment
    variable (``password_env``) or a file (``password_file``), read when the image is built."""

    address: str
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None


class ImageOptions(FrozenRecord):
    """The rest of Azure ML v1's image configuration (``ContainerImage.image_configuration``,
    ``InferenceConfig``): ``docker_file`` (extra Dockerfile steps), ``dependencies`` (extra files
    or folders copied beside the entry script), ``enable_gpu``/``cuda_version`` and the base
    image's registry. ``given``: the keys the spec gave (a target that builds no image refuses them)."""

    base_image: str | None = None
    docker_file: Path | None = None
    dependencies: tuple[Path, ...] = ()
    enable_gpu: bool = False
    cuda_version: str | None = None
    base_image_registry: RegistryAuth | None = None
    given: frozenset[str] = frozenset()


IMAGE_KEYS = ("base_image", "docker_file", "dependencies", "enable_gpu", "cuda_version", "base_image_registry")


class InferenceConfig(FrozenRecord):
    """Entry script and environment, as Azure ML SDK v1 ``InferenceConfig`` (with its image options).

    ``entry_script`` is ``None`` for a model served with no code (``model_kind`` ``onnx`` or
    ``mlflow``, see ``mlctl.model_kinds``; ``auto`` when it is a registered model's, known at deploy).
    """

    entry_script: Path | None
    environment: EnvironmentSpec
    runtime: str = "python"
    image: ImageOptions = ImageOptions()
    model_kind: str = "entry_script"


class ModelDataStorage(FrozenRecord):
    """The storage account model data collection writes to, by reference: exactly one of an
    environment variable holding the connection string, a file holding it, or an account URL
    (``DefaultAzureCredential``). The secret itself is never part of a record."""

    connection_string_env: str | None = None
    connection_string_file: Path | None = None
    account_url: str | None = None
    api_version: str | None = None


class DeploymentConfig(FrozenRecord):
    """Deployment configuration. Units: ``cpu_cores`` in cores, ``memory_gb`` in GB, bytes for sizes,
    ``scoring_timeout_ms`` in milliseconds (Azure ML's name); concurrency and queue are per worker."""

    port: int = 8890
    workers: int = 2
    concurrency_per_worker: int = 1
    max_queue_per_worker: int = 64
    scoring_timeout_ms: int = 60000
    access_log: bool = False
    cors_origins: tuple[str, ...] = ()  # CORS off; ("*",): every origin
    preload: bool = False  # init() once before forking the workers
    batch_size: int = 0  # micro-batching off
    batch_wait_ms: float = 0.0
    ssl_cert_pem_file: Path | None = None
    ssl_key_pem_file: Path | None = None
    cpu_cores: float | None = None  # None: no limit (targets that need a size choose their own)
    memory_gb: float | None = None
    auth_enabled: bool = False
    max_request_bytes: int = 100 * 1024 * 1024
    environment_variables: Mapping[str, str] = EMPTY_MAP
    # Cloud targets (Azure ML's AksWebservice/AciWebservice.deploy_configuration names); None: the
    # target's own default (v1's defaults differ between ACI and AKS, so the records do not pick).
    gpu_cores: int | None = None
    cpu_cores_limit: float | None = None
    memory_gb_limit: float | None = None
    num_replicas: int | None = None
    autoscale_enabled: bool | None = None
    autoscale_min_replicas: int | None = None
    autoscale_max_replicas: int | None = None
    autoscale_refresh_seconds: int | None = None
    autoscale_target_utilization: int | None = None
    autoscale_metric: str | None = None  # kubernetes: "concurrency" or "cpu"
    token_auth_enabled: bool | None = None
    replica_max_concurrent_requests: int | None = None
    max_request_wait_time: int | None = None  # milliseconds
    period_seconds: int | None = None
    initial_delay_seconds: int | None = None
    timeout_seconds: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None
    namespace: str | None = None
    service_type: str | None = None
    collect_model_data: bool | None = None
    model_data_storage: ModelDataStorage | None = None  # None with collect_model_data: the local store
    enable_app_insights: bool | None = None
    location: str | None = None
    dns_name_label: str | None = None
    ssl_enabled: bool | None = None
    ssl_cname: str | None = None
    cmk_vault_base_url: str | None = None
    cmk_key_name: str | None = None
    cmk_key_version: str | None = None
    vnet_name: str | None = None
    subnet_name: str | None = None
    # the keys the spec gave explicitly (``batching`` for batch_size/batch_wait_ms): a target
    # refuses those it cannot honour (``mlctl.targets.check_supported``) rather than ignore them
    given: frozenset[str] = frozenset()


class ServiceTest(FrozenRecord):
    """The spec's ``test`` block: a request body and, optionally, the expected JSON answer."""

    body: bytes
    expected: Any = None
    has_expected: bool = False
    tolerance: float = 0.0


class ServiceSpec(FrozenRecord):
    """A ``kind: Service`` document. Exactly one of ``model_files``, ``models``, ``image`` is set."""

    name: str
    target: str | None
    spec_file: Path
    model_files: tuple[Path, ...] = ()
    models: tuple[ModelRef, ...] = ()
    image: str | None = None
    inference: InferenceConfig | None = None
    deployment: DeploymentConfig = DeploymentConfig()
    test: ServiceTest | None = None
    description: str = ""
    tags: Mapping[str, str] = EMPTY_MAP


class ImageSpec(FrozenRecord):
    """A ``kind: Image`` document (Azure ML SDK v1 image configuration)."""

    name: str
    models: tuple[ModelRef, ...]
    inference: InferenceConfig
    base_image: str | None = None  # None: the configured default (mlctl.config.base_image)
    description: str = ""
    tags: Mapping[str, str] = EMPTY_MAP


if TYPE_CHECKING:  # its records are built only for EdgeDeployment documents (`build` imports them then)
    from mlctl.edge.spec import EdgeDeploymentSpec

Record: TypeAlias = "ModelSpec | ImageSpec | ServiceSpec | EdgeDeploymentSpec"


def build(doc: Document) -> Record:
    """Turn a schema-valid document into its record, checking that named files exist.

    Raises:
        SpecError: a file the spec names does not exist (pointing at its line).
    """
    kind = doc.data["kind"]
    if kind == "Model":
        return _model(doc)
    if kind == "Image":
        return _image(doc)
    if kind == "EdgeDeployment":
        from mlctl.edge.spec import build_edge

        return build_edge(doc)
    return _service(doc)


def _existing(doc: Document, path: list[str | int], *, folder_ok: bool = True) -> Path:
    return doc.existing(path, folder_ok=folder_ok)


def _compiles(doc: Document, path: list[str | int], script: Path) -> None:
    """Raise a SpecError at the script's own FILE:LINE:COL when it is not valid Python.

    The script is compiled, never run (its imports may need the service's environment)."""
    try:
        compile(script.read_bytes(), str(script), "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"{display_path(script)}:{exc.lineno or 0}:{exc.offset or 0}"
        raise doc.error(
            path,
            f"the entry script does not compile: {where}: {type(exc).__name__}: {exc.msg}",
            hint=f"fix the syntax at {where}; `python -m py_compile {display_path(script)}` checks it",
        ) from None
    except (OSError, ValueError) as exc:  # unreadable, or NUL bytes in the source
        raise doc.error(path, f"the entry script cannot be compiled: {exc}") from None


def _model(doc: Document) -> ModelSpec:
    d = doc.data
    return ModelSpec(
        name=d["name"],
        path=_existing(doc, ["path"]),
        description=d.get("description", ""),
        tags=_frozen_map(d.get("tags")),
        properties=_frozen_map(d.get("properties")),
    )


def _inference(doc: Document, base: list[str | int], model_files: tuple[Path, ...] = ()) -> InferenceConfig:
    d = doc.data
    for part in base:
        d = d[part]
    entry = _existing(doc, [*base, "entry_script"], folder_ok=False) if "entry_script" in d else None
    model_kind = "entry_script" if entry is not None else _no_code_kind(doc, base, model_files)
    if entry is not None:
        _compiles(doc, [*base, "entry_script"], entry)
    choice = d.get("environment")
    if choice == "current":
        env = EnvironmentSpec("current")
    elif "conda_file" in d:
        env = EnvironmentSpec("conda", _existing(doc, [*base, "conda_file"], folder_ok=False))
    elif "requirements" in d:
        env = EnvironmentSpec("pip", _existing(doc, [*base, "requirements"], folder_ok=False))
    elif model_kind == "mlflow" and choice != "current":  # the model's own environment, isolated
        env = mlflow_env.environment(mlflow_env.in_folder(model_files[0]))
    elif model_kind == "auto" and choice != "current":  # read from the registered model at deploy
        env = EnvironmentSpec("none")
    else:  # no environment file: the running interpreter, unless isolation was asked for
        env = EnvironmentSpec("none" if choice == "isolated" else "current")
    env = env.replace(keep_azureml_defaults=bool(d.get("keep_azureml_defaults")), model_kind=model_kind)
    return InferenceConfig(
        entry_script=entry,
        environment=env,
        runtime=d.get("runtime", "python"),
        image=_image_options(doc, base),
        model_kind=model_kind,
    )


def _no_code_kind(doc: Document, base: list[str | int], model_files: tuple[Path, ...]) -> str:
    """The kind of a model served with no entry script; ``auto`` for a registered one (known at deploy).

    Raises:
        SpecError: the model files are not one MLflow model folder or ONNX file.
    """
    if "models" in doc.data and not model_files:
        return "auto"
    kind = model_kinds.kind_of_path(model_files[0]) if len(model_files) == 1 else None
    if kind is None:
        raise doc.error(
            base,
            "inference_config has no entry_script, so the model must be one MLflow model folder "
            "(with an MLmodel file) or one ONNX file (or a folder holding one)",
            hint="add entry_script: score.py, or list the MLflow folder or .onnx file alone in model_files",
        )
    return kind


def _image_options(doc: Document, base: list[str | int]) -> ImageOptions:
    d = doc.data
    for part in base:
        d = d[part]
    docker_file = _existing(doc, [*base, "docker_file"], folder_ok=False) if "docker_file" in d else None
    deps = tuple(_existing(doc, [*base, "dependencies", i]) for i in range(len(d.get("dependencies", []))))
    registry = d.get("base_image_registry")
    auth = None
    if registry is not None:
        password_file = None
        if "password_file" in registry:
            password_file = _existing(doc, [*base, "base_image_registry", "password_file"], folder_ok=False)
        auth = RegistryAuth(registry["address"], registry.get("username"), registry.get("password_env"), password_file)
    return ImageOptions(
        base_image=d.get("base_image"),
        docker_file=docker_file,
        dependencies=deps,
        enable_gpu=bool(d.get("enable_gpu", False)),
        cuda_version=None if d.get("cuda_version") is None else str(d["cuda_version"]),
        base_image_registry=auth,
        given=frozenset(k for k in IMAGE_KEYS if k in d),
    )


def _image(doc: Document) -> ImageSpec:
    d = doc.data
    return ImageSpec(
        name=d["name"],
        models=tuple(ModelRef.parse(m) for m in d["models"]),
        inference=_inference(doc, []),
        base_image=d.get("base_image"),
        description=d.get("description", ""),
        tags=_frozen_map(d.get("tags")),
    )


def _service(doc: Document) -> ServiceSpec:
    d = doc.data
    files = tuple(_existing(doc, ["model_files", i]) for i in range(len(d.get("model_files", []))))
    inference = _inference(doc, ["inference_config"], files) if "inference_config" in d else None
    return ServiceSpec(
        name=d["name"],
        target=d.get("target"),
        spec_file=doc.file,
        model_files=files,
        models=tuple(ModelRef.parse(m) for m in d.get("models", [])),
        image=d.get("image"),
        inference=inference,
        deployment=_deployment(doc),
        test=_test(doc),
        description=d.get("description", ""),
        tags=_frozen_map(d.get("tags")),
    )


def _deployment(doc: Document) -> DeploymentConfig:
    # the schema already checked every key and type: take what is given, defaults for the rest
    d = doc.data.get("deployment_config", {})
    given: dict[str, Any] = {name: d[name] for name in DeploymentConfig.field_names() if name in d}
    given["given"] = frozenset(d)
    given["environment_variables"] = _frozen_map(d.get("environment_variables"))
    given["cors_origins"] = tuple(d.get("cors_origins", ()))
    if "batching" in d:
        given.pop("batching", None)
        given["batch_size"] = d["batching"].get("max_batch_size", 32)
        given["batch_wait_ms"] = float(d["batching"].get("max_wait_ms", 0))
    for name in ("ssl_cert_pem_file", "ssl_key_pem_file"):
        if name in d:
            given[name] = _existing(doc, ["deployment_config", name], folder_ok=False)
    if "model_data_storage" in d:
        given["model_data_storage"] = _storage(doc, d["model_data_storage"])
    return DeploymentConfig(**given)


def _storage(doc: Document, d: Mapping[str, Any]) -> ModelDataStorage:
    path: list[str | int] = ["deployment_config", "model_data_storage", "connection_string_file"]
    return ModelDataStorage(
        connection_string_env=d.get("connection_string_env"),
        connection_string_file=_existing(doc, path, folder_ok=False) if "connection_string_file" in d else None,
        account_url=d.get("account_url"),
        api_version=d.get("api_version"),
    )


def _read(doc: Document, path: list[str | int]) -> bytes:
    file = _existing(doc, path, folder_ok=False)
    try:
        return file.read_bytes()
    except OSError as exc:
        raise doc.error(path, f"cannot read {file}: {exc.strerror or exc}") from None


def _test(doc: Document) -> ServiceTest | None:
    t = doc.data.get("test")
    if t is None:
        return None
    if "input_file" in t:
        body = _read(doc, ["test", "input_file"])
    elif "input" in t:
        body = json.dumps(t["input"]).encode()
    else:
        raise doc.error(["test"], "a test needs 'input' or 'input_file'")
    return ServiceTest(
        body=body, expected=t.get("expected"), has_expected="expected" in t, tolerance=float(t.get("tolerance", 0.0))
    )
