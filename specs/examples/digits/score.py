"""Entry script of the handwriting example: 8x8 images (64 pixel values, 0-16) -> digit labels."""

import json
import os

import joblib
import numpy as np

model = None


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "digits_model.pkl"))


def run(raw_data):
    images = np.array(json.loads(raw_data)["data"], dtype=float) / 16.0
    return model.predict(images).tolist()
