"""Stand-ins for the parts of the Azure ML SDK v1 that entry scripts use, so they run unchanged:
``azureml.core.model.Model.get_model_path`` and ``azureml.contrib.services`` (``@rawhttp``,
``AMLRequest``, ``AMLResponse``).

Only importable inside the scoring server, which appends ``mlctl/serve/_compat`` to ``sys.path``
(after site-packages, so an installed ``azureml-core`` or ``azureml-contrib-services`` wins).
``azureml`` is a namespace shared by many distributions: extend it with the other ``azureml``
folders on ``sys.path``, as the real packages do.
"""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)
