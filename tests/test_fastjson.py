"""mlctl.serve.fastjson gives json.loads's values and errors, and json.dumps's texts and errors, for every input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlctl.serve.fastjson import dumps, loads

BODIES = [
    b'{"data": [[1, 2.5, -3e-7, 1E+300], [true, false, null, "\\u00e9\\ud83d\\ude00"]]}',
    b'{"a": {"b": {"c": [NaN, Infinity, -Infinity]}}, "a": 2}',  # duplicate keys: the last wins, as json's
    b"{}",
    b'{"x": "caf\xc3\xa9 \xf0\x9f\x98\x80"}',  # UTF-8 text
    b'{"x": 1} ',  # trailing whitespace
    b'{"x": 1}\r\n\t',
    b'{"x": 1}\n',  # a file's last newline (curl -d @file)
    b' \n{"x": 1}',  # leading whitespace
    b'\xef\xbb\xbf{"x": 1}',  # UTF-8 byte order mark (json.loads accepts it on bytes)
    '{"x": "é"}'.encode("utf-16"),  # UTF-16 with BOM
    '{"x": "é"}'.encode("utf-16-le"),  # detected from its NUL bytes
    '{"x": "é"}'.encode("utf-32-be"),
    b"[1, 2]",  # not objects: json.loads itself
    b'"text"',
    b"3.5",
    b"null",
    b'{"x": "\xed\xa0\x80"}',  # a lone surrogate in UTF-8: json.loads reads it (surrogatepass)
]
BAD = [
    b"",
    b"{",
    b"{}}",  # trailing data
    b'{"x": 1} {"y": 2}',
    b'{"x": 1} \x0c',  # whitespace to str.isspace, not to JSON
    b'{"x": 1}\xc2\xa0',
    b'{"x": 1}\n\x00',
    b'{"x": 1,}',
    b"{'x': 1}",
    b'{"x": \x00}',
    b'{"x": "\xff"}',  # not UTF-8 (nor any encoding json.loads detects)
    b'{"x": 01}',
    b"nope",
    b'{"x": [1, 2}',
    b'{"x": "unterminated}',
]


@pytest.mark.parametrize("body", BODIES)
def test_loads_gives_json_loads_value(body: bytes) -> None:
    expected = json.loads(body)
    got = loads(body)
    assert _same(got, expected)


@pytest.mark.parametrize("body", BAD)
def test_loads_raises_json_loads_error_with_its_message(body: bytes) -> None:
    with pytest.raises(ValueError) as expected:
        json.loads(body)
    with pytest.raises(ValueError) as got:
        loads(body)
    assert type(got.value) is type(expected.value) and str(got.value) == str(expected.value)


def test_loads_agrees_with_json_loads_on_mutated_bodies() -> None:
    """Seeded random byte edits of request bodies: the same value, or the same error and message."""
    import random

    rng = random.Random(21)
    alphabet = b'{}[]",:. \t\n\r\\0123456789eE+-abtrufnlsNI\x00\x80\xc3\xa9\xff'
    seeds = [b'{"data": [[1, 2.5], [-3e2, 4]]}', b'{"inputs": [{"name": "x", "data": [true, null, "\\u00e9"]}]}']
    for _ in range(3000):
        body = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(body) + 1)
            edit = rng.randrange(3)
            if edit == 0:
                body[at:at] = bytes([rng.choice(alphabet)])
            elif edit == 1 and at < len(body):
                del body[at]
            elif at < len(body):
                body[at] = rng.choice(alphabet)
        assert _outcome(loads, bytes(body)) == _outcome(json.loads, bytes(body)), bytes(body)


def _outcome(function: Any, body: bytes) -> tuple[str, str]:
    try:
        return "value", repr(function(body))
    except ValueError as exc:
        return type(exc).__name__, str(exc)


def test_loads_of_a_body_nested_too_deep_raises_recursion_error_like_json_loads() -> None:
    body = b'{"x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with pytest.raises(RecursionError):
        json.loads(body)
    with pytest.raises(RecursionError):
        loads(body)


VALUES: list[Any] = [
    [1.5, float("nan"), float("inf"), -float("inf"), -0.0, 1e-300, 206.1165771484375, 2**70, -(2**63)],
    {"a": [True, False, None], 'é"\n': "\u2028 \U0001f600", 1: 2, 2.5: "x", None: 0, False: 1},
    [],
    {},
    "text",
    7,
    -0.5,
    None,
    (1, (2, 3)),
    [[0.1, 0.2], [[0.3]]],
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_writes_json_dumps_text(value: Any) -> None:
    assert dumps(value) == json.dumps(value)


@pytest.mark.parametrize("value", [[object()], {"a": {1, 2}}, {(1, 2): 3}, b"bytes"])
def test_dumps_raises_json_dumps_type_error_with_its_message(value: Any) -> None:
    with pytest.raises(TypeError) as expected:
        json.dumps(value)
    with pytest.raises(TypeError) as got:
        dumps(value)
    assert str(got.value) == str(expected.value)


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, and of the same types throughout."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:
        return b != b
    return bool(a == b)
