"""``AMLRequest`` and ``@rawhttp`` for entry scripts that need the raw HTTP request.

Contract (Azure ML, azureml-inference-server-http ``api/aml_request.py``): ``@rawhttp`` on
``run()`` makes the server call ``run(request)`` with the request object instead of the body
string. The object offers the flask ``Request`` members entry scripts use; mlctl's server builds
it, so this class is only for ``isinstance`` checks and type hints.
"""

from mlctl.serve.request import Request as AMLRequest

_rawHttpRequested = False


def rawhttp(func):
    """Mark ``run()`` as wanting the raw request (as Azure ML's ``rawhttp``)."""
    global _rawHttpRequested
    _rawHttpRequested = True
    func.__mlctl_rawhttp__ = True
    return func


__all__ = ["AMLRequest", "rawhttp"]
