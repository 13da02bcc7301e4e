"""A detached scoring server as an OS process (the process target's and, for probing, the docker
target's): readiness through the probe port in its status file, its exit code, stopping its
process group (PID-reuse safe: the recorded start time must match), handing over its listening
sockets, and its log."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlctl.errors import DeploymentError, TargetError, WaitTimeout
from mlctl.registry import Registry
from mlctl.serve.__main__ import EXIT_BIND_FAILED, EXIT_INIT_FAILED
from mlctl.serve.sockets import receive_listen_fds
from mlctl.targets.init_failure import explain

HOST = "127.0.0.1"
STOP_GRACE_S = 30.0
DRAIN_S = 1.0  # after "stop accepting": lets connections accepted a moment ago send their request
_LOG_TAIL = 30
_FULL_LOG = 2000  # lines read to find the first failure (a failing server's log is short)


def inherit_sockets(old: dict[str, Any]) -> tuple[int, ...]:
    """The old server's listening sockets (new fds); none when it is not running or cannot give them."""
    if not alive(old) or "control_socket" not in old:
        return ()
    try:
        return tuple(receive_listen_fds(Path(old["control_socket"])))
    except OSError:
        return ()


def check_port_free(host: str, port: int, registry: Registry | None = None) -> None:
    """Raise TargetError (exit 6, with the fix) when ``host:port`` (TCP) cannot be bound now,
    naming the mlctl service recorded on that port in ``registry`` when there is one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            holder = _holder(registry, port)
            if holder is None:
                raise TargetError(
                    f"port {port} on {host} is already in use",
                    hint="set deployment_config.port to a free port, or stop what listens on it",
                ) from None
            raise TargetError(
                f"port {port} on {host} is already in use by mlctl service {holder!r}",
                hint=f"set deployment_config.port to a free port, or delete it: `mlctl service delete {holder}`",
            ) from None


def _holder(registry: Registry | None, port: int) -> str | None:
    """The mlctl service recorded as listening on ``port``, if any."""
    records = registry.services() if registry is not None else []
    return next((str(r["name"]) for r in records if r.get("port") == port), None)


def wait_ready(record: dict[str, Any], timeout_s: float, progress: Any) -> None:
    """Wait up to ``timeout_s`` seconds for the server of ``record`` to answer ``/readyz``.

    Raises TargetError (port taken), DeploymentError (init() failed or the server exited) or
    WaitTimeout, each with the last lines of its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = exit_code(record["pid"])
        if code is not None:
            _raise_exited(record, code)
        if ready(record, timeout_s=1.0):
            return
        progress(f"pid {record['pid']}")
        time.sleep(0.1)
    raise WaitTimeout(
        f"service {record['name']!r} was not ready after {timeout_s:.0f}s",
        details=tail(record["log_file"]),
        hint="init() may be slow: raise --timeout",
    )


def _raise_exited(record: dict[str, Any], code: int) -> None:
    lines = tail(record["log_file"])
    if code == EXIT_BIND_FAILED:
        raise TargetError(
            f"port {record['port']} on {record.get('host', HOST)} is already in use",
            details=lines,
            hint="set deployment_config.port to a free port",
        )
    phase = "init" if code == EXIT_INIT_FAILED else "start"
    what = "the entry script failed to load or init() raised" if phase == "init" else f"the server exited ({code})"
    failure = explain(
        tail(record["log_file"], lines=_FULL_LOG),
        env_file=record.get("env_file"),
        model_root=Path(record["deploy_dir"]) if record.get("deploy_dir") else None,
    )
    raise DeploymentError(
        f"service {record['name']!r} did not start: {what}",
        phase=phase,
        details=failure.excerpt,
        hint=f"{failure.hint or 'fix the entry script'}; full log: {record['log_file']}",
    )


def ready(record: dict[str, Any], *, timeout_s: float) -> bool:
    """Whether ``/readyz`` on the probe port named in the record's status file answers 200."""
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


def exit_code(pid: int) -> int | None:
    """The exit code if ``pid`` (our child) has exited, else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None if pid_alive(pid) else 1
    return os.waitstatus_to_exitcode(status) if done else None


def start_time(pid: int) -> str | None:
    """The process start time from ``/proc/PID/stat`` (clock ticks since boot), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
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


def alive(record: dict[str, Any]) -> bool:
    """Whether the recorded server process still runs (guarding against PID reuse)."""
    pid = record["pid"]
    return pid_alive(pid) and start_time(pid) == record.get("pid_start")


def stop(record: dict[str, Any], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the server's process group, SIGKILL after ``grace_s`` seconds, reap if ours."""
    if not alive(record):
        exit_code(record["pid"])
        return
    signal_group(record["pid"], signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if exit_code(record["pid"]) is not None or not pid_alive(record["pid"]):
            return
        time.sleep(0.05)
    signal_group(record["pid"], signal.SIGKILL)
    exit_code(record["pid"])


def retire(record: dict[str, Any]) -> None:
    """Stop a server that shares its listening socket with its successor: drain, then stop."""
    if alive(record):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record["pid"], signal.SIGUSR1)
        time.sleep(DRAIN_S)
    stop(record)


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (gone or not ours: ignored)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def follow(registry: Registry, name: str, log_file: Path) -> Iterator[str]:
    """New lines of the service's log as they are written, across updates (the record names the
    current log), until the service is deleted."""
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


def tail(log_file: str, lines: int = _LOG_TAIL) -> list[str]:
    """The last ``lines`` lines of a log file (none when it cannot be read)."""
    try:
        return Path(log_file).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def uri(host: str, port: int, path: str = "/score", *, tls: bool = False) -> str:
    """The URI clients use: a wildcard bind address is reached through loopback here."""
    reachable = HOST if host in ("0.0.0.0", "::", "") else host
    return f"{'https' if tls else 'http'}://{reachable}:{port}{path}"
