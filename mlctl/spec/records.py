"""Frozen, typed records built from validated spec documents.

Everything past this module (registry, drivers, builders) sees only these records, never a raw
YAML dict. Relative paths are resolved against the spec file's folder, and every file a spec
names is checked to exist here, where the error can still point at its line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from mlctl.spec.document import Document

EnvironmentKind = Literal["current", "conda", "pip", "none"]
_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?::(?P<version>[1-9][0-9]*)|@latest)$")


def _frozen_map(value: Mapping[str, Any] | None) -> Mapping[str, str]:
    return MappingProxyType({str(k): _scalar_text(v) for k, v in (value or {}).items()})


def _scalar_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class ModelRef:
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


@dataclass(frozen=True)
class ModelSpec:
    """A ``kind: Model`` document: a file or folder to register."""

    name: str
    path: Path
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    properties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class EnvironmentSpec:
    """The Python environment a scoring server runs in.

    ``kind``: ``conda`` (pip-installable part of a conda file), ``pip`` (requirements file),
    ``current`` (the interpreter running mlctl) or ``none`` (an isolated environment with only the
    scoring runtime). ``file`` is the conda or requirements file, when there is one.
    """

    kind: EnvironmentKind
    file: Path | None = None


@dataclass(frozen=True)
class InferenceConfig:
    """Entry script and environment, as Azure ML SDK v1 ``InferenceConfig``."""

    entry_script: Path
    environment: EnvironmentSpec
    runtime: str = "python"


@dataclass(frozen=True)
class DeploymentConfig:
    """Deployment configuration. Units: ``cpu_cores`` in cores, ``memory_gb`` in GB, bytes for sizes,
    ``scoring_timeout_ms`` in milliseconds (Azure ML's name); concurrency and queue are per worker."""

    port: int = 8890
    workers: int = 2
    concurrency_per_worker: int = 1
    max_queue_per_worker: int = 64
    scoring_timeout_ms: int = 60000
    access_log: bool = False
    batch_size: int = 0  # micro-batching off
    batch_wait_ms: float = 0.0
    ssl_cert_pem_file: Path | None = None
    ssl_key_pem_file: Path | None = None
    cpu_cores: float | None = None  # None: no limit (targets that need a size choose their own)
    memory_gb: float | None = None
    auth_enabled: bool = False
    max_request_bytes: int = 100 * 1024 * 1024
    environment_variables: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class ServiceTest:
    """The spec's ``test`` block: a request body and, optionally, the expected JSON answer."""

    body: bytes
    expected: Any = None
    has_expected: bool = False
    tolerance: float = 0.0


@dataclass(frozen=True)
class ServiceSpec:
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
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class ImageSpec:
    """A ``kind: Image`` document (Azure ML SDK v1 image configuration)."""

    name: str
    models: tuple[ModelRef, ...]
    inference: InferenceConfig
    base_image: str | None = None  # None: the configured default (mlctl.config.base_image)
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


from mlctl.edge.spec import EdgeDeploymentSpec, build_edge  # noqa: E402 - after the records it does not need

Record = ModelSpec | ImageSpec | ServiceSpec | EdgeDeploymentSpec


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
        return build_edge(doc)
    return _service(doc)


def _existing(doc: Document, path: list[str | int], *, folder_ok: bool = True) -> Path:
    value = doc.data
    for part in path:
        value = value[part]
    resolved = doc.resolve(value)
    if not resolved.exists():
        raise doc.error(path, f"file not found: {resolved}", hint="paths are relative to the spec file")
    if resolved.is_dir() and not folder_ok:
        raise doc.error(path, f"expected a file, found a folder: {resolved}")
    return resolved


def _model(doc: Document) -> ModelSpec:
    d = doc.data
    return ModelSpec(
        name=d["name"],
        path=_existing(doc, ["path"]),
        description=d.get("description", ""),
        tags=_frozen_map(d.get("tags")),
        properties=_frozen_map(d.get("properties")),
    )


def _inference(doc: Document, base: list[str | int]) -> InferenceConfig:
    d = doc.data
    for part in base:
        d = d[part]
    entry = _existing(doc, [*base, "entry_script"], folder_ok=False)
    choice = d.get("environment")
    if choice == "current":
        env = EnvironmentSpec("current")
    elif "conda_file" in d:
        env = EnvironmentSpec("conda", _existing(doc, [*base, "conda_file"], folder_ok=False))
    elif "requirements" in d:
        env = EnvironmentSpec("pip", _existing(doc, [*base, "requirements"], folder_ok=False))
    else:  # no environment file: the running interpreter, unless isolation was asked for
        env = EnvironmentSpec("none" if choice == "isolated" else "current")
    return InferenceConfig(entry_script=entry, environment=env, runtime=d.get("runtime", "python"))


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
    return ServiceSpec(
        name=d["name"],
        target=d.get("target"),
        spec_file=doc.file,
        model_files=files,
        models=tuple(ModelRef.parse(m) for m in d.get("models", [])),
        image=d.get("image"),
        inference=_inference(doc, ["inference_config"]) if "inference_config" in d else None,
        deployment=_deployment(doc),
        test=_test(doc),
        description=d.get("description", ""),
        tags=_frozen_map(d.get("tags")),
    )


def _deployment(doc: Document) -> DeploymentConfig:
    # the schema already checked every key and type: take what is given, defaults for the rest
    d = doc.data.get("deployment_config", {})
    given = {f.name: d[f.name] for f in fields(DeploymentConfig) if f.name in d}
    given["environment_variables"] = _frozen_map(d.get("environment_variables"))
    if "batching" in d:
        given.pop("batching", None)
        given["batch_size"] = d["batching"].get("max_batch_size", 32)
        given["batch_wait_ms"] = float(d["batching"].get("max_wait_ms", 0))
    for name in ("ssl_cert_pem_file", "ssl_key_pem_file"):
        if name in d:
            given[name] = _existing(doc, ["deployment_config", name], folder_ok=False)
    return DeploymentConfig(**given)


def _test(doc: Document) -> ServiceTest | None:
    t = doc.data.get("test")
    if t is None:
        return None
    if "input_file" in t:
        body = _existing(doc, ["test", "input_file"], folder_ok=False).read_bytes()
    elif "input" in t:
        body = json.dumps(t["input"]).encode()
    else:
        raise doc.error(["test"], "a test needs 'input' or 'input_file'")
    return ServiceTest(
        body=body, expected=t.get("expected"), has_expected="expected" in t, tolerance=float(t.get("tolerance", 0.0))
    )
