"""``from azureml.core import Model`` inside the scoring server (see ``azureml.core.model``)."""

from azureml.core.model import Model

__all__ = ["Model"]
