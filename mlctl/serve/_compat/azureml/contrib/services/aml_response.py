"""``AMLResponse``: lets ``run()`` choose the status, headers and body of its answer.

flask's ``Response`` (werkzeug's) with Azure ML's constructor (azureml-inference-server-http
``api/aml_response.py``); see ``mlctl.serve.rawhttp``.
"""

from mlctl.serve.rawhttp import AMLResponse

__all__ = ["AMLResponse"]
