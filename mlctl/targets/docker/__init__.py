"""The ``docker`` compute target: the web service as a container on a local Docker engine
(Azure ML's ``LocalWebservice``).

Deploys from model files or registered models (building the image ``NAME:N`` first) or from a
built image. The container uses host networking: the scoring server inside binds HOST:PORT
itself (127.0.0.1 by default), which lets an update hand the listening sockets from the old
container to the new one exactly as the process target does: both mount their deploy folder
(``MLCTL_HOME/services/NAME/DEPLOY_ID`` -> ``/run/mlctl``), the new server takes the sockets
through the old one's control socket (SCM_RIGHTS works across containers: one kernel), is probed
on its private port, and only then is the old container drained and removed.

Containers carry ``mlctl.*`` labels; ``list``, ``status`` and ``logs`` read the engine (the
labels are the source of truth). ``cpu_cores`` and ``memory_gb`` become container limits.

``auth_enabled`` keys live in ``MLCTL_HOME/services/NAME/secrets`` (mode 0700, files 0600),
mounted read-only at ``/run/mlctl-secrets`` and shared by the containers of one service; the
TLS certificate and key are copied (0600) into each container's own deploy folder, so a failed
update with a bad certificate cannot reach the container still serving. The server re-reads
the keys file, so ``mlctl service keys --regenerate`` works as on the process target.

Who runs the container: run by root, the image's own user (uid 1000), which is given the deploy
and secrets folders; run by anyone else, that user's uid and gid, so those folders stay theirs.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlctl import keys, modeldata
from mlctl.builder import docker_client, service_image
from mlctl.errors import ConflictError, DeploymentError, NotFoundError, TargetError, WaitTimeout
from mlctl.output import Reporter, strip_ansi
from mlctl.registry import Registry
from mlctl.spec.document import display_path
from mlctl.spec.records import ServiceSpec
from mlctl.targets import (
    COMMON_KEYS,
    TLS_FILES,
    Deployment,
    ServiceState,
    copy_tls,
    test_record,
    uses_tls,
)
from mlctl.targets.docker.container import (
    HOST,
    IMAGE_USER,
    LABEL,
    container_config,
    container_state,
    entry_name,
    flush_model_data,
)
from mlctl.targets.init_failure import env_file_shown, explain
from mlctl.targets.process.lifecycle import check_port_free, ready, uri

OPTIONS = {"host": "address the containers' scoring servers listen on (host networking): 127.0.0.1 (default)"}
DEPLOYMENT_KEYS = COMMON_KEYS | {"gpu_cores", "collect_model_data", "model_data_storage"}
STOP_GRACE_S = 30
DRAIN_S = 1.0


class Driver:
    """The docker target driver.

    Args:
        registry: the model registry (also records images and, for look-ups, services).
        home: ``MLCTL_HOME``.
        host: the ``host`` option.
    """

    kind = "docker"

    def __init__(self, registry: Registry, home: Path, host: str = HOST) -> None:
        self.registry = registry
        self.home = home
        self.host = host

    def render(self, deployment: Deployment) -> dict[str, Any]:
        """The container that ``deploy`` would run (pure: the image is named, not built)."""
        spec = deployment.spec
        image = spec.image or f"{spec.name}:<next version>"
        return {
            "target": self.kind,
            "name": spec.name,
            "image": image,
            "models": [m.ref for m in deployment.models],
            **container_config(
                spec,
                image,
                host=self.host,
                secrets_dir=self._secrets_dir(spec.name),
                entry=entry_name(spec),
                deploy_dir=Path("<deploy dir>"),
                old=None,
                name=f"mlctl-{spec.name}-<id>",
                created="<deploy time>",
                models=_model_pairs(deployment),
                modeldata_dir=modeldata.local_root(self.home),
            ),
            "scoring_uri": uri(self.host, spec.deployment.port, tls=uses_tls(spec)),
        }

    def deploy(
        self, deployment: Deployment, reporter: Reporter, *, wait: bool = True, timeout_s: float = 300.0
    ) -> ServiceState:
        """Run the service's container; see ``mlctl.targets`` for the contract."""
        spec = deployment.spec
        if self._containers(spec.name):
            raise ConflictError(
                f"service {spec.name!r} already exists",
                hint=f"update it with `mlctl service update -f {display_path(spec.spec_file)}`",
            )
        check_port_free(self.host, spec.deployment.port, self.registry)
        container, _ = self._launch(deployment, reporter, old=None, wait=wait, timeout_s=timeout_s)
        self._save(deployment, container)
        return self.status(spec.name)

    def update(
        self, deployment: Deployment, reporter: Reporter, *, wait: bool = True, timeout_s: float = 300.0
    ) -> ServiceState:
        """Replace the container without downtime (the new one takes the old one's sockets)."""
        spec = deployment.spec
        if not wait:
            raise TargetError(
                "the docker target cannot update without waiting: mlctl retires the old container "
                "once the new one is ready",
                hint="drop --no-wait",
            )
        old = self._containers(spec.name)
        if not old:
            raise NotFoundError(
                f"service {spec.name!r} does not exist",
                hint=f"create it with `mlctl service deploy -f {display_path(spec.spec_file)}`",
            )
        same_port = int(old[0].labels.get("mlctl.port", 0)) == spec.deployment.port
        if not same_port:
            check_port_free(self.host, spec.deployment.port, self.registry)
        container, _ = self._launch(
            deployment, reporter, old=old[0] if same_port else None, wait=True, timeout_s=timeout_s
        )
        self._save(deployment, container)
        with reporter.step("draining and removing the previous container"):
            for previous in old:
                _retire(previous)
        return self.status(spec.name)

    def status(self, name: str) -> ServiceState:
        """The service's state from its container's labels and a readiness probe. Raises NotFoundError."""
        found = self._containers(name)
        if not found:
            raise NotFoundError(f"service {name!r} does not exist", hint="`mlctl service list` shows services")
        return self._state(found[0])

    def list(self) -> Sequence[ServiceState]:
        """Every mlctl service container on the engine."""
        try:
            client = docker_client()
        except TargetError:
            return []  # no engine, no docker services: other targets can still be listed
        seen: dict[str, Any] = {}
        for container in client.containers.list(all=True, filters={"label": LABEL}):
            seen.setdefault(container.labels[LABEL], container)
        return [self._state(c) for _, c in sorted(seen.items())]

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """The container's output (``follow``: streamed until it stops). Raises NotFoundError."""
        found = self._containers(name)
        if not found:
            raise NotFoundError(f"service {name!r} does not exist", hint="`mlctl service list` shows services")
        options: dict[str, Any] = {"stream": True, "follow": follow, "tail": tail if tail else "all"}
        buffer = ""
        for chunk in found[0].logs(**options):
            buffer += chunk.decode(errors="replace")
            *lines, buffer = buffer.split("\n")
            yield from (line + "\n" for line in lines)
        if buffer:
            yield buffer

    def delete(self, name: str, reporter: Reporter, *, wait: bool = True, timeout_s: float = STOP_GRACE_S) -> bool:
        """Stop and remove the service's containers and files; False when there were none.

        A container that collects model data is first asked to write the rows it buffers
        (``container.flush_model_data``): with ``wait=False`` it is removed at once, with no
        graceful stop to write them; with ``wait`` it makes sure of them before the stop's grace
        period can run out."""
        found = self._containers(name)
        for container in found:
            flush_model_data(container, self._secrets_dir(name), reporter)
        with reporter.step(f"removing {name}"):
            for container in found:
                if wait:
                    container.stop(timeout=int(timeout_s))
                container.remove(force=True)
        shutil.rmtree(self.home / "services" / name, ignore_errors=True)
        self.registry.forget_service(name)
        return bool(found)

    # -- internals ------------------------------------------------------------------------------
    def _containers(self, name: str) -> builtins.list[Any]:
        client = docker_client()
        found = client.containers.list(all=True, filters={"label": f"{LABEL}={name}"})
        return sorted(found, key=lambda c: c.labels.get("mlctl.created", ""), reverse=True)

    def _image(self, deployment: Deployment, reporter: Reporter) -> str:
        name, version = service_image(deployment, self.registry, reporter)
        return f"{name}:{version}"

    def _launch(
        self, deployment: Deployment, reporter: Reporter, *, old: Any, wait: bool, timeout_s: float
    ) -> tuple[Any, Path]:
        spec = deployment.spec
        image = self._image(deployment, reporter)
        deploy_dir = self.home / "services" / spec.name / (time.strftime("%Y%m%d%H%M%S-") + uuid.uuid4().hex[:6])
        deploy_dir.mkdir(parents=True)
        _hand_to_container(deploy_dir)
        container = None
        created_keys = False
        try:
            created_keys = self._write_secrets(spec, deploy_dir)
            config_ = container_config(
                spec,
                image,
                host=self.host,
                secrets_dir=self._secrets_dir(spec.name),
                entry=entry_name(spec, image),
                deploy_dir=deploy_dir,
                old=old,
                name=f"mlctl-{spec.name}-{uuid.uuid4().hex[:6]}",
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                models=_model_pairs(deployment),
                modeldata_dir=modeldata.local_root(self.home),
            )
            labels = {
                **config_.pop("labels"),
                "mlctl.image": image,
                "mlctl.models": ",".join(m.ref for m in deployment.models),
                "mlctl.fingerprint": json.dumps(deployment.fingerprint),
                "mlctl.deploy_dir": str(deploy_dir),
            }
            with reporter.step(f"starting a container of {image}"):
                container = docker_client().containers.run(image, detach=True, labels=labels, **config_)
            if wait:
                with reporter.step("waiting for init() and /readyz") as progress:
                    _wait_ready(
                        container, deploy_dir, timeout_s, progress, tls=uses_tls(spec), env_file=env_file_shown(spec)
                    )
            return container, deploy_dir
        except BaseException:
            if container is not None:
                container.remove(force=True)
            shutil.rmtree(deploy_dir, ignore_errors=True)
            if created_keys:  # a failed first deploy leaves no keys behind
                self._secrets_dir(spec.name).joinpath("keys.json").unlink(missing_ok=True)
            raise

    def _secrets_dir(self, name: str) -> Path:
        return self.home / "services" / name / "secrets"

    def _write_secrets(self, spec: ServiceSpec, deploy_dir: Path) -> bool:
        """Keys (``auth_enabled``, shared by the service's containers) and TLS files (this
        container's deploy folder) where the container reads them; returns whether keys were
        created now (existing keys are kept across updates)."""
        owner = IMAGE_USER if os.geteuid() == 0 else None
        copy_tls(spec, deploy_dir, owner)
        self._write_collection_secret(spec)
        if not spec.deployment.auth_enabled:
            return False
        folder = self._secrets_dir(spec.name)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _hand_to_container(folder)
        return keys.ensure(folder / "keys.json", owner)

    def _write_collection_secret(self, spec: ServiceSpec) -> None:
        """The model data connection string as a 0600 file of the secrets folder (mounted read-only),
        and the local store handed to the container's user."""
        if not modeldata.enabled(spec):
            return
        secret = modeldata.connection_string(spec.deployment.model_data_storage)
        if secret is None:
            local = modeldata.local_root(self.home)
            local.mkdir(parents=True, exist_ok=True)
            _hand_to_container(local)
            return
        folder = self._secrets_dir(spec.name)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _hand_to_container(folder)
        path = folder / modeldata.SECRET_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secret)
        if os.geteuid() == 0:
            os.chown(path, *IMAGE_USER)

    def _state(self, container: Any) -> ServiceState:
        container.reload()
        return container_state(container, self.kind, self._secrets_dir(container.labels[LABEL]))

    def _save(self, deployment: Deployment, container: Any) -> None:
        # The engine's labels are the truth; this record only lets `mlctl service ...` find the
        # target of a name and refuse to delete models in use.
        self.registry.save_service(
            deployment.spec.name,
            self.kind,
            {
                "name": deployment.spec.name,
                "target": self.kind,
                "target_options": {"host": self.host},
                "container": container.id,
                "port": deployment.spec.deployment.port,
                "test": test_record(deployment.spec),
                "model_data": modeldata.reference(deployment.spec, self.home),
            },
            list(deployment.models),
        )


_FULL_LOG = 2000  # log lines read to find the first init() failure


def _model_pairs(deployment: Deployment) -> tuple[tuple[str, int], ...]:
    return tuple((m.name, m.version) for m in deployment.models)


def _hand_to_container(folder: Path) -> None:
    """Let the container's user use ``folder``: run by root, the container runs as the image's
    user, who is given the folder; otherwise it runs as the caller, who owns it already."""
    if os.geteuid() == 0:
        os.chown(folder, *IMAGE_USER)


def _wait_ready(
    container: Any, deploy_dir: Path, timeout_s: float, progress: Any, *, tls: bool, env_file: str | None
) -> None:
    record = {
        "status_file": str(deploy_dir / "status.json"),
        "tls_cert": str(deploy_dir / TLS_FILES[0]) if tls else None,
    }
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        if container.status in ("exited", "dead", "restarting") or container.attrs.get("RestartCount", 0) > 0:
            lines = strip_ansi(container.logs(tail=_FULL_LOG).decode(errors="replace")).splitlines()
            failure = explain(lines, env_file=env_file)
            raise DeploymentError(
                f"container {container.name} did not start: the entry script failed to load or init() raised",
                phase="init",
                details=failure.excerpt,
                hint=f"{failure.hint or 'fix the entry script'}; `docker logs {container.name}` shows all",
            )
        if ready(record, timeout_s=1.0):
            return
        progress(container.status)
        time.sleep(0.2)
    raise WaitTimeout(
        f"container {container.name} was not ready after {timeout_s:.0f}s",
        details=container.logs(tail=30).decode(errors="replace").splitlines(),
        hint="init() may be slow: raise --timeout",
    )


def _retire(container: Any) -> None:
    """Drain (stop accepting; the new container holds the sockets), then stop and remove."""
    try:
        container.kill(signal="SIGUSR1")
        time.sleep(DRAIN_S)
        container.stop(timeout=STOP_GRACE_S)
    finally:
        container.remove(force=True)
        shutil.rmtree(container.labels.get("mlctl.deploy_dir", ""), ignore_errors=True)
