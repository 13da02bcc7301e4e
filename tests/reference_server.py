"""The differential harness: Azure ML's own inference server beside ``python -m mlctl.serve``.

The reference (``azureml-inference-server-http``, ``azmlinfsrv``) is an oracle, never a
dependency: it lives in its own virtual environment, made on first use under the test cache
(``$MLCTL_TEST_CACHE``, else ``.test-cache/`` in the checkout) and reused by later runs of the
same pinned version. Both servers run as real processes on 127.0.0.1; ``exchange`` sends one
request to each and ``same`` compares what a client of the contract sees, with the values
that differ by design (generated request ids, timings, server identity) normalised.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REFERENCE_VERSION = "1.5.1"
REPO = Path(__file__).resolve().parent.parent
# Headers of the contract compared between the two servers (the rest is transport detail).
CONTRACT_HEADERS = (
    "content-type",
    "x-request-id",
    "x-ms-request-id",
    "x-ms-client-request-id",
    "x-ms-run-function-failed",
    "x-ms-run-fn-exec-ms",
    "x-ms-server-version",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "vary",
    "traceid",
)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Started by the reference on 127.0.0.1 instead of its fixed 0.0.0.0 (tests stay on loopback).
_LAUNCH = (
    "import sys, azureml_inference_server_http.amlserver as s; s.DEFAULT_HOST = '127.0.0.1'; "
    "sys.argv[0] = 'azmlinfsrv'; s.run()"
)


def cache_dir() -> Path:
    """Where test-only environments are kept between runs."""
    return Path(os.environ.get("MLCTL_TEST_CACHE", REPO / ".test-cache"))


def reference_python() -> Path:
    """The interpreter of a venv holding the pinned reference server; made when missing (a few minutes).

    Raises:
        subprocess.CalledProcessError: venv creation or ``pip install`` failed (no index reachable).
    """
    venv = cache_dir() / f"azmlinfsrv-{REFERENCE_VERSION}"
    python, stamp = venv / "bin" / "python", venv / ".complete"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test processes build it once
        if not stamp.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            pin = f"azureml-inference-server-http=={REFERENCE_VERSION}"
            subprocess.run([str(python), "-m", "pip", "install", "-q", pin], check=True, capture_output=True)
            stamp.touch()
    return python


@dataclass
class Server:
    """One running server: its base URL, process and combined log."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        return self.log.read_text(errors="replace")


@dataclass
class Reply:
    """One HTTP answer: status, lower-case headers (repeated ones as a list), body."""

    status: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name``, or None."""
        values = self.headers.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


def start(
    kind: str, script: Path, port: int, log: Path, *, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
) -> Server:
    """Start the reference (``kind="reference"``) or mlctl (``"mlctl"``) on ``script``; waits until ``/`` answers.

    ``env`` is added to this process's environment; ``args`` are extra command-line flags.
    Raises:
        RuntimeError: the server exited or did not answer within 60 s (its log is in the message).
    """
    if kind == "reference":
        cmd = [str(reference_python()), "-c", _LAUNCH, "--entry_script", str(script), "--port", str(port), *args]
    else:
        cmd = [sys.executable, "-m", "mlctl.serve", "--entry_script", str(script), "--port", str(port), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=script.parent)
    server = Server(kind, port, process, log)
    wait_ready(server)
    return server


def wait_ready(server: Server, timeout_s: float = 60) -> None:
    """Block until ``GET /`` answers on ``server``.

    Raises:
        RuntimeError: the process exited first, or the timeout passed.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{server.output()}")
        with contextlib.suppress(OSError):
            if request(server, "GET", "/", timeout=2).status < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not answer within {timeout_s} s:\n{server.output()}")


def stop(server: Server) -> None:
    """SIGTERM the server (started by this harness) and wait for it."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextlib.contextmanager
def pair(
    script: Path, ports: tuple[int, int], *, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
) -> Iterator[tuple[Server, Server]]:
    """The reference and mlctl, both serving ``script`` with the same settings; stopped afterwards."""
    logs = script.parent
    ref = start("reference", script, ports[0], logs / "reference.log", env=env, args=args)
    try:
        ours = start("mlctl", script, ports[1], logs / "mlctl.log", env=env, args=args)
        try:
            yield ref, ours
        finally:
            stop(ours)
    finally:
        stop(ref)


def request(
    server: Server,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Reply:
    """Send one request to ``server`` over a new connection; any status is returned, not raised."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        reply = Reply(response.status, {}, response.read())
        for name, value in response.getheaders():
            reply.headers.setdefault(name.lower(), []).append(value)
        return reply
    finally:
        conn.close()


def exchange(servers: tuple[Server, Server], method: str, path: str, **kw: Any) -> tuple[Reply, Reply]:
    """The same request sent to the reference and to mlctl: (reference's reply, mlctl's reply)."""
    return request(servers[0], method, path, **kw), request(servers[1], method, path, **kw)


def normalised(reply: Reply, sent: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a client of the contract sees in ``reply``, with values that differ by design replaced.

    Generated UUIDs become ``<uuid>``, ``x-ms-run-fn-exec-ms`` ``<ms>``, the server version
    ``<server>``; a JSON body is parsed (mlctl's extra ``request_id`` in error bodies dropped).
    """
    headers: dict[str, list[str]] = {}
    for name in CONTRACT_HEADERS:
        if name not in reply.headers:
            continue
        values = reply.headers[name]
        if name == "x-ms-run-fn-exec-ms":
            values = ["<ms>" if re.fullmatch(r"\d+\.\d{3}", v) else v for v in values]
        elif name == "x-ms-server-version":
            values = ["<server>" for _ in values]
        elif name == "content-type":
            values = [v.replace("; charset=utf-8", "").replace("text/html", "text/plain") for v in values]
        values = ["<uuid>" if _UUID.match(v) else v for v in values]
        headers[name] = values
    body: Any = reply.body
    if reply.header("content-type") == "application/json":
        with contextlib.suppress(ValueError):
            body = json.loads(reply.body)
            if isinstance(body, dict) and reply.status >= 400:
                body.pop("request_id", None)  # mlctl's documented extra field
    return {"status": reply.status, "headers": headers, "body": body}


def same(replies: tuple[Reply, Reply], *, ignore_headers: tuple[str, ...] = ()) -> dict[str, Any]:
    """Assert the two replies are the same to a client of the contract; returns the normalised reply.

    Raises:
        AssertionError: naming both normalised replies.
    """
    ref, ours = (normalised(r) for r in replies)
    for name in ignore_headers:
        ref["headers"].pop(name, None)
        ours["headers"].pop(name, None)
    assert ours == ref, f"\nreference: {ref}\nmlctl:     {ours}"
    return ref
