"""CSV lines of collected numeric numpy arrays, written by orjson (in the writer thread, many
requests' arrays at once: ``mlctl.serve.collect.deferred``).

Contract: the text is byte for byte what ``rows.prefixed`` (the csv module over ``tolist()``, as
azureml-monitoring 0.1.0a21 wrote it) gives for the same rows: integers as ``str(int)``, floats as
``repr(float)`` of the float64 value. orjson's numpy serializer (``OPT_SERIALIZE_NUMPY``, no
Python object per cell) writes integers the same way and floats with the same shortest round-trip
digits, in ``repr``'s notation for zero and ``1e-4 <= |x| < 1e16`` (checked on millions of values,
and by the tests against the installed orjson). Elsewhere it may differ (``0.000044`` where
``repr`` writes ``4.4e-05``; ``null`` for nan and infinities): when the text shows an exponent, a
``null`` or a fixed-notation value below ``1e-4``, those numbers are rewritten as ``repr`` writes
them (read back with ``float``; rows holding nan or an infinity are written with ``repr`` whole),
so what is written never depends on orjson's notation there.

orjson formats about twice as fast in isolation as the Arrow kernels mlctl used before, and is a
0.3 MB dependency where pyarrow is 40 MB. It is optional: without it ``collect()`` formats with
the csv module (``available()``).
"""

from __future__ import annotations

from itertools import chain, repeat
from typing import Any

_dumps: Any = None
_option = 0
_checked = False


def available() -> bool:
    """True when orjson can be imported (imported here, once: call it at ``init()``, not per request)."""
    global _dumps, _option, _checked
    if not _checked:
        _checked = True
        try:
            import orjson

            _dumps, _option = orjson.dumps, orjson.OPT_SERIALIZE_NUMPY
        except ImportError:
            _dumps = None
    return _dumps is not None


def accepts(data: Any) -> bool:
    """True for a numpy array of integers or floats with at least one cell per row (others, bools,
    objects and strings among them, are written by the csv module: their text differs)."""
    return data.dtype.kind in "iuf" and data.size > 0 and (data.ndim < 2 or data.shape[1] > 0 or data.ndim > 2)


def table_of(data: Any) -> Any:
    """``data`` as 2-D rows, as ``rows.table`` makes them (a 1-D array is one row; more than two
    dimensions are flattened after the first); a view where numpy can make one."""
    ndim = data.ndim
    if ndim == 2:
        return data
    return data.reshape(len(data) if ndim > 2 else 1, -1)


def lines(prefix: bytes, table: Any) -> bytes | None:
    """The CSV lines (``\r\n`` ends) of ``table`` (2-D, integers or floats, from ``table_of``),
    each starting with ``prefix`` (UTF-8); None for an array orjson refuses (non-native byte order,
    say): the csv module writes those.

    Raises:
        AssertionError: orjson is missing (check ``available()`` first).
    """
    texts = row_texts(table)
    if texts is None:
        return None
    return b"".join((prefix, (b"\r\n" + prefix).join(texts), b"\r\n"))


def lines_of(prefixes: list[bytes], tables: list[Any]) -> bytes | None:
    """What ``lines(prefix, table)`` gives for each pair, joined, with one orjson call for all
    ``tables`` (2-D, one dtype and one width) and no Python per row; None when orjson refuses them
    (as ``lines``).

    Raises:
        AssertionError: orjson is missing.
    """
    if len(tables) == 1:
        return lines(prefixes[0], tables[0])
    import numpy

    texts = row_texts(numpy.concatenate(tables))
    if texts is None:
        return None
    each_row = chain.from_iterable(map(repeat, prefixes, map(len, tables)))  # a table's prefix, once a row
    return b"".join(chain.from_iterable(zip(each_row, texts, repeat(b"\r\n"))))


def row_texts(table: Any) -> list[bytes] | None:
    """The CSV text of each row of ``table`` (2-D, integers or floats), without a line end, as
    ``repr``/``str`` write the cells; None for an array orjson refuses.

    Raises:
        AssertionError: orjson is missing.
    """
    assert _dumps is not None
    if table.dtype.kind == "f" and table.dtype.itemsize != 8:
        table = table.astype("float64")  # repr of the float64 value, as tolist() gives it
    try:
        text: bytes = _dumps(table, option=_option)
    except TypeError:  # not C-contiguous (a slice or a transpose), byte order, ...
        import numpy

        try:
            text = _dumps(numpy.ascontiguousarray(table), option=_option)
        except TypeError:
            return None
    cells = text[2:-2]  # [[a,b],[c,d]] -> a,b],[c,d
    # ``find`` rather than ``in``: bytes' ``in`` first tries its operand as an integer, and the
    # TypeError it raises and clears costs more than the search of a small array's text
    if table.dtype.kind == "f" and (cells.find(b"e") >= 0 or cells.find(b"n") >= 0 or _has_tiny(table, cells)):
        if cells.find(b"n") >= 0:  # null: nan or an infinity, which the text cannot tell apart
            return _with_repr_rows(table, cells.split(b"],["))
        cells = _repr_tokens(cells)
    return cells.split(b"],[")


def _has_tiny(table: Any, cells: bytes) -> bool:
    """Whether a value with ``0 < |x| < 1e-4`` is in ``table`` (orjson writes ``0.0000...``). Small
    arrays: a search of the text; larger ones: numpy (a 6-byte search of dense digits costs more
    than two array passes once the text passes a few kilobytes)."""
    if len(cells) < 2048:
        return cells.find(b"0.0000") >= 0
    import numpy

    size = numpy.abs(table)
    return bool(((size < 1e-4) & (size != 0)).any())


def _repr_tokens(cells: bytes) -> bytes:
    """``cells`` with every number written with an exponent or as ``0.0000...`` rewritten as
    ``repr`` writes it (``1e-7`` -> ``1e-07``, ``0.000044`` -> ``4.4e-05``): ``float`` reads
    orjson's shortest round-trip text back to the same value. A few such values an array at most,
    usually; numbers that merely contain ``0.0000`` (``10.00001``) come out unchanged."""
    parts: list[bytes] = []
    done = 0
    small, exponent = cells.find(b"0.0000"), cells.find(b"e")  # each searched again only once passed
    while small >= 0 or exponent >= 0:
        at = exponent if small < 0 or 0 <= exponent < small else small
        start = max(cells.rfind(b",", done, at), cells.rfind(b"[", done, at), done - 1) + 1
        ends = [e for e in (cells.find(b",", at), cells.find(b"]", at)) if e >= 0]
        done, begun = (min(ends) if ends else len(cells)), done
        parts += (cells[begun:start], repr(float(cells[start:done])).encode())
        if 0 <= small < done:
            small = cells.find(b"0.0000", done)
        if 0 <= exponent < done:
            exponent = cells.find(b"e", done)
    parts.append(cells[done:])
    return b"".join(parts)


def _with_repr_rows(table: Any, texts: list[bytes]) -> list[bytes]:
    """orjson's row ``texts`` of ``table``, except rows holding a value outside the range where its
    notation is ``repr``'s (nan, infinities, ``0 < |x| < 1e-4``, ``|x| >= 1e16``): those are
    written with ``repr``."""
    import numpy

    with numpy.errstate(invalid="ignore"):
        size = numpy.abs(table)
        odd = ((size < 1e-4) & (size != 0)) | ~(size < 1e16)  # nan compares False
    for row in numpy.flatnonzero(odd.any(axis=1)).tolist():
        texts[row] = ",".join(map(repr, table[row].tolist())).encode()
    return texts
