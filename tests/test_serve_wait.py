"""``max_request_wait_time``: the scoring server's per-request queue-wait limit (``--max-wait-ms``),
on a real server subprocess over HTTP on 127.0.0.1, and the option every target passes it with."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import get, mlctl, post, service_spec, start_server, stop_servers, write

SLOW_SCORE = """\
import time

def init():
    pass

def run(raw_data):
    time.sleep(1.0)
    return {"ok": True}
"""


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    stop_servers(started)


def _start(started: list[subprocess.Popen[bytes]], folder: Path, *extra: str) -> str:
    entry = write(folder / "score.py", SLOW_SCORE)
    options = ["--entry-script", str(entry), "--workers", "1", "--concurrency", "2", "--queue", "16", *extra]
    return start_server(started, options, folder / "server.log")


def _burst(base: str, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` POSTs at once, each on its own connection."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: post(base + "/score", b"{}", timeout=30), range(count)))


def test_requests_that_waited_past_the_limit_get_503_with_retry_after(
    tmp_path: Path, servers: list[subprocess.Popen[bytes]]
) -> None:
    # 2 threads, run() takes 1 s, 8 requests at once: 2 run at once, 2 wait ~1 s (< 1.5 s: run),
    # the other 4 wait ~2 s (> 1.5 s: 503 without run()); 0.5 s margins for a busy machine
    base = _start(servers, tmp_path / "limited", "--max-wait-ms", "1500")
    answers = _burst(base, 8)
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * 4 + [503] * 4, answers
    for status, headers, body in answers:
        if status == 503:
            assert headers["retry-after"] == "1"
            doc = json.loads(body)
            assert "max_request_wait_time" in doc["message"]
            assert doc["request_id"] == headers["x-request-id"]
    metrics = get(base + "/metrics")[1].decode()
    assert re.search(r'^mlctl_requests_total\{route="/score",status="503"\} 4$', metrics, re.M), metrics
    assert re.search(r'^mlctl_requests_total\{route="/score",status="200"\} 4$', metrics, re.M), metrics

    # the same burst without a limit: every request waits its turn and is answered
    unlimited = _start(servers, tmp_path / "unlimited")
    assert [status for status, _, _ in _burst(unlimited, 8)] == [200] * 8


@pytest.mark.parametrize("target", ["process", "docker"])
def test_every_target_running_the_scoring_server_passes_the_limit(tmp_path: Path, target: str) -> None:
    project = tmp_path / "project"
    write(project / "model.txt", "v1")
    write(project / "score.py", SLOW_SCORE)
    spec = service_spec(project / "service.yaml", port=8890)
    spec.write_text(
        spec.read_text().replace("  workers: 1\n", "  workers: 1\n  max_request_wait_time: 250\n")
        + f"target: {target}\n"
    )
    result = mlctl("-o", "json", "service", "render", "-f", str(spec))
    assert result.code == 0, result.err
    assert re.search(r'"--max-wait-ms",\s*"250"', result.out), result.out
