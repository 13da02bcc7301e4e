"""An Azure ML SDK v1 entry script with inference-schema decorators: run(data) gets the "data" key
of the JSON body as a numpy array, and the service's swagger.json describes it."""

import joblib
import numpy as np
from azureml.core import Model
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.schema_decorators import input_schema, output_schema

input_sample = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
output_sample = np.array([4952.8])


def init():
    global model
    model = joblib.load(Model.get_model_path("diabetes-ridge"))  # the registered model's name


@input_schema("data", NumpyParameterType(input_sample))
@output_schema(NumpyParameterType(output_sample))
def run(data):
    return model.predict(data).tolist()
