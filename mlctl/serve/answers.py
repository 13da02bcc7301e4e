"""Answers of the scoring server as data (status, body, headers), and their ASGI and HTTP/1.1 wire forms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http import HTTPStatus
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


class Chunks:
    """A streamed body: the byte chunks of an iterator (an ``AMLResponse`` around a generator).

    Each chunk is produced on a thread (a generator may wait on a model between items) and sent
    as soon as it exists, so the client gets the first byte before the last item is made.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterator[bytes]) -> None:
        self._items = items

    async def __aiter__(self) -> AsyncIterator[bytes]:
        done = object()
        while True:
            chunk = await asyncio.to_thread(next, self._items, done)
            if chunk is done:
                return
            yield chunk  # type: ignore[misc]


Body = bytes | Chunks


class JSONText(bytes):
    """A back-end's answer already written as JSON (UTF-8 bytes): front-ends send it as it is.

    What a back-end returns from ``call_body`` when it writes its answer faster than
    ``json.dumps`` would, with the same text (``mlctl.serve.backends.onnx``).
    """

    __slots__ = ()


Answer = tuple[int, Body, Headers]  # status, body, headers (content-length and x-request-id included)


def answer(
    status: int, body: bytes, rid: bytes, content_type: tuple[bytes, bytes], *extra: tuple[bytes, bytes]
) -> Answer:
    """The answer ``status``/``body`` with its content type, length, ``x-request-id`` (when ``rid``) and ``extra``."""
    headers = [content_type, (b"content-length", str(len(body)).encode())]
    if rid:
        headers.append((b"x-request-id", rid))
    headers.extend(extra)
    return status, body, headers


async def send_answer(send: Send, reply: Answer) -> None:
    """Send ``reply`` as the ASGI messages of a response (one body message, or one per chunk of a stream)."""
    status, body, headers = reply
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if isinstance(body, bytes):
        await send({"type": "http.response.body", "body": body})
        return
    async for chunk in body:
        if chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def send_simple(
    send: Send, status: int, body: bytes, rid: bytes, content_type: tuple[bytes, bytes], *extra: tuple[bytes, bytes]
) -> None:
    """``send_answer`` of ``answer(...)``."""
    await send_answer(send, answer(status, body, rid, content_type, *extra))


def is_response(value: Any) -> bool:
    """True for a flask/werkzeug-like response object (``AMLResponse``) returned by ``run()``."""
    return hasattr(value, "status_code") and hasattr(value, "get_data") and hasattr(value, "headers")


def response_answer(response: Any, rid: bytes, *extra: tuple[bytes, bytes]) -> Answer:
    """The answer carried by a response object, with our ``content-length``, ``x-request-id`` and ``extra``.

    A streamed response (its body a generator) is sent chunk by chunk, without ``content-length``.
    ``x-ms-run-function-failed`` is sent once: ``True`` for a status of 500 or more (as Azure ML
    forces it), else the response's own first value, else ``False``.
    """
    streamed = getattr(response, "is_streamed", False) and hasattr(response, "iter_encoded")
    if streamed:
        body: Body = Chunks(iter(response.iter_encoded()))
    else:
        data = response.get_data()
        body = data.encode() if isinstance(data, str) else bytes(data)
    pairs = response.headers.items() if hasattr(response.headers, "items") else response.headers
    status = int(response.status_code)
    failed = b"True" if status >= 500 else None
    headers = []
    for key, value in pairs:
        name = str(key).lower()
        if name == "x-ms-run-function-failed":
            failed = failed or str(value).encode("latin-1")
        elif name not in _SKIP:
            headers.append((name.encode("latin-1"), str(value).encode("latin-1")))
    if isinstance(body, bytes):
        headers.append((b"content-length", str(len(body)).encode()))
    headers += [
        (b"x-request-id", rid),
        (b"x-ms-run-function-failed", failed or b"False"),
        *extra,
    ]
    return status, body, headers


_SKIP = frozenset({"content-length", "x-request-id"})
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n`` as bytes."""
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


def to_json(value: Any) -> Any:
    """``json.dumps`` default: numpy values via ``tolist()``, sets and tuples as lists; else TypeError."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars, without importing numpy
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
