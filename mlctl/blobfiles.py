"""Files as the content-addressed store sees them: their SHA-256 (one pass with one reused
buffer), a copy that hashes while it writes and is fsynced (crash-safe blobs), the files of a
model path in a stable order, and placing a stored blob at a model path (hard link, else an
atomic copy)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from mlctl.errors import NotFoundError

_CHUNK = 1 << 20  # 1 MiB reads: past this size the hash, not the system calls, sets the speed


def content_hash(path: Path) -> str:
    """The ``content_hash`` that registering ``path`` would record (reads, stores nothing).

    Raises:
        NotFoundError: ``path`` does not exist.
    """
    path = path.resolve()
    if not path.exists():
        raise NotFoundError(f"model path not found: {path}", hint="give an existing file or folder")
    files = [(rel, hash_file(p), p.stat().st_size) for rel, p in walk(path)]
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()


def walk(path: Path) -> list[tuple[str, Path]]:
    """``(relative POSIX path, path)`` of every file under ``path`` (a file: itself), sorted."""
    if path.is_file():
        return [(path.name, path)]
    return sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())


def copy_hashing(source: Path, dest: Path) -> tuple[str, int]:
    """Copy ``source`` to ``dest`` while hashing it, fsync ``dest``; returns (SHA-256 hex, bytes)."""
    # one reused buffer, unbuffered files: no per-chunk allocation or extra copy
    digest, size, buffer = hashlib.sha256(), 0, bytearray(_CHUNK)
    view = memoryview(buffer)
    with source.open("rb", buffering=0) as src, dest.open("wb", buffering=0) as out:
        while n := src.readinto(buffer):
            digest.update(view[:n])
            size += n
            written = 0
            while written < n:  # a raw file may write less than asked
                written += out.write(view[written:n])
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def hash_file(path: Path) -> str:
    """The SHA-256 (hex) of a file's bytes."""
    digest, buffer = hashlib.sha256(), bytearray(_CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def link_or_copy(blob: Path, target: Path) -> None:
    """Put ``blob`` at ``target``: a hard link, or a copy where links cannot be made (another file system)."""
    target.unlink(missing_ok=True)
    try:
        os.link(blob, target)
    except OSError:
        copy(blob, target)


def copy(blob: Path, target: Path) -> None:
    """Copy ``blob`` to ``target`` atomically (temporary file in the same folder, then rename), mode 0644."""
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp, blob.open("rb") as src:
        shutil.copyfileobj(src, tmp)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, target)
