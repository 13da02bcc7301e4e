"""CPU cost of model data collection per request, in process (a benchmark, not a test).

    python bench/collect_cpu.py [--requests 3000] [--rows 2 100]
    python bench/collect_cpu.py --body /work/shared/bench/bodies/body2.json --body .../body100.json

Runs bench/collect_score.py's ``run()`` body (numpy array from the JSON body's rows, a 10-feature
linear model, an inputs and a predictions collector) ``--requests`` times with collection off and on
(rows to a local store in a temporary folder), each request under its own request id, then flushes
the writer. Prints the process CPU time (``time.process_time``: every thread, so the writer's work
counts) per request, off and on, and the CPU the collection adds. A 2-core machine shared with other
jobs makes wall-clock throughput noisy; CPU time per request is what collection takes from serving.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mlctl" / "serve" / "_compat"))


def requests_cpu(raw: str, count: int, on: bool) -> tuple[float, float]:
    """CPU microseconds per request of ``count`` requests of JSON body ``raw`` (collection ``on``
    or off): the whole process's (every thread) and the requests' thread's alone."""
    import numpy
    from azureml.monitoring import ModelDataCollector

    from mlctl.serve import collect
    from mlctl.serve.context import set_request_id

    os.environ["AML_MODEL_DC_STORAGE_ENABLED"] = "true" if on else "false"
    names = [f"feat{i}" for i in range(10)]
    inputs_dc = ModelDataCollector("linear", designation="inputs", feature_names=names)
    prediction_dc = ModelDataCollector("linear", designation="predictions", feature_names=["prediction"])
    weights = numpy.arange(1.0, 11.0)
    ids = [str(uuid.uuid4()) for _ in range(count)]

    def run(raw_data: str) -> Any:
        data = numpy.array(json.loads(raw_data)["data"])
        result = data @ weights
        inputs_dc.collect(data)
        prediction_dc.collect(result.reshape(-1, 1))
        return {"result": result.tolist()}

    for request_id in ids[:200]:  # warm-up
        set_request_id(request_id)
        run(raw)
    collect.flush_all()
    start, start_thread = time.process_time(), time.thread_time()
    for request_id in ids:
        set_request_id(request_id)
        run(raw)
    request_thread = time.thread_time() - start_thread
    collect.flush_all()
    return (time.process_time() - start) / count * 1e6, request_thread / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rows", type=int, nargs="+", default=[2, 100])
    parser.add_argument("--body", type=Path, action="append", help="JSON body file of 10-feature rows (repeatable)")
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="mlctl-collect-cpu-"))
    os.environ.update(MLCTL_DC_LOCAL=str(store), SERVICE_NAME="bench", MLCTL_DC_BUFFER_ROWS="1000000")
    try:
        print("| body | CPU µs/request, off | on | added by collection | of which on the request thread |")
        print("|---|---|---|---|---|")
        bodies = [(f.stem, f.read_text()) for f in args.body or []] or [
            (f"body{rows}", json.dumps({"data": [[(r + c) % 7 for c in range(10)] for r in range(rows)]}))
            for rows in args.rows
        ]
        for name, raw in bodies:
            with contextlib.redirect_stdout(io.StringIO()):  # the collectors' "not enabled" notices
                off, off_thread = requests_cpu(raw, args.requests, on=False)
                on, on_thread = requests_cpu(raw, args.requests, on=True)
            print(f"| {name} | {off:.0f} | {on:.0f} | {on - off:.0f} | {on_thread - off_thread:.1f} |")
    finally:
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
