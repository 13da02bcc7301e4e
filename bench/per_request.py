"""In-process CPU time a request of the fast paths: ``/score`` vs OIP ``infer``, entry script and ONNX.

    .venv/bin/python bench/per_request.py [--calls 20000] [--rows 2 100] [--profile CELL]
    .venv/bin/python bench/per_request.py --body /work/shared/bench/bodies/body2.json --body .../body100.json

The ``stub`` script (its ``run()`` and ``infer()`` sum the rows) shows the protocols' own costs.
Each cell builds the back-end and the ``ScoringApp`` as ``python -m mlctl.serve`` does (one
worker, the model called inline, a 60 s scoring timeout), then calls ``ScoringApp.answer_now``
(what ``mlctl.serve.http`` calls for a complete POST) ``--calls`` times with a real body and
reports ``time.process_time`` per call in microseconds (best of 10 interleaved rounds), the body
lengths and a ratio (OIP rows: ``/score``'s µs over OIP's; the old ``score.py`` row: its µs over the
no-code ``/score``'s, >= 1 when no-code is no slower). No sockets: the HTTP parsing and writes are the same
for every route. ``--profile`` prints cProfile's top functions of one cell instead. ``--body FILE``
(repeatable) takes the rows of a ``{"data": rows}`` body instead of the first ``--rows`` diabetes
rows (the key cell's shared ``body2.json``/``body100.json``; cells are then named by row count).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from model_kinds import ENTRY, OLD_ONNX_SCORE  # noqa: E402

STUB = """
import json
import numpy as np

def init():
    pass

def run(raw_data):
    return np.array(json.loads(raw_data)["data"]).sum(axis=1).tolist()

def infer(inputs):
    return {"predictions": inputs["data"].sum(axis=1)}
"""
HEADERS = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]


def main() -> None:
    """Print one Markdown table row per cell (or a profile)."""
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--rows", type=int, nargs="+", default=[2, 100])
    p.add_argument("--profile", help="a cell name, e.g. 'entry OIP 2'")
    p.add_argument("--body", type=Path, action="append", help='{"data": rows} JSON body file (repeatable)')
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        x = _models(folder)
        os.environ["AZUREML_MODEL_DIR"] = str(folder)
        (folder / "entry.py").write_text(ENTRY)
        (folder / "old.py").write_text(OLD_ONNX_SCORE)
        (folder / "stub.py").write_text(STUB)
        apps = {
            "stub": _app("entry_script", folder / "stub.py"),
            "entry": _app("entry_script", folder / "entry.py"),
            "onnx": _app("onnx", folder / "model.onnx"),
            "old score.py": _app("entry_script", folder / "old.py"),
        }
        _out("| cell | rows | request bytes | answer bytes | µs CPU a request | ratio |")
        _out("|---|---|---|---|---|---|")
        bodies = [json.loads(f.read_text())["data"] for f in args.body or []] or [x[:n].tolist() for n in args.rows]
        for data in bodies:
            rows = len(data)
            score = json.dumps({"data": data}).encode()
            cells = [
                ("stub /score", apps["stub"], b"/score", score),
                ("stub OIP", apps["stub"], b"/v2/models/m/infer", _oip(data, "FP64")),
                ("entry /score", apps["entry"], b"/score", score),
                ("entry OIP", apps["entry"], b"/v2/models/m/infer", _oip(data, "FP64")),
                ("ONNX no-code /score", apps["onnx"], b"/score", score),
                ("ONNX no-code OIP", apps["onnx"], b"/v2/models/m/infer", _oip(data, "FP32")),
                ("ONNX old score.py /score", apps["old score.py"], b"/score", score),
            ]
            best = _time_interleaved([(app, url, body) for _, app, url, body in cells], args.calls, args.profile)
            if args.profile:
                for name, app, url, body in cells:
                    if args.profile == f"{name} {rows}":
                        _profile(app, url, body, args.calls)
                continue
            for (name, _, _, body), (us, size) in zip(cells, best, strict=True):
                ratio = {
                    "stub OIP": best[0][0] / us,
                    "entry OIP": best[2][0] / us,
                    "ONNX no-code OIP": best[4][0] / us,
                }.get(name)
                if name.startswith("ONNX old"):
                    ratio = us / best[4][0]
                shown = f"{ratio:.2f}×" if ratio else ""
                _out(f"| {name} | {rows} | {len(body)} | {size} | {us:.1f} | {shown} |")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")  # not print(): the entry scripts' loader prefixes print()'s lines
    sys.stdout.flush()


def _models(folder: Path) -> Any:
    import joblib
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    model = Ridge(alpha=0.1).fit(x, y)
    joblib.dump(model, folder / "model.pkl")
    (folder / "model.onnx").write_bytes(to_onnx(model, x[:1].astype("float32")).SerializeToString())
    return x


def _app(kind: str, path: Path) -> Any:
    from mlctl.serve.app import ScoringApp
    from mlctl.serve.backends import load_backend
    from mlctl.serve.runner import Runner

    if kind == "entry_script":
        backend = load_backend(path)
    else:
        backend = load_backend(None, kind=kind, model_path=path)
    backend.init()
    runner = Runner(concurrency=1, queue=64, timeout_s=60.0)
    return ScoringApp(backend, max_request_bytes=1 << 20, runner=runner, model_name="m")


def _oip(data: list[list[float]], datatype: str) -> bytes:
    tensor = {"name": "data" if datatype == "FP64" else "X", "shape": [len(data), 10], "datatype": datatype}
    return json.dumps({"inputs": [{**tensor, "data": data}]}).encode()


def _time_interleaved(cells: list[tuple[Any, bytes, bytes]], calls: int, skip: str | None) -> list[tuple[float, int]]:
    """Per cell: the least µs of CPU a call over 10 rounds of ``calls / 10``, the cells taking turns
    within each round (so a busy spell of the shared machine hits them alike), and its answer's length."""
    sizes = []
    for app, url, body in cells:
        head, payload = app.answer_now(b"POST", url, HEADERS, body)
        assert head.startswith(b"HTTP/1.1 200"), (head, payload)
        sizes.append(len(payload))
    best = [float("inf")] * len(cells)
    if skip:
        return list(zip(best, sizes, strict=True))
    per_round = max(calls // 10, 1)
    for _ in range(10):
        for i, (app, url, body) in enumerate(cells):
            started = time.process_time()
            for _ in range(per_round):
                app.answer_now(b"POST", url, HEADERS, body)
            best[i] = min(best[i], (time.process_time() - started) / per_round * 1e6)
    return list(zip(best, sizes, strict=True))


def _profile(app: Any, url: bytes, body: bytes, calls: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        app.answer_now(b"POST", url, HEADERS, body)
    profiler.disable()
    text = io.StringIO()  # pstats print()s, and the entry scripts' loader prefixes print()'s lines
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    _out(text.getvalue())


if __name__ == "__main__":
    main()
