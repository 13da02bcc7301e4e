"""CSV lines of collected numpy arrays, formatted by Apache Arrow in the writer thread.

``collect()`` of an integer or floating-point numpy array only keeps a copy of the array (a few
microseconds); the writer thread turns many requests' arrays into CSV text here, with
``pyarrow.compute`` kernels, which run in C++ without holding the GIL, so neither the request's
thread nor (through the GIL) the event loop pays for the formatting.

Contract: the text is byte for byte what ``rows.prefixed`` (the csv module over ``tolist()``, as
azureml-monitoring 0.1.0a21 wrote it) gives for the same rows: integers as ``str(int)``; floats
as ``repr(float)`` of the float64 value. Arrow's float text has the same shortest round-trip
digits as ``repr`` but its own notation (``80`` for ``80.0``, ``1e+10`` for ``10000000000.0``,
``1e-7`` for ``1e-07``): cells Arrow writes as ``repr`` would (``1e-4 <= |x| < 1e10``) keep its
text, integral ones get ``.0``, and the rest (zero excepted: nan, inf, tiny or huge values, which
are rare) are formatted by ``repr`` in Python. pyarrow is optional: without it ``collect()``
formats on the request's thread as before (``available()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_arrow: tuple[Any, Any] | None = None
_checked = False
FIXED_LOW = 1e-4  # repr and Arrow both write fixed notation for 1e-4 <= |x| < 1e10
FIXED_HIGH = 1e10


def available() -> bool:
    """True when pyarrow can be imported (imported here, once: call it at ``init()``, not per request)."""
    global _arrow, _checked
    if not _checked:
        _checked = True
        try:
            import pyarrow
            import pyarrow.compute

            _arrow = (pyarrow, pyarrow.compute)
        except ImportError:
            _arrow = None
    return _arrow is not None


def accepts(data: Any) -> bool:
    """True for a numpy array of integers or floats with at least one cell per row (else the
    request's thread formats it: bools, objects, strings and other dtypes differ as text)."""
    return data.dtype.kind in "iuf" and data.size > 0 and (data.ndim < 2 or data.shape[1] > 0 or data.ndim > 2)


def rows_of(data: Any) -> Any:
    """A 2-D copy of ``data`` (rows as ``rows.table`` makes them); the caller may change ``data`` after."""
    ndim = data.ndim
    if ndim == 2:
        return data.copy()
    return data.reshape(len(data) if ndim > 2 else 1, -1).copy()


def body(prefixes: Sequence[str], arrays: Sequence[Any]) -> bytes:
    """The CSV lines (``\\r\\n`` ends) of every row of ``arrays`` (2-D, one width, all integer or
    all floating-point), each row starting with the ``prefixes`` entry of its array.

    Raises:
        ImportError: pyarrow is missing (check ``available()`` first).
    """
    import numpy as np

    assert available() and _arrow is not None
    pa, pc = _arrow
    table = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    if table.dtype.kind == "f" and table.dtype != np.float64:
        table = table.astype(np.float64)
    height, width = table.shape
    cells = _text(pa, pc, pa.array(table.ravel()), table.dtype.kind)  # every cell at once, row by row
    starts = pa.array(np.arange(0, height * width + 1, width, dtype=np.int32))
    line = pc.binary_join(pa.ListArray.from_arrays(starts, cells), ",")
    counts = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    owner = pa.array(np.repeat(np.arange(len(arrays), dtype=np.int32), counts))
    line = pc.binary_join_element_wise(pc.take(pa.array(list(prefixes)), owner), line, "\r\n", "")
    return _data(line)


def _text(pa: Any, pc: Any, values: Any, kind: str) -> Any:
    """Numbers (an Arrow array of numpy ``kind`` ``i``, ``u`` or ``f``) as Arrow strings, each as
    ``str(int)`` or ``repr(float)`` writes it; only the cells Arrow writes otherwise are rewritten."""
    text = pc.cast(values, pa.string())
    if kind != "f":
        return text
    magnitude = pc.abs(values)
    integral = pc.equal(pc.floor(values), values)
    fixed = pc.and_(pc.less(magnitude, FIXED_HIGH), pc.or_(integral, pc.greater_equal(magnitude, FIXED_LOW)))
    whole = pc.and_(integral, fixed)  # Arrow writes 80 where repr writes 80.0
    if pc.any(whole).as_py():
        text = pc.replace_with_mask(text, whole, pc.binary_join_element_wise(pc.filter(text, whole), ".0", ""))
    if pc.all(fixed).as_py():
        return text
    others = pc.invert(fixed)
    return pc.replace_with_mask(text, others, pa.array([repr(v) for v in pc.filter(values, others).to_pylist()]))


def _data(strings: Any) -> bytes:
    """The concatenated text of an Arrow string array without nulls (its data buffer, sliced)."""
    import numpy as np

    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32)[strings.offset : strings.offset + len(strings) + 1]
    data: bytes = strings.buffers()[2].to_pybytes()
    return data[int(offsets[0]) : int(offsets[-1])]
