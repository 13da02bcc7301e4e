"""The ``process`` compute target (the embedded default): the scoring server as a local process.

No Docker needed. Each deployment gets ``MLCTL_HOME/services/NAME/DEPLOY_ID/`` holding the
models laid out as Azure ML lays them out (``azureml-models/NAME/VERSION/<file or folder>``),
the server's status file and its log. The server runs in the environment the spec asks for
(an isolated, cached virtual environment, or the running interpreter), detached in its own
session, listening on ``127.0.0.1:PORT``.

Updates keep the port: the old server hands its listening socket to the new one (see
``mlctl.serve.__main__``), the new one is probed on its private probe port, and only when it is
ready is the old one stopped (SIGTERM, then SIGKILL after the grace period). Both accept from
the same queue meanwhile, so the scoring URI never refuses or resets a connection.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlctl import environments, keys, model_kinds, modeldata
from mlctl.errors import ConflictError, NotFoundError, TargetError
from mlctl.output import Reporter
from mlctl.registry import Registry
from mlctl.spec.document import display_path
from mlctl.spec.records import ServiceSpec
from mlctl.targets import (
    COMMON_KEYS,
    Deployment,
    ServiceState,
    copy_tls,
    test_record,
    tls_paths,
)
from mlctl.targets.init_failure import env_file_shown
from mlctl.targets.process import invocation, lifecycle
from mlctl.targets.process.lifecycle import HOST, STOP_GRACE_S

OPTIONS = {"host": "address web services listen on: 127.0.0.1 (default) or 0.0.0.0 for every interface"}
# cpu_cores and memory_gb are accepted and not enforced (a local process has no limits; documented)
DEPLOYMENT_KEYS = COMMON_KEYS | {"collect_model_data", "model_data_storage"}
BUILDS_IMAGES = False  # inference_config image options (docker_file, base_image, ...) are refused


class Driver:
    """The process target driver.

    Args:
        registry: the model registry, which also stores service records.
        home: ``MLCTL_HOME``.
        host: the ``host`` option: the address services listen on.
    """

    kind = "process"

    def __init__(self, registry: Registry, home: Path, host: str = HOST) -> None:
        self.registry = registry
        self.home = home
        self.host = host

    # -- rendering ------------------------------------------------------------------------------
    def render(self, deployment: Deployment) -> dict[str, Any]:
        """The command line and environment variables the server will run with (pure)."""
        spec = deployment.spec
        _preflight(spec)
        assert spec.inference is not None
        env_spec = model_kinds.environment(spec, deployment.models, self.registry)
        env = environments.plan(env_spec, self.home, extra=modeldata.requirements(spec))
        model_dir = "<deploy dir>/" + invocation.model_dir_rel(deployment)
        return {
            "target": self.kind,
            "name": spec.name,
            "python": str(env.python),
            "environment": env.key,
            "requirements": list(env.requirements),
            "command": invocation.command(
                spec,
                env.python,
                model_dir,
                Path("<deploy dir>"),
                host=self.host,
                models=deployment.models,
                listen_fds=(),
                keys_file=keys.keys_path(self.home, spec.name) if spec.deployment.auth_enabled else None,
            ),
            "environment_variables": {
                **invocation.environment(spec, model_dir, env.pythonpath, base={}),
                **self._collection_env(deployment, "<deploy dir>"),
            },
            "models": [m.ref for m in deployment.models],
            "scoring_uri": lifecycle.uri(
                self.host, spec.deployment.port, tls=spec.deployment.ssl_cert_pem_file is not None
            ),
        }

    # -- lifecycle ------------------------------------------------------------------------------
    def deploy(
        self, deployment: Deployment, reporter: Reporter, *, wait: bool = True, timeout_s: float = 300.0
    ) -> ServiceState:
        """Start a new web service; see ``mlctl.targets`` for the contract."""
        spec = deployment.spec
        _preflight(spec)
        with self._lock(spec.name):
            if self.registry.service(spec.name) is not None:
                raise ConflictError(
                    f"service {spec.name!r} already exists",
                    hint=f"update it with `mlctl service update -f {display_path(spec.spec_file)}`",
                )
            lifecycle.check_port_free(self.host, spec.deployment.port, self.registry)
            with self._keys(spec):
                record = self._launch(deployment, reporter, listen_fds=(), wait=wait, timeout_s=timeout_s)
                self._save(record, deployment)
        return self.status(spec.name)

    def update(
        self, deployment: Deployment, reporter: Reporter, *, wait: bool = True, timeout_s: float = 300.0
    ) -> ServiceState:
        """Replace the service without downtime; the old one is stopped only once the new is ready.

        Raises TargetError with ``wait`` false: this target has no controller to finish the switch."""
        spec = deployment.spec
        _preflight(spec)
        if not wait:
            raise TargetError(
                "the process target cannot update without waiting: mlctl itself retires the old "
                "server once the new one is ready",
                hint="drop --no-wait",
            )
        with self._lock(spec.name):
            old = self.registry.service(spec.name)
            if old is None:
                raise NotFoundError(
                    f"service {spec.name!r} does not exist",
                    hint=f"create it with `mlctl service deploy -f {display_path(spec.spec_file)}`",
                )
            inherited = lifecycle.inherit_sockets(old) if old["port"] == spec.deployment.port else ()
            if not inherited:
                lifecycle.check_port_free(self.host, spec.deployment.port, self.registry)
            try:
                with self._keys(spec):
                    record = self._launch(deployment, reporter, listen_fds=inherited, wait=True, timeout_s=timeout_s)
            finally:
                for fd in inherited:
                    os.close(fd)
            record["created_at"] = old["created_at"]
            self._save(record, deployment)
            with reporter.step("draining and stopping the previous server"):
                lifecycle.retire(old)
                shutil.rmtree(old["deploy_dir"], ignore_errors=True)
        return self.status(spec.name)

    def status(self, name: str) -> ServiceState:
        """The service's state; probes its readiness (1 s at most). Raises NotFoundError."""
        record = self._record(name)
        if not lifecycle.alive(record):
            state = "failed"
        else:
            state = "running" if lifecycle.ready(record, timeout_s=1.0) else "unhealthy"
        return ServiceState(
            name=record["name"],
            target=self.kind,
            state=state,
            scoring_uri=lifecycle.uri(record.get("host", HOST), record["port"], tls=bool(record.get("tls_cert"))),
            swagger_uri=lifecycle.uri(
                record.get("host", HOST), record["port"], "/swagger.json", tls=bool(record.get("tls_cert"))
            ),
            models=tuple(record["models"]),
            environment=record["environment"],
            created_at=record["created_at"],
            updated_at=record["updated_at"],
            details={
                "pid": record["pid"],
                "port": record["port"],
                "log_file": record["log_file"],
                "auth_enabled": bool(record.get("keys_file")),
                "tls_cert": record.get("tls_cert"),
                "keys_file": record.get("keys_file"),
            },
            fingerprint=record.get("fingerprint", {}),
        )

    def list(self) -> Sequence[ServiceState]:
        """Every service deployed on this target."""
        return [self.status(r["name"]) for r in self.registry.services() if r.get("target") == self.kind]

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """The server's log lines; with ``follow``, keeps yielding (across updates) until deleted."""
        record = self._record(name)
        log_file = Path(record["log_file"])
        lines = log_file.read_text(errors="replace").splitlines(keepends=True) if log_file.exists() else []
        yield from lines[-tail:] if tail else lines
        if follow:
            yield from lifecycle.follow(self.registry, name, log_file)

    def delete(self, name: str, reporter: Reporter, *, wait: bool = True, timeout_s: float = STOP_GRACE_S) -> bool:
        """Stop the server and remove its files and record; False when there was no such service.

        Without ``wait``, the server gets SIGTERM and finishes its requests on its own (it exits
        within its 30 s graceful-shutdown limit)."""
        with self._lock(name):
            record = self.registry.service(name)
            if record is None:
                return False
            with reporter.step(f"stopping {name}"):
                if wait:
                    lifecycle.stop(record, grace_s=timeout_s)
                elif lifecycle.alive(record):
                    lifecycle.signal_group(record["pid"], signal.SIGTERM)
            shutil.rmtree(self.home / "services" / name, ignore_errors=True)
            self.registry.forget_service(name)
        return True

    # -- internals ------------------------------------------------------------------------------
    def _collection_env(self, deployment: Deployment, deploy_dir: str) -> dict[str, str]:
        """Model data collection's variables (none secret): the local store is MLCTL_HOME/modeldata."""
        return modeldata.server_env(
            deployment.spec,
            [(m.name, m.version) for m in deployment.models],
            local=str(modeldata.local_root(self.home)),
            secret_file=f"{deploy_dir}/{modeldata.SECRET_NAME}",
        )

    @contextlib.contextmanager
    def _keys(self, spec: ServiceSpec) -> Iterator[None]:
        """Keys for an ``auth_enabled`` service: created if missing, removed again if the deploy fails."""
        path = keys.keys_path(self.home, spec.name)
        created = keys.ensure(path) if spec.deployment.auth_enabled else False
        try:
            yield
        except BaseException:
            if created:
                path.unlink(missing_ok=True)
            raise

    def _record(self, name: str) -> dict[str, Any]:
        record = self.registry.service(name)
        if record is None or record.get("target") != self.kind:
            raise NotFoundError(f"service {name!r} does not exist", hint="`mlctl service list` shows services")
        return record

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        path = self.home / "services" / f".{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _launch(
        self, deployment: Deployment, reporter: Reporter, *, listen_fds: tuple[int, ...], wait: bool, timeout_s: float
    ) -> dict[str, Any]:
        spec = deployment.spec
        assert spec.inference is not None
        deploy_id = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S-") + uuid.uuid4().hex[:6]
        deploy_dir = self.home / "services" / spec.name / deploy_id
        record: dict[str, Any] = {}
        try:
            with reporter.step(f"laying out {len(deployment.models)} model(s)"):
                for model in deployment.models:
                    self.registry.materialize(model, deploy_dir / "azureml-models" / model.name / str(model.version))
            env_spec = model_kinds.environment(spec, deployment.models, self.registry)
            env = environments.plan(env_spec, self.home, reporter.warn, extra=modeldata.requirements(spec))
            label = "using the current interpreter" if env.key == "current" else f"environment {env.key}"
            with reporter.step(label + ("" if env.ready else " (building)")) as progress:
                env = environments.prepare(env, self.home, progress)
            record = self._start(deployment, env, deploy_dir, deploy_id, listen_fds=listen_fds)
            if wait:
                with reporter.step("waiting for init() and /readyz") as progress:
                    lifecycle.wait_ready(record, timeout_s, progress)
            return record
        except BaseException:
            if record:
                lifecycle.stop(record)
            shutil.rmtree(deploy_dir, ignore_errors=True)
            raise

    def _start(
        self,
        deployment: Deployment,
        env: environments.PythonEnvironment,
        deploy_dir: Path,
        deploy_id: str,
        *,
        listen_fds: tuple[int, ...],
    ) -> dict[str, Any]:
        spec = deployment.spec
        model_dir = str(deploy_dir / invocation.model_dir_rel(deployment))
        status_file, log_file = deploy_dir / "status.json", deploy_dir / "server.log"
        deploy_dir.mkdir(parents=True, exist_ok=True)
        keys_file = keys.keys_path(self.home, spec.name) if spec.deployment.auth_enabled else None
        copy_tls(spec, deploy_dir)
        tls = tls_paths(spec, deploy_dir)
        invocation.write_secret(
            deploy_dir / modeldata.SECRET_NAME, modeldata.connection_string(spec.deployment.model_data_storage)
        )
        command = invocation.command(
            spec,
            env.python,
            model_dir,
            deploy_dir,
            host=self.host,
            models=deployment.models,
            listen_fds=listen_fds,
            keys_file=keys_file,
        )
        with log_file.open("ab") as log:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=deploy_dir,
                start_new_session=True,
                pass_fds=listen_fds,
                env={
                    **invocation.environment(spec, model_dir, env.pythonpath, base=dict(os.environ)),
                    **self._collection_env(deployment, str(deploy_dir)),
                },
            )
        now = _now()
        return {
            "name": spec.name,
            "target": self.kind,
            "pid": proc.pid,
            "pid_start": lifecycle.start_time(proc.pid),
            "port": spec.deployment.port,
            "host": self.host,
            "target_options": {"host": self.host},
            "deploy_id": deploy_id,
            "deploy_dir": str(deploy_dir),
            "status_file": str(status_file),
            "log_file": str(log_file),
            "environment": env.key,
            "control_socket": str(deploy_dir / invocation.CONTROL),
            "keys_file": str(keys_file) if keys_file else None,
            "tls_cert": tls[0] if tls else None,
            "python": str(env.python),
            "env_file": env_file_shown(spec),
            "models": [m.ref for m in deployment.models],
            "spec_file": str(spec.spec_file),
            "created_at": now,
            "updated_at": now,
            "fingerprint": deployment.fingerprint,
            "test": test_record(spec),
            "model_data": modeldata.reference(spec, self.home),
        }

    def _save(self, record: dict[str, Any], deployment: Deployment) -> None:
        try:
            self.registry.save_service(record["name"], self.kind, record, list(deployment.models))
        except BaseException:
            lifecycle.stop(record)
            shutil.rmtree(record["deploy_dir"], ignore_errors=True)
            raise


def _preflight(spec: ServiceSpec) -> None:
    if spec.image is not None:
        raise TargetError(
            "the process target runs model files or registered models, not images",
            hint="use `model_files:` or `models:` with an `inference_config`",
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
