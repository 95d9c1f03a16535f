"""The reuse index's own SQLite file (``<dir>/reuse.sqlite3``): the CLI's and the batch
engine's store.

One row per photo key in ``photos``; a ``settings`` table records the schema and hash
versions, and a file built with others is refused. SQLite runs in WAL mode: any number of
processes read while one writes. ``AUTOINCREMENT`` keeps ids from ever going back (a
replaced newest row does not hand its id to the next insert), which readers that top up
by "id above the last seen" rely on (see :mod:`refundlens.index.store`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import ConfigError
from .hashing import HASH_VERSION
from .store import HASH_COLUMNS, FetchedRow, StoredRow

__all__ = ["FILENAME", "FileStore"]

FILENAME = "reuse.sqlite3"
_SCHEMA_VERSION = 1
_ROW_COLUMNS = ", ".join(("key", "sha256", *HASH_COLUMNS, "fine", "added_at", "meta"))


class FileStore:
    """Rows in ``<path>/reuse.sqlite3``, created (with the directory) when ``create``."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = Path(path)
        self._create = create
        self._conn: sqlite3.Connection | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Where it is unpickled (a Ray worker) it opens what exists and creates nothing.
        return (FileStore, (str(self.path),))

    def describe(self) -> str:
        return repr(str(self.path))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def reading(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()  # one connection already

    # --- writing --------------------------------------------------------------------

    def insert(self, rows: list[StoredRow], *, replace: bool = True) -> int:
        marks = ", ".join("?" * (len(HASH_COLUMNS) + 5))
        conn = self.connection()
        # REPLACE deletes the old row and inserts a new one with a higher id, so every
        # reader's "rows after the last id I saw" refresh picks the new hashes up.
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        conn.execute("BEGIN IMMEDIATE")
        try:
            # a REPLACE counts once (its delete is not a change), an IGNOREd row not at all
            before = conn.total_changes
            conn.executemany(f"{verb} INTO photos ({_ROW_COLUMNS}) VALUES ({marks})", rows)
            written = conn.total_changes - before
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return written

    # --- reading --------------------------------------------------------------------

    def count(self) -> int:
        return int(self.connection().execute("SELECT count(*) FROM photos").fetchone()[0])

    def hashes_after(self, last_id: int) -> tuple[int, np.ndarray]:
        conn = self.connection()
        conn.execute("BEGIN")  # one snapshot for the bound and the rows
        try:
            top = conn.execute("SELECT COALESCE(max(id), 0) FROM photos").fetchone()[0]
            if top <= last_id:
                return last_id, np.empty((0, 1 + len(HASH_COLUMNS)), np.int64)
            cursor = conn.execute(
                f"SELECT id, {', '.join(HASH_COLUMNS)} FROM photos "
                f"WHERE id > ? AND id <= ? AND h_full IS NOT NULL", (last_id, top))
            chunks = [np.empty((0, 1 + len(HASH_COLUMNS)), np.int64)]
            while chunk := cursor.fetchmany(100_000):
                chunks.append(np.array(chunk, dtype=np.int64))
            return top, np.concatenate(chunks)
        finally:
            conn.execute("COMMIT")

    def ids_of_sha256(self, sha256: str) -> list[int]:
        return [r[0] for r in self.connection().execute(
            "SELECT id FROM photos WHERE sha256 = ?", (sha256,))]

    def fetch(self, ids: list[int]) -> list[FetchedRow]:
        marks = ", ".join("?" * len(ids))
        rows = self.connection().execute(
            f"SELECT id, key, sha256, fine, added_at, meta FROM photos WHERE id IN ({marks})",
            ids).fetchall()
        return [(*row[:5], json.loads(row[5]) if row[5] else None) for row in rows]

    def rows(self, *, batch_size: int) -> Iterator[list[StoredRow]]:
        last = 0
        while True:
            batch = self.connection().execute(
                f"SELECT id, {_ROW_COLUMNS} FROM photos WHERE id > ? ORDER BY id LIMIT ?",
                (last, batch_size)).fetchall()
            if not batch:
                return
            last = batch[-1][0]
            yield [row[1:] for row in batch]

    # --- the file -------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """The open connection; opens (and on first open checks) the file."""
        if self._conn is not None:
            return self._conn
        file = self.path / FILENAME
        if not self._create and not file.is_file():
            raise ConfigError(f"reuse index {str(self.path)!r}: no {FILENAME} there; expected "
                              f"a directory made by ReuseIndex.open(path)")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"reuse index {str(self.path)!r}: cannot create the directory "
                              f"({exc.strerror or exc}); expected a directory that exists or "
                              f"can be created, writable by this user") from exc
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves. A 30 s busy timeout
            # lets a bulk load in another process finish its transaction.
            conn = sqlite3.connect(file, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")   # readers never block the writer
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL-safe
            _ensure_schema(conn, file)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"reuse index {str(file)!r}: {exc}; expected a RefundLens reuse "
                              f"index (SQLite)") from exc
        self._conn = conn
        return conn


def _ensure_schema(conn: sqlite3.Connection, file: Path) -> None:
    hash_columns = ", ".join(f"{c} INTEGER" for c in HASH_COLUMNS)
    conn.executescript(f"""
        CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        -- AUTOINCREMENT: ids never go back, even when the newest row is replaced, so
        -- readers can refresh by "id > last seen".
        CREATE TABLE IF NOT EXISTS photos (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            sha256 TEXT NOT NULL,
            {hash_columns},
            fine BLOB,
            added_at TEXT NOT NULL,
            meta TEXT
        );
        CREATE INDEX IF NOT EXISTS photos_sha256 ON photos (sha256);
        INSERT OR IGNORE INTO settings VALUES ('schema_version', '{_SCHEMA_VERSION}');
        INSERT OR IGNORE INTO settings VALUES ('hash_version', '{HASH_VERSION}');
    """)
    stored = dict(conn.execute("SELECT name, value FROM settings"))
    if stored.get("hash_version") != str(HASH_VERSION) or \
            stored.get("schema_version") != str(_SCHEMA_VERSION):
        raise ConfigError(
            f"reuse index {str(file)!r} was built with hash version "
            f"{stored.get('hash_version')} and schema {stored.get('schema_version')}; this "
            f"RefundLens uses hash version {HASH_VERSION} and schema {_SCHEMA_VERSION}: "
            f"rebuild the index from the stored photos")
