"""The local model registry: an SQLite index plus a content-addressed blob store.

Layout under ``MLCTL_HOME``::

    registry.db                 models, services, and which service uses which model version
    blobs/sha256/ab/abcdef...   one read-only file per distinct content (SHA-256 of its bytes)

A model version is a manifest of ``(relative path, sha256, size)``; its ``content_hash`` is the
SHA-256 of that manifest. Blobs are written first (atomic rename, deduplicated), the index row
last in one transaction, so an interrupted register leaves no half version: at worst an
unreferenced blob. ``BEGIN IMMEDIATE`` serialises writers, so concurrent registers of one name
get distinct versions. Every blob is re-hashed before it is served.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlctl.blobfiles import copy, copy_hashing, hash_file, link_or_copy, walk
from mlctl.errors import ConflictError, IntegrityError, NotFoundError
from mlctl.spec.records import ModelRef

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL, version INTEGER NOT NULL, content_hash TEXT NOT NULL,
    source_name TEXT NOT NULL, is_folder INTEGER NOT NULL, size INTEGER NOT NULL,
    description TEXT NOT NULL, tags TEXT NOT NULL, properties TEXT NOT NULL,
    created_at TEXT NOT NULL, manifest TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY, target TEXT NOT NULL, record TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    name TEXT NOT NULL, version INTEGER NOT NULL, image_id TEXT NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS service_models (
    service TEXT NOT NULL, model TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (service, model, version));
"""
_GC_GRACE_S = 3600


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version.

    ``source_name`` is the basename of the registered file or folder: Azure ML keeps it, so the
    entry script finds ``$AZUREML_MODEL_DIR/<source_name>``. ``size`` is in bytes.
    """

    name: str
    version: int
    content_hash: str
    source_name: str
    is_folder: bool
    size: int
    description: str
    tags: dict[str, str]
    properties: dict[str, str]
    created_at: str
    files: tuple[tuple[str, str, int], ...]

    @property
    def ref(self) -> str:
        """``NAME:VERSION``."""
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (files as objects)."""
        doc = asdict(self)
        doc["files"] = [{"path": p, "sha256": h, "size": s} for p, h, s in self.files]
        return doc


class Registry:
    """Models and service records under one ``MLCTL_HOME`` folder.

    Args:
        home: the state folder (see ``mlctl.home.mlctl_home``).
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.blob_root = home / "blobs" / "sha256"
        self._db_path = home / "registry.db"

    @contextlib.contextmanager
    def _db(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        self.home.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._db_path, timeout=60, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    # -- models -------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        path: Path,
        *,
        description: str = "",
        tags: dict[str, str] | None = None,
        properties: dict[str, str] | None = None,
        reuse_identical: bool = False,
    ) -> ModelVersion:
        """Store ``path`` (a file or a folder) as the next version of model ``name``.

        With ``reuse_identical``, an unchanged latest version (same content hash) is returned
        instead of adding a version (implicit registration of a service's model files).

        Raises:
            NotFoundError: ``path`` does not exist.
        """
        path = path.resolve()
        if not path.exists():
            raise NotFoundError(f"model path not found: {path}", hint="give an existing file or folder")
        sizes = self._stored_sizes()
        files = tuple(self._store_blob(p, rel, sizes) for rel, p in walk(path))
        manifest = json.dumps(files)
        content_hash = hashlib.sha256(manifest.encode()).hexdigest()
        with self._db(write=True) as db:
            if reuse_identical:
                latest = db.execute(
                    "SELECT * FROM models WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
                ).fetchone()
                if latest is not None and latest["content_hash"] == content_hash:
                    return _row_to_model(latest)
            row = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE name = ?", (name,))
            version = int(row.fetchone()[0])
            model = ModelVersion(
                name=name,
                version=version,
                content_hash=content_hash,
                source_name=path.name,
                is_folder=path.is_dir(),
                size=sum(f[2] for f in files),
                description=description,
                tags=dict(tags or {}),
                properties=dict(properties or {}),
                created_at=_now(),
                files=files,
            )
            db.execute(
                "INSERT INTO models VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    name,
                    version,
                    model.content_hash,
                    model.source_name,
                    int(model.is_folder),
                    model.size,
                    description,
                    json.dumps(model.tags),
                    json.dumps(model.properties),
                    model.created_at,
                    manifest,
                ),
            )
        return model

    def latest(self, name: str) -> ModelVersion | None:
        """The highest version of ``name``, or None when it is not registered."""
        try:
            return self.get(ModelRef(name, None))
        except NotFoundError:
            return None

    def get(self, ref: ModelRef) -> ModelVersion:
        """The version ``ref`` names (``@latest``: the highest).

        Raises:
            NotFoundError: no such model or version.
        """
        with self._db() as db:
            if ref.version is None:
                row = db.execute(
                    "SELECT * FROM models WHERE name = ? ORDER BY version DESC LIMIT 1", (ref.name,)
                ).fetchone()
            else:
                row = db.execute(
                    "SELECT * FROM models WHERE name = ? AND version = ?", (ref.name, ref.version)
                ).fetchone()
            versions = [r[0] for r in db.execute("SELECT version FROM models WHERE name = ?", (ref.name,))]
        if row is None:
            if not versions:
                raise NotFoundError(
                    f"model {ref.name!r} is not registered", hint="`mlctl model list` shows registered models"
                )
            raise NotFoundError(
                f"model {ref.name!r} has no version {ref.version}",
                hint=f"versions: {', '.join(map(str, sorted(versions)))}",
            )
        return _row_to_model(row)

    def models(self, *, name: str | None = None, tags: dict[str, str] | None = None) -> list[ModelVersion]:
        """All model versions, by name then version, filtered by ``name`` and ``tags`` (all must match)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM models WHERE (? IS NULL OR name = ?) ORDER BY name, version", (name, name)
            ).fetchall()
        models = [_row_to_model(r) for r in rows]
        return [m for m in models if all(m.tags.get(k) == v for k, v in (tags or {}).items())]

    def delete(self, ref: ModelRef, *, force: bool = False, dry_run: bool = False) -> ModelVersion:
        """Remove one model version from the index (its blobs stay while other versions use them).

        ``dry_run``: every check, no change.

        Raises:
            NotFoundError: no such version.
            ConflictError: a service uses it and ``force`` is false.
        """
        model = self.get(ref)
        with self._db(write=True) as db:
            users = [
                r[0]
                for r in db.execute(
                    "SELECT service FROM service_models WHERE model = ? AND version = ?", (model.name, model.version)
                )
            ]
            if users and not force:
                raise ConflictError(
                    f"model {model.ref} is used by service(s) {', '.join(users)}",
                    hint="delete those services first, or pass --force",
                )
            if dry_run:
                return model
            db.execute("DELETE FROM models WHERE name = ? AND version = ?", (model.name, model.version))
        self._collect_garbage()
        return model

    def materialize(self, model: ModelVersion, dest: Path, *, link: bool = True) -> Path:
        """Lay ``model`` out at ``dest/<source_name>``, verifying every blob.

        ``link``: hard-link the read-only blobs (for deployments); otherwise write copies the
        user may change (for downloads).

        Returns the created file or folder. Raises:
            IntegrityError: a blob is missing or its content no longer matches its hash.
        """
        dest.mkdir(parents=True, exist_ok=True)
        root = dest / model.source_name
        for rel, digest, _size in model.files:
            blob = self._verified_blob(model, digest)
            target = root / rel if model.is_folder else root
            target.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(blob, target) if link else copy(blob, target)
        if model.is_folder:
            root.mkdir(parents=True, exist_ok=True)  # an empty folder model still exists
        return root

    def stored_file(self, model: ModelVersion, rel: str) -> Path | None:
        """The stored (read-only) copy of file ``rel`` of folder model ``model``, or ``None`` when it has none."""
        for path, digest, _size in model.files:
            if path == rel:
                blob = self._blob_path(digest)
                return blob if blob.exists() else None
        return None

    def verify(self, model: ModelVersion) -> None:
        """Re-hash every blob of ``model``. Raises IntegrityError on the first mismatch."""
        for _rel, digest, _size in model.files:
            self._verified_blob(model, digest)

    # -- services -----------------------------------------------------------------------------
    def save_service(self, name: str, target: str, record: dict[str, Any], models: list[ModelVersion]) -> None:
        """Insert or replace a service record and the model versions it uses, atomically."""
        with self._db(write=True) as db:
            db.execute("INSERT OR REPLACE INTO services VALUES (?,?,?,?)", (name, target, json.dumps(record), _now()))
            db.execute("DELETE FROM service_models WHERE service = ?", (name,))
            db.executemany(
                "INSERT OR IGNORE INTO service_models VALUES (?,?,?)", [(name, m.name, m.version) for m in models]
            )

    def annotate_service(self, name: str, **fields: Any) -> None:
        """Merge ``fields`` (JSON values) into service ``name``'s record; nothing when there is none."""
        with self._db(write=True) as db:
            row = db.execute("SELECT record FROM services WHERE name = ?", (name,)).fetchone()
            if row is not None:
                record = {**json.loads(row[0]), **fields}
                db.execute("UPDATE services SET record = ? WHERE name = ?", (json.dumps(record), name))

    def service(self, name: str) -> dict[str, Any] | None:
        """A service record, or None."""
        with self._db() as db:
            row = db.execute("SELECT record FROM services WHERE name = ?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def services(self) -> list[dict[str, Any]]:
        """Every service record, by name."""
        with self._db() as db:
            rows = db.execute("SELECT record FROM services ORDER BY name").fetchall()
        return [json.loads(r[0]) for r in rows]

    def forget_service(self, name: str) -> None:
        """Remove a service record (no error if absent)."""
        with self._db(write=True) as db:
            db.execute("DELETE FROM services WHERE name = ?", (name,))
            db.execute("DELETE FROM service_models WHERE service = ?", (name,))

    # -- images -------------------------------------------------------------------------------
    def add_image(self, name: str, image_id: str, record: dict[str, Any]) -> int:
        """Record a built image as the next version of ``name``; returns the version (atomic)."""
        with self._db(write=True) as db:
            version = int(
                db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM images WHERE name = ?", (name,)).fetchone()[0]
            )
            doc = {**record, "name": name, "version": version, "image_id": image_id, "created_at": _now()}
            db.execute("INSERT INTO images VALUES (?,?,?,?)", (name, version, image_id, json.dumps(doc)))
        return version

    def image(self, name: str, version: int | None = None) -> dict[str, Any]:
        """An image record (the latest version without ``version``).

        Raises:
            NotFoundError: no such image or version.
        """
        with self._db() as db:
            row = db.execute(
                "SELECT record FROM images WHERE name = ? AND (? IS NULL OR version = ?) ORDER BY version DESC LIMIT 1",
                (name, version, version),
            ).fetchone()
        if row is None:
            what = f"image {name}:{version}" if version else f"image {name!r}"
            raise NotFoundError(f"{what} does not exist", hint="`mlctl image list` shows built images")
        return json.loads(row[0])  # type: ignore[no-any-return]

    def images(self, name: str | None = None) -> list[dict[str, Any]]:
        """Image records, by name then version."""
        with self._db() as db:
            rows = db.execute(
                "SELECT record FROM images WHERE (? IS NULL OR name = ?) ORDER BY name, version", (name, name)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def update_image(self, name: str, version: int, fields: dict[str, Any]) -> None:
        """Merge ``fields`` into an image record."""
        with self._db(write=True) as db:
            row = db.execute("SELECT record FROM images WHERE name = ? AND version = ?", (name, version)).fetchone()
            if row is not None:
                doc = {**json.loads(row[0]), **fields}
                db.execute(
                    "UPDATE images SET record = ? WHERE name = ? AND version = ?", (json.dumps(doc), name, version)
                )

    def forget_image(self, name: str, version: int) -> None:
        """Remove an image record (no error if absent)."""
        with self._db(write=True) as db:
            db.execute("DELETE FROM images WHERE name = ? AND version = ?", (name, version))

    # -- blobs --------------------------------------------------------------------------------
    def _blob_path(self, digest: str) -> Path:
        return self.blob_root / digest[:2] / digest

    def _stored_sizes(self) -> set[int]:
        """Sizes of the blobs the index refers to (content of another size cannot be stored yet)."""
        with self._db() as db:
            return {size for (m,) in db.execute("SELECT manifest FROM models") for _p, _h, size in json.loads(m)}

    def _store_blob(self, source: Path, rel: str, stored_sizes: set[int]) -> tuple[str, str, int]:
        """Store one file as a blob; returns (relative path, SHA-256, size).

        Content that may be stored already (a blob of its size exists) is hashed first and not
        copied when its blob is there: re-registering costs one read pass. Other content is
        copied to a temporary blob while it is hashed, fsynced and renamed into place: one pass.
        """
        size = source.stat().st_size
        if size in stored_sizes:
            digest = hash_file(source)
            final = self._blob_path(digest)
            if final.exists():
                os.utime(final)  # a fresh mtime keeps it from garbage collection (see _collect_garbage)
                return rel, digest, size
        tmp_dir = self.home / "blobs" / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / uuid.uuid4().hex
        try:
            digest, size = copy_hashing(source, tmp)
            final = self._blob_path(digest)
            if final.exists():
                tmp.unlink()
                os.utime(final)  # a fresh mtime keeps it from garbage collection (see _collect_garbage)
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return rel, digest, size

    def _verified_blob(self, model: ModelVersion, digest: str) -> Path:
        blob = self._blob_path(digest)
        if not blob.exists():
            raise IntegrityError(
                f"model {model.ref}: blob {digest[:12]} is missing from {self.blob_root}",
                hint="register the model again",
            )
        if hash_file(blob) != digest:
            raise IntegrityError(
                f"model {model.ref}: blob {digest[:12]} is corrupt (its SHA-256 changed)",
                hint="the stored copy was modified; register the model again",
            )
        return blob

    def _collect_garbage(self) -> None:
        # Only blobs untouched for an hour: a register running now may have stored a blob (or
        # touched a shared one) whose index row is not written yet.
        cutoff = time.time() - _GC_GRACE_S
        with self._db() as db:
            live = {h for (m,) in db.execute("SELECT manifest FROM models") for _p, h, _s in json.loads(m)}
        if not self.blob_root.exists():
            return
        for blob in self.blob_root.glob("*/*"):
            if blob.name not in live and blob.stat().st_mtime < cutoff:
                blob.unlink(missing_ok=True)


def _row_to_model(row: sqlite3.Row) -> ModelVersion:
    return ModelVersion(
        name=row["name"],
        version=row["version"],
        content_hash=row["content_hash"],
        source_name=row["source_name"],
        is_folder=bool(row["is_folder"]),
        size=row["size"],
        description=row["description"],
        tags=json.loads(row["tags"]),
        properties=json.loads(row["properties"]),
        created_at=row["created_at"],
        files=tuple(tuple(f) for f in json.loads(row["manifest"])),
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
