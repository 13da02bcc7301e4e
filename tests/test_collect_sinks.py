"""The two stores of collected rows: every row lands whole, in order, however the writer's batches
are cut into system calls (local store) or append blocks (Azure Blob Storage, on Azurite)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azurite import API_VERSION, Azurite
from conftest import free_port
from hypothesis import given, settings
from hypothesis import strategies as st
from test_collect import azurite  # noqa: F401 - the fixture

from mlctl.serve.collect import sinks
from mlctl.serve.collect.sinks import BlobSink, LocalSink, blocks

REPO = Path(__file__).resolve().parents[1]

HEADER = "$aml_dc_correlation_id,a\r\n"


def body(writer: str, batch: int, rows: int, width: int = 40) -> bytes:
    """``rows`` CSV lines of one batch, each naming its writer, batch and row (and padded to ``width``)."""
    return b"".join(f"{writer}-{batch}-{row},{'x' * width}\r\n".encode() for row in range(rows))


lines = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"") + b"\r\n"), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(lines.map(b"".join), max_size=12), st.integers(1, 64))
def test_blocks_keep_every_byte_in_order_and_end_at_a_line_end(bodies: list[bytes], limit: int) -> None:
    yielded = list(blocks(bodies, limit))
    cut = [block for block, _, _ in yielded]
    assert b"".join(cut) == b"".join(bodies) and all(cut)
    stored = b""
    for block, done, offset in yielded:  # what each block says is stored once it lands, is
        stored += block
        assert stored == b"".join(bodies[:done]) + (bodies[done][:offset] if done < len(bodies) else b"")
    longest_line = max((len(line) + 1 for line in b"".join(bodies).split(b"\n")[:-1]), default=0)
    if longest_line <= limit:  # (a line longer than the limit cannot land whole anywhere)
        assert all(len(block) <= limit and block.endswith(b"\n") for block in cut)
    else:
        assert all(len(block) <= limit for block in cut)


def test_a_write_cut_short_by_the_store_is_finished_once_never_repeated(tmp_path: Path) -> None:
    # A real short write: the kernel stops a file at the process's RLIMIT_FSIZE (EFBIG, SIGXFSZ
    # ignored), in the middle of a batch and of a row, as a full disk or a quota does. The writer
    # must then write the rest of that batch, not the whole of it again (duplicated rows and the
    # cut row's start left in the file), and count every row once.
    script = textwrap.dedent(
        """
        import json, resource, signal, sys, time
        from pathlib import Path
        from mlctl.serve.collect.sinks import LocalSink
        from mlctl.serve.collect.writer import Batch, Counters, Writer

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        header, limit = sys.argv[2], int(sys.argv[3])
        bodies = json.loads(sys.argv[4])
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        counters = Counters()
        writer = Writer(LocalSink(Path(sys.argv[1])), capacity=100000, counters=counters, interval_s=0.05)
        for text in bodies:
            writer.put(Batch("p/data.csv", header, text.encode(), text.count("\\n")))
        deadline = time.monotonic() + 20
        while counters.write_errors == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # room again
        flushed = writer.flush(20)
        print(json.dumps({"flushed": flushed, "written": counters.written, "errors": counters.write_errors}))
        """
    )
    bodies = [body("w", n, rows=5, width=57).decode() for n in range(40)]  # 40 batches of ~400 bytes
    limit = len(HEADER) + 6000 + 123  # inside batch 15, inside one of its rows
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), HEADER, str(limit), json.dumps(bodies)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    outcome = json.loads(run.stdout)
    assert outcome["flushed"] and outcome["written"] == 200 and outcome["errors"] >= 1
    assert (tmp_path / "p" / "data.csv").read_bytes() == (HEADER + "".join(bodies)).encode()


def test_local_store_writes_more_batches_than_one_writev_takes_in_order(tmp_path: Path) -> None:
    bodies = [body("w", n, rows=2) for n in range(sinks.IOV_MAX * 2 + 7)]
    LocalSink(tmp_path).append("a/data.csv", HEADER, bodies)
    LocalSink(tmp_path).append("a/data.csv", HEADER, bodies[:3])  # the header is written once
    assert (tmp_path / "a" / "data.csv").read_bytes() == HEADER.encode() + b"".join(bodies + bodies[:3])


def hook_blob_responses(monkeypatch: pytest.MonkeyPatch, after_response: Callable[[Any], None]) -> None:
    """Make every ``BlobServiceClient.from_connection_string`` client call ``after_response`` with
    each response (azure-core's ``raw_response_hook``): the real SDK, watched, not replaced."""
    from azure.storage.blob import BlobServiceClient

    connect = BlobServiceClient.from_connection_string.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        BlobServiceClient,
        "from_connection_string",
        classmethod(lambda cls, text, **options: connect(cls, text, raw_response_hook=after_response, **options)),
    )


def test_replicas_appending_batches_larger_than_a_block_never_split_a_row(
    azurite: Azurite,  # noqa: F811 - the fixture imported from test_collect
    monkeypatch: pytest.MonkeyPatch,
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


def test_a_blob_append_cut_by_an_outage_goes_on_after_what_landed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One 40 KB batch in 4 KiB blocks; the store goes away after the third append (the header and
    # two blocks), inside the batch. Once it is back, the writer must append the rest only: the
    # blob then holds every row once, whole (a retry of the whole batch wrote 8 KB of rows twice).
    from mlctl.serve.collect.writer import Batch, Counters, Writer

    monkeypatch.setattr(sinks, "MAX_BLOCK", 4096)
    store = Azurite(tmp_path, free_port(), location=tmp_path / "blobs")  # on disk: it survives a restart
    store.start()
    appends: list[int] = []

    def after_response(response: object) -> None:  # azure-core's hook, after every response
        request = response.http_request  # type: ignore[attr-defined]
        if request.method == "PUT" and "comp=appendblock" in request.url:
            appends.append(response.http_response.status_code)  # type: ignore[attr-defined]
            if len(appends) == 3:
                store.stop()

    hook_blob_responses(monkeypatch, after_response)
    try:
        counters = Counters()
        writer = Writer(BlobSink(store.connection_string, None, API_VERSION), 100000, counters, interval_s=0.05)
        text = body("w", 0, rows=400, width=60)
        assert writer.put(Batch("svc/inputs/data.csv", HEADER, text, 400))
        deadline = time.monotonic() + 30
        while counters.write_errors == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counters.write_errors >= 1 and counters.written == 0 and appends[:3] == [201, 201, 201]
        store.start()
        assert writer.flush(30) and counters.written == 400
        assert store.blob_texts()["svc/inputs/data.csv"].encode() == HEADER.encode() + text
    finally:
        store.stop()


def test_a_header_lost_to_an_outage_after_the_blob_was_created_is_written_by_the_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store goes away right after it created the append blob, before the header's append: the
    # retry must still put the header first (the blob exists, empty), not append rows under no header.
    from mlctl.serve.collect.writer import Batch, Counters, Writer

    store = Azurite(tmp_path, free_port(), location=tmp_path / "blobs")
    store.start()
    created: list[str] = []

    def after_response(response: object) -> None:
        request = response.http_request  # type: ignore[attr-defined]
        if request.method == "PUT" and request.url.endswith("/data.csv") and not created:
            created.append(request.url)  # Put Blob (x-ms-blob-type: AppendBlob) answered
            store.stop()

    hook_blob_responses(monkeypatch, after_response)
    try:
        counters = Counters()
        writer = Writer(BlobSink(store.connection_string, None, API_VERSION), 1000, counters, interval_s=0.05)
        assert writer.put(Batch("svc/inputs/data.csv", HEADER, body("w", 0, rows=3), 3))
        deadline = time.monotonic() + 30
        while counters.write_errors == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert created and counters.write_errors >= 1 and counters.written == 0
        store.start()
        assert writer.flush(30) and counters.written == 3
        text = store.blob_texts()["svc/inputs/data.csv"]
        assert text.encode() == HEADER.encode() + body("w", 0, rows=3)
        # a second writer (another replica) finds the header there and does not add its own
        other = BlobSink(store.connection_string, None, API_VERSION)
        other.append("svc/inputs/data.csv", HEADER, [body("r2", 0, rows=1)])
        assert store.blob_texts()["svc/inputs/data.csv"].count("$aml_dc_correlation_id") == 1
    finally:
        store.stop()
