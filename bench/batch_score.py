"""The diabetes entry script with run_batch: one predict() for every request of a batch."""

import json
import os

import joblib
import numpy as np

model = None


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "sklearn_regression_model.pkl"))


def run(raw_data):
    return run_batch([raw_data])[0]


def run_batch(raw_data_list):
    rows = [json.loads(raw)["data"] for raw in raw_data_list]
    counts = [len(r) for r in rows]
    predictions = model.predict(np.array([row for request in rows for row in request])).tolist()
    results, start = [], 0
    for count in counts:
        results.append(predictions[start : start + count])
        start += count
    return results
