"""The docker target's container, as data: the ``containers.run`` keyword arguments a Service
becomes (pure, so ``render`` and the fingerprint are the same at deploy time and at a later
``diff``), the ServiceState a running container's labels give back, and the model data flush
``service delete`` asks of it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mlctl import images, keys, modeldata
from mlctl.builder import docker_client
from mlctl.output import Reporter
from mlctl.spec.records import ServiceSpec
from mlctl.targets import TLS_FILES, ServiceState, server_options, tls_paths, uses_tls
from mlctl.targets.process.lifecycle import ready, uri

HOST = "127.0.0.1"
LABEL = "mlctl.service"
MOUNT = "/run/mlctl"
OLD_MOUNT = "/run/mlctl-old"
SECRETS_MOUNT = "/run/mlctl-secrets"
MODELDATA_MOUNT = "/var/mlctl/modeldata"  # the local store (MLCTL_HOME/modeldata) inside the container
IMAGE_USER = (1000, 1000)  # mlctl.images.USER


def container_config(
    spec: ServiceSpec,
    image: str,
    *,
    host: str,
    entry: str,
    deploy_dir: Path,
    secrets_dir: Path,
    old: Any,
    name: str,
    created: str,
    models: tuple[tuple[str, int], ...] = (),
    modeldata_dir: Path | None = None,
) -> dict[str, Any]:
    """The container's configuration (docker SDK ``containers.run`` keyword arguments).

    Deterministic for a given spec: ``name`` and ``created`` (the parts that differ per
    deploy) come from the caller, so ``render`` -- and the fingerprint built on it -- is the
    same for the same spec at deploy time and at any later ``diff``.

    Model data collection (``collect_model_data``): the connection string is a file of
    ``secrets_dir`` mounted read-only (never an environment variable, label or argument); without
    an account the local store ``modeldata_dir`` is mounted at ``MODELDATA_MOUNT``."""
    d = spec.deployment
    command = [
        images.PYTHON,
        "-m",
        "mlctl.serve",
        *(["--entry-script", f"{images.APP_ROOT}/{entry}"] if entry else []),  # "": the image's model kind
        "--model-name",
        spec.name,
        *server_options(
            d,
            host=host,
            status_file=f"{MOUNT}/status.json",
            control_socket=f"{MOUNT}/control.sock",
            keys_file=f"{SECRETS_MOUNT}/keys.json" if d.auth_enabled else None,
            tls=tls_paths(spec, MOUNT),
        ),
    ]
    volumes = {str(deploy_dir): {"bind": MOUNT, "mode": "rw"}}
    collecting = modeldata.enabled(spec)
    storage = d.model_data_storage if collecting else None
    if d.auth_enabled or (storage is not None and not storage.account_url):
        volumes[str(secrets_dir)] = {"bind": SECRETS_MOUNT, "mode": "ro"}
    if collecting and storage is None and modeldata_dir is not None:
        volumes[str(modeldata_dir)] = {"bind": MODELDATA_MOUNT, "mode": "rw"}
    collection_env = modeldata.server_env(
        spec, models, local=MODELDATA_MOUNT, secret_file=f"{SECRETS_MOUNT}/{modeldata.SECRET_NAME}"
    )
    if old is not None:
        command += ["--inherit-from", f"{OLD_MOUNT}/control.sock"]
        volumes[old.labels["mlctl.deploy_dir"]] = {"bind": OLD_MOUNT, "mode": "rw"}
    probe = (  # the liveness route; our own certificate needs no check from inside the container
        "import ssl, urllib.request; urllib.request.urlopen("
        f"'{'https' if uses_tls(spec) else 'http'}://{_reachable(host)}:{d.port}/', timeout=3, "
        "context=ssl._create_unverified_context())"
    )
    healthcheck = {
        "test": ["CMD", images.PYTHON, "-c", probe],
        "interval": 10 * 10**9,
        "timeout": 5 * 10**9,
        "start_period": 60 * 10**9,
    }
    return {
        "command": command,
        "network_mode": "host",
        "volumes": volumes,
        "healthcheck": healthcheck,
        "environment": {**d.environment_variables, **collection_env},
        **({"nano_cpus": int(d.cpu_cores * 1e9)} if d.cpu_cores else {}),
        **({"mem_limit": f"{max(6, int(d.memory_gb * 1024))}m"} if d.memory_gb else {}),
        "restart_policy": {"Name": "unless-stopped"},
        **({} if os.geteuid() == 0 else {"user": f"{os.getuid()}:{os.getgid()}"}),
        **({"device_requests": [_gpu_request(d.gpu_cores)]} if d.gpu_cores else {}),
        "name": name,
        "labels": {
            LABEL: spec.name,
            "mlctl.port": str(d.port),
            "mlctl.auth": "true" if d.auth_enabled else "false",
            "mlctl.tls": "true" if uses_tls(spec) else "false",
            "mlctl.host": host,
            "mlctl.created": created,
        },
    }


def container_state(container: Any, kind: str, secrets_dir: Path) -> ServiceState:
    """The service's state from a container's ``mlctl.*`` labels and a readiness probe."""
    labels = container.labels
    host, port = labels.get("mlctl.host", HOST), int(labels.get("mlctl.port", 0))
    secrets = secrets_dir
    auth, tls = labels.get("mlctl.auth") == "true", labels.get("mlctl.tls") == "true"
    deploy_dir = Path(labels.get("mlctl.deploy_dir", "/nonexistent"))
    record = {
        "status_file": str(deploy_dir / "status.json"),
        "tls_cert": str(deploy_dir / TLS_FILES[0]) if tls else None,
    }
    running = container.status == "running"
    state = "failed" if not running else ("running" if ready(record, timeout_s=1.0) else "unhealthy")
    return ServiceState(
        name=labels[LABEL],
        target=kind,
        state=state,
        scoring_uri=uri(host, port, tls=tls),
        swagger_uri=uri(host, port, "/swagger.json", tls=tls),
        models=tuple(filter(None, labels.get("mlctl.models", "").split(","))),
        environment=labels.get("mlctl.image", ""),
        created_at=labels.get("mlctl.created", ""),
        updated_at=labels.get("mlctl.created", ""),
        details={
            "container": container.name,
            "image": labels.get("mlctl.image"),
            "port": port,
            "auth_enabled": auth,
            "keys_file": str(secrets / "keys.json") if auth else None,
            "tls_cert": record["tls_cert"],
        },
        fingerprint=json.loads(labels.get("mlctl.fingerprint", "{}")),
    )


def collects(container: Any) -> bool:
    """Whether ``container`` runs with model data collection on (its environment says so)."""
    env = (container.attrs.get("Config") or {}).get("Env") or []
    return "AML_MODEL_DC_STORAGE_ENABLED=true" in env


def flush_model_data(container: Any, secrets_dir: Path, reporter: Reporter) -> None:
    """Ask the server in ``container`` to write the model data rows its workers buffer
    (``mlctl.modeldata.flush``), before ``service delete`` stops it: ``--no-wait`` removes the
    container at once (SIGKILL), so the server's graceful-stop flush cannot run. Only for a
    running container that collects; with ``auth_enabled`` the keys of ``secrets_dir`` are sent
    (never shown). A failure (no answer, an image without the route, rows left) is a warning: the
    caller goes on. Bounded: about 15 s."""
    if container.status != "running" or not collects(container):
        return
    labels = container.labels
    tls = labels.get("mlctl.tls") == "true"
    base = uri(labels.get("mlctl.host", HOST), int(labels.get("mlctl.port", 0)), "", tls=tls)
    auth = labels.get("mlctl.auth") == "true"
    cert = Path(labels.get("mlctl.deploy_dir", "/nonexistent")) / TLS_FILES[0] if tls else None
    name = labels.get(LABEL, container.name)
    with reporter.step(f"asking {name} to write the model data rows it buffers"):
        problem = modeldata.flush(base, keys.values(secrets_dir / "keys.json") if auth else [], tls_cert=cert)
    if problem is not None:
        reporter.warn(
            f"{name} did not confirm that its buffered model data rows are written ({problem}); "
            "rows it collected in its last ~0.5 s may be lost"
        )


def _gpu_request(count: int) -> Any:
    """``gpu_cores`` as a Docker device request for ``count`` NVIDIA GPUs (what ``docker run
    --gpus N`` sends: driver chosen by the engine, capability ``gpu``). Needs the NVIDIA
    container toolkit on the engine's host; without it the engine refuses to start the container."""
    from docker.types import DeviceRequest

    return DeviceRequest(count=count, capabilities=[["gpu"]])


def _reachable(host: str) -> str:
    return HOST if host in ("0.0.0.0", "::", "") else host


def entry_name(spec: ServiceSpec, image: str | None = None) -> str:
    """The entry script's file name; ``""`` for a no-code model (the image says its kind and path)."""
    if spec.inference is not None:
        script = spec.inference.entry_script
        return script.name if script is not None else ""
    if image is None:
        return "<entry script of the image>"
    env = docker_client().images.get(image).attrs["Config"].get("Env") or []
    if any(e.startswith("MLCTL_MODEL_KIND=") for e in env):
        return ""
    return next((e.split("=", 1)[1] for e in env if e.startswith("AZUREML_ENTRY_SCRIPT=")), "score.py")
