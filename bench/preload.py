"""Memory of the scoring server's process tree with a large model, preload on and off.

A benchmark, not a test: it prints numbers; record them in docs/benchmarks.md with this command.

    python bench/preload.py [--model-mb 500] [--workers 1,2,4]

For each worker count, ``python -m mlctl.serve`` serves an entry script whose ``init()`` holds a
``--model-mb`` numpy array (every page written, as a loaded model's), once with ``--preload``
(``init()`` in the supervisor, workers forked after: the pages are shared copy-on-write) and once
without (``init()`` in every worker: one copy each). Once every worker answers, the PSS of the
supervisor and all its children (``/proc/PID/smaps_rollup``, shared pages split between the
processes that map them, so the sum is the tree's real footprint) is printed in MiB.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = """
import os
import numpy as np

model = None

def init():
    global model
    model = np.ones(int(os.environ["MODEL_MB"]) * 2**20 // 8)  # written: resident, as a loaded model

def run(data):
    return {"sum": float(model[:10].sum()), "pid": os.getpid()}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc/PID/task/*/children``)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def field_kib(pid: int, name: str, file: str) -> int:
    for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def wait_loaded(pid: int, workers: int, model_kib: int, timeout_s: float = 120) -> list[int]:
    """Block until ``pid`` has ``workers`` children, each with the model resident."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kids = children(pid)
        if len(kids) == workers and all(field_kib(k, "VmRSS", "status") > 0.9 * model_kib for k in kids):
            return kids
        time.sleep(0.2)
    raise RuntimeError("workers did not load the model in time")


def score(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/score", body=b"{}")
    assert conn.getresponse().status == 200
    conn.close()


def measure(script: Path, workers: int, preload: bool, model_mb: int) -> float:
    """PSS of the server tree in MiB, once every worker holds the model and has answered."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlctl.serve", "--entry-script", str(script), "--port", str(port)]
    cmd += ["--workers", str(workers), "--preload" if preload else "--no-preload"]
    env = {**os.environ, "MODEL_MB": str(model_mb)}
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        kids = wait_loaded(server.pid, workers, model_mb * 1024)
        for _ in range(4 * workers):
            score(port)
        return sum(field_kib(p, "Pss", "smaps_rollup") for p in [server.pid, *kids]) / 1024
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-mb", type=int, default=500)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "score.py"
        script.write_text(SCRIPT)
        print(f"model {args.model_mb} MB; PSS of the server tree, MiB")
        print(f"{'workers':>8} {'preload off':>12} {'preload on':>11} {'saved':>7}")
        for workers in (int(w) for w in args.workers.split(",")):
            off = measure(script, workers, False, args.model_mb)
            on = measure(script, workers, True, args.model_mb)
            print(f"{workers:>8} {off:>12.0f} {on:>11.0f} {1 - on / off:>7.0%}")


if __name__ == "__main__":
    main()
