"""Model data collection's fast formatting and its writer (issue 19, "nothing slowed"): numeric numpy
arrays written by orjson come out byte for byte as the csv module writes them, and the writer keeps
the order they were collected in, with exact counters."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlctl.serve.collect import Batch, Counters, deferred, numeric, rows
from mlctl.serve.collect.sinks import LocalSink
from mlctl.serve.collect.writer import Writer

PREFIXES = ['id-1,2026-12-05T16:00:00.000001,1440,a/b/c,svc,"m,1",1,req-1,', "id-2,t,60,w,s,m,2,req-2,"]
SPECIAL = [0.0, -0.0, 1.0, 80.0, 0.1, 1e-4, 9.9e-5, 1e-7, 1e10, 9999999999.5, 1e15, 1e16, 1e20, 5e-324]
SPECIAL += [float("nan"), float("inf"), float("-inf"), 1 / 3, -123456789.123, 2.0**53, 1.7976931348623157e308]


# the correlation values behind PREFIXES (a model name that needs quoting in the first)
VALUES = [
    ["id-1", "2026-12-05T16:00:00.000001", "1440", "a/b/c", "svc", "m,1", "1", "req-1"],
    ["id-2", "t", "60", "w", "s", "m", "2", "req-2"],
]


def correlation(index: int) -> deferred.Correlation:
    """The ``deferred.Correlation`` whose prefix is ``PREFIXES[index]``."""
    values = VALUES[index]
    made = deferred.Correlation(values[7], dict(zip(rows.CORRELATION_COLUMNS, values, strict=True)), "h", None)
    assert made.prefix() == PREFIXES[index].encode()
    return made


def csv_module(prefixes: list[str], arrays: list[np.ndarray]) -> bytes:
    """What collect() writes for these arrays with the csv module (over tolist(), as v1 did)."""
    pairs = zip(prefixes, arrays, strict=True)
    return "".join(rows.prefixed(p, numeric.table_of(a).tolist()) for p, a in pairs).encode()


def fast(prefixes: list[str], arrays: list[np.ndarray]) -> bytes:
    """What collect() writes for these arrays with orjson (numeric.lines)."""
    parts = [numeric.lines(p.encode(), numeric.table_of(a)) for p, a in zip(prefixes, arrays, strict=True)]
    assert all(part is not None for part in parts)
    return b"".join(part or b"" for part in parts)


def test_orjson_is_available_where_the_tests_run() -> None:
    assert numeric.available()


def test_special_floats_ints_and_float32_match_the_csv_module() -> None:
    floats = np.array([SPECIAL, SPECIAL[::-1]])
    narrow = np.array([SPECIAL[:-1], SPECIAL[-2::-1]]).astype(np.float32)  # float32 overflows at 1.8e308
    for arrays in (
        [floats, floats[:1]],
        [narrow, narrow[:1]],
        [np.array([[1e-5, 0.5, 65504.0]], dtype=np.float16), np.array([[1e-5, 0.5], [2.0, 3.0]])],
        [np.array([[1, -2, 3], [2**62, 0, -(2**63)]]), np.array([[7, 8, 9]], dtype=np.uint8)],
        [np.array([[2**64 - 1]], dtype=np.uint64), np.array([4.4e-05, 0.006287, -1e-5, 10.00001])],
    ):
        assert fast(PREFIXES, arrays) == csv_module(PREFIXES, arrays)


def test_only_the_rows_holding_odd_values_are_written_by_repr() -> None:
    data = np.array([[0.5, 1.0], [4.4e-05, 2.0], [3.0, float("nan")], [1e16, 7.0]])
    lines = (numeric.lines(b"p,", data) or b"").split(b"\r\n")
    assert lines == [b"p,0.5,1.0", b"p,4.4e-05,2.0", b"p,3.0,nan", b"p,1e+16,7.0", b""]


def test_slices_transposes_and_other_byte_orders_are_written_too() -> None:
    data = np.arange(12.0).reshape(3, 4) / 7
    for odd in (data[:, 1:3], data.T, data.astype(">f8"), data[::2]):
        text = numeric.lines(b"p,", numeric.table_of(odd))
        assert text is None or text == rows.prefixed("p,", odd.tolist()).encode()


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int32, np.uint16]),
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
    )
)
def test_any_numeric_array_matches_the_csv_module(data: np.ndarray) -> None:
    assert fast(PREFIXES[:1], [data]) == csv_module(PREFIXES[:1], [data])


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 4)), elements=st.floats(width=64)))
def test_any_float64_value_matches_repr(data: np.ndarray) -> None:
    assert fast(PREFIXES[1:], [data]) == csv_module(PREFIXES[1:], [data])


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([np.float64, np.float32, np.int64, np.uint8]).flatmap(
        lambda dtype: st.integers(1, 4).flatmap(
            lambda width: st.lists(
                st.tuples(
                    st.integers(0, 1),
                    hnp.arrays(dtype, st.tuples(st.integers(1, 4), st.just(width))),
                    st.booleans(),
                ),
                min_size=1,
                max_size=6,
            )
        )
    )
)
def test_the_writer_renders_many_requests_arrays_as_each_alone(items: list[tuple[int, np.ndarray, bool]]) -> None:
    # deferred batches of one dtype and width render with one orjson call, their text in the
    # run's first body; a text batch between them (True: the csv module's text of the same rows)
    # cuts the run and keeps its place
    bodies: list[object] = []
    expected: list[bytes] = []
    for index, array, as_text in items:
        text = csv_module([PREFIXES[index]], [array])
        bodies.append(text if as_text else deferred.Deferred(correlation(index), array.copy()))
        expected.append(text)
    rendered = deferred.render(bodies)
    assert len(rendered) == len(bodies) and b"".join(rendered) == b"".join(expected)
    for body, text, previous in zip(bodies, rendered, [None, *bodies], strict=False):
        if isinstance(body, bytes):
            assert text == body
        elif isinstance(previous, deferred.Deferred):
            assert text == b"" or previous.table.dtype != body.table.dtype  # (one width per example)


def test_runs_of_other_dtypes_and_widths_render_apart() -> None:
    ints, floats, wide = np.array([[1, 2], [3, 4]]), np.array([[0.5, 4.4e-05]]), np.array([[1.0, 2.0, float("nan")]])
    arrays = [ints, floats, floats, wide, ints.astype(np.uint64), ints]
    bodies = [deferred.Deferred(correlation(n % 2), a) for n, a in enumerate(arrays)]
    texts = [csv_module([PREFIXES[n % 2]], [a]) for n, a in enumerate(arrays)]
    assert deferred.render(bodies) == [texts[0], texts[1] + texts[2], b"", texts[3], texts[4], texts[5]]


def test_table_of_makes_rows_as_the_csv_path_does() -> None:
    assert numeric.table_of(np.arange(3)).shape == (1, 3)
    assert numeric.table_of(np.zeros((2, 3, 4))).shape == (2, 12)


def test_accepts_numbers_only() -> None:
    assert numeric.accepts(np.zeros((2, 3))) and numeric.accepts(np.arange(3))
    assert not numeric.accepts(np.array([True, False]))
    assert not numeric.accepts(np.array(["a", "b"])) and not numeric.accepts(np.zeros((2, 0)))


def test_writer_keeps_order_of_text_and_array_batches_and_counts_rows(tmp_path: Path) -> None:
    counters = Counters()
    writer = Writer(LocalSink(tmp_path), capacity=9, counters=counters)
    header = rows.csv_text([rows.header(["a", "b"], 2)])
    ints, floats = np.array([[1, 2], [3, 4]]), np.array([[0.5, 80.0]])
    batches = [
        Batch("p/data.csv", header, fast(PREFIXES[:1], [ints]), 2),
        Batch("p/data.csv", header, rows.prefixed(PREFIXES[1], [["x", "y"]]).encode(), 1),
        Batch("p/data.csv", header, fast(PREFIXES[1:], [floats]), 1),
        Batch("p/data.csv", header, fast(PREFIXES[:1], [ints]), 2),
        Batch("p/data.csv", header, fast(PREFIXES[:1], [ints]), 2),
        Batch("p/data.csv", header, fast(PREFIXES[:1], [ints]), 2),  # 8 + 2 rows > capacity 9: dropped whole
    ]
    accepted = [writer.put(b) for b in batches]
    assert accepted == [True] * 5 + [False]
    assert writer.flush(10)
    text = (tmp_path / "p" / "data.csv").read_bytes()
    expected = csv_module([PREFIXES[0]], [ints]) + rows.prefixed(PREFIXES[1], [["x", "y"]]).encode()
    expected += csv_module([PREFIXES[1], PREFIXES[0], PREFIXES[0]], [floats, ints, ints])
    assert text == header.encode() + expected
    assert (counters.collected, counters.written, counters.dropped, counters.write_errors) == (10, 8, 2, 0)
    with (tmp_path / "p" / "data.csv").open(newline="") as handle:
        assert [r["$aml_request_id"] for r in csv.DictReader(handle)] == ["req-1"] * 2 + ["req-2"] * 2 + ["req-1"] * 4


def test_correlation_prefix_and_ids_as_the_csv_and_uuid_modules_write_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import uuid

    monkeypatch.syspath_prepend(str(Path(numeric.__file__).parents[1] / "_compat"))  # as the server does
    dc = importlib.import_module("azureml.monitoring.modeldatacollector")

    for values in (
        ["id", "2026-12-05T16:00:00", 1440, "a/b/c", "svc", "m", "1", "req"],
        ["i", "t", 60, 'w,"x"', "s\r\n", "m", "1", "r,1"],
    ):
        correlation = dict(zip(rows.CORRELATION_COLUMNS, values, strict=True))
        expected = rows.csv_text([values])[:-2] + ","
        assert deferred.prefix_text(correlation) == expected
        constants = ",".join(map(str, values[2:7])) + ","
        quoted = deferred.NEEDS_QUOTES.search(constants)
        made = deferred.Correlation(str(values[7]), correlation, "hour", None if quoted else constants)
        assert made.prefix() == expected.encode()  # the collector's shortcut when no constant needs quotes
    ids = {dc._uuid4() for _ in range(1000)}
    assert len(ids) == 1000 and all(str(uuid.UUID(i)) == i and uuid.UUID(i).version == 4 for i in ids)
    assert all(uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    import os

    read, write = os.pipe()
    if (child := os.fork()) == 0:  # a forked worker draws its own ids (a fork keeps the parent's counter)
        os.write(write, dc._uuid4().encode())
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 100).decode() not in ids | {dc._uuid4()}


def test_rows_put_after_the_writer_went_idle_are_written_without_a_flush(tmp_path: Path) -> None:
    import time

    from mlctl.serve.collect.writer import INTERVAL_S

    writer = Writer(LocalSink(tmp_path), capacity=1000)
    time.sleep(INTERVAL_S * 2)  # the writer waits for a first batch (the server's init() took longer)
    header = rows.csv_text([rows.header(["a"], 1)])
    assert writer.put(Batch("p/data.csv", header, fast(PREFIXES[:1], [np.array([[1]])]), 1))
    deadline = time.monotonic() + INTERVAL_S * 6
    while writer.buffered and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.buffered == 0 and (tmp_path / "p" / "data.csv").read_bytes().endswith(b"req-1,1\r\n")


def test_rows_of_a_failed_write_go_back_in_front_of_later_ones_for_every_file(tmp_path: Path) -> None:
    class Flaky(LocalSink):
        """A local store whose first append fails (a storage outage), after the writer took two files."""

        failed = False

        def append(self, path: str, header: str, bodies: Sequence[bytes]) -> None:
            if not self.failed:
                self.failed = True
                raise OSError("outage")
            super().append(path, header, bodies)

    import time

    counters = Counters()
    writer = Writer(Flaky(tmp_path), capacity=100, counters=counters)
    header = rows.csv_text([rows.header(["a"], 1)])

    def batch(path: str, value: int) -> Batch:
        return Batch(path, header, fast(PREFIXES[:1], [np.array([[value]])]), 1)

    for path in ("p/data.csv", "q/data.csv"):  # the writer's first write takes them all, and fails
        assert writer.put(batch(path, 1)) and writer.put(batch(path, 2))
    deadline = time.monotonic() + 5
    while counters.write_errors == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    for path in ("p/data.csv", "q/data.csv"):  # during the backoff: must come after the retried rows
        assert writer.put(batch(path, 3))
    assert writer.flush(20) and counters.write_errors == 1 and counters.written == 6
    for path in ("p", "q"):
        lines = (tmp_path / path / "data.csv").read_text().splitlines()[1:]
        assert [line.rsplit(",", 1)[1] for line in lines] == ["1", "2", "3"]


def test_numbers_orjson_writes_in_another_notation_are_rewritten_where_they_stand() -> None:
    data = np.array([[4.4e-05, 0.5, -1e-07], [10.00001, -0.00001, 1e16], [0.0001, 2.5e-300, -1.5e22]])
    assert numeric.lines(b"p,", data) == rows.prefixed("p,", data.tolist()).encode()
    assert numeric.lines(b"p,", data[:, :1]) == b"p,4.4e-05\r\np,10.00001\r\np,0.0001\r\n"


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 5), st.integers(1, 5)),
        elements=st.one_of(st.floats(-1e-3, 1e-3), st.floats(-1e-300, 1e-300), st.floats(1e15, 1e300)),
    )
)
def test_tiny_and_huge_values_match_repr(data: np.ndarray) -> None:
    assert fast(PREFIXES[1:], [data]) == csv_module(PREFIXES[1:], [data])


def test_large_arrays_with_and_without_tiny_values_match_the_csv_module() -> None:
    rng = np.random.default_rng(19)
    data = np.round(rng.normal(size=(300, 10)) / 20, 6)  # the diabetes features' look: 0.038076, -0.001882
    data[7, 3], data[250, 0], data[0, 0] = 4.4e-05, -3e-06, 0.0
    for table in (data, np.abs(data) + 1e-3):
        assert numeric.lines(b"p,", table) == rows.prefixed("p,", table.tolist()).encode()
