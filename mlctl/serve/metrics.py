"""Prometheus metrics shared by all workers of one server, without a metrics library.

The supervisor maps one anonymous shared memory block (``mmap``) before forking; each worker
writes only its own slot (8-byte float stores, so no locks), and ``GET /metrics`` on any worker
sums every slot. A restarted worker takes over its predecessor's slot, so counters stay monotonic.

Series (Prometheus text format 0.0.4):

* ``mlctl_requests_total{route,status}``: counter.
* ``mlctl_request_duration_seconds{route,status}``: histogram.
* ``mlctl_requests_in_flight``: gauge, requests for the model (``/score``, OIP inference) being answered now, summed
  over the workers (probes and scrapes are not counted: the kubernetes target's concurrency
  autoscaling reads this gauge per pod).
* ``mlctl_init_duration_seconds{worker}``: gauge, how long ``init()`` took.
* ``mlctl_workers``: gauge.
* ``mlctl_model_data_rows_total{outcome}``: counter, model data collection rows ``collected``
  (offered to ``collect()``), ``written``, ``dropped`` (buffer full); only once a row was offered.
* ``mlctl_model_data_write_errors_total``: counter, failed writes to the store (each retried).

The same block also carries the model data flush hand-shake (``POST /-/mlctl/model-data/flush``,
``mlctl.serve.frontends.internal``): after the slots, the flush generation last requested and its
time limit; in each slot, the generation that worker last answered and the rows it still held then.
"""

from __future__ import annotations

import mmap
import os
import struct
from bisect import bisect_left

ROUTES = ("/score", "/", "/healthz", "/readyz", "/swagger.json", "/metrics", "other", "/v2/models/{model}/infer")
STATUSES = (200, 201, 204, 400, 401, 404, 405, 413, 415, 431, 500, 503, 504, 0)  # 0: any other
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROUTE = {r: i for i, r in enumerate(ROUTES)}
_STATUS = {s: i for i, s in enumerate(STATUSES)}
_OTHER, _OIP_INFER = _ROUTE["other"], _ROUTE["/v2/models/{model}/infer"]
_SERIES = len(BUCKETS) + 3  # one count per bucket, then +Inf count, sum, total count
_CELLS = len(ROUTES) * len(STATUSES) * _SERIES
COLLECTION = ("collected", "written", "dropped", "write_errors")  # mlctl.serve.collect.writer.Counters
_FLUSH = _CELLS + 2 + len(COLLECTION)  # ... then in-flight, init seconds and the collection counters
_SLOT = _FLUSH + 2  # ... then the flush generation answered and the rows left then
_GLOBAL = 2  # after every slot: the flush generation requested and its time limit (s)
_DOUBLE = struct.Struct("d")
_current: SharedMetrics | None = None


def current() -> SharedMetrics | None:
    """The metrics this worker process writes to (set by ``use_slot``), else None."""
    return _current


class SharedMetrics:
    """Counters for ``workers`` slots in shared memory (create before forking)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.memory = mmap.mmap(-1, (workers * _SLOT + _GLOBAL) * 8)
        self.values = memoryview(self.memory).cast("d")
        self.slot = 0
        self.supervisor = os.getpid()  # created by the supervisor, before it forks the workers

    def use_slot(self, slot: int) -> None:
        """Make this process write to ``slot`` (a worker's index); ``current()`` returns ``self`` from now on."""
        global _current
        self.slot = slot
        _current = self

    def add_collection(self, name: str, n: int) -> None:
        """Add ``n`` to model data collection counter ``name`` (one of ``COLLECTION``)."""
        self.values[self.slot * _SLOT + _CELLS + 2 + COLLECTION.index(name)] += n

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        index = _ROUTE.get(route)
        if index is None:  # the Open Inference Protocol's inference paths are one route; the rest "other"
            index = _OIP_INFER if route.startswith("/v2/models/") and route.endswith("/infer") else _OTHER
        base = self.slot * _SLOT + (index * len(STATUSES) + _STATUS.get(status, 13)) * _SERIES
        values = self.values
        values[base + bisect_left(BUCKETS, seconds)] += 1  # its own bucket; cumulated when rendered
        values[base + _SERIES - 2] += seconds
        values[base + _SERIES - 1] += 1

    def in_flight(self, delta: int) -> None:
        """Add ``delta`` to this worker's in-flight requests."""
        self.values[self.slot * _SLOT + _CELLS] += delta

    def set_init_seconds(self, seconds: float) -> None:
        """Record how long this worker's ``init()`` took."""
        self.values[self.slot * _SLOT + _CELLS + 1] = seconds

    def request_flush(self, timeout_s: float) -> int:
        """Ask for a new model data flush of at most ``timeout_s`` seconds; returns its generation
        (the caller then has the supervisor signal every worker). Two requests at once may share
        one generation: either worker's answer covers both."""
        base = self.workers * _SLOT
        self.values[base + 1] = timeout_s
        self.values[base] += 1
        return int(self.values[base])

    def flush_wanted(self) -> tuple[int, float]:
        """The flush generation last requested and its time limit in seconds (0, 0.0: none yet)."""
        base = self.workers * _SLOT
        return int(self.values[base]), float(self.values[base + 1])

    def flush_answered(self, generation: int, rows_left: int) -> None:
        """Record that this worker flushed for ``generation`` and still holds ``rows_left`` rows."""
        base = self.slot * _SLOT + _FLUSH
        self.values[base + 1] = rows_left  # before the generation: a reader that sees it sees this
        self.values[base] = generation

    def flush_progress(self, generation: int) -> tuple[int, int]:
        """How many workers answered ``generation`` (or a later one), and the rows they still held."""
        answered = [w for w in range(self.workers) if self._slot_value(w, _FLUSH) >= generation]
        return len(answered), int(sum(self._slot_value(w, _FLUSH + 1) for w in answered))

    def render(self) -> bytes:
        """All slots summed, in the Prometheus text format."""
        lines = [
            "# HELP mlctl_requests_total Requests answered, by route and status.",
            "# TYPE mlctl_requests_total counter",
        ]
        histogram = [
            "# HELP mlctl_request_duration_seconds Time to answer a request.",
            "# TYPE mlctl_request_duration_seconds histogram",
        ]
        for r, route in enumerate(ROUTES):
            for s, status in enumerate(STATUSES):
                cells = self._summed((r * len(STATUSES) + s) * _SERIES)
                if cells[-1] == 0:
                    continue
                labels = f'route="{route}",status="{status or "other"}"'
                lines.append(f"mlctl_requests_total{{{labels}}} {cells[-1]:.0f}")
                histogram.extend(_histogram(labels, cells))
        lines += histogram
        lines += [
            "# HELP mlctl_requests_in_flight Scoring requests (/score) being answered now.",
            "# TYPE mlctl_requests_in_flight gauge",
            f"mlctl_requests_in_flight {sum(self._slot_value(w, _CELLS) for w in range(self.workers)):.0f}",
            "# HELP mlctl_init_duration_seconds How long init() took, per worker.",
            "# TYPE mlctl_init_duration_seconds gauge",
        ]
        lines += [
            f'mlctl_init_duration_seconds{{worker="{w}"}} {self._slot_value(w, _CELLS + 1):.6f}'
            for w in range(self.workers)
        ]
        lines += self._collection_lines()
        lines += [
            "# HELP mlctl_workers Worker processes.",
            "# TYPE mlctl_workers gauge",
            f"mlctl_workers {self.workers}",
        ]
        return ("\n".join(lines) + "\n").encode()

    def _collection_lines(self) -> list[str]:
        totals = [sum(self._slot_value(w, _CELLS + 2 + i) for w in range(self.workers)) for i in range(4)]
        if not totals[0] and not totals[3]:
            return []
        lines = [
            "# HELP mlctl_model_data_rows_total Model data collection rows, by outcome.",
            "# TYPE mlctl_model_data_rows_total counter",
        ]
        lines += [
            f'mlctl_model_data_rows_total{{outcome="{n}"}} {v:.0f}'
            for n, v in zip(COLLECTION[:3], totals[:3], strict=True)
        ]
        return [
            *lines,
            "# HELP mlctl_model_data_write_errors_total Failed writes to the model data store (retried).",
            "# TYPE mlctl_model_data_write_errors_total counter",
            f"mlctl_model_data_write_errors_total {totals[3]:.0f}",
        ]

    def _summed(self, offset: int) -> list[float]:
        return [sum(self.values[w * _SLOT + offset + i] for w in range(self.workers)) for i in range(_SERIES)]

    def _slot_value(self, worker: int, index: int) -> float:
        return float(self.values[worker * _SLOT + index])


def _histogram(labels: str, cells: list[float]) -> list[str]:
    out, cumulative = [], 0.0
    for bound, count in zip((*BUCKETS, float("inf")), cells[: len(BUCKETS) + 1], strict=True):
        cumulative += count
        le = "+Inf" if bound == float("inf") else f"{bound:g}"
        out.append(f'mlctl_request_duration_seconds_bucket{{{labels},le="{le}"}} {cumulative:.0f}')
    out.append(f"mlctl_request_duration_seconds_sum{{{labels}}} {cells[-2]:.6f}")
    out.append(f"mlctl_request_duration_seconds_count{{{labels}}} {cells[-1]:.0f}")
    return out
