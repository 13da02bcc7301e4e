"""``azureml.exceptions``: the errors ``Model.get_model_path`` raises in the scoring server."""

from mlctl.serve.model_path import ModelNotFoundException, WebserviceException

__all__ = ["ModelNotFoundException", "WebserviceException"]
