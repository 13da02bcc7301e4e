"""Server CPU a request under wrk: ``/score`` vs OIP ``infer``, no-code ONNX vs the old ``score.py``.

    .venv/bin/python bench/server_cpu.py [--seconds 2] [--rounds 3] [--workers 1] [--connections 64] \
        [--body /work/shared/bench/bodies/body2.json --body .../body100.json] [--only ONNX]

Starts ``python -m mlctl.serve`` for the diabetes entry script (``run()`` and ``infer()`` of
``bench/model_kinds.py``), the no-code ONNX graph and the ONNX example's old ``score.py``, then
loads each route with wrk (``-t1``, keep-alive, the key cell's bodies), the cells taking turns in
``--rounds`` short rounds. For each cell it prints the median over rounds of the server's CPU time
(user + system of the supervisor and its workers, from ``/proc``) and of wrk's own, in µs a
request, and wrk's req/s. CPU a request is steadier than req/s on a shared machine: it does not
depend on how much of the CPU the server got, only on what it spent. Ratios as in
``bench/model_kinds.py`` (higher is better): ``/score``'s µs over OIP's, the old ``score.py``'s µs
over no-code's. For integer rows (``body2``) the ``entry OIP, INT64 tensor`` cell sends the same
rows as an ``INT64`` tensor: the model then gets the int64 array ``/score``'s ``run()`` makes of
them (``np.array`` of JSON integers), where the ``FP64`` cell gives it float64, which
scikit-learn's ``predict`` checks for NaN and infinities (about 6 µs on the diabetes Ridge): the
difference between the two OIP cells is the model's, not the protocol's. ``--only TEXT`` measures
only the cells whose name contains ``TEXT``.

To measure another version of the server, run the script from a folder holding that version's
``mlctl/`` (``git archive REV mlctl | tar -x -C DIR; cd DIR``): ``python -m mlctl.serve`` puts its
working directory first on ``sys.path``, before ``PYTHONPATH``, so ``PYTHONPATH`` alone does not
switch the servers' code (it does for the in-process ``bench/per_request.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from keepalive import _start  # noqa: E402
from model_kinds import ENTRY, OLD_ONNX_SCORE, ROWS  # noqa: E402
from per_request import _models, _oip  # noqa: E402

_TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def main() -> None:
    """Print a Markdown table of CPU µs a request (server, wrk) and req/s per cell and body."""
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--body", type=Path, action="append", help='{"data": rows} JSON body file (repeatable)')
    p.add_argument("--only", help="measure only the cells whose name contains this text (e.g. ONNX, entry)")
    args = p.parse_args()
    bodies = [json.loads(f.read_text())["data"] for f in args.body] if args.body else [ROWS]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _models(folder)
        (folder / "entry.py").write_text(ENTRY)
        (folder / "old.py").write_text(OLD_ONNX_SCORE)
        common = ["--model-dir", str(folder), "--workers", str(args.workers), "--model-name", "m"]
        servers = {
            "entry": _start(["--entry-script", str(folder / "entry.py"), *common]),
            "onnx": _start(["--model-kind", "onnx", "--model-path", str(folder / "model.onnx"), *common]),
            "old": _start(["--entry-script", str(folder / "old.py"), *common]),
        }
        try:
            _table(servers, bodies, args)
        finally:
            for proc, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)


def _table(
    servers: dict[str, tuple[subprocess.Popen[bytes], int]], bodies: list[list[list[float]]], args: argparse.Namespace
) -> None:
    print(f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.workers} worker(s), median of {args.rounds} rounds\n")
    print("| cell | rows | server µs CPU a request | wrk µs CPU a request | req/s | ratio |\n|---|---|---|---|---|---|")
    for data in bodies:
        score = json.dumps({"data": data}).encode()
        cells = [
            ("entry /score", servers["entry"], "/score", score),
            ("entry OIP", servers["entry"], "/v2/models/m/infer", _oip(data, "FP64")),
            ("entry OIP, INT64 tensor", servers["entry"], "/v2/models/m/infer", _int64(data)),
            ("ONNX no-code /score", servers["onnx"], "/score", score),
            ("ONNX old score.py /score", servers["old"], "/score", score),
            ("ONNX no-code OIP", servers["onnx"], "/v2/models/m/infer", _oip(data, "FP32")),
        ]
        if any(isinstance(v, float) for row in data for v in row):
            del cells[2]  # the INT64 cell only for integer rows (body2)
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name, *_ in cells}
        for _ in range(args.rounds):
            for name, (proc, port), path, body in cells:
                if args.only is None or args.only in name:
                    runs[name].append(_load(proc.pid, f"http://127.0.0.1:{port}{path}", body, args))
        nan = float("nan")
        medians = {
            name: tuple(statistics.median(r[k] for r in found) if found else nan for k in range(3))
            for name, found in runs.items()
        }
        for name, (server, client, rps) in medians.items():
            over = _RATIOS.get(name)
            shown = ""
            if over is not None:
                top, bottom = (name, over[1]) if over[0] else (over[1], name)
                shown = f"{medians[top][0] / medians[bottom][0]:.2f}×"
            print(f"| {name} | {len(data)} | {server:.1f} | {client:.1f} | {rps:,.0f} | {shown} |", flush=True)


# cell -> (its µs is the ratio's numerator, the other cell): each ratio is "higher is better"
_RATIOS = {
    "entry OIP": (False, "entry /score"),
    "entry OIP, INT64 tensor": (False, "entry /score"),
    "ONNX old score.py /score": (True, "ONNX no-code /score"),
    "ONNX no-code OIP": (False, "ONNX no-code /score"),
}


def _int64(data: list[list[float]]) -> bytes:
    tensor = {"name": "data", "shape": [len(data), len(data[0])], "datatype": "INT64", "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


def _load(pid: int, url: str, body: bytes, args: argparse.Namespace) -> tuple[float, float, float]:
    """One wrk run: (server µs CPU a request, wrk's µs CPU a request, req/s)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        lua.flush()
        command = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "5s", "-s", lua.name, url]
        server_before, client_before = _tree_ticks(pid), _children_seconds()
        out = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 60, check=True).stdout
        server_after, client_after = _tree_ticks(pid), _children_seconds()
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    assert "Non-2xx" not in out, out
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    server = (server_after - server_before) * _TICK_US / requests
    return server, (client_after - client_before) * 1e6 / requests, rps


def _tree_ticks(pid: int) -> int:
    """utime + stime (clock ticks) of ``pid`` and its children (the workers), all threads."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += int(fields[11]) + int(fields[12])
    return total


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
