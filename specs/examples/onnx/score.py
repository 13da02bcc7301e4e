"""Entry script serving the diabetes Ridge as ONNX with onnxruntime (no scikit-learn needed).

Same input and output as ../diabetes/score.py: {"data": [[10 numbers], ...]} -> [prediction, ...].
ONNX runs in float32, so answers match the pickle's to within 0.01 (the spec's test tolerance).
"""

import json
import os

import numpy as np
import onnxruntime

session = None


def init():
    global session
    path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "diabetes.onnx")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def run(raw_data):
    rows = np.array(json.loads(raw_data)["data"], dtype=np.float32)
    (predictions,) = session.run(None, {session.get_inputs()[0].name: rows})
    return predictions.ravel().tolist()
