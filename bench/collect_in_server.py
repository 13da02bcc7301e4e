"""Where collection's CPU goes inside the scoring server (a benchmark, not a test).

    .venv/bin/python bench/collect_in_server.py [--seconds 10] [--connections 64] [--workers 2] \
        [--body /work/shared/bench/bodies/body2.json --body .../body100.json]

Serves the v1 AKS sample's shape on the diabetes Ridge with collection on (rows to a local store in
a temporary folder), through bench/collect_timed_score.py, which adds up the request thread's CPU
time (``time.thread_time``, ~0.2 µs a call here) of the two ``collect()`` calls of every ``run()``.
Loads it with wrk as the key cell does (``-t1``, keep-alive, after 3 s of warm-up) and prints, per
body, in µs a request: the two calls on the request thread, the workers' other threads (the
writer thread: appending to the store), the workers' main threads in all, and the server's CPU in
all (user + system from /proc). Compare with bench/collect_cpu.py's "of which on the request
thread" (the same calls, request after request in one process) and with bench/collection.py's
"server CPU µs/req, off" to see what the rest of each request pays for them (caches, GC).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from _server import free_port, wait_ready, wrk
from collection import diabetes_model

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent / ".." / "shared" / "bench" / "bodies"


def thread_ticks(pid: int) -> tuple[float, float]:
    """CPU seconds of ``pid``'s worker processes: (main threads, other threads)."""
    main = other = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        for task in Path(f"/proc/{child}/task").iterdir():
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            seconds = (int(fields[11]) + int(fields[12])) / tick
            if task.name == child:
                main += seconds
            else:
                other += seconds
    return main, other


def measure(body: Path, args: argparse.Namespace, model_dir: Path) -> dict[str, float]:
    """µs a request for one body: the collect() calls, other threads, main threads, the server."""
    store, times = Path(tempfile.mkdtemp(prefix="mlctl-dc-store-")), Path(tempfile.mkdtemp(prefix="mlctl-dc-t-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AML_MODEL_DC", "MLCTL_DC"))}
    env.update(AML_MODEL_DC_STORAGE_ENABLED="true", MLCTL_DC_LOCAL=str(store), SERVICE_NAME="bench")
    env.update(MLCTL_BENCH_TIMES=str(times))
    command = [sys.executable, "-m", "mlctl.serve", "--entry-script", str(HERE / "collect_timed_score.py")]
    command += ["--port", str(port), "--workers", str(args.workers), "--model-dir", str(model_dir)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        url, payload = f"http://127.0.0.1:{port}/score", body.read_bytes()
        wrk(url, payload, seconds=3, connections=args.connections)
        main_before, other_before = thread_ticks(server.pid)
        served_before = [json.loads(p.read_text()) for p in times.glob("*.json")]
        rps, _, _, _ = wrk(url, payload, seconds=args.seconds, connections=args.connections)
        main_after, other_after = thread_ticks(server.pid)
        served_after = [json.loads(p.read_text()) for p in times.glob("*.json")]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(times, ignore_errors=True)
    requests = rps * args.seconds
    calls = sum(s["calls"] for s in served_after) - sum(s["calls"] for s in served_before)
    spent = sum(s["seconds"] for s in served_after) - sum(s["seconds"] for s in served_before)
    return {
        "collect": spent / max(1, calls) * 1e6,
        "other threads": (other_after - other_before) / requests * 1e6,
        "main threads": (main_after - main_before) / requests * 1e6,
        "req/s": rps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--body", type=Path, action="append", help="JSON body file (repeatable)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    bodies = args.body or [SHARED / "body2.json", SHARED / "body100.json"]
    model_dir = diabetes_model(Path(tempfile.mkdtemp(prefix="mlctl-collection-model-")))
    try:
        print("| body | req/s | two collect() calls µs | workers' other threads µs | workers' main threads µs |")
        print("|---|---|---|---|---|")
        for body in bodies:
            m = measure(body, args, model_dir)
            print(
                f"| {body.stem} | {m['req/s']:.0f} | {m['collect']:.1f} | {m['other threads']:.1f} | "
                f"{m['main threads']:.1f} |",
                flush=True,
            )
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
