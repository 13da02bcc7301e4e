# The shape of Azure ML's AKS data-collection sample entry script (enable-data-collection-for-
# models-in-aks, 2018-2019): an inputs and a predictions collector made in init(), numpy input,
# collect() in run(). The model is a weight in a text file, so the tests need no training.
import json
import time

import numpy
from azureml.core.model import Model
from azureml.monitoring import ModelDataCollector


def init():
    global weight, inputs_dc, prediction_dc
    with open(Model.get_model_path(model_name="weights.txt")) as f:
        weight = float(f.read())
    # the pre-0.1.0a15 keyword, as the sample wrote it
    inputs_dc = ModelDataCollector("weights.txt", identifier="inputs", feature_names=["feat1", "feat2", "feat3"])
    prediction_dc = ModelDataCollector("weights.txt", designation="predictions", feature_names=["prediction"])


def run(data):
    try:
        data = json.loads(data)
        if data.get("frame"):
            import pandas

            frame = pandas.DataFrame(data["data"], columns=["feat1", "feat2", "feat3"])
            correlations = inputs_dc.collect(frame)
            result = (frame.sum(axis=1) * weight).to_numpy()
            prediction_dc.collect(prediction_dc.add_correlations(result.reshape(-1, 1), correlations))
            return json.dumps({"result": result.tolist()})
        data = numpy.array(data["data"])
        result = data.sum(axis=1) * weight
        print("saving input data" + time.strftime("%H:%M:%S"))
        inputs_dc.collect(data)  # this call is saving our input data into our blob
        prediction_dc.collect(result)  # this call is saving our prediction data into our blob
        print("saving prediction data" + time.strftime("%H:%M:%S"))
        return json.dumps({"result": result.tolist()})
    except Exception as e:
        error = str(e)
        print(error + time.strftime("%H:%M:%S"))
        return error
