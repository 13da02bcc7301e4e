"""An Azure ML SDK v1 entry script that answers browsers itself (the "advanced entry script" CORS
pattern): @rawhttp gives run() the request, and its AMLResponse carries the CORS headers, set by
assignment as on a flask Response. OPTIONS (the CORS preflight) reaches run() too."""

import json

import joblib
import numpy as np
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse
from azureml.core.model import Model

ORIGIN = "https://www.example.com"


def init():
    global model
    model = joblib.load(Model.get_model_path("sklearn_regression_model.pkl"))


@rawhttp
def run(request: AMLRequest):
    if request.method == "OPTIONS":
        resp = AMLResponse("", 200)
        resp.headers["Allow"] = "OPTIONS, POST"
        resp.headers["Access-Control-Allow-Methods"] = "OPTIONS, POST"
        resp.headers["Access-Control-Allow-Origin"] = ORIGIN
        resp.headers["Access-Control-Allow-Headers"] = "*"
        return resp
    if request.method == "POST":
        rows = np.array(request.get_json(force=True)["data"])
        resp = AMLResponse(json.dumps(model.predict(rows).tolist()), 200)
        resp.headers["Access-Control-Allow-Origin"] = ORIGIN
        resp.mimetype = "application/json"
        return resp
    return AMLResponse("use POST", 405)
