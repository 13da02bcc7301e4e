# Entry script for a look at the garbage collector under model data collection (docs/benchmarks.md,
# "numeric rows formatted by the writer thread"): bench/collect_diabetes_score.py with a
# gc.callbacks hook that counts each generation's collections and their time, written with the
# number of requests and of tracked objects to $MLCTL_BENCH_TIMES/gc-<pid>.json every 20,000
# requests. Serve it with collection on (2 workers) and load it with wrk, e.g.
#   AML_MODEL_DC_STORAGE_ENABLED=true MLCTL_DC_LOCAL=/tmp/store SERVICE_NAME=bench MLCTL_BENCH_TIMES=/tmp \
#     .venv/bin/python -m mlctl.serve --entry-script bench/collect_gc_score.py --model-dir DIR --workers 2
# (DIR holding bench/collection.py's sklearn_regression_model.pkl), then read /tmp/gc-*.json.
import gc
import json
import os
import time

import joblib
import numpy
from azureml.monitoring import ModelDataCollector

collections = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}  # generation -> [count, seconds]
_started = [0.0]
_requests = [0]


def _timed(phase, info):
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        entry = collections[info["generation"]]
        entry[0] += 1
        entry[1] += time.perf_counter() - _started[0]


def init():
    global model, inputs_dc, prediction_dc
    gc.callbacks.append(_timed)
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "sklearn_regression_model.pkl"))
    name, features = "sklearn_regression_model.pkl", [f"feat{i}" for i in range(1, 11)]
    inputs_dc = ModelDataCollector(name, identifier="inputs", feature_names=features)
    prediction_dc = ModelDataCollector(name, identifier="predictions", feature_names=["prediction"])


def run(raw_data):
    data = numpy.array(json.loads(raw_data)["data"])
    result = model.predict(data)
    inputs_dc.collect(data)
    prediction_dc.collect(result.reshape(-1, 1))
    _requests[0] += 1
    if _requests[0] % 20000 == 0:
        report = {"requests": _requests[0], "tracked objects": len(gc.get_objects())}
        report.update({f"gen{g}": {"collections": c, "ms": round(s * 1000, 1)} for g, (c, s) in collections.items()})
        with open(os.path.join(os.environ["MLCTL_BENCH_TIMES"], f"gc-{os.getpid()}.json"), "w") as out:
            json.dump(report, out)
    return result.tolist()
