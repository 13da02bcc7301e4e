"""JSON on the scoring hot paths: the standard library's ``json``, with less Python around it.

``json.loads(body)`` of a small request body spends about a third of its time outside the C
scanner: detecting the encoding of ``bytes`` (a Python function), then two whitespace regexes
around the scan. ``json.dumps(value)`` builds the C encoder (and a dict for its cycle check) on
every call, about half the time of a short list of numbers. ``loads`` and ``dumps`` call the
standard library's C scanner and encoder directly, so their values, texts and errors are
``json``'s own (the stdlib's pure-Python fallbacks are used when its C module is missing).
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from json.scanner import make_scanner
from typing import Any

_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # scan_once with json.loads's defaults


def loads(body: bytes) -> Any:
    """``json.loads(body)``: the same value, or the same exception (``ValueError``, ``RecursionError``).

    A body that starts with ``{`` and decodes as UTF-8 is scanned directly, and its value
    returned when only JSON's whitespace (space, tab, CR, LF: what ``json.loads`` skips) follows
    it; otherwise (an error, trailing data) ``json.loads`` reads it again, so its error message is
    the one raised. (A body in UTF-16 or UTF-32, which ``json.loads`` detects, has a NUL byte right
    after its ``{`` and fails the scan, so it goes to ``json.loads`` too.)
    """
    if body[:1] == b"{":
        try:
            text = body.decode()
            value, end = _scan(text, 0)
        except (ValueError, StopIteration):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return json.loads(body)
        if end == len(text) or not text[end:].strip(" \t\n\r"):
            return value
    return json.loads(body)


def _dumps() -> Callable[[Any], str]:
    """``json.dumps`` with its defaults, the C encoder built once (without the cycle check)."""
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # None without the _json C module
    if c_make_encoder is None:  # pragma: no cover - CPython always has it
        return json.dumps
    # the arguments json.dumps gives c_make_encoder, but markers=None: no dict of ids per call
    encode = c_make_encoder(
        None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


dumps = _dumps()
"""``json.dumps(value)`` (same text, same ``TypeError`` for a value JSON cannot hold, NaN and
infinities as ``NaN``/``Infinity``), for values without reference cycles (``tolist()`` of
arrays, parsed JSON): a cycle is not detected (``RecursionError`` instead of ``ValueError``)."""
