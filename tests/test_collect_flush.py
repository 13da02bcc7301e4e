"""``POST /-/mlctl/model-data/flush`` (issue 19): a real multi-worker ``python -m mlctl.serve``
whose workers each buffer model data rows; one request, answered by one worker, has every worker
write them (through the supervisor), and answers only once they are on disk. Then the deployer's
client (``mlctl.modeldata.flush``) against scripted HTTP servers: key rotation, an old image's
404, rows left, no answer (bounded)."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, get, post, start_server, stop_servers, wait_for
from test_collect import read_rows

FLUSH = "/-/mlctl/model-data/flush"

SCRIPT = """
import json
import os

from azureml.monitoring import ModelDataCollector


def init():
    global inputs_dc
    inputs_dc = ModelDataCollector("m", designation="inputs", feature_names=["pid", "n"])


def run(data):
    n = json.loads(data)["n"]
    inputs_dc.collect([os.getpid(), n])
    return {"pid": os.getpid()}
"""

Servers = list[subprocess.Popen[bytes]]


def _server(tmp_path: Path, started: Servers, env: dict[str, str], *options: str) -> str:
    (tmp_path / "score_pid.py").write_text(SCRIPT)
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    env = {**os.environ, "AML_MODEL_DC_STORAGE_ENABLED": "true", "SERVICE_NAME": "flush-svc", **env}
    args = ["--entry-script", str(tmp_path / "score_pid.py"), "--model-dir", str(models), "--workers", "2"]
    return start_server(started, [*args, *options], tmp_path / "server.log", env=env)


@pytest.fixture
def started() -> Iterator[Servers]:
    servers: Servers = []
    try:
        yield servers
    finally:
        stop_servers(servers)


def _score_on_both_workers(base: str, *, headers: dict[str, str] | None = None) -> dict[int, int]:
    """Score on new connections until both workers answered at least 5 times (bounded);
    returns the requests each worker answered, by pid."""
    by_pid: dict[int, int] = {}
    for n in range(200):
        status, _, body = post(base + "/score", json.dumps({"n": n}).encode(), headers)
        assert status == 200, body
        pid = int(json.loads(body)["pid"])
        by_pid[pid] = by_pid.get(pid, 0) + 1
        if len(by_pid) == 2 and min(by_pid.values()) >= 5:
            return by_pid
    raise AssertionError(f"the kernel sent every connection to one worker: {by_pid}")


def test_one_flush_request_writes_the_rows_every_worker_buffers(tmp_path: Path, started: Servers) -> None:
    store = tmp_path / "modeldata"
    # the writers would wait a minute: without the flush, no row reaches the disk during the test
    base = _server(tmp_path, started, {"MLCTL_DC_LOCAL": str(store), "MLCTL_DC_INTERVAL_S": "60"})
    by_pid = _score_on_both_workers(base)
    assert read_rows(store, "inputs") == []  # buffered in both workers
    status, _, body = post(base + FLUSH, b"")
    assert status == 200, body
    assert json.loads(body) == {"written": True, "rows_left": 0, "workers": 2, "workers_answered": 2}
    rows = read_rows(store, "inputs")  # on disk as the answer arrives: no waiting
    assert sorted(int(r["n"]) for r in rows) == list(range(sum(by_pid.values())))
    assert {int(r["pid"]): sum(1 for x in rows if x["pid"] == r["pid"]) for r in rows} == by_pid
    # the workers keep serving and collecting; a second flush writes the new rows too
    more = _score_on_both_workers(base)
    assert post(base + FLUSH + "?timeout=5", b"")[0] == 200
    assert len(read_rows(store, "inputs")) == sum(by_pid.values()) + sum(more.values())
    metrics = get(base + "/metrics")[1].decode()
    assert 'route="other",status="200"' in metrics  # counted, not among the model's routes


def test_flush_needs_the_service_key_with_auth_and_only_post(tmp_path: Path, started: Servers) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"primary": "flush-canary-primary", "secondary": "flush-canary-secondary"}))
    store = tmp_path / "modeldata"
    env = {"MLCTL_DC_LOCAL": str(store), "MLCTL_DC_INTERVAL_S": "60"}
    base = _server(tmp_path, started, env, "--keys-file", str(keys))
    _score_on_both_workers(base, headers={"Authorization": "Bearer flush-canary-secondary"})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "flush-canary-primary"}):
        status, answer_headers, body = post(base + FLUSH, b"", headers)
        assert status == 401 and answer_headers["www-authenticate"] == "Bearer", body
        assert b"canary" not in body
    assert read_rows(store, "inputs") == []  # a refused request flushed nothing
    assert get(base + FLUSH)[0] == 405
    bad = post(base + FLUSH + "?timeout=soon", b"", {"Authorization": "Bearer flush-canary-primary"})
    assert bad[0] == 400 and b"timeout" in bad[2]
    status, _, body = post(base + FLUSH, b"", {"Authorization": "Bearer flush-canary-secondary"})
    assert status == 200 and json.loads(body)["written"] is True, body
    assert len(read_rows(store, "inputs")) >= 10
    assert b"flush-canary" not in (tmp_path / "server.log").read_bytes()


def test_unreachable_storage_answers_504_with_the_rows_left_after_the_time_limit(
    tmp_path: Path, started: Servers
) -> None:
    pytest.importorskip("azure.storage.blob")
    closed = free_port()  # nothing listens there: every write fails
    connection = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint=http://127.0.0.1:{closed}/devstoreaccount1;"
    )
    base = _server(tmp_path, started, {"AML_MODEL_DC_STORAGE": connection})
    by_pid = _score_on_both_workers(base)
    status, _, body = post(base + FLUSH + "?timeout=1", b"", timeout=15)
    assert status == 504, body
    assert json.loads(body) == {
        "written": False,
        "rows_left": sum(by_pid.values()),
        "workers": 2,
        "workers_answered": 2,
    }
    # stop without the graceful-stop flush's 20 s of retries: SIGTERM, then end the workers
    started[0].send_signal(signal.SIGTERM)
    for pid in by_pid:
        os.kill(pid, signal.SIGKILL)
    assert started[0].wait(10) == 0


def test_a_server_that_never_collected_answers_at_once(tmp_path: Path, started: Servers) -> None:
    (tmp_path / "score.py").write_text("def init():\n    pass\n\n\ndef run(data):\n    return 1\n")
    base = start_server(started, ["--entry-script", str(tmp_path / "score.py"), "--workers", "2"], tmp_path / "log")
    assert wait_for(lambda: post(base + FLUSH, b"")[0] == 200, 10)  # both workers serving
    status, _, body = post(base + FLUSH, b"")
    assert status == 200 and json.loads(body)["rows_left"] == 0, body


class _Answers(http.server.BaseHTTPRequestHandler):
    """Answers flush requests as scripted by the test: ``script`` maps a Bearer key ('' for none)
    to (status, JSON body); ``seen`` keeps the keys in the order they came."""

    script: dict[str, tuple[int, dict[str, object]]] = {}
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        type(self).seen.append(key)
        status, doc = type(self).script.get(key, (404, {"message": "not found"}))
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def answers() -> Iterator[tuple[str, type[_Answers]]]:
    handler = type("Handler", (_Answers,), {"script": {}, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_tries_the_other_key_after_a_rotation_and_never_says_a_key(
    answers: tuple[str, type[_Answers]],
) -> None:
    from mlctl.modeldata import flush

    base, handler = answers
    written = {"written": True, "rows_left": 0, "workers": 2, "workers_answered": 2}
    handler.script = {"new-canary": (401, {"error": "unauthorized"}), "old-canary": (200, written)}
    assert flush(base, ["new-canary", "old-canary"]) is None
    assert handler.seen == ["new-canary", "old-canary"]
    handler.script = {"new-canary": (401, {}), "old-canary": (401, {})}
    refused = flush(base, ["new-canary", "old-canary"])
    assert refused is not None and "refused" in refused and "canary" not in refused


def test_the_client_reports_an_old_image_rows_left_and_no_answer(answers: tuple[str, type[_Answers]]) -> None:
    from mlctl.modeldata import flush

    base, handler = answers
    old_image = flush(base)  # a server without the route: 404
    assert old_image is not None and "no flush route" in old_image
    handler.script = {"": (504, {"written": False, "rows_left": 7, "workers": 2, "workers_answered": 2})}
    left = flush(base, timeout_s=1)
    assert left is not None and left.startswith("7 row(s) were still not written after 1s"), left
    closed = flush(f"http://127.0.0.1:{free_port()}")
    assert closed is not None and "did not answer" in closed


def test_the_client_gives_up_on_a_server_that_never_answers() -> None:
    from mlctl.modeldata import flush

    with socket.socket() as silent:  # accepts connections (the backlog), never reads nor answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        started = time.monotonic()
        problem = flush(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0)
    assert problem is not None and "did not answer" in problem
    assert time.monotonic() - started < 8  # timeout_s + 5
