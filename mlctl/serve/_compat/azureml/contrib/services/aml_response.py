"""``AMLResponse``: lets ``run()`` choose the status, headers and body of its answer.

Same constructor as Azure ML's (azureml-inference-server-http ``api/aml_response.py``).
"""

from mlctl.serve.request import Response as AMLResponse

__all__ = ["AMLResponse"]
