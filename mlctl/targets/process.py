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
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlctl import environments, keys
from mlctl.errors import ConflictError, DeploymentError, NotFoundError, TargetError, WaitTimeout
from mlctl.output import Reporter
from mlctl.registry import Registry
from mlctl.serve.__main__ import EXIT_BIND_FAILED, EXIT_INIT_FAILED, receive_listen_fds
from mlctl.spec.records import ServiceSpec
from mlctl.targets import (
    COMMON_KEYS,
    Deployment,
    ServiceState,
    copy_tls,
    server_options,
    test_record,
    tls_paths,
)

HOST = "127.0.0.1"
OPTIONS = {"host": "address web services listen on: 127.0.0.1 (default) or 0.0.0.0 for every interface"}
# cpu_cores and memory_gb are accepted and not enforced (a local process has no limits; documented)
DEPLOYMENT_KEYS = COMMON_KEYS
BUILDS_IMAGES = False  # inference_config image options (docker_file, base_image, ...) are refused
STOP_GRACE_S = 30.0
DRAIN_S = 1.0  # after "stop accepting": lets connections accepted a moment ago send their request
_LOG_TAIL = 30
_CONTROL = "control.sock"


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
        env = environments.plan(spec.inference.environment, self.home)
        model_dir = "<deploy dir>/" + _model_dir_rel(deployment)
        return {
            "target": self.kind,
            "name": spec.name,
            "python": str(env.python),
            "environment": env.key,
            "requirements": list(env.requirements),
            "command": _command(
                spec,
                env.python,
                model_dir,
                Path("<deploy dir>"),
                host=self.host,
                listen_fds=(),
                keys_file=keys.keys_path(self.home, spec.name) if spec.deployment.auth_enabled else None,
            ),
            "environment_variables": _server_env(spec, model_dir, env.pythonpath, base={}),
            "models": [m.ref for m in deployment.models],
            "scoring_uri": _uri(self.host, spec.deployment.port, tls=spec.deployment.ssl_cert_pem_file is not None),
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
                    hint=f"update it with `mlctl service update -f {spec.spec_file.name}`",
                )
            _check_port_free(self.host, spec.deployment.port)
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
                    hint=f"create it with `mlctl service deploy -f {spec.spec_file.name}`",
                )
            inherited = _inherit_sockets(old) if old["port"] == spec.deployment.port else ()
            if not inherited:
                _check_port_free(self.host, spec.deployment.port)
            try:
                with self._keys(spec):
                    record = self._launch(deployment, reporter, listen_fds=inherited, wait=True, timeout_s=timeout_s)
            finally:
                for fd in inherited:
                    os.close(fd)
            record["created_at"] = old["created_at"]
            self._save(record, deployment)
            with reporter.step("draining and stopping the previous server"):
                _retire(old)
                shutil.rmtree(old["deploy_dir"], ignore_errors=True)
        return self.status(spec.name)

    def status(self, name: str) -> ServiceState:
        """The service's state; probes its readiness (1 s at most). Raises NotFoundError."""
        record = self._record(name)
        if not _alive(record):
            state = "failed"
        else:
            state = "running" if _ready(record, timeout_s=1.0) else "unhealthy"
        return ServiceState(
            name=record["name"],
            target=self.kind,
            state=state,
            scoring_uri=_uri(record.get("host", HOST), record["port"], tls=bool(record.get("tls_cert"))),
            swagger_uri=_uri(
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
            yield from _follow(self.registry, name, log_file)

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
                    _stop(record, grace_s=timeout_s)
                elif _alive(record):
                    _signal_group(record["pid"], signal.SIGTERM)
            shutil.rmtree(self.home / "services" / name, ignore_errors=True)
            self.registry.forget_service(name)
        return True

    # -- internals ------------------------------------------------------------------------------
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
            env = environments.plan(spec.inference.environment, self.home, reporter.warn)
            label = "using the current interpreter" if env.key == "current" else f"environment {env.key}"
            with reporter.step(label + ("" if env.ready else " (building)")) as progress:
                env = environments.prepare(env, self.home, progress)
            record = self._start(deployment, env, deploy_dir, deploy_id, listen_fds=listen_fds)
            if wait:
                with reporter.step("waiting for init() and /readyz") as progress:
                    _wait_ready(record, timeout_s, progress)
            return record
        except BaseException:
            if record:
                _stop(record)
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
        model_dir = str(deploy_dir / _model_dir_rel(deployment))
        status_file, log_file = deploy_dir / "status.json", deploy_dir / "server.log"
        deploy_dir.mkdir(parents=True, exist_ok=True)
        keys_file = keys.keys_path(self.home, spec.name) if spec.deployment.auth_enabled else None
        copy_tls(spec, deploy_dir)
        tls = tls_paths(spec, deploy_dir)
        command = _command(
            spec, env.python, model_dir, deploy_dir, host=self.host, listen_fds=listen_fds, keys_file=keys_file
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
                env=_server_env(spec, model_dir, env.pythonpath, base=dict(os.environ)),
            )
        now = _now()
        return {
            "name": spec.name,
            "target": self.kind,
            "pid": proc.pid,
            "pid_start": _start_time(proc.pid),
            "port": spec.deployment.port,
            "host": self.host,
            "target_options": {"host": self.host},
            "deploy_id": deploy_id,
            "deploy_dir": str(deploy_dir),
            "status_file": str(status_file),
            "log_file": str(log_file),
            "environment": env.key,
            "control_socket": str(deploy_dir / _CONTROL),
            "keys_file": str(keys_file) if keys_file else None,
            "tls_cert": tls[0] if tls else None,
            "python": str(env.python),
            "models": [m.ref for m in deployment.models],
            "spec_file": str(spec.spec_file),
            "created_at": now,
            "updated_at": now,
            "fingerprint": deployment.fingerprint,
            "test": test_record(spec),
        }

    def _save(self, record: dict[str, Any], deployment: Deployment) -> None:
        try:
            self.registry.save_service(record["name"], self.kind, record, list(deployment.models))
        except BaseException:
            _stop(record)
            shutil.rmtree(record["deploy_dir"], ignore_errors=True)
            raise


def _preflight(spec: ServiceSpec) -> None:
    if spec.image is not None:
        raise TargetError(
            "the process target runs model files or registered models, not images",
            hint="use `model_files:` or `models:` with an `inference_config`",
        )


def _model_dir_rel(deployment: Deployment) -> str:
    """AZUREML_MODEL_DIR, relative to the deploy dir: one model -> its version folder, else the root."""
    if len(deployment.models) == 1:
        model = deployment.models[0]
        return f"azureml-models/{model.name}/{model.version}"
    return "azureml-models"


def _command(
    spec: ServiceSpec,
    python: Path,
    model_dir: str,
    deploy_dir: Path,
    *,
    host: str,
    listen_fds: tuple[int, ...],
    keys_file: Path | None,
) -> list[str]:
    assert spec.inference is not None
    command = [
        str(python),
        "-m",
        "mlctl.serve",
        "--entry-script",
        str(spec.inference.entry_script),
        "--model-dir",
        model_dir,
        *server_options(
            spec.deployment,
            host=host,
            status_file=str(deploy_dir / "status.json"),
            control_socket=str(deploy_dir / _CONTROL),
            keys_file=str(keys_file) if keys_file is not None else None,
            tls=tls_paths(spec, deploy_dir),
        ),
    ]
    return command + [arg for fd in listen_fds for arg in ("--listen-fd", str(fd))]


def _inherit_sockets(old: dict[str, Any]) -> tuple[int, ...]:
    """The old server's listening sockets (new fds); none when it is not running or cannot give them."""
    if not _alive(old) or "control_socket" not in old:
        return ()
    try:
        return tuple(receive_listen_fds(Path(old["control_socket"])))
    except OSError:
        return ()


def _server_env(spec: ServiceSpec, model_dir: str, pythonpath: Path | None, *, base: dict[str, str]) -> dict[str, str]:
    assert spec.inference is not None
    env = {
        **base,
        **spec.deployment.environment_variables,
        "AZUREML_MODEL_DIR": model_dir,
        "AZUREML_ENTRY_SCRIPT": spec.inference.entry_script.name,
        "PYTHONUNBUFFERED": "1",
    }
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise TargetError(
                f"port {port} on {host} is already in use",
                hint="set deployment_config.port to a free port, or delete the service using it (`mlctl service list`)",
            ) from None


def _wait_ready(record: dict[str, Any], timeout_s: float, progress: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = _exit_code(record["pid"])
        if code is not None:
            _raise_exited(record, code)
        if _ready(record, timeout_s=1.0):
            return
        progress(f"pid {record['pid']}")
        time.sleep(0.1)
    raise WaitTimeout(
        f"service {record['name']!r} was not ready after {timeout_s:.0f}s",
        details=_tail(record["log_file"]),
        hint="init() may be slow: raise --timeout",
    )


def _raise_exited(record: dict[str, Any], code: int) -> None:
    lines = _tail(record["log_file"])
    if code == EXIT_BIND_FAILED:
        raise TargetError(
            f"port {record['port']} on {record.get('host', HOST)} is already in use",
            details=lines,
            hint="set deployment_config.port to a free port",
        )
    phase = "init" if code == EXIT_INIT_FAILED else "start"
    what = "the entry script failed to load or init() raised" if phase == "init" else f"the server exited ({code})"
    raise DeploymentError(
        f"service {record['name']!r} did not start: {what}",
        phase=phase,
        details=lines,
        hint=f"fix the entry script; full log: {record['log_file']}",
    )


def _ready(record: dict[str, Any], *, timeout_s: float) -> bool:
    try:
        probe_port = json.loads(Path(record["status_file"]).read_text())["probe_port"]
        scheme, context = "http", None
        if record.get("tls_cert"):  # our own server on loopback: its certificate needs no check here
            scheme, context = "https", ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        url = f"{scheme}://{HOST}:{probe_port}/readyz"
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as response:
            return response.status == 200  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return False


def _exit_code(pid: int) -> int | None:
    """The exit code if ``pid`` (our child) has exited, else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None if _pid_alive(pid) else 1
    return os.waitstatus_to_exitcode(status) if done else None


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not Path("/proc").exists()


def _alive(record: dict[str, Any]) -> bool:
    """Whether the recorded server process still runs (guarding against PID reuse)."""
    pid = record["pid"]
    return _pid_alive(pid) and _start_time(pid) == record.get("pid_start")


def _stop(record: dict[str, Any], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the server's process group, SIGKILL after ``grace_s`` seconds, reap if ours."""
    if not _alive(record):
        _exit_code(record["pid"])
        return
    _signal_group(record["pid"], signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if _exit_code(record["pid"]) is not None or not _pid_alive(record["pid"]):
            return
        time.sleep(0.05)
    _signal_group(record["pid"], signal.SIGKILL)
    _exit_code(record["pid"])


def _retire(record: dict[str, Any]) -> None:
    """Stop a server that shares its listening socket with its successor: drain, then stop."""
    if _alive(record):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record["pid"], signal.SIGUSR1)
        time.sleep(DRAIN_S)
    _stop(record)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _follow(registry: Registry, name: str, log_file: Path) -> Iterator[str]:
    handle = log_file.open("r", errors="replace")
    handle.seek(0, os.SEEK_END)
    while True:
        line = handle.readline()
        if line:
            yield line
            continue
        record = registry.service(name)
        if record is None:
            return
        if record["log_file"] != str(log_file):  # updated: continue with the new server's log
            handle.close()
            log_file = Path(record["log_file"])
            handle = log_file.open("r", errors="replace")
        time.sleep(0.2)


def _tail(log_file: str, lines: int = _LOG_TAIL) -> list[str]:
    try:
        return Path(log_file).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _uri(host: str, port: int, path: str = "/score", *, tls: bool = False) -> str:
    """The URI clients use: a wildcard bind address is reached through loopback here."""
    reachable = HOST if host in ("0.0.0.0", "::", "") else host
    return f"{'https' if tls else 'http'}://{reachable}:{port}{path}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
