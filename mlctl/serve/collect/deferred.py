"""Numeric rows whose CSV text the writer thread makes, for every request of a write at once.

Why: at a few rows a request, writing a numpy array's text on the request's thread costs more in
calls than in formatting (the prefix, the orjson call, the checks, the joins), and in the server
the rest of each request evicts what those calls use, doubling their cost (docs/benchmarks.md,
"collection's floor"). ``collect()`` therefore keeps only what must happen while the request is
scored: the correlation (``Correlation``: the dict it returns, its id and time) and a copy of the
array (the script may change the array after ``collect()``). The writer renders each run of such
batches (same dtype and width, one after another in a file) with one orjson call
(``numeric.lines_of``), then appends. The text is the same as the request's thread would have
written, byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mlctl.serve.collect import numeric, rows

NEEDS_QUOTES = re.compile('[,"\r\n]')  # what makes the csv module quote a value (QUOTE_MINIMAL)


class Correlation:
    """One request's correlation: ``values`` (the eight ``$aml_*`` columns, the dict ``collect()``
    returns a copy of), the request's id, its scoring hour (``2026-12-06T03``) and, made once when
    first needed, the CSV text of the values and a comma (``prefix``).

    ``constants``: the CSV text of the five values that never change for the collector, ending in
    a comma, when none needs quoting (else None: every prefix goes through the csv module)."""

    __slots__ = ("_prefix", "constants", "hour", "request_id", "values")

    def __init__(self, request_id: str, values: dict[str, Any], hour: str, constants: str | None) -> None:
        self.request_id = request_id
        self.values = values
        self.hour = hour
        self.constants = constants
        self._prefix: bytes | None = None

    def prefix(self) -> bytes:
        """The values' CSV text and a comma, in UTF-8 (``rows.CORRELATION_COLUMNS`` order)."""
        if self._prefix is None:
            values = self.values
            generated, request_id = values["$aml_dc_correlation_id"], values["$aml_request_id"]
            if self.constants is not None and not NEEDS_QUOTES.search(f"{generated}{request_id}"):
                text = f"{generated},{values['$aml_dc_scoring_timestamp']},{self.constants}{request_id},"
            else:
                text = prefix_text(values)
            self._prefix = text.encode()
        return self._prefix


def prefix_text(values: dict[str, Any]) -> str:
    """The CSV text of ``values``' correlation columns (``rows.CORRELATION_COLUMNS`` order) and a comma."""
    texts = [str(values[name]) for name in rows.CORRELATION_COLUMNS]
    joined = ",".join(texts)
    return joined + "," if not NEEDS_QUOTES.search(joined) else rows.csv_text([texts])[:-2] + ","


@dataclass(eq=False, slots=True)
class Deferred:
    """A numeric 2-D array (``numeric.table_of``, copied) to be written after ``correlation``'s prefix."""

    correlation: Correlation
    table: Any


def render(bodies: list[Any]) -> list[bytes]:
    """``bodies`` (CSV text, or ``Deferred``) as CSV text, one for one and in order. Each run of
    deferred tables of one dtype and width is formatted with one orjson call and joined once: its
    text goes to the run's first body, the others get ``b""`` (a write cut short inside it keeps
    the rest of that text, and the rows of the run are counted written once all of it is)."""
    rendered: list[bytes] = []
    run: list[Deferred] = []
    kind: tuple[Any, int] = (None, 0)  # the run's dtype and width
    for body in bodies:
        if type(body) is Deferred:
            table = body.table
            dtype = table.dtype
            if run and (dtype is not kind[0] and dtype != kind[0] or table.shape[1] != kind[1]):
                rendered += _texts(run)
                run = []
            if not run:
                kind = (dtype, table.shape[1])
            run.append(body)
            continue
        if run:
            rendered += _texts(run)
            run = []
        rendered.append(body)
    if run:
        rendered += _texts(run)
    return rendered


def _texts(run: list[Deferred]) -> list[bytes]:
    prefixes = [d.correlation.prefix() for d in run]
    text = numeric.lines_of(prefixes, [d.table for d in run])
    if text is None:  # an array orjson refuses (another byte order): the csv module, as v1
        pairs = zip(prefixes, run, strict=True)
        text = b"".join(rows.prefixed(p.decode(), d.table.tolist()).encode() for p, d in pairs)
    return [text] + [b""] * (len(run) - 1)
