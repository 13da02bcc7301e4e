"""``rawhttp`` and ``AMLRequest`` by the reference server's own module path (its 1.x samples use it).

Same contract as ``azureml.contrib.services.aml_request``: ``@rawhttp`` on ``run()`` makes the
server call ``run(request)`` with the request object (flask's ``Request``); see ``mlctl.serve.rawhttp``.
"""

from mlctl.serve.rawhttp import AMLRequest

_rawHttpRequested = False


def rawhttp(func):
    """Mark ``run()`` as wanting the raw request (as the reference's ``rawhttp``)."""
    global _rawHttpRequested
    _rawHttpRequested = True
    func.__mlctl_rawhttp__ = True
    return func


__all__ = ["AMLRequest", "rawhttp"]
