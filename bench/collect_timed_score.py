# Entry script of bench/collect_in_server.py: bench/collect_diabetes_score.py (the v1 AKS sample's
# shape) with the request thread's CPU time of its two collect() calls added up, and written to
# $MLCTL_BENCH_TIMES/<pid>.json every 1000 requests (workers leave with os._exit: no atexit).
import json
import os
import time

import joblib
import numpy
from azureml.monitoring import ModelDataCollector


def init():
    global model, inputs_dc, prediction_dc, spent, calls
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "sklearn_regression_model.pkl"))
    name, features = "sklearn_regression_model.pkl", [f"feat{i}" for i in range(1, 11)]
    inputs_dc = ModelDataCollector(name, identifier="inputs", feature_names=features)
    prediction_dc = ModelDataCollector(name, identifier="predictions", feature_names=["prediction"])
    spent, calls = 0.0, 0


def run(raw_data):
    global spent, calls
    data = numpy.array(json.loads(raw_data)["data"])
    result = model.predict(data)
    started = time.thread_time()
    inputs_dc.collect(data)
    prediction_dc.collect(result.reshape(-1, 1))
    spent += time.thread_time() - started
    calls += 1
    if calls % 1000 == 0:
        with open(os.path.join(os.environ["MLCTL_BENCH_TIMES"], f"{os.getpid()}.json"), "w") as out:
            json.dump({"seconds": spent, "calls": calls}, out)
    return result.tolist()
