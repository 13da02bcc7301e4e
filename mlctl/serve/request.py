"""The scoring server's own request object (stdlib only): what it needs to call ``run()``.

It offers the flask ``Request`` members the server itself reads (``method``, ``path``,
``full_path``, ``args``, ``headers``, ``data``, ``get_data()``, ``get_json()``, ``is_json``).
A ``@rawhttp`` entry script gets werkzeug's full ``Request`` instead (``mlctl.serve.rawhttp``),
built from this one only for such scripts.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl


class Headers(dict):  # type: ignore[type-arg]
    """Case-insensitive, read-only view of request headers (keys stored lowercase)."""

    def get(self, key: str, default: Any = None) -> Any:
        """The header value, or ``default``."""
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> Any:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class Args(dict):  # type: ignore[type-arg]
    """Query parameters: ``args[k]``/``get(k)`` give the first value, ``getlist(k)`` all of them."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        self._all: dict[str, list[str]] = {}
        for key, value in pairs:
            self._all.setdefault(key, []).append(value)
            self.setdefault(key, value)

    def getlist(self, key: str) -> list[str]:
        """Every value of ``key``, in order."""
        return list(self._all.get(key, []))


class Request:
    """One HTTP request. ``body`` is the full request body (bytes); ``headers`` as ASGI gives them;
    ``client`` the peer's (host, port); ``scheme`` ``http`` or ``https``."""

    def __init__(
        self,
        method: str,
        path: str,
        query_string: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        client: tuple[str, int] | None = None,
        scheme: str = "http",
    ) -> None:
        self.method = method
        self.raw_headers = headers
        self.client = client
        self.scheme = scheme
        self.path = path
        self.query_string = query_string
        self.full_path = f"{path}?{query_string.decode('latin-1')}"
        self.headers = Headers((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers)
        self.args = Args(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
        self.data = body

    @property
    def content_type(self) -> str:
        """The Content-Type header, or ``''``."""
        return str(self.headers.get("content-type", ""))

    @property
    def mimetype(self) -> str:
        """The Content-Type without parameters, lowercase."""
        return self.content_type.split(";")[0].strip().lower()

    @property
    def is_json(self) -> bool:
        """True for ``application/json`` and ``application/*+json`` (as flask)."""
        mt = self.mimetype
        return mt == "application/json" or (mt.startswith("application/") and mt.endswith("+json"))

    def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False) -> Any:
        """The body, as bytes (or str with ``as_text``)."""
        return self.data.decode("utf-8", "replace") if as_text else self.data

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        """The body parsed as JSON; None when it is not JSON (and ``silent``) or not a JSON request."""
        if not (force or self.is_json):
            return None
        try:
            return json.loads(self.data)
        except ValueError:
            if silent:
                return None
            raise

    @property
    def json(self) -> Any:
        """``get_json()``."""
        return self.get_json()
