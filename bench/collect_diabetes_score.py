# Entry script of bench/collection.py (--model diabetes, the default): the Azure ML v1 AKS
# data-collection sample's score.py shape on its model, the scikit-learn diabetes Ridge that the
# shared peer benchmark serves: inputs and predictions collected in every run().
import json
import os

import joblib
import numpy
from azureml.monitoring import ModelDataCollector


def init():
    global model, inputs_dc, prediction_dc
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "sklearn_regression_model.pkl"))
    name, features = "sklearn_regression_model.pkl", [f"feat{i}" for i in range(1, 11)]
    inputs_dc = ModelDataCollector(name, identifier="inputs", feature_names=features)
    prediction_dc = ModelDataCollector(name, identifier="predictions", feature_names=["prediction"])


def run(raw_data):
    data = numpy.array(json.loads(raw_data)["data"])
    result = model.predict(data)
    inputs_dc.collect(data)  # this call is saving our input data into our blob
    prediction_dc.collect(result.reshape(-1, 1))  # and this one our predictions
    return result.tolist()
