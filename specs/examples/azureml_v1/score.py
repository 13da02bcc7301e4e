"""An Azure ML SDK v1 entry script in the style of the ACI walk-through, unchanged for mlctl.

It finds its model the v1 way, by the registered model file's name, with azureml-core's
Model.get_model_path (mlctl's scoring server provides it).
"""

import json

import joblib
import numpy as np
from azureml.core.model import Model


def init():
    global model
    model_path = Model.get_model_path("sklearn_regression_model.pkl")
    model = joblib.load(model_path)


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return model.predict(data).tolist()
