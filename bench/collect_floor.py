"""The least CPU that writing v1's collected rows can add to a request, and the best on/off
throughput ratio it leaves (a benchmark, not a test).

    .venv/bin/python bench/collect_floor.py [--off-us 108 268] \
        [--body /work/shared/bench/bodies/body2.json --body .../body100.json]

For each body (default: the shared harness's body2 and body100, the key cell's), the rows the v1
AKS sample collects in one request: its inputs (the body's rows as ``numpy.array`` makes them from
JSON) and its predictions (one float64 a row). Three costs are measured, each alone in a hot loop
(the minimum over repeats: warm caches, nothing else running, so a lower bound):

* ``format``: orjson's numpy serializer (Ryu's shortest round-trip digits, the fastest float
  formatter Python can call; ``mlctl.serve.collect.numeric`` uses it) on both arrays;
* ``assemble``: one copy of the final CSV text, v1's eight correlation columns (a 170-byte
  prefix, as the sample writes it) before every row: ``bytes.join`` of rows already split;
* ``write``: appending that text to a file beside the store (``--folder``, default the system's
  temporary folder), in batches of ``--batch-rows`` rows as the writer batches them (half of
  ``MLCTL_DC_BUFFER_ROWS``'s default), the process's kernel and user CPU from ``getrusage``.

Their sum is the floor: no Python around ``collect()``, no correlation id or timestamp, no request
id, no counters, no hand-off to a writer thread, no row checks. The best ratio collection on/off
can reach is ``off / (off + floor)``, with ``off`` the server's CPU a request with collection off
(``--off-us``, one per body: the "server CPU µs/req, off" column of ``bench/collection.py``,
measured on the same machine; ``bench/serving.sh SCENARIO=collection`` prints it). On a
saturated machine throughput follows CPU a request, so that is the throughput ratio's ceiling too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import timeit
from pathlib import Path

import numpy
import orjson

PREFIX = b"%s,2026-12-06T03:00:00.123456,1440,default/default/default,bench,sklearn_regression_model.pkl,1,%s," % (
    b"0f5e2d6c-3b1a-4e8f-9c7d-000000000001",
    b"1d2c3b4a-5e6f-4a8b-9c0d-112233445566",
)
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "bench" / "bodies"


def best_us(work, number: int = 2000, repeat: int = 7) -> float:
    """The fastest of ``repeat`` runs of ``work`` ``number`` times, in µs a call."""
    return min(timeit.repeat(work, number=number, repeat=repeat)) / number * 1e6


def arrays(body: Path) -> tuple[numpy.ndarray, numpy.ndarray]:
    """(inputs, predictions) of one request of ``body`` as the v1 AKS sample collects them."""
    inputs = numpy.array(json.loads(body.read_bytes())["data"])
    return inputs, (inputs @ numpy.linspace(-1.0, 1.0, inputs.shape[1]) * 152.13).reshape(-1, 1)


def csv_text(array: numpy.ndarray) -> bytes:
    """The array's rows, each after ``PREFIX`` (orjson's text; the notation fix-ups are left out)."""
    rows = orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY)[2:-2].split(b"],[")
    return b"".join((PREFIX, (b"\r\n" + PREFIX).join(rows), b"\r\n"))


def write_us(text: bytes, rows: int, batch_rows: int, folder: Path, requests: int) -> float:
    """CPU µs a request of appending ``requests`` requests' ``text`` (``rows`` rows each) to one
    file, ``batch_rows`` rows a ``write``."""
    per_batch = max(1, batch_rows // rows)
    batch = text * per_batch
    writes = max(1, requests // per_batch)
    with tempfile.NamedTemporaryFile(dir=folder, prefix="mlctl-collect-floor-") as file:
        fd = os.open(file.name, os.O_WRONLY | os.O_APPEND)
        try:
            before = resource.getrusage(resource.RUSAGE_SELF)
            for _ in range(writes):
                os.write(fd, batch)
            after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            os.close(fd)
    spent = (after.ru_stime - before.ru_stime) + (after.ru_utime - before.ru_utime)
    return spent / (writes * per_batch) * 1e6


def costs(body: Path, args: argparse.Namespace) -> tuple[int, float, float, float]:
    """(bytes written, format µs, assemble µs, write µs) for one request of ``body``."""
    inputs, predictions = arrays(body)
    option = orjson.OPT_SERIALIZE_NUMPY
    text = csv_text(inputs) + csv_text(predictions)
    formatted = best_us(lambda: (orjson.dumps(inputs, option=option), orjson.dumps(predictions, option=option)))
    split_rows = [PREFIX]
    for array in (inputs, predictions):
        split_rows += orjson.dumps(array, option=option)[2:-2].split(b"],[")
    joiner = b"\r\n" + PREFIX
    assembled = best_us(lambda: joiner.join(split_rows))
    written = write_us(text, len(inputs) * 2, args.batch_rows, args.folder, args.requests)
    return len(text), formatted, assembled, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--body", type=Path, action="append", help="JSON body file (repeatable)")
    parser.add_argument("--off-us", type=float, nargs="+", default=[108.0, 268.0], help="server CPU µs/req off, a body")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--batch-rows", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    bodies = args.body or [SHARED / "body2.json", SHARED / "body100.json"]
    if len(args.off_us) != len(bodies):
        parser.error(f"give one --off-us value per body ({len(bodies)})")
    print("| body | bytes written | format µs | assemble µs | write µs | floor µs | off µs | best on/off |")
    print("|---|---|---|---|---|---|---|---|")
    for body, off in zip(bodies, args.off_us, strict=True):
        size, formatted, assembled, written = costs(body, args)
        floor = formatted + assembled + written
        print(
            f"| {body.stem} | {size:,} | {formatted:.1f} | {assembled:.1f} | {written:.1f} | "
            f"{floor:.1f} | {off:.0f} | {off / (off + floor):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
