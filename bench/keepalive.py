"""Sequential keep-alive latency of ``/score`` vs OIP ``infer``, and no-code ONNX vs the old ``score.py``.

    .venv/bin/python bench/keepalive.py [--requests 3000] [--rows 2 100]

Starts ``python -m mlctl.serve`` (one worker) for the diabetes entry script, the no-code ONNX
graph and the ONNX example's old ``score.py``, then sends requests one at a time on one
keep-alive connection per route, the routes taking turns in rounds of 100, and prints the
median and mean µs a request (client and server on the same machine: the client's own cost is
in every number alike).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _server import free_port  # noqa: E402
from model_kinds import ENTRY, OLD_ONNX_SCORE  # noqa: E402
from per_request import _models, _oip  # noqa: E402


def main() -> None:
    """Print a Markdown table of latencies."""
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--rows", type=int, nargs="+", default=[2, 100])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        x = _models(folder)
        (folder / "entry.py").write_text(ENTRY)
        (folder / "old.py").write_text(OLD_ONNX_SCORE)
        common = ["--model-dir", str(folder), "--workers", "1", "--model-name", "m"]
        servers = {
            "entry": _start(["--entry-script", str(folder / "entry.py"), *common]),
            "onnx": _start(["--model-kind", "onnx", "--model-path", str(folder / "model.onnx"), *common]),
            "old": _start(["--entry-script", str(folder / "old.py"), *common]),
        }
        try:
            print("| route | rows | median µs | mean µs |\n|---|---|---|---|")
            for rows in args.rows:
                data = x[:rows].tolist()
                score = json.dumps({"data": data}).encode()
                cells = [
                    ("entry /score", servers["entry"], "/score", score),
                    ("entry OIP", servers["entry"], "/v2/models/m/infer", _oip(data, "FP64")),
                    ("ONNX no-code /score", servers["onnx"], "/score", score),
                    ("ONNX no-code OIP", servers["onnx"], "/v2/models/m/infer", _oip(data, "FP32")),
                    ("ONNX old score.py /score", servers["old"], "/score", score),
                ]
                for (name, *_), times in zip(cells, _latencies(cells, args.requests), strict=True):
                    print(f"| {name} | {rows} | {statistics.median(times):.0f} | {statistics.fmean(times):.0f} |")
        finally:
            for proc, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)


def _start(options: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [sys.executable, "-m", "mlctl.serve", *options, "--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/m/ready", timeout=5) as answer:
                if answer.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server {command} did not get ready")


def _latencies(cells: list[tuple[str, tuple[object, int], str, bytes]], requests: int) -> list[list[float]]:
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _, (_, port), _, _ in cells]
    headers = {"Content-Type": "application/json"}
    times: list[list[float]] = [[] for _ in cells]
    for _ in range(max(requests // 100, 1)):
        for i, (_, _, path, body) in enumerate(cells):
            connection = connections[i]
            for _ in range(100):
                started = time.perf_counter()
                connection.request("POST", path, body, headers)
                response = connection.getresponse()
                response.read()
                times[i].append((time.perf_counter() - started) * 1e6)
                assert response.status == 200, (path, response.status)
    for connection in connections:
        connection.close()
    return times


if __name__ == "__main__":
    main()
