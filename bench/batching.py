"""Micro-batching's throughput/latency trade-off on the diabetes model (a benchmark, not a test).

    python bench/batching.py [--duration 5] [--connections 64]

Starts ``python -m mlctl.serve`` (2 workers) with bench/batch_score.py in several batching
settings, loads each with wrk (keep-alive, 2-row body) on 127.0.0.1, prints req/s and latency.
Needs scikit-learn and wrk (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from _server import free_port, start_server, wait_ready

REPO = Path(__file__).resolve().parent.parent
SETTINGS = {
    "off": [],
    "max 32, wait 0 ms": ["--batch-size", "32"],
    "max 32, wait 2 ms": ["--batch-size", "32", "--batch-wait-ms", "2"],
}
LUA = 'wrk.method = "POST"\nwrk.body = \'{"data": [[1,2,3,4,5,6,7,8,9,10],[10,9,8,7,6,5,4,3,2,1]]}\'\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="mlctl-batching-"))
    subprocess.run([sys.executable, str(REPO / "specs/examples/diabetes/train.py")], check=True, capture_output=True)
    (work / "model").mkdir()
    shutil.copy(REPO / "specs/examples/diabetes/sklearn_regression_model.pkl", work / "model")
    (work / "post.lua").write_text(LUA)
    print(f"{'batching':22} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}   ({args.connections} connections, 2 workers)")
    for name, extra in SETTINGS.items():
        rps, p50, p99 = measure(work, extra, args)
        print(f"{name:22} {rps:8.0f} {p50:8.2f} {p99:8.2f}")


def measure(work: Path, extra: list[str], args: argparse.Namespace) -> tuple[float, float, float]:
    port = free_port()
    server = start_server(REPO / "bench/batch_score.py", port, "--model-dir", str(work / "model"), *extra)
    try:
        wait_ready(port)
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{args.connections}",
                f"-d{args.duration}s",
                "--latency",
                "-s",
                str(work / "post.lua"),
                f"http://127.0.0.1:{port}/score",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, _latency(out, "50%"), _latency(out, "99%")


def _latency(out: str, percentile: str) -> float:
    value, unit = re.search(rf"{re.escape(percentile)}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


if __name__ == "__main__":
    main()
