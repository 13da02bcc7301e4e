"""The scoring server's own HTTP/1.1 layer (mlctl.serve.http) on raw sockets: framing that urllib hides."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ECHO_SCORE, free_port, get, wait_for, write

OPEN: list[socket.socket] = []  # every client socket, closed when its test ends
UUID_SHAPED = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """``python -m mlctl.serve`` (2 workers, 4 KiB body limit) on the echo script; yields (port, log file)."""
    write(tmp_path / "model" / "model.txt", "v1")
    entry = write(tmp_path / "score.py", ECHO_SCORE)
    port, log = free_port(), tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlctl.serve", "--entry-script", str(entry), "--model-dir", str(tmp_path / "model")]
            + ["--port", str(port), "--workers", "2", "--max-request-bytes", "4096"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_for(lambda: proc.poll() is not None or _ready(port), 30), log.read_text()
        assert proc.poll() is None, log.read_text()
        yield port, log
    finally:
        _close_clients()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def _close_clients() -> None:
    while OPEN:
        OPEN.pop().close()


def _ready(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/readyz", timeout=1)[0] == 200
    except OSError:
        return False


class Client:
    """One keep-alive connection; reads responses framed by Content-Length."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        OPEN.append(self.sock)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def response(self, *, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"connection closed, got {self.buffer!r}"
        top, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = top.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = 0 if head or status == 100 else int(headers["content-length"])
        while len(self.buffer) < length:
            assert self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed(self) -> bool:
        """True when the server closed the connection (after any buffered bytes)."""
        return self.buffer == b"" and not self._fill()

    def close(self) -> None:
        self.sock.close()


def request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_pipelined_requests_are_answered_in_order_on_one_connection(server: tuple[int, Path]) -> None:
    client = Client(server[0])
    client.send(
        request("POST", "/score", b'{"n": 1}', x_request_id="p-1")
        + request("GET", "/healthz", x_request_id="p-2")
        + request("POST", "/score", b'{"fail": true}', x_request_id="p-3")
        + request("POST", "/score", b'{"n": 4}', x_request_id="p-4")
    )
    answers = [client.response() for _ in range(4)]
    assert [(s, h["x-request-id"]) for s, h, _ in answers] == [(200, "p-1"), (200, "p-2"), (500, "p-3"), (200, "p-4")]
    assert json.loads(answers[0][2])["echo"] == {"n": 1} and json.loads(answers[3][2])["echo"] == {"n": 4}
    client.close()


def test_chunked_bodies_are_scored_and_over_the_limit_get_413(server: tuple[int, Path]) -> None:
    client = Client(server[0])
    head = "POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    client.send(head.encode() + b'4\r\n{"n"\r\n4\r\n: 7}\r\n0\r\n\r\n')
    status, _, body = client.response()
    assert status == 200 and json.loads(body)["echo"] == {"n": 7}
    big = b"{" + b" " * 5000 + b"}"
    client.send(head.encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
    assert client.response()[0] == 413
    client.send(request("POST", "/score", b'{"after": 1}'))  # the connection is still in step
    assert json.loads(client.response()[2])["echo"] == {"after": 1}
    client.close()


def test_head_answers_headers_only_and_expect_100_continue_is_honoured(server: tuple[int, Path]) -> None:
    client = Client(server[0])
    client.send(request("HEAD", "/healthz"))
    status, headers, _ = client.response(head=True)
    assert status == 200 and int(headers["content-length"]) > 0
    client.send(request("POST", "/score", Expect="100-continue").replace(b"Content-Length: 0", b"Content-Length: 8"))
    assert client.response()[0] == 100
    client.send(b'{"n": 2}')
    status, _, body = client.response()
    assert status == 200 and json.loads(body)["echo"] == {"n": 2}
    client.close()


def test_bad_requests_get_400_and_http_1_0_and_connection_close_end_the_connection(server: tuple[int, Path]) -> None:
    client = Client(server[0])
    client.send(b"NOT HTTP AT ALL\r\n\r\n")
    assert client.response()[0] == 400 and client.closed()
    for ask in (
        b"POST /score HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
        request("POST", "/score", b"{}", Connection="close"),
    ):
        client = Client(server[0])
        client.send(ask)
        status, headers, _ = client.response()
        assert status == 200 and headers.get("connection") == "close" and client.closed()


def test_idle_keep_alive_connections_are_closed_after_about_five_seconds(server: tuple[int, Path]) -> None:
    client = Client(server[0])
    client.send(request("GET", "/healthz"))
    assert client.response()[0] == 200
    started = time.monotonic()
    assert client.closed()  # blocks until the server closes it
    assert 3.5 < time.monotonic() - started < 8


def test_generated_request_ids_are_uuid_shaped_and_unique_across_workers(server: tuple[int, Path]) -> None:
    ids, pids = set(), set()
    for _ in range(40):
        client = Client(server[0])  # a new connection each time: both workers answer
        client.send(request("POST", "/score", b"{}"))
        status, headers, body = client.response()
        client.close()
        assert status == 200 and UUID_SHAPED.match(headers["x-request-id"]), headers
        ids.add(headers["x-request-id"])
        pids.add(json.loads(body)["pid"])
    assert len(ids) == 40 and len(pids) == 2


def test_without_httptools_the_workers_fall_back_to_uvicorn(tmp_path: Path) -> None:
    write(tmp_path / "model" / "model.txt", "v1")
    entry = write(tmp_path / "score.py", ECHO_SCORE)
    port = free_port()
    hide = "import runpy, sys; sys.modules['httptools'] = None; runpy.run_module('mlctl.serve', run_name='__main__')"
    proc = subprocess.Popen(
        [sys.executable, "-c", hide, "--entry-script", str(entry), "--model-dir", str(tmp_path / "model")]
        + ["--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: proc.poll() is not None or _ready(port), 30)
        client = Client(port)
        client.send(request("POST", "/score", b'{"n": 5}', x_request_id="u-1"))
        status, headers, body = client.response()
        assert (status, headers["x-request-id"], json.loads(body)["echo"]) == (200, "u-1", {"n": 5})
    finally:
        _close_clients()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
