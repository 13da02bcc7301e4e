"""Service operations shared by the CLI verbs: resolving a spec's models, finding a service's
target, and testing a web service against the spec's expected output."""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlctl.errors import MlctlError, NotFoundError, ServiceTestFailed
from mlctl.output import Reporter
from mlctl.registry import ModelVersion, Registry
from mlctl.spec.records import ImageOptions, ServiceSpec, ServiceTest
from mlctl.target_kinds import TARGETS
from mlctl.targets import Deployment, ServiceState, TargetDriver, check_supported, driver_of_kind


def resolve_models(spec: ServiceSpec, registry: Registry, reporter: Reporter) -> tuple[ModelVersion, ...]:
    """The model versions a service uses; model files are registered implicitly.

    A model file registers as the model named after its stem; when its content equals that
    model's latest version, that version is reused instead of adding one.

    Raises:
        NotFoundError: a registered model or version does not exist.
    """
    if spec.models:
        return tuple(registry.get(ref) for ref in spec.models)
    models = []
    for path in spec.model_files:
        model = registry.register(
            implicit_model_name(path), path, reuse_identical=True, description=f"registered by service {spec.name}"
        )
        reporter.info(f"model {model.ref} <- {path.name}")
        models.append(model)
    return tuple(models)


def implicit_model_name(path: Path) -> str:
    """The model name for a model file: its stem, with characters outside ``[A-Za-z0-9_.-]`` as ``-``."""
    stem = path.stem if path.is_file() else path.name
    return re.sub(r"[^A-Za-z0-9_.-]", "-", stem).strip("-._") or "model"


def deployment_for(spec: ServiceSpec, registry: Registry, reporter: Reporter, driver: TargetDriver) -> Deployment:
    """Resolve a spec into what ``driver`` deploys (registering model files), with its fingerprint.

    Raises:
        TargetError: the spec gives deployment configuration keys the target does not have
            (checked before anything is registered).
        NotFoundError: a registered model or version does not exist.
    """
    check_supported(driver.kind, spec, reporter.warn)
    models = resolve_models(spec, registry, reporter)
    deployment = Deployment(spec=spec, models=models)
    return Deployment(spec=spec, models=models, fingerprint=fingerprint(deployment, driver))


def deploy(
    driver: TargetDriver,
    deployment: Deployment,
    reporter: Reporter,
    registry: Registry,
    *,
    wait: bool,
    timeout_s: float,
) -> ServiceState:
    """``driver.deploy``, then the spec's fields stored with the record (for ``diff``).

    Raises what ``driver.deploy`` raises."""
    state = driver.deploy(deployment, reporter, wait=wait, timeout_s=timeout_s)
    remember(registry, deployment)
    return state


def update(
    driver: TargetDriver,
    deployment: Deployment,
    reporter: Reporter,
    registry: Registry,
    *,
    wait: bool,
    timeout_s: float,
) -> ServiceState:
    """``driver.update``, unless only the spec's test changed: the test is not part of what runs,
    so it is recorded without touching the running server.

    When the update fails and the previous version still answers, the error says so and gives
    its scoring URI (every driver keeps the old version serving until the new one is ready).

    Raises what ``driver.update`` raises."""
    name = deployment.spec.name
    try:
        current = driver.status(name)
    except NotFoundError:
        current = None
    if current is not None and only_the_test_changed(deployment, current, registry):
        reporter.info(f"only the test of service {name} changed: recorded, the service keeps running")
        remember(registry, deployment)
        return current
    try:
        state = driver.update(deployment, reporter, wait=wait, timeout_s=timeout_s)
    except MlctlError as exc:
        if not isinstance(exc, NotFoundError):
            _say_previous_serves(exc, driver, name)
        raise
    remember(registry, deployment)
    return state


def only_the_test_changed(deployment: Deployment, current: ServiceState, registry: Registry) -> bool:
    """Whether what runs is unchanged and the spec's test differs from the recorded one (an
    unchanged spec still updates: ``service update`` is also how a service is redeployed)."""
    from mlctl.targets import test_record

    if changed_components(deployment.fingerprint, current.fingerprint):
        return False
    record = registry.service(deployment.spec.name) or {}
    return bool(record.get("test") != json.loads(json.dumps(test_record(deployment.spec))))


def remember(registry: Registry, deployment: Deployment) -> None:
    """Store the spec's test (read by ``service test NAME``) and fields (``diff``) with its record."""
    from mlctl.changes import spec_fields
    from mlctl.targets import test_record

    spec = deployment.spec
    registry.annotate_service(spec.name, test=test_record(spec), spec_fields=spec_fields(spec, deployment.models))


def changed_components(wanted: dict[str, str], current: dict[str, str]) -> tuple[str, ...]:
    """The fingerprint components that differ, sorted (``test`` is not one: older records have it)."""
    return tuple(sorted(k for k in {*wanted, *current} - {"test"} if wanted.get(k) != current.get(k)))


def _say_previous_serves(exc: MlctlError, driver: TargetDriver, name: str) -> None:
    try:
        state = driver.status(name)
    except MlctlError:
        return
    if state.state != "running":
        return
    exc.message += f"; the previous version is still serving at {state.scoring_uri}"
    exc.args = (exc.message,)


def fingerprint(deployment: Deployment, driver: TargetDriver) -> dict[str, str]:
    """SHA-256 per component of what a deployment runs; a differing component is a reason to update.

    Components: ``target`` (the driver's rendered plan), ``models`` (refs and content hashes),
    ``source`` (the ``*.py`` files beside the entry script), ``environment`` (the conda or
    requirements file), ``metadata`` (description, tags) and, when the inference
    configuration has image options, ``image`` (their values, the docker_file's and the
    dependencies' contents). Not the ``test``: it is not part of what runs (``update`` records
    a changed test without restarting the service).
    """
    spec = deployment.spec
    # Models are their own component: render with their versions neutralised, so a new model
    # version does not also show up as a changed target plan (through its folder's path).
    neutral = tuple(replace(m, version=0, content_hash="") for m in deployment.models)
    rendered = {k: v for k, v in driver.render(replace(deployment, models=neutral)).items() if k != "models"}
    env_file = spec.inference.environment.file if spec.inference else None
    parts: dict[str, Any] = {
        "target": {"kind": driver.kind, "plan": rendered},
        "models": [(m.ref, m.content_hash) for m in deployment.models],
        "source": _source_digest(spec.inference.entry_script)
        if spec.inference and spec.inference.entry_script
        else spec.image,
        "environment": hashlib.sha256(env_file.read_bytes()).hexdigest() if env_file else None,
        "metadata": [spec.description, dict(spec.tags)],
    }
    if spec.inference is not None and spec.inference.image.given:  # absent otherwise: older prints stay equal
        parts["image"] = _image_inputs(spec.inference.image)
    return {
        k: hashlib.sha256(json.dumps(v, sort_keys=True, default=str).encode()).hexdigest() for k, v in parts.items()
    }


def _image_inputs(options: ImageOptions) -> list[Any]:
    from mlctl.images import files_digest

    registry = options.base_image_registry
    return [
        options.base_image,
        files_digest((options.docker_file,)) if options.docker_file else None,
        files_digest(options.dependencies),
        options.enable_gpu,
        options.cuda_version,
        [registry.address, registry.username, registry.password_env, str(registry.password_file)] if registry else None,
    ]


def _source_digest(entry_script: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(entry_script.parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def driver_of_service(name: str, registry: Registry, home: Path) -> TargetDriver:
    """The driver of the target that runs service ``name``.

    Raises:
        NotFoundError: no such service.
    """
    record = registry.service(name)
    if record is None:
        raise NotFoundError(f"service {name!r} does not exist", hint="`mlctl service list` shows services")
    return driver_of_kind(record["target"], registry=registry, home=home, options=record.get("target_options", {}))


def all_drivers(registry: Registry, home: Path) -> list[TargetDriver]:
    """One driver per known target kind."""
    return [driver_of_kind(kind, registry=registry, home=home) for kind in TARGETS]


def run_test(
    name: str,
    scoring_uri: str,
    case: ServiceTest,
    *,
    timeout_s: float = 60.0,
    key: str | None = None,
    tls_cert: str | None = None,
) -> dict[str, Any]:
    """POST ``case.body`` to the scoring URI and compare the answer.

    Returns the result document (``passed``: True/False, or None with no expected output).
    Raises ServiceTestFailed (carrying the document as ``result``) when the answer is not 2xx
    or differs from the expected output beyond the tolerance.

    A body that is an Open Inference Protocol inference request (``inputs``: tensors with
    ``name`` and ``datatype``) goes to ``/v2/models/<name>/infer`` beside the scoring URI; its
    prediction is the answer's output data (one output: its data; several: by output name).
    """
    oip = is_oip_request(case.body)
    if oip:
        scoring_uri = scoring_uri.rsplit("/score", 1)[0] + f"/v2/models/{name}/infer"
    request_id = str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "x-request-id": request_id}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(scoring_uri, data=case.body, method="POST", headers=headers)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=_tls_context(tls_cert)) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            status, raw = exc.code, exc.read()
    except OSError as exc:
        raise ServiceTestFailed(
            f"service {name!r} did not answer at {scoring_uri}: {exc}",
            hint=f"check it with `mlctl service show {name}` and `mlctl service logs {name}`",
        ) from None
    latency_ms = (time.perf_counter() - started) * 1000
    answer = _decode(raw)
    if oip and 200 <= status < 300:
        answer = oip_prediction(answer)
    doc: dict[str, Any] = {
        "service": name,
        "scoring_uri": scoring_uri,
        "status_code": status,
        "request_id": request_id,
        "latency_ms": round(latency_ms, 2),
        "prediction": answer,
    }
    problems = [] if 200 <= status < 300 else [f"HTTP {status}: {json.dumps(answer)[:300]}"]
    if case.has_expected and not problems:
        problems = compare(case.expected, answer, case.tolerance)
        doc.update(expected=case.expected, tolerance=case.tolerance)
    doc["passed"] = not problems if (case.has_expected or problems) else None
    if problems:
        error = ServiceTestFailed(
            f"service {name!r} failed its test", details=problems[:20], hint=f"see `mlctl service logs {name}`"
        )
        error.result = doc  # type: ignore[attr-defined]
        raise error
    return doc


def is_oip_request(body: bytes) -> bool:
    """Whether ``body`` is an Open Inference Protocol inference request (a list of named, typed tensors)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    return (
        isinstance(inputs, list)
        and bool(inputs)
        and all(isinstance(t, dict) and "name" in t and "datatype" in t for t in inputs)
    )


def oip_prediction(answer: Any) -> Any:
    """The outputs' data of an OIP inference response: one output's data, or a dict by output name."""
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(outputs, list):
        return answer
    data = {o.get("name"): o.get("data") for o in outputs if isinstance(o, dict)}
    return next(iter(data.values())) if len(data) == 1 else data


def _tls_context(cert: str | None) -> ssl.SSLContext | None:
    """The system's trust store, plus the service's own certificate (so a self-signed one works)."""
    if cert is None:
        return None
    context = ssl.create_default_context()
    context.load_verify_locations(cert)
    return context


def compare(expected: Any, actual: Any, tolerance: float, path: str = "$") -> list[str]:
    """Differences between two JSON values; numbers may differ by ``tolerance`` (absolute)."""
    if _is_number(expected) and _is_number(actual):
        diff = abs(float(expected) - float(actual))
        return [] if diff <= tolerance else [f"{path}: expected {expected}, got {actual} (|diff| {diff:.3g})"]
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: expected {len(expected)} items, got {len(actual)}"]
        return [
            p
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for p in compare(e, a, tolerance, f"{path}[{i}]")
        ]
    if isinstance(expected, dict) and isinstance(actual, dict):
        if set(expected) != set(actual):
            return [f"{path}: expected keys {sorted(expected)}, got {sorted(actual)}"]
        return [p for k in expected for p in compare(expected[k], actual[k], tolerance, f"{path}.{k}")]
    return [] if expected == actual else [f"{path}: expected {json.dumps(expected)}, got {json.dumps(actual)}"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
