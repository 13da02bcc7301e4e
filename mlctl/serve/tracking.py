"""Request-tracking and CORS headers that every answer of the scoring server carries.

Source: azureml-inference-server-http (``server/routes.py``, its documented request-id table in
``docs/AzureMLInferenceServer.md``, and flask-cors as it configures it from ``AML_CORS_ORIGINS``).

Request ids (A: ``x-request-id``, B: ``x-ms-request-id``, C: ``x-ms-client-request-id``):
the answer carries ``x-request-id`` A (a new id when absent), ``x-ms-request-id`` B, else C,
else A, and ``x-ms-client-request-id`` C, else B (absent when neither was sent). A ``TraceId``
header is echoed. ``x-ms-server-version`` is ``HTTP_X_MS_SERVER_VERSION`` (mlctl's identity, set
at start-up unless ``SERVER_VERSION_LOG_RESPONSE_ENABLED=false``). Any id over 100 characters is
refused with 431.

CORS (origins from ``AML_CORS_ORIGINS`` or the spec's ``deployment_config.cors_origins``): an
allowed ``Origin`` is echoed in ``Access-Control-Allow-Origin`` (``Vary: Origin`` unless only one
origin is allowed); ``*``
allows every origin (``*`` itself when the request has no ``Origin``); without an ``Origin`` the
first configured origin is sent. A preflight (``OPTIONS`` with ``Access-Control-Request-Method``)
also gets ``Access-Control-Allow-Methods: GET, POST`` and its requested headers allowed.
"""

from __future__ import annotations

import os

Headers = list[tuple[bytes, bytes]]
ID_LIMIT = 100
MS_IDS_TOO_LONG = "x-ms-request-id and x-ms-client-request-id must not exceed 100 characters"
_VARY = (b"vary", b"Origin")
_METHODS = (b"access-control-allow-methods", b"GET, POST")


class Tracking:
    """The extra headers of one worker's answers.

    Args:
        cors_origins: allowed origins (``("*",)`` for all; empty: CORS off).
    """

    __slots__ = ("origins", "server_line", "_star", "_default", "_server")

    def __init__(self, cors_origins: tuple[str, ...] = ()) -> None:
        self.origins = frozenset(o.encode("latin-1") for o in cors_origins)
        self._star = b"*" in self.origins
        first = cors_origins[0].encode("latin-1") if cors_origins else b""
        self._default = first
        version = os.environ.get("HTTP_X_MS_SERVER_VERSION", "")
        self._server = (b"x-ms-server-version", version.encode("latin-1")) if version else None
        # ``x-ms-server-version: ...`` CRLF, or nothing: the fast path writes it as is
        self.server_line = b"%b: %b\r\n" % self._server if self._server is not None else b""

    def headers(self, rid: bytes, legacy: bytes | None, client: bytes | None, trace: bytes | None) -> Headers | None:
        """The tracking headers for request id ``rid`` and the client's B, C, ``TraceId``; None: B or C too long."""
        if legacy:
            client = client or legacy
        else:
            legacy = client or rid
        if len(legacy) > ID_LIMIT or (client is not None and len(client) > ID_LIMIT):
            return None
        extra: Headers = [(b"x-ms-request-id", legacy)] if legacy else []
        if client:
            extra.append((b"x-ms-client-request-id", client))
        if trace is not None:
            extra.append((b"traceid", trace))
        if self._server is not None:
            extra.append(self._server)
        return extra

    def server_only(self) -> Headers:
        """The headers of an answer to a request whose ``x-request-id`` was refused."""
        return [self._server] if self._server is not None else []

    def cors(self, origin: bytes | None, preflight: bytes | None, request_headers: bytes | None) -> Headers:
        """CORS headers for a request with ``Origin`` ``origin`` (a preflight when ``preflight`` is its method)."""
        # Vary: Origin when the answer depends on the request's origin (several allowed, or all)
        varies = self._star or len(self.origins) > 1
        if origin is None:
            if self._star:
                return [(b"access-control-allow-origin", b"*")]
            return [(b"access-control-allow-origin", self._default), *((_VARY,) if varies else ())]
        if not self._star and origin not in self.origins:
            return []
        extra = [(b"access-control-allow-origin", origin), *((_VARY,) if varies else ())]
        if preflight is not None:
            extra.append(_METHODS)
            if request_headers:
                extra.append((b"access-control-allow-headers", request_headers))
        return extra
