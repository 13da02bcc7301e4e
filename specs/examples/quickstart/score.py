import json
import os

import joblib

model = None


def init():
    # AZUREML_MODEL_DIR: the folder holding the model file named in service.yaml
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "iris.pkl"))


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    return model.predict(rows).tolist()
