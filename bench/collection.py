"""Serving throughput with model data collection on against off (a benchmark, not a test).

    python bench/collection.py [--duration 5] [--rounds 2] [--connections 16]
    python bench/collection.py --client wrk --connections 64 --body body2.json --body body100.json --rounds 3

Starts ``python -m mlctl.serve`` (2 workers) on an entry script that collects its inputs and
predictions in every ``run()``: ``--model diabetes`` (the default) is the Azure ML v1 AKS
data-collection sample's ``score.py`` shape (bench/collect_diabetes_score.py) on the scikit-learn
diabetes Ridge that the shared peer benchmark serves, trained here; ``--model linear``
(bench/collect_score.py) is a numpy dot product, the stress case where collecting costs more than
scoring. Each runs once with collection off (``AML_MODEL_DC_STORAGE_ENABLED``
unset: ``collect()`` returns at once) and once on (rows to a local store in a temporary folder).
Loads each with keep-alive HTTP/1.1 clients (asyncio, in this process) posting 2-row and 100-row
bodies on 127.0.0.1; rounds alternate off/on so a busy machine hurts both alike. Prints req/s per
cell, the on/off ratio, and the server's CPU per request (user + system time of the server and its
workers, from /proc: the load generator shares the machine, so this is steadier than req/s). Needs
numpy, orjson, and scikit-learn with joblib for the diabetes model (``make install``).

``--client wrk`` loads with wrk as the shared peer harness does (``-t1 --timeout 5s``, keep-alive),
``--body FILE`` (repeatable) posts a JSON body of the harness (``{"data": [[10 floats], ...]}``,
e.g. its ``body2.json`` and ``body100.json``) instead of the generated 2- and 100-row bodies, and
``--workers`` sets the server's workers: ``bench/serving.sh`` (``SCENARIO=collection``) runs it so,
with the key cell's settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _server import free_port, wait_ready, wrk

HERE = Path(__file__).resolve().parent


def body(rows: int) -> bytes:
    """A scoring request body of ``rows`` rows of 10 features."""
    return json.dumps({"data": [[(r + c) % 7 for c in range(10)] for r in range(rows)]}).encode()


async def client(port: int, payload: bytes, until: float) -> int:
    """Post ``payload`` on one keep-alive connection until ``until``; returns requests answered 200."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    done = 0
    while time.monotonic() < until:
        writer.write(head.encode() + payload)
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        done += status.split()[1] == b"200"
    writer.close()
    return done


async def load(port: int, payload: bytes, seconds: float, connections: int) -> float:
    """Requests per second over ``seconds`` with ``connections`` clients."""
    until = time.monotonic() + seconds
    counts = await asyncio.gather(*(client(port, payload, until) for _ in range(connections)))
    return sum(counts) / seconds


def diabetes_model(folder: Path) -> Path:
    """``folder`` holding the scikit-learn diabetes Ridge as the shared benchmark trains it."""
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    joblib.dump(Ridge().fit(x, y), folder / "sklearn_regression_model.pkl")
    return folder


def serve(port: int, store: Path | None, workers: int = 2, model_dir: Path | None = None) -> subprocess.Popen[bytes]:
    """The server, collecting into ``store`` (None: collection off); the diabetes sample when
    ``model_dir`` is given, else the numpy linear model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AML_MODEL_DC", "MLCTL_DC"))}
    if store is not None:
        env.update(AML_MODEL_DC_STORAGE_ENABLED="true", MLCTL_DC_LOCAL=str(store), SERVICE_NAME="bench")
    script = "collect_score.py" if model_dir is None else "collect_diabetes_score.py"
    command = [sys.executable, "-m", "mlctl.serve", "--entry-script", str(HERE / script)]
    command += ["--port", str(port), "--workers", str(workers)]
    command += [] if model_dir is None else ["--model-dir", str(model_dir)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its descendants (Linux /proc; 0 elsewhere)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return total


def cell(payload: bytes, store: Path | None, args: argparse.Namespace) -> tuple[float, float, str]:
    """(req/s, server CPU µs per request, p99 latency as wrk prints it) of one server (started and
    stopped here) for ``payload``."""
    port = free_port()
    server = serve(port, store, args.workers, args.model_dir)
    try:
        wait_ready(port)
        if args.client == "wrk":
            url = f"http://127.0.0.1:{port}/score"
            wrk(url, payload, seconds=args.warmup, connections=args.connections)
            before = tree_cpu_s(server.pid)
            rps, _, p99, errors = wrk(url, payload, seconds=args.duration, connections=args.connections)
            if errors:
                print(f"warning: {errors} errors (non-2xx or socket) in a cell", file=sys.stderr)
        else:
            asyncio.run(load(port, payload, args.warmup, args.connections))
            before = tree_cpu_s(server.pid)
            rps, p99 = asyncio.run(load(port, payload, args.duration, args.connections)), "-"
        return rps, (tree_cpu_s(server.pid) - before) / max(1.0, rps * args.duration) * 1e6, p99
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="server workers")
    parser.add_argument("--client", choices=("asyncio", "wrk"), default="asyncio")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each measured cell")
    parser.add_argument("--body", type=Path, action="append", help="JSON body file (repeatable)")
    parser.add_argument(
        "--model",
        choices=("diabetes", "linear"),
        default="diabetes",
        help="diabetes: the v1 AKS data-collection sample (scikit-learn Ridge); linear: a numpy dot product (stress)",
    )
    args = parser.parse_args()
    args.model_dir = None
    if args.model == "diabetes":
        args.model_dir = diabetes_model(Path(tempfile.mkdtemp(prefix="mlctl-collection-model-")))
    bodies = [(f.stem, f.read_bytes()) for f in args.body] if args.body else [(f"body{n}", body(n)) for n in (2, 100)]
    store = Path(tempfile.mkdtemp(prefix="mlctl-collection-"))
    try:
        setting = f"{args.connections} connections, {args.workers} worker(s), {args.rounds} round(s) alternating"
        print(f"collection on vs off: {args.model} model, {args.client}, {setting}")
        columns = "collection off (req/s) | collection on (req/s) | on/off | server CPU µs/req, off | on"
        print(f"| body | {columns} | p99, off | on |")
        print("|---|---|---|---|---|---|---|---|")
        for name, payload in bodies:
            off, on = [], []
            for _ in range(args.rounds):  # alternate, so a busy machine hurts both alike
                off.append(cell(payload, None, args))
                on.append(cell(payload, store, args))
            rate_off, rate_on = (sum(c[0] for c in cells) / args.rounds for cells in (off, on))
            cpu_off, cpu_on = (sum(c[1] for c in cells) / args.rounds for cells in (off, on))
            p99_off, p99_on = (" / ".join(c[2] for c in cells) for cells in (off, on))
            ratio = rate_on / rate_off
            row = f"| {name} | {rate_off:.0f} | {rate_on:.0f} | {ratio:.2f} | {cpu_off:.0f} | {cpu_on:.0f} "
            row += f"| {p99_off} | {p99_on} |"
            print(row, flush=True)
        written = sum(len(p.read_text().splitlines()) - 1 for p in store.rglob("*.csv"))
        print(f"rows written with collection on: {written}")
    finally:
        shutil.rmtree(store, ignore_errors=True)
        if args.model_dir is not None:
            shutil.rmtree(args.model_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
