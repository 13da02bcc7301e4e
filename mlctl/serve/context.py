"""The scoring request being served, for code that runs inside ``run()`` and cannot be passed it.

Model data collection (``$aml_request_id``) and log lines printed by an entry script need the id of
the request that is being scored without the script passing it along, as in
azureml-inference-server-http, whose log lines and collected rows carry the request id. The scoring
pipeline sets it before it calls the model; a call on the runner's thread pool sees it too
(``mlctl.serve.runner`` runs each call in a copy of the caller's context). Outside a request
(``init()``, the message process between messages) it is the all-zero id the reference server logs.
"""

from __future__ import annotations

from contextvars import ContextVar

NO_REQUEST = "00000000-0000-0000-0000-000000000000"

_request_id: ContextVar[str] = ContextVar("mlctl_request_id", default=NO_REQUEST)


def current_request_id() -> str:
    """The id (``x-request-id``) of the request being scored on this thread or task, else ``NO_REQUEST``."""
    return _request_id.get()


def set_request_id(request_id: str) -> None:
    """Make ``request_id`` the current one for this task/thread (the pipeline calls it per request)."""
    _request_id.set(request_id)
