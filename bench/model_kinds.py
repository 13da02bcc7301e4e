"""Throughput of the model kinds and protocols, pairwise, on the diabetes regression (2 rows a request).

    .venv/bin/python bench/model_kinds.py [--seconds 5] [--connections 16] [--workers 1]
    .venv/bin/python bench/model_kinds.py --connections 64 --workers 2 --rounds 3 --warmup 3 \
        --body body2.json --body body100.json      # the key cell's settings (bench/serving.sh SCENARIO=kinds)

Cells (wrk, loopback, same machine, each pair back to back):
1. one entry script (``run()`` and ``infer()`` on the pickle): ``POST /score`` vs OIP ``infer``;
2. the ONNX graph: no-code (``--model-kind onnx``) vs the entry script the example had (``score.py``
   calling onnxruntime);
3. the MLflow model (saved by MLflow): mlctl no-code ``/invocations`` vs MLflow's own
   ``mlflow models serve`` (the full mlflow in the venv of ``tests/mlflow_oracle.py``).
Prints a Markdown table per body and the ratios of each pair for docs/benchmarks.md. ``--body FILE``
(repeatable) takes the rows of a ``{"data": rows}`` body (e.g. the shared harness's ``body2.json``
and ``body100.json``; default the 2 rows above); ``--rounds`` repeats every cell, alternating, and
keeps each cell's median.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _server import free_port, wrk  # noqa: E402

ROWS = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]
ENTRY = """
import json, os
import joblib
import numpy as np

def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.pkl"))

def run(raw_data):
    return model.predict(np.array(json.loads(raw_data)["data"])).tolist()

def infer(inputs):
    return {"predictions": model.predict(inputs["data"])}
"""
OLD_ONNX_SCORE = """
import json, os
import numpy as np
import onnxruntime

def init():
    global session
    path = os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.onnx")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])

def run(raw_data):
    rows = np.array(json.loads(raw_data)["data"], dtype=np.float32)
    (predictions,) = session.run(None, {session.get_inputs()[0].name: rows})
    return predictions.ravel().tolist()
"""
SAVE_MLFLOW = """
import sys, joblib, mlflow.sklearn
model = joblib.load(sys.argv[1])
mlflow.sklearn.save_model(model, sys.argv[2], serialization_format="cloudpickle")
"""


PAIRS = [  # (ratio, numerator cell, denominator cell)
    ("OIP infer / entry script /score", "entry script OIP infer", "entry script /score"),
    ("OIP infer, FP64 tensor / entry script /score", "entry script OIP infer, FP64", "entry script /score"),
    ("ONNX no-code / old score.py (/score)", "ONNX no-code /score", "ONNX old score.py /score"),
    ("ONNX no-code OIP infer / no-code /score", "ONNX no-code OIP infer", "ONNX no-code /score"),
    (
        "MLflow no-code / mlflow models serve",
        "MLflow no-code /invocations",
        "MLflow `mlflow models serve` /invocations",
    ),
]


def main() -> None:
    """Run every cell (``--rounds`` times, alternating, for each body) and print the tables."""
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1, help="rounds over every cell, alternating")
    p.add_argument("--warmup", type=float, default=0, help="seconds of wrk load before each measured cell")
    p.add_argument("--body", type=Path, action="append", help='{"data": rows} JSON body file (repeatable)')
    args = p.parse_args()
    bodies = [(f.stem, json.loads(f.read_text())["data"]) for f in args.body] if args.body else [("body2", ROWS)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = _models(folder)
        cells = _cells(folder, models, args.workers)
        results = {name: _run_body(cells, rows, args) for name, rows in bodies}
    rounds = f"{args.rounds} round(s) alternating, median"
    print(f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.workers} worker(s), {rounds}\n")
    for body_name, rows in results.items():
        print(f"{body_name}:\n| server / route | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|")
        for name, (rps, p50, p99, errors) in rows.items():
            print(f"| {name} | {rps:,.0f} | {p50} | {p99} | {errors} |")
        print()
    names = list(results)
    print("| ratio | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for label, top, bottom in PAIRS:
        ratios = [results[b][top][0] / results[b][bottom][0] for b in names]
        print(f"| {label} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")


Cell = tuple[str, Callable[[], tuple[subprocess.Popen[bytes], int]], str, Callable[[list[list[float]]], object]]


def _cells(folder: Path, models: Path, workers: int) -> list[Cell]:
    """(name, server starter, route, body of rows) of every cell, the two of each pair back to back."""
    entry = folder / "entry.py"
    entry.write_text(ENTRY)
    old = folder / "old_score.py"
    old.write_text(OLD_ONNX_SCORE)
    common = ["--model-dir", str(models), "--workers", str(workers), "--model-name", "m"]
    onnx = ["--model-kind", "onnx", "--model-path", str(models / "model.onnx"), *common]
    mlflow = ["--model-kind", "mlflow", "--model-path", str(models / "mlflow"), *common]
    script = ["--entry-script", str(entry), *common]

    def started(options: list[str]) -> Callable[[], tuple[subprocess.Popen[bytes], int]]:
        return lambda: _mlctl(options)

    return [
        ("entry script /score", started(script), "/score", _score),
        ("entry script OIP infer", started(script), "/v2/models/m/infer", _oip),
        ("entry script OIP infer, FP64", started(script), "/v2/models/m/infer", _oip64),
        ("ONNX no-code /score", started(onnx), "/score", _score),
        ("ONNX old score.py /score", started(["--entry-script", str(old), *common]), "/score", _score),
        ("ONNX no-code OIP infer", started(onnx), "/v2/models/m/infer", _oip32),
        ("MLflow no-code /invocations", started(mlflow), "/invocations", _mlflow_body),
        (
            "MLflow `mlflow models serve` /invocations",
            lambda: _mlflow(models / "mlflow", workers),
            "/invocations",
            _mlflow_body,
        ),
    ]


def _score(rows: list[list[float]]) -> object:
    return {"data": rows}


def _mlflow_body(rows: list[list[float]]) -> object:
    return {"inputs": rows}


def _oip(rows: list[list[float]]) -> object:
    """The rows as /score's JSON gives them to run(): INT64 when every value is an integer (body2's
    rows; json.loads then numpy make an int64 array), else FP64. Same values, same element type:
    the ratio is the protocol's cost, not the model's (scikit-learn checks float input for NaN and
    infinities, ~6 µs a call on body2, which int64 input skips)."""
    integers = all(isinstance(v, int) for row in rows for v in row)
    tensor = {"name": "data", "shape": [len(rows), len(rows[0])], "datatype": "INT64" if integers else "FP64"}
    return {"inputs": [{**tensor, "data": rows}]}


def _oip64(rows: list[list[float]]) -> object:
    return {"inputs": [{"name": "data", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": rows}]}


def _oip32(rows: list[list[float]]) -> object:
    return {"inputs": [{"name": "X", "shape": [len(rows), len(rows[0])], "datatype": "FP32", "data": rows}]}


def _run_body(
    cells: list[Cell], rows: list[list[float]], args: argparse.Namespace
) -> dict[str, tuple[float, str, str, int]]:
    """Every cell for one body, ``args.rounds`` times; per cell the round of median req/s."""
    runs: dict[str, list[tuple[float, str, str, int]]] = {name: [] for name, *_ in cells}
    for _ in range(args.rounds):
        for name, start, path, body in cells:
            runs[name].append(_measure(start(), path, body(rows), args))
    return {name: sorted(found)[len(found) // 2] for name, found in runs.items()}


def _models(folder: Path) -> Path:
    import joblib
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    model = Ridge(alpha=0.1).fit(x, y)
    out = folder / "models"
    out.mkdir()
    joblib.dump(model, out / "model.pkl")
    (out / "model.onnx").write_bytes(to_onnx(model, x[:1].astype("float32")).SerializeToString())
    save = [sys.executable, "-c", SAVE_MLFLOW, str(out / "model.pkl"), str(out / "mlflow")]
    subprocess.run(save, check=True, capture_output=True, timeout=300)
    return out


def _mlctl(options: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [sys.executable, "-m", "mlctl.serve", *options, "--port", str(port)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port


def _mlflow(model: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    from mlflow_oracle import oracle_env, oracle_python

    port = free_port()
    command = [str(oracle_python()), "-m", "mlflow", "models", "serve", "-m", str(model), "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]
    env = oracle_env(command[0])
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env), port


def _measure(
    server: tuple[subprocess.Popen[bytes], int], path: str, body: object, args: argparse.Namespace
) -> tuple[float, str, str, int]:
    proc, port = server
    url = f"http://127.0.0.1:{port}{path}"
    try:
        _wait(url, body)
        if args.warmup:
            wrk(url, json.dumps(body).encode(), seconds=args.warmup, connections=args.connections)
        return wrk(url, json.dumps(body).encode(), seconds=args.seconds, connections=args.connections)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _wait(url: str, body: object, timeout_s: float = 120.0) -> None:
    """Until one request answers 200 (the model is loaded); SystemExit with its answer otherwise."""
    deadline, last = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            last = exc.read().decode() if isinstance(exc, urllib.error.HTTPError) else str(exc)
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer 200: {textwrap.shorten(last, 300)}")


if __name__ == "__main__":
    main()
