"""The scoring server's HTTP/1.1 layer: an asyncio ``Protocol`` on httptools' parser (uvloop when installed).

It replaces uvicorn's protocol layer in the workers (uvicorn stays the fallback when httptools is
missing; see ``mlctl.serve.worker``). Two paths per request:

* fast: a complete ``POST /score`` that ``ScoringApp.answer_now`` can answer synchronously
  (plain ``run(raw_data)``, inline runner, no batching) is answered from ``data_received`` with one
  ``write`` of status line, headers and body: no task, no ASGI messages;
* everything else runs the ASGI app (``ScoringApp``) in a task with a buffered body; its
  ``http.response.start`` and final ``http.response.body`` are written together too.

HTTP semantics kept from uvicorn: keep-alive (idle connections closed after ``keep_alive_s``),
pipelining (answers in order; reading pauses while a request waits), chunked request bodies,
``Expect: 100-continue``, ``HEAD`` without a body, 400 on unparsable requests, back-pressure on
slow readers, TLS (``ssl_context``). Bodies over ``max_request_bytes`` are not buffered: the app is
told (``mlctl.too_large`` in the body message) and answers 413. Shutdown: ``close()`` stops
accepting; ``drain()`` closes idle connections, lets busy ones finish their answer (then closes
them), and waits for them up to a limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httptools

from mlctl.serve.answers import Chunks, status_line

_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 11\r\nconnection: close\r\n\r\nbad request"
)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"connection: close\r\n"


class _Message:
    """One parsed request, its body buffered (``None`` when it exceeded the limit)."""

    __slots__ = ("method", "url", "headers", "body", "keep_alive", "version")

    def __init__(
        self,
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
        keep_alive: bool,
        version: str,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.version = version


class HttpServer:
    """State shared by one worker's connections.

    Args:
        app: the ``ScoringApp`` (ASGI callable with ``answer_now`` and ``max_request_bytes``).
        ssl_context: server-side TLS context, or ``None`` for plain HTTP.
        keep_alive_s: idle keep-alive connections are closed after this many seconds (±1 s).
    """

    def __init__(self, app: Any, *, ssl_context: ssl.SSLContext | None = None, keep_alive_s: float = 5.0) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.keep_alive_ticks = max(1, round(keep_alive_s))
        self.connections: set[Connection] = set()
        self.servers: list[asyncio.base_events.Server] = []
        self.limit = int(app.max_request_bytes)
        self._sweeper: asyncio.TimerHandle | None = None

    async def listen(self, sockets: list[Any]) -> None:
        """Start accepting on every (already bound and listening) socket."""
        loop = asyncio.get_running_loop()
        for sock in sockets:
            server = await loop.create_server(lambda: Connection(self), sock=sock, ssl=self.ssl_context, backlog=2048)
            self.servers.append(server)
        self._sweeper = loop.call_later(1.0, self._sweep)

    def close(self) -> None:
        """Stop accepting new connections; open ones keep being served."""
        for server in self.servers:
            server.close()

    async def drain(self, timeout_s: float) -> None:
        """Close idle connections, let busy ones finish their current answer, for at most ``timeout_s``."""
        self.close()
        for conn in list(self.connections):
            conn.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()

    def _sweep(self) -> None:
        for conn in list(self.connections):
            conn.tick(self.keep_alive_ticks)
        self._sweeper = asyncio.get_running_loop().call_later(1.0, self._sweep)


class Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.queue: deque[_Message] = deque()  # parsed, waiting for the one being answered
        self.busy = False  # a request is being answered by a task
        self.closing = False  # close after the current answer (shutdown, or Connection: close)
        self.lost = False
        self.active = True  # bytes seen since the last keep-alive tick
        self.idle_ticks = 0
        self.write_paused = False
        self.reading_paused = False
        self.in_message = False  # a request is partly received
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.scheme = "https" if server.ssl_context is not None else "http"
        self._reset()

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:  # noqa: D102
        self.transport = transport
        self.client = _address(transport.get_extra_info("peername"))
        self.local = _address(transport.get_extra_info("sockname"))
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self.lost = True
        self.server.connections.discard(self)
        self.queue.clear()

    def data_received(self, data: bytes) -> None:  # noqa: D102
        self.active = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no protocol upgrades: the request itself was answered (or queued) as plain HTTP
        except httptools.HttpParserCallbackError:  # a bug of ours, not of the client
            logging.getLogger("mlctl.serve").exception("unexpected error answering a request")
            self._fail()
        except httptools.HttpParserError:
            self._fail()

    def pause_writing(self) -> None:  # noqa: D102
        self.write_paused = True
        self._pause()

    def resume_writing(self) -> None:  # noqa: D102
        self.write_paused = False
        if not self.queue and not self.busy:
            self._resume()

    def _pause(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.reading_paused and not self.write_paused and not self.closing and not self.lost:
            self.reading_paused = False
            self.transport.resume_reading()

    # httptools callbacks
    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_large = False

    def on_message_begin(self) -> None:  # noqa: D102
        self._reset()
        self.in_message = True

    def on_url(self, url: bytes) -> None:  # noqa: D102
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:  # noqa: D102
        name = name.lower()
        if name == b"content-length" and value.isdigit() and int(value) > self.server.limit:
            self.too_large = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:  # noqa: D102
        if not self.too_large and not self.busy and not self.queue:
            for name, value in self.headers:
                if name == b"expect" and value.lower() == b"100-continue":
                    self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:  # noqa: D102
        if self.too_large:
            return
        self.size += len(body)
        if self.size > self.server.limit:
            self.too_large, self.chunks = True, []
        else:
            self.chunks.append(body)

    def on_message_complete(self) -> None:  # noqa: D102
        self.in_message = False
        chunks = self.chunks
        body = None if self.too_large else chunks[0] if len(chunks) == 1 else b"".join(chunks)
        parser = self.parser
        message = _Message(
            parser.get_method(), self.url, self.headers, body, parser.should_keep_alive(), parser.get_http_version()
        )
        if self.busy or self.queue:
            self.queue.append(message)
            self._pause()  # requests wait in the kernel's buffer, not here
        else:
            self._answer(message)

    # answering
    def _answer(self, message: _Message) -> None:
        while True:
            if self.lost:
                return
            if not message.keep_alive:
                self.closing = True
            body = message.body
            quick = None if body is None else self.app.answer_now(message.method, message.url, message.headers, body)
            if quick is None:
                self.busy = True
                asyncio.get_running_loop().create_task(self._run_asgi(message))
                return
            head, payload = quick
            if not isinstance(payload, bytes):  # a streamed AMLResponse
                self.busy = True
                asyncio.get_running_loop().create_task(self._stream(message, head, payload))
                return
            self.transport.write(b"".join((head, _CLOSE + b"\r\n" if self.closing else b"\r\n", payload)))
            if self.closing:
                self.transport.close()
                return
            if not self.queue:
                self._resume()
                return
            message = self.queue.popleft()

    async def _stream(self, message: _Message, head: bytes, chunks: Chunks) -> None:
        cycle = _Cycle(self, message)
        cycle.head, cycle.started = head, True
        try:
            async for chunk in chunks:
                if self.lost:
                    break  # the client left: stop asking the generator for more
                await cycle.send({"type": "http.response.body", "body": chunk, "more_body": True})
            await cycle.send({"type": "http.response.body", "body": b""})
        except Exception:  # noqa: BLE001 - the generator of run() failed mid-stream: cut the answer short
            logging.getLogger("mlctl.serve").exception("the streamed answer failed")
            self.closing = True
        self.busy = False
        self._finished()

    async def _run_asgi(self, message: _Message) -> None:
        cycle = _Cycle(self, message)
        try:
            await self.app(cycle.scope(), cycle.receive, cycle.send)
        except Exception:  # noqa: BLE001 - the app answers its own errors; this is a server bug
            logging.getLogger("mlctl.serve").exception("unexpected error answering a request")
            if not cycle.started:
                cycle.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n", b"")
            self.closing = True
        if not cycle.complete:
            self.closing = True
        self.busy = False
        self._finished()

    def _finished(self) -> None:
        if self.lost:
            return
        if self.closing:
            self.transport.close()
        elif self.queue:
            self._answer(self.queue.popleft())
        else:
            self._resume()

    # lifecycle
    def tick(self, limit: int) -> None:
        """Called every second: close the connection after ``limit`` idle ticks."""
        if self.active or self.busy or self.queue or self.in_message:
            self.active, self.idle_ticks = False, 0
            return
        self.idle_ticks += 1
        if self.idle_ticks >= limit:
            self.transport.close()

    def shutdown(self) -> None:
        """Close now when idle, else after the answer being written."""
        self.closing = True
        if not self.busy:
            self.transport.close()

    def abort(self) -> None:
        """Close at once."""
        with contextlib.suppress(Exception):
            self.transport.abort()

    def _fail(self) -> None:
        if not self.busy:
            self.transport.write(_BAD_REQUEST)
            self.transport.close()
        self.closing = True


class _Cycle:
    """ASGI ``receive``/``send`` for one buffered request on ``conn``."""

    def __init__(self, conn: Connection, message: _Message) -> None:
        self.conn = conn
        self.message = message
        self.started = False
        self.complete = False
        self.head = b""
        self.delivered = False
        self.is_head = message.method == b"HEAD"
        self.chunked = False

    def scope(self) -> dict[str, Any]:
        """The ASGI HTTP scope of the request."""
        message, conn = self.message, self.conn
        url = httptools.parse_url(message.url)
        raw_path = url.path or b"/"
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": message.version,
            "server": conn.local,
            "client": conn.client,
            "scheme": conn.scheme,
            "method": message.method.decode("ascii"),
            "root_path": "",
            "path": unquote(raw_path.decode("ascii", "replace")),
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "headers": message.headers,
        }

    async def receive(self) -> dict[str, Any]:
        """The whole body in one message, then ``http.disconnect`` once the answer is sent or the client left."""
        if self.delivered or self.conn.lost:
            return {"type": "http.disconnect"}
        self.delivered = True
        body = self.message.body
        if body is None:
            return {"type": "http.request", "body": b"", "more_body": False, "mlctl.too_large": True}
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(self, event: dict[str, Any]) -> None:
        """Buffer the status line and headers; write them with the (final) body."""
        if self.conn.lost or self.complete:
            return
        if event["type"] == "http.response.start":
            parts = [status_line(int(event["status"]))]
            for name, value in event.get("headers", ()):
                parts += [name, b": ", value, b"\r\n"]
            self.head, self.started = b"".join(parts), True
        elif event["type"] == "http.response.body":
            more = event.get("more_body", False)
            body = b"" if self.is_head else event.get("body", b"")
            if more or self.chunked:
                self._write_chunk(body, more)
            else:
                self.write(self.head, body)
                self.complete = True
        if self.conn.write_paused:
            await asyncio.sleep(0)

    def _write_chunk(self, body: bytes, more: bool) -> None:
        """A streamed answer: the head (``transfer-encoding: chunked``) first, then each chunk as it comes."""
        transport = self.conn.transport
        if not self.chunked:
            self.chunked = True
            self.write(self.head + b"transfer-encoding: chunked\r\n", b"")
        if self.is_head:
            self.complete = not more
            return
        if body:
            transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        if not more:
            transport.write(b"0\r\n\r\n")
            self.complete = True

    def write(self, head: bytes, body: bytes) -> None:
        """Write ``head`` (status line and headers, no blank line) and ``body`` in one write."""
        conn = self.conn
        conn.transport.write(head + (_CLOSE + b"\r\n" if conn.closing else b"\r\n") + body)


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


def new_loop() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop factory when installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop
