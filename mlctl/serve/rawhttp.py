"""``AMLRequest`` and ``AMLResponse`` on werkzeug, the request/response library under flask.

Contract (Azure ML, azureml-inference-server-http ``api/aml_request.py`` and
``api/aml_response.py``): a ``@rawhttp`` ``run(request)`` gets a flask ``Request`` and may return a
flask ``Response``; entry scripts use ``files["image"]`` (``multipart/form-data``), ``form``,
``args``, ``headers``, ``get_data()``, ``get_json()``, ``full_path`` of the request, and
``headers[...] = ...``, ``headers.add``, ``status_code``, ``set_data``/``get_data``, ``mimetype``
of the response. werkzeug's classes are those members, so they are used as they are.

``AMLResponse(message, status_code, response_headers=None, json_str=False, run_function_failed=False)``:
``json_str`` serialises ``message`` as JSON; ``None`` answers ``{}``; a comma in a
``response_headers`` value makes repeated headers; ``x-ms-run-function-failed`` is always set.

Imported only when the entry script uses ``@rawhttp`` (werkzeug takes ~0.2 s to import).
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any

from werkzeug.wrappers import Request as _Request
from werkzeug.wrappers import Response as _Response

from mlctl.serve.request import Request

_BODY_HEADERS = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}


class AMLRequest(_Request):
    """The request a ``@rawhttp`` ``run()`` receives: werkzeug's (flask's) ``Request``."""


class AMLResponse(_Response):
    """An answer chosen by ``run()``: werkzeug's (flask's) ``Response`` with Azure ML's constructor."""

    default_mimetype = "text/html"  # flask's default, so a str message is text/html as in Azure ML

    def __init__(
        self,
        message: Any,
        status_code: int,
        response_headers: dict[str, Any] | None = None,
        json_str: bool = False,
        run_function_failed: bool = False,
    ) -> None:
        headers = dict(response_headers or {})
        if message is None or json_str:
            super().__init__(
                json.dumps({} if message is None else message), status=status_code, mimetype="application/json"
            )
        else:
            super().__init__(message, status=status_code)
            if any(k.lower() == "content-type" for k in headers):
                del self.headers["Content-Type"]  # the script's own comes below
        self.headers["x-ms-run-function-failed"] = str(run_function_failed)
        for key, value in headers.items():
            for part in str(value).split(","):
                self.headers.add(key, part.strip())


def aml_request(request: Request) -> AMLRequest:
    """The werkzeug request for the server's ``request`` (a WSGI environ built from it, body included)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": request.path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": request.query_string.decode("latin-1"),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": request.client[0] if request.client else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.scheme,
        "wsgi.input": io.BytesIO(request.data),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_key, raw_value in request.raw_headers:
        key, value = raw_key.decode("latin-1").lower(), raw_value.decode("latin-1")
        name = _BODY_HEADERS.get(key) or "HTTP_" + key.upper().replace("-", "_")
        environ[name] = f"{environ[name]}, {value}" if name in environ and name.startswith("HTTP_") else value
    environ["CONTENT_LENGTH"] = str(len(request.data))
    return AMLRequest(environ)
