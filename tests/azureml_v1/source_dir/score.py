# A v1 entry script: init() loads the model, run() answers.
import json
import os

model = None


def init():
    global model
    folder = os.environ["AZUREML_MODEL_DIR"]
    with open(os.path.join(folder, "model.txt")) as f:
        model = f.read().strip()


def run(raw_data):
    data = json.loads(raw_data)
    return {"model": model, "echo": data, "env": os.environ.get("EXAMPLE_ENV_VAR")}
