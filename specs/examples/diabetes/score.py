"""Entry script of the Azure ML diabetes example, unchanged from how Azure ML runs it."""

import json
import os

import joblib
import numpy as np

model = None


def init():
    # AZUREML_MODEL_DIR is the folder of the registered model version.
    global model
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "sklearn_regression_model.pkl")
    model = joblib.load(model_path)


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    result = model.predict(data)
    return result.tolist()
