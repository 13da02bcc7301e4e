"""Shared fixtures: every test gets its own MLCTL_HOME; the CLI runs as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "specs" / "examples"

os.environ["MLCTL_TESTING"] = "1"  # the default home refuses to be used (mlctl.home)
# DefaultAzureCredential keeps only the Azure CLI credential (azure-identity's documented switch),
# in this process and every mlctl it starts: without it, any test that reaches the ACI driver with
# AZURE_* settings in the shell would let the managed-identity credential probe 169.254.169.254,
# which is off loopback. The ACI tests put a stand-in `az` on PATH; elsewhere there is no `az`.
os.environ["AZURE_TOKEN_CREDENTIALS"] = "AzureCliCredential"


@dataclass
class Result:
    """A finished mlctl invocation."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def mlctl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh MLCTL_HOME per test; any web service left running is deleted afterwards."""
    home = tmp_path / "mlctl-home"
    monkeypatch.setenv("MLCTL_HOME", str(home))
    monkeypatch.setenv("NO_COLOR", "1")
    yield home
    if (home / "registry.db").exists():
        names = [s["name"] for s in mlctl("-o", "json", "service", "list").json()]
        for name in names:
            mlctl("service", "delete", name)


def mlctl(*args: str, timeout: float = 600, cwd: Path | None = None, **env: str) -> Result:
    """Run ``python -m mlctl ARGS`` as a subprocess and capture its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "mlctl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write(path: Path, text: str) -> Path:
    """Write dedented ``text`` to ``path`` (creating folders); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def post(
    url: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """POST and return (status, lowercase headers, body), for any status."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    """GET and return (status, body), for any status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, valid one day: (cert.pem, key.pem) in ``folder``."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


ECHO_SCORE = """
import json, os

model_text = None

def init():
    global model_text
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model_text = f.read().strip()

def run(raw_data):
    data = json.loads(raw_data)
    if data.get("fail"):
        raise ValueError("asked to fail")
    return {"model": model_text, "echo": data, "pid": os.getpid()}
"""


@pytest.fixture
def echo_project(tmp_path: Path) -> Path:
    """A folder with model.txt, an echo entry script and a Service spec (current interpreter)."""
    project = tmp_path / "project"
    write(project / "model.txt", "v1")
    write(project / "score.py", ECHO_SCORE)
    service_spec(project / "service.yaml", port=free_port())
    return project


def service_spec(
    path: Path,
    *,
    port: int,
    name: str = "echo",
    entry: str = "score.py",
    model: str = "model.txt",
    test_extra: str = "",
) -> Path:
    """Write a Service spec deploying ``model`` with ``entry`` on the current interpreter.

    ``test_extra``: more lines of the ``test`` block, each indented by two spaces.
    """
    text = textwrap.dedent(f"""\
        apiVersion: mlctl/v1
        kind: Service
        name: {name}
        model_files: [{model}]
        inference_config:
          entry_script: {entry}
          environment: current
        deployment_config:
          port: {port}
          workers: 1
        test:
          input: {{"x": 1}}
        """)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + test_extra)
    return path


def serve_processes() -> list[str]:
    """Command lines of running scoring servers started from this test's MLCTL_HOME."""
    home = os.environ["MLCTL_HOME"]
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if "mlctl.serve" in cmdline and home in cmdline and stat != "Z":
            found.append(cmdline)
    return found


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def serving(base: str) -> bool:
    """Whether the scoring server at ``base`` answers ``/readyz`` with 200."""
    try:
        return get(base + "/readyz", timeout=1)[0] == 200
    except OSError:
        return False


def start_server(
    started: list[subprocess.Popen[bytes]], args: list[str], log: Path, *, cwd: Path | None = None, **popen: Any
) -> str:
    """Start ``python -m mlctl.serve ARGS`` on a free port (appended to ``started``), its output in
    ``log``; returns its base URL once ready (the test fails with the log when it is not)."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlctl.serve", *args, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            **popen,
        )
    started.append(proc)
    base = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: proc.poll() is not None or serving(base), 30), log.read_text()
    assert proc.poll() is None, log.read_text()
    return base


def stop_servers(started: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every server still running; each must exit 0 (a graceful drain)."""
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0


@pytest.fixture(scope="session")
def trained_examples() -> Path:
    """Train the diabetes, digits, ONNX and quick-start examples (in their folders, as the README does)."""
    for example in ("diabetes", "digits", "onnx", "quickstart"):
        subprocess.run([sys.executable, str(EXAMPLES / example / "train.py")], check=True, capture_output=True)
    return EXAMPLES


BASE_IMAGE = os.environ.get("MLCTL_TEST_BASE_IMAGE", "mlctl-test/python:bookworm")


def engine_or_skip() -> Any:
    """A Docker client of an engine that has the tests' base image; skips, saying why, otherwise."""
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
        client.images.get(BASE_IMAGE)
    except Exception as error:  # noqa: BLE001 - any failure means: no engine to test against
        pytest.skip(f"no Docker engine with {BASE_IMAGE} (run `make docker-up` as root): {error}")
    return client


def remove_images(engine: Any, ours: Callable[[str], bool]) -> None:
    """Remove every image with a tag ``ours`` accepts (the engine is shared: only our own names);
    the build cache stays, so a later build of the same layers is quick."""
    from docker.errors import APIError

    for image in engine.images.list():
        if any(ours(tag) for tag in image.tags):
            try:
                engine.images.remove(image.id, force=True, noprune=True)
            except APIError:  # removed already (another tag of it), or in use
                pass


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Docker engine with the tests' base image (skips, saying why, where none can be started)."""
    client = engine_or_skip()
    monkeypatch.setenv("MLCTL_BASE_IMAGE", BASE_IMAGE)
    return client


CONDA_BASE_IMAGE = "mlctl-test/python-conda:bookworm"


@pytest.fixture(scope="session")
def conda_base_image() -> str:
    """A base image with conda: the tests' base image plus tests/conda_base (a ``conda`` command on
    py-rattler, since no conda distribution can be fetched here, and a local channel at
    file:///opt/conda-channel holding python, pip and the conda-only package mlctl-conda-probe).
    Built through the engine's layer cache, so only the first run pays (~30 s)."""
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.images.get(BASE_IMAGE)
    except Exception as error:  # noqa: BLE001 - any failure means: no engine to test against
        pytest.skip(f"no Docker engine with {BASE_IMAGE} (run `make docker-up` as root): {error}")
    client.images.build(
        path=str(REPO / "tests" / "conda_base"),
        tag=CONDA_BASE_IMAGE,
        buildargs={"BASE": BASE_IMAGE},
        network_mode="host",
        rm=True,
        pull=False,
    )
    return CONDA_BASE_IMAGE


# An entry script with run_batch (micro-batching): each answer says how big its batch was.
BATCH_SCORE = """
import json, os, time

def init():
    pass

def run(raw_data):
    return run_batch([raw_data])[0]

def run_batch(raw_data_list):
    time.sleep(0.05)  # a model call that costs the same for 1 or 32 rows
    items = [json.loads(raw) for raw in raw_data_list]
    if any(item.get("fail") for item in items):
        raise ValueError("bad batch")
    return [{"x": item["x"], "batch": len(items)} for item in items]
"""


@contextmanager
def following_logs(service: str) -> Iterator[subprocess.Popen[str]]:
    """``mlctl service logs SERVICE --follow --tail 1`` running, once its tail line arrived (so it
    follows); killed afterwards if it did not end by itself."""
    follower = subprocess.Popen(
        [sys.executable, "-m", "mlctl", "service", "logs", service, "--follow", "--tail", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None and follower.stdout.readline()
        yield follower
    finally:
        if follower.poll() is None:
            follower.kill()
        follower.communicate()


@contextmanager
def requests_throughout(uri: str, *, until_model: str, clients: int = 4) -> Iterator[tuple[list[str], set[str]]]:
    """Send requests to ``uri`` from ``clients`` threads while the block runs (an update), and
    keep going until an answer names ``until_model`` (10 s at most). Yields (failures, models seen)."""
    failures: list[str] = []
    answers: set[str] = set()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                status, _, body = post(uri, b"{}", timeout=10)
            except OSError as error:
                failures.append(repr(error))
                continue
            if status != 200:
                failures.append(str(status))
            else:
                answers.add(json.loads(body)["model"])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield failures, answers
    finally:
        wait_for(lambda: until_model in answers, 10)
        stop.set()
        for thread in threads:
            thread.join()
