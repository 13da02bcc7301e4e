"""``AMLRequest`` and ``@rawhttp`` for entry scripts that need the raw HTTP request.

Contract (Azure ML, azureml-inference-server-http ``api/aml_request.py``): ``@rawhttp`` on
``run()`` makes the server call ``run(request)`` with the request object instead of the body
string. The object is flask's ``Request`` (werkzeug's), built by the server; see
``mlctl.serve.rawhttp``.
"""

from mlctl.serve.rawhttp import AMLRequest

_rawHttpRequested = False


def rawhttp(func):
    """Mark ``run()`` as wanting the raw request (as Azure ML's ``rawhttp``)."""
    global _rawHttpRequested
    _rawHttpRequested = True
    func.__mlctl_rawhttp__ = True
    return func


__all__ = ["AMLRequest", "rawhttp"]
