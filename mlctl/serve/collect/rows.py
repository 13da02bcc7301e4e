"""Turn what ``ModelDataCollector.collect`` accepts into CSV text, as azureml-monitoring 0.1.0a21 does.

Contract (its ``collect``): a list is one row; a numpy array is one row (1-D) or one row per
first-axis entry (2-D); a pandas DataFrame is one row per row, its column names the features. Any
other type is not collected (a warning, as v1 gives). numpy and pandas are never imported here:
types are recognised by their module, so a script that does not use them does not load them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

CORRELATION_COLUMNS = (
    "$aml_dc_correlation_id",
    "$aml_dc_scoring_timestamp",
    "$aml_dc_boundary",
    "$aml_workspace",
    "$aml_service_name",
    "$aml_model_name",
    "$aml_model_version",
    "$aml_request_id",
)


def kind_of(data: Any) -> str | None:
    """``list``, ``numpy``, ``pandas`` or None (not collectable)."""
    if isinstance(data, list | tuple):
        return "list"
    module = type(data).__module__.split(".")[0]
    if module == "numpy" and hasattr(data, "ndim"):
        return "numpy"
    if module == "pandas" and hasattr(data, "columns"):
        return "pandas"
    return None


def table(data: Any, kind: str | None = None) -> tuple[list[str] | None, list[list[Any]]]:
    """(column names when the data carries them, rows); ``kind``: ``kind_of(data)`` if known.
    Raises TypeError for other types."""
    kind = kind or kind_of(data)
    if kind == "list":
        return None, [list(data)]
    if kind == "numpy":
        if data.ndim == 0:
            return None, [[data.item()]]
        if data.ndim == 1:
            return None, [data.tolist()]
        return None, data.reshape(len(data), -1).tolist()  # rows of a 3-D (or more) array flattened
    if kind == "pandas":
        return [str(c) for c in data.columns], data.astype(object).values.tolist()
    raise TypeError(f"cannot collect {type(data).__name__}: give a list, a numpy array or a pandas DataFrame")


def csv_text(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as CSV lines (``\\r\\n`` ends, the csv module's default, as v1 wrote them)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def prefixed(prefix: str, table: Sequence[Sequence[Any]]) -> str:
    """CSV lines of ``table``, each starting with ``prefix`` (CSV text of the correlation values
    and a comma). Formats the table in one C call and inserts the prefix with one replace, unless a
    cell holds a line break (then row by row)."""
    text = csv_text(table)
    if text.count("\n") != len(table):
        return "".join(prefix + csv_text([row]) for row in table)
    return prefix + text[:-2].replace("\r\n", "\r\n" + prefix) + "\r\n"


def header(features: Sequence[str] | None, width: int) -> list[str]:
    """The v1 correlation columns, then the feature names (``feature_names``, the DataFrame's,
    else ``0``, ``1``, ... so every file has a header the reader can rely on)."""
    names = list(features or [])
    names += [str(i) for i in range(len(names), width)]
    return [*CORRELATION_COLUMNS, *names[: max(width, len(names))]]
