"""A small subset of the IoT Hub query language, for the fake hub's target conditions and metrics.

Conditions: comparisons (``=``, ``!=``, ``<>``, ``<``, ``>``, ``<=``, ``>=``) between paths
(``tags.env``, ``properties.reported.lastDesiredStatus.code``, ``configurations.[[id]].status``,
``properties.desired.$version``) and literals (``'text'``, numbers, true/false/null), combined with
``AND``, ``OR``, ``NOT`` and parentheses. A comparison with a missing path is false.
Queries: ``SELECT <anything> FROM devices|devices.modules [WHERE condition]``
(learn.microsoft.com/azure/iot-hub/iot-hub-devguide-query-language).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)(?![\w.])|(?P<op>!=|<>|<=|>=|=|<|>|\(|\))"
    r"|(?P<word>(?:\[\[[^\]]*\]\]|[A-Za-z_$])(?:\[\[[^\]]*\]\]|[\w$.-])*))"
)
_SELECT = re.compile(r"^\s*SELECT\s+.+?\s+FROM\s+(devices(?:\.modules)?)(?:\s+WHERE\s+(.*))?$", re.I | re.S)
_MISSING = object()
Row = dict[str, Any]


class QueryError(ValueError):
    """The text is not in the supported subset."""


def parse_condition(text: str) -> Callable[[Row], bool]:
    """A predicate over twin-shaped rows. Raises QueryError."""
    tokens = _tokens(text)
    parser = _Parser(tokens)
    predicate = parser.expression()
    if parser.position != len(tokens):
        raise QueryError(f"unexpected {tokens[parser.position][1]!r} in {text!r}")
    return predicate


def parse_query(text: str) -> tuple[str, Callable[[Row], bool]]:
    """(collection ``devices`` or ``devices.modules``, predicate). Raises QueryError."""
    match = _SELECT.match(text)
    if not match:
        raise QueryError(f"not a SELECT ... FROM devices[.modules] query: {text!r}")
    where = match.group(2)
    return match.group(1).lower(), parse_condition(where) if where else (lambda row: True)


def lookup(row: Row, path: str) -> Any:
    """The value at dotted ``path`` (``[[x]]`` is one segment), or ``_MISSING``."""
    value: Any = row
    for part in re.findall(r"\[\[([^\]]*)\]\]|([^.]+)", path):
        key = part[0] or part[1]
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _tokens(text: str) -> list[tuple[str, str]]:
    found, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise QueryError(f"cannot read {text[position:]!r}")
        kind = match.lastgroup or ""
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.position = 0

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.position] if self.position < len(self.tokens) else ("end", "")

    def _keyword(self, word: str) -> bool:
        kind, value = self._peek()
        if kind == "word" and value.upper() == word:
            self.position += 1
            return True
        return False

    def expression(self) -> Callable[[Row], bool]:
        terms = [self._term()]
        while self._keyword("OR"):
            terms.append(self._term())
        return lambda row: any(t(row) for t in terms)

    def _term(self) -> Callable[[Row], bool]:
        factors = [self._factor()]
        while self._keyword("AND"):
            factors.append(self._factor())
        return lambda row: all(f(row) for f in factors)

    def _factor(self) -> Callable[[Row], bool]:
        if self._keyword("NOT"):
            inner = self._factor()
            return lambda row: not inner(row)
        if self._peek() == ("op", "("):
            self.position += 1
            inner = self.expression()
            if self._peek() != ("op", ")"):
                raise QueryError("missing ')'")
            self.position += 1
            return inner
        left = self._operand()
        kind, op = self._peek()
        if kind != "op" or op in "()":
            raise QueryError(f"expected a comparison, found {op!r}")
        self.position += 1
        right = self._operand()
        return lambda row: _compare(left(row), op, right(row))

    def _operand(self) -> Callable[[Row], Any]:
        kind, value = self._peek()
        self.position += 1
        if kind == "str":
            text = value[1:-1].replace("''", "'")
            return lambda row: text
        if kind == "num":
            number = float(value) if "." in value else int(value)
            return lambda row: number
        if kind == "word" and value.lower() in ("true", "false", "null"):
            constant = {"true": True, "false": False, "null": None}[value.lower()]
            return lambda row: constant
        if kind == "word":
            return lambda row: lookup(row, value)
        raise QueryError(f"expected a value, found {value!r}")


def _compare(left: Any, op: str, right: Any) -> bool:
    if left is _MISSING or right is _MISSING:
        return False
    try:
        return {
            "=": lambda: left == right,
            "!=": lambda: left != right,
            "<>": lambda: left != right,
            "<": lambda: left < right,
            ">": lambda: left > right,
            "<=": lambda: left <= right,
            ">=": lambda: left >= right,
        }[op]()
    except TypeError:
        return False
