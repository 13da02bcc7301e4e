# Entry script of bench/collection.py: the AKS data-collection sample's shape on a 10-feature
# linear model (numpy only): inputs and predictions collected in every run().
import json

import numpy
from azureml.monitoring import ModelDataCollector

WEIGHTS = numpy.arange(1.0, 11.0)


def init():
    global inputs_dc, prediction_dc
    names = [f"feat{i}" for i in range(10)]
    inputs_dc = ModelDataCollector("linear", designation="inputs", feature_names=names)
    prediction_dc = ModelDataCollector("linear", designation="predictions", feature_names=["prediction"])


def run(raw_data):
    data = numpy.array(json.loads(raw_data)["data"])
    result = data @ WEIGHTS
    inputs_dc.collect(data)
    prediction_dc.collect(result.reshape(-1, 1))
    return {"result": result.tolist()}
