"""The two stores of collected rows: every row lands whole, in order, however the writer's batches
are cut into system calls (local store) or append blocks (Azure Blob Storage, on Azurite)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from azurite import API_VERSION, Azurite
from conftest import free_port
from hypothesis import given, settings
from hypothesis import strategies as st

from mlctl.serve.collect import sinks
from mlctl.serve.collect.sinks import BlobSink, LocalSink, blocks

HEADER = "$aml_dc_correlation_id,a\r\n"


def body(writer: str, batch: int, rows: int, width: int = 40) -> bytes:
    """``rows`` CSV lines of one batch, each naming its writer, batch and row (and padded to ``width``)."""
    return b"".join(f"{writer}-{batch}-{row},{'x' * width}\r\n".encode() for row in range(rows))


lines = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"") + b"\r\n"), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(lines.map(b"".join), max_size=12), st.integers(1, 64))
def test_blocks_keep_every_byte_in_order_and_end_at_a_line_end(bodies: list[bytes], limit: int) -> None:
    cut = list(blocks(bodies, limit))
    assert b"".join(cut) == b"".join(bodies) and all(cut)
    longest_line = max((len(line) + 1 for line in b"".join(bodies).split(b"\n")[:-1]), default=0)
    if longest_line <= limit:  # (a line longer than the limit cannot land whole anywhere)
        assert all(len(block) <= limit and block.endswith(b"\n") for block in cut)
    else:
        assert all(len(block) <= limit for block in cut)


def test_local_store_writes_more_batches_than_one_writev_takes_in_order(tmp_path: Path) -> None:
    bodies = [body("w", n, rows=2) for n in range(sinks.IOV_MAX * 2 + 7)]
    LocalSink(tmp_path).append("a/data.csv", HEADER, bodies)
    LocalSink(tmp_path).append("a/data.csv", HEADER, bodies[:3])  # the header is written once
    assert (tmp_path / "a" / "data.csv").read_bytes() == HEADER.encode() + b"".join(bodies + bodies[:3])


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    """A running Azurite blob service (in memory) on 127.0.0.1 (``tests/azurite.py``)."""
    server = Azurite(tmp_path, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_replicas_appending_batches_larger_than_a_block_never_split_a_row(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a block limit of 16 KiB instead of 4 MiB: the same cut, with batches of ~70 KB
    monkeypatch.setattr(sinks, "MAX_BLOCK", 16 * 1024)
    expected: set[str] = set()
    failures: list[BaseException] = []

    def replica(name: str) -> None:
        try:
            sink = BlobSink(azurite.connection_string, None, API_VERSION)
            for batch in range(6):
                bodies = [body(name, batch, rows=300, width=200)]
                sink.append("svc/inputs/data.csv", HEADER, bodies)
        except BaseException as error:  # noqa: BLE001 - reported by the test's thread
            failures.append(error)

    for name in ("r1", "r2", "r3"):
        expected |= {line for b in range(6) for line in body(name, b, rows=300, width=200).decode().splitlines()}
    threads = [threading.Thread(target=replica, args=(name,)) for name in ("r1", "r2", "r3")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    text = azurite.blob_texts()["svc/inputs/data.csv"]
    assert text.startswith(HEADER)
    written = text[len(HEADER) :].splitlines()
    assert sorted(written) == sorted(expected)  # every row once, none cut by another replica's block
