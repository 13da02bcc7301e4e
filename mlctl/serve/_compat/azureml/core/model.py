"""``azureml.core.model.Model``: what a scoring entry script uses of it, ``Model.get_model_path``.

Contract: azureml-core's ``Model.get_model_path(model_name, version=None, _workspace=None)`` as
it answers inside a deployed web service (see ``mlctl.serve.model_path``). The other members of
the real class talk to an Azure ML workspace, which a scoring server has no business doing.
"""

from mlctl.serve.model_path import MODELS_DIR
from mlctl.serve.model_path import get_model_path as _get_model_path


class Model:
    """Stand-in for azureml-core's ``Model``: only ``get_model_path`` is available."""

    def __init__(self, *args, **kwargs):
        raise TypeError(
            "the mlctl scoring server provides Model.get_model_path() only; Model(workspace, ...) needs "
            "an Azure ML workspace: install azureml-core (keep_azureml_defaults: true) to use it"
        )

    @staticmethod
    def get_model_path(model_name, version=None, _workspace=None):
        """The path of the registered model file or folder ``model_name`` (its highest version)."""
        return _get_model_path(model_name, version)


__all__ = ["MODELS_DIR", "Model"]
