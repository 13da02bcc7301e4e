"""Protocol front-ends of the scoring server, behind one request pipeline.

The pipeline (``mlctl.serve.app.ScoringApp``) does what every protocol shares: request ids, auth,
body limits, admission to the model (a runner slot: bounded concurrency and queue), timeouts,
metrics and the access log. A front-end owns one protocol: its paths, how a request becomes a
call of the model back-end (``mlctl.serve.backends``), and the shape of its answers, errors
included. The pipeline asks each front-end in turn for the ``Route`` of a path; adding a
protocol is one module here and one entry in ``mlctl.serve.app.frontends_for``.

A front-end module may import only the standard library and ``mlctl.serve`` at start-up: the
scoring server's start-up cost is the sum of what its front-ends import.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mlctl.serve.answers import Answer

if TYPE_CHECKING:
    from mlctl.serve.request import Request

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class BodyTooLarge(Exception):
    """The request body is over ``max_request_bytes`` (the pipeline answers 413)."""


class Disconnected(Exception):
    """The client went away before its body arrived (the pipeline sends nothing)."""


class Call:
    """One request on its way through a front-end's handler.

    Attributes:
        scope: the ASGI HTTP scope (``method``, ``path``, ``query_string``, ``headers``, ...).
        request_id: the request's id (the client's ``x-request-id``, or a new one); ``rid`` its bytes.
        slot: the runner slot that admitted the request (``None`` for routes that are not ``scoring``).
    """

    __slots__ = ("scope", "request_id", "rid", "slot", "_receive", "_limit")

    def __init__(self, scope: Scope, receive: Receive, request_id: str, rid: bytes, limit: int) -> None:
        self.scope = scope
        self.request_id = request_id
        self.rid = rid
        self.slot: Any = None
        self._receive = receive
        self._limit = limit

    @property
    def method(self) -> str:
        """The HTTP method, upper case."""
        return self.scope["method"]  # type: ignore[no-any-return]

    @property
    def path(self) -> str:
        """The URL path, percent-decoded, without the query string."""
        return self.scope["path"]  # type: ignore[no-any-return]

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case bytes), or ``None``."""
        for key, value in self.scope["headers"]:
            if key == name:
                return value  # type: ignore[no-any-return]
        return None

    async def body(self) -> bytes:
        """The whole request body.

        Raises:
            BodyTooLarge: over the server's ``max_request_bytes`` (by ``content-length`` or as read).
            Disconnected: the client closed the connection first.
        """
        for key, value in self.scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self._limit:
                raise BodyTooLarge
        chunks, size = [], 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            if message.get("mlctl.too_large"):  # mlctl.serve.http did not buffer it
                raise BodyTooLarge
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on the slot that admitted this request (inline or on the thread pool).

        Raises:
            mlctl.serve.runner.TimedOut: past the scoring timeout.
            mlctl.serve.runner.WaitedTooLong: queued longer than ``max_request_wait_time``.
            Exception: whatever ``function`` raises.
        """
        return await self.slot.run(function, *args)

    def request(self, body: bytes) -> Request:
        """The server's own request object for this call and ``body`` (what entry scripts are given)."""
        from mlctl.serve.request import Request

        scope = self.scope
        return Request(
            scope["method"],
            scope["path"],
            scope.get("query_string", b""),
            scope["headers"],
            body,
            scope.get("client"),
            scope.get("scheme", "http"),
        )


Handler = Callable[[Call], Awaitable[Answer]]
FastHandler = Callable[[bytes, str, bytes], Answer]  # (body, request id, its bytes) -> answer


@dataclass(frozen=True)
class Route:
    """What a front-end does with one path.

    Attributes:
        methods: the HTTP methods answered (others: 405 naming ``methods``).
        handler: the coroutine that answers.
        scoring: the request reaches the model: it must be admitted (runner slot; 503 when the
            worker is full), and the pipeline's auth applies.
        keyed: the pipeline's auth applies though the model is not reached (no admission).
    """

    methods: frozenset[str]
    handler: Handler
    scoring: bool = False
    keyed: bool = False


class Frontend(Protocol):
    """One protocol served by the scoring server (Azure ML's ``/score``, probes, OIP, MLflow, ...)."""

    def route(self, path: str) -> Route | None:
        """The route for URL ``path``, or ``None`` when the path is not this protocol's."""

    def error(self, status: int, message: str, request_id: str) -> Answer:
        """This protocol's answer for an error the pipeline detected (401, 404, 405, 413, 431, 503)."""

    def fast_routes(self) -> dict[bytes, FastHandler]:
        """``POST`` paths this front-end answers synchronously from a complete body (may be empty).

        Taken by ``mlctl.serve.http`` before the ASGI path when no admission is needed (the runner
        calls the model inline); the pipeline still applies ids, auth, metrics and the access log.
        """
