"""Throughput of the model kinds and protocols, pairwise, on the diabetes regression (2 rows a request).

    .venv/bin/python bench/model_kinds.py [--seconds 5] [--connections 16] [--workers 1]

Cells (wrk, loopback, same machine, each pair back to back):
1. one entry script (``run()`` and ``infer()`` on the pickle): ``POST /score`` vs OIP ``infer``;
2. the ONNX graph: no-code (``--model-kind onnx``) vs the entry script the example had (``score.py``
   calling onnxruntime);
3. the MLflow model (saved by MLflow): mlctl no-code ``/invocations`` vs MLflow's own
   ``mlflow models serve`` (the full mlflow in the venv of ``tests/mlflow_oracle.py``).
Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _server import free_port  # noqa: E402

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


def main() -> None:
    """Run every cell and print the table."""
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = _models(folder)
        oip = {"inputs": [{"name": "data", "shape": [2, 10], "datatype": "FP64", "data": ROWS}]}
        onnx_oip = {"inputs": [{"name": "X", "shape": [2, 10], "datatype": "FP32", "data": ROWS}]}
        score, mlflow_body = {"data": ROWS}, {"inputs": ROWS}
        entry = folder / "entry.py"
        entry.write_text(ENTRY)
        old = folder / "old_score.py"
        old.write_text(OLD_ONNX_SCORE)
        common = ["--model-dir", str(models), "--workers", str(args.workers), "--model-name", "m"]
        cells = [
            ("entry script /score", ["--entry-script", str(entry), *common], "/score", score),
            ("entry script OIP infer", ["--entry-script", str(entry), *common], "/v2/models/m/infer", oip),
            (
                "ONNX no-code /score",
                ["--model-kind", "onnx", "--model-path", str(models / "model.onnx"), *common],
                "/score",
                score,
            ),
            (
                "ONNX no-code OIP infer",
                ["--model-kind", "onnx", "--model-path", str(models / "model.onnx"), *common],
                "/v2/models/m/infer",
                onnx_oip,
            ),
            ("ONNX old score.py /score", ["--entry-script", str(old), *common], "/score", score),
            (
                "MLflow no-code /invocations",
                ["--model-kind", "mlflow", "--model-path", str(models / "mlflow"), *common],
                "/invocations",
                mlflow_body,
            ),
        ]
        rows = [(name, *_measure(_mlctl(options), path, body, args)) for name, options, path, body in cells]
        rows.append(
            (
                "MLflow `mlflow models serve` /invocations",
                *_measure(_mlflow(models / "mlflow", args.workers), "/invocations", mlflow_body, args),
            )
        )
    print(f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.workers} worker(s), 2 rows a request\n")
    print("| server / route | req/s | p50 ms | p99 ms | non-2xx |\n|---|---|---|---|---|")
    for name, rps, p50, p99, errors in rows:
        print(f"| {name} | {rps:,.0f} | {p50} | {p99} | {errors} |")


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
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
            lua.write(
                f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
            )
        out = subprocess.run(
            ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "--latency", "-s", lua.name, url],
            capture_output=True,
            text=True,
            timeout=args.seconds + 30,
            check=True,
        ).stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+\w+)", out).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p50, p99, int(errors.group(1)) if errors else 0


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
