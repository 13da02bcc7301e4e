"""JSON on the scoring hot paths: the standard library's ``json``, with less Python around it.

``json.loads(body)`` of a small request body spends about a third of its time outside the C
scanner: detecting the encoding of ``bytes`` (a Python function), then two whitespace regexes
around the scan. ``loads`` calls the scanner directly when the body is UTF-8 text that is a JSON
object from its first byte to its last, and ``json.loads`` itself otherwise, so values and
errors are the standard library's in every case.
"""

from __future__ import annotations

import json
from json.scanner import make_scanner
from typing import Any

_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # scan_once with json.loads's defaults


def loads(body: bytes) -> Any:
    """``json.loads(body)``: the same value, or the same exception (``ValueError``, ``RecursionError``).

    A body that starts with ``{`` and decodes as UTF-8 is scanned directly; when the scan does
    not end exactly at the body's end (trailing whitespace or data, or an error), ``json.loads``
    reads it again, so its error message (or whitespace handling) is the one returned.
    """
    if body[:1] == b"{":
        try:
            text = body.decode()
            value, end = _scan(text, 0)
        except (ValueError, StopIteration):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return json.loads(body)
        if end == len(text):
            return value
    return json.loads(body)
