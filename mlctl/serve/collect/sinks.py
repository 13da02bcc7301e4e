"""Where collected rows are written: a local folder or an Azure Blob Storage container.

Both keep azureml-monitoring's documented layout under container ``modeldata``:
``<subscription>/<resource group>/<workspace>/<service>/<model>/<version>/<designation>/<yyyy>/<mm>/<dd>/data.csv``
(``.../<dd>/<hh>/data.csv`` with ``AML_MODEL_DC_BOUNDARY=hour``). Every worker and replica appends
to the same ``data.csv`` without overwriting another's rows: the local sink appends whole lines
with ``O_APPEND`` (one ``writev`` of up to ``IOV_MAX`` batches: Linux appends each call whole), the
blob sink uses append blobs, each block whole lines (a block lands whole; another replica's block
may come between two of ours, never inside a row). The file's first line is the header, written
once by whoever creates it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

CONTAINER = "modeldata"
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 30
MAX_BLOCK = 4 * 1024 * 1024  # bytes per append block (the limit of every Blob API version)
try:  # buffers one writev takes: 1024 on Linux, at least 16 (POSIX's _XOPEN_IOV_MAX) anywhere
    IOV_MAX = max(16, os.sysconf("SC_IOV_MAX"))
except (ValueError, OSError):
    IOV_MAX = 16


class PartlyWritten(Exception):
    """A failed append after which the first ``done`` bodies, and ``offset`` bytes of the next, are
    in the store: the writer retries from there (a retry of the whole would write those rows
    twice, and the cut row's start once more). ``__cause__`` is the store's error."""

    def __init__(self, done: int, offset: int) -> None:
        super().__init__(f"write failed after {done} whole batches and {offset} bytes of the next")
        self.done = done
        self.offset = offset


class Sink(Protocol):
    """Appends CSV text to one file of the layout; raises on any failure (the writer retries)."""

    def append(self, path: str, header: str, bodies: Sequence[bytes]) -> None:
        """Append ``bodies`` (each whole CSV lines in UTF-8), in order, to ``path``, creating it with
        ``header`` first.

        Raises:
            PartlyWritten: part of ``bodies`` is in the store (chained to the store's error).
            Exception: any other failure of the store; nothing of ``bodies`` was written.
        """


class LocalSink:
    """The layout under folder ``root`` (the local store)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def append(self, path: str, header: str, bodies: Sequence[bytes]) -> None:
        """See ``Sink``; raises PartlyWritten or OSError. The bodies are handed to the kernel as they
        are (no copy joins them: at 100 rows a request they are ~44 KB each)."""
        target = self.root / path
        if not target.exists():
            self._create(target, header)
        fd = os.open(target, os.O_WRONLY | os.O_APPEND)
        landed = 0  # bytes of ``bodies`` in the file
        try:
            for start in range(0, len(bodies), IOV_MAX):
                chunk = bodies[start : start + IOV_MAX]
                size = sum(map(len, chunk))
                written = os.writev(fd, chunk)
                landed += written
                if written < size:  # a short write (a quota, a full disk): the rest, or the error
                    rest = b"".join(chunk)[written:]
                    while rest:
                        written = os.write(fd, rest)
                        landed += written
                        rest = rest[written:]
        except OSError as error:
            if landed:
                raise PartlyWritten(*_position(bodies, landed)) from error
            raise
        finally:
            os.close(fd)

    @staticmethod
    def _create(target: Path, header: str) -> None:
        # link a complete file into place: no writer ever sees data.csv without its header
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".data.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(header)
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()


class BlobSink:
    """Append blobs in container ``modeldata`` of one storage account (``azure-storage-blob``,
    imported here only, so a server without collection to Azure never loads it).

    Args:
        connection_string: an account connection string, or None with ``account_url``.
        account_url: ``https://<account>.blob.core.windows.net``, used with ``DefaultAzureCredential``.
        api_version: the Blob REST API version to speak (None: the client's default).
    """

    def __init__(self, connection_string: str | None, account_url: str | None, api_version: str | None) -> None:
        from azure.storage.blob import BlobServiceClient

        options: dict[str, Any] = {"api_version": api_version} if api_version else {}
        # the writer retries with its own backoff, keeping rows buffered; a storage that does not
        # answer (no route: the connection hangs) must fail a write, not block the writer for ever
        options.update(retry_total=0, connection_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S)
        if connection_string:
            service = BlobServiceClient.from_connection_string(connection_string, **options)
        else:
            from azure.identity import DefaultAzureCredential

            service = BlobServiceClient(str(account_url), credential=DefaultAzureCredential(), **options)
        self.container = service.get_container_client(CONTAINER)
        self._ready: set[str] = set()  # blobs known to exist with their header
        self._container_ready = False

    def append(self, path: str, header: str, bodies: Sequence[bytes]) -> None:
        """See ``Sink``; raises azure.core.exceptions.AzureError (or OSError) on failure."""
        blob = self.container.get_blob_client(path)
        if path not in self._ready:
            self._prepare(blob, header)
            self._ready.add(path)
        landed = (0, 0)
        for block, *after in blocks(bodies, MAX_BLOCK):
            try:
                blob.append_block(block)
            except Exception as error:
                if landed != (0, 0):
                    raise PartlyWritten(*landed) from error
                raise
            landed = (after[0], after[1])

    def _prepare(self, blob: Any, header: str) -> None:
        """Create the append blob unless it exists, and put ``header`` at its start unless a block
        is there already. Every writer does this before its first rows, so the first block of a
        blob is always a header, written once: the header's append is conditioned on an empty blob
        (``appendpos_condition=0``), so of two writers only one lands it, and a header whose first
        append failed (an outage between the blob's creation and it) is written by the retry."""
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        if not self._container_ready:
            try:
                self.container.create_container()
            except ResourceExistsError:
                pass
            self._container_ready = True
        try:
            blob.create_append_blob(if_none_match="*")
        except ResourceExistsError:
            pass
        try:
            blob.append_block(header.encode(), appendpos_condition=0)
        except HttpResponseError as error:
            if error.status_code != 412:  # 412 AppendPositionConditionNotMet: a header is there
                raise


def blocks(bodies: Sequence[bytes], limit: int) -> Iterator[tuple[bytes, int, int]]:
    """``bodies`` (each whole CSV lines) packed in order into blocks of at most ``limit`` bytes
    that end at a line's end; a line longer than ``limit`` is cut at ``limit`` (no store takes it
    whole). Yields (block, done, offset): once the block is stored, the first ``done`` bodies and
    ``offset`` bytes of the next are."""
    pending: list[bytes] = []
    size = 0
    for index, body in enumerate(bodies):
        if size + len(body) > limit and pending:
            yield b"".join(pending), index, 0
            pending, size = [], 0
        offset = 0
        while len(body) - offset > limit:
            cut = body.rfind(b"\n", offset, offset + limit) + 1 or offset + limit
            yield body[offset:cut], index, cut
            offset = cut
        if offset < len(body):
            pending.append(body[offset:] if offset else body)
            size += len(body) - offset
    if pending:
        yield b"".join(pending), len(bodies), 0


def _position(bodies: Sequence[bytes], landed: int) -> tuple[int, int]:
    """(whole bodies, bytes of the next) in the first ``landed`` bytes of ``bodies``."""
    for index, body in enumerate(bodies):
        if landed < len(body):
            return index, landed
        landed -= len(body)
    return len(bodies), 0
