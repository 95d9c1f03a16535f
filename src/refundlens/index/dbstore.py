"""The reuse index in the claims service's database (the ``reuse_photos`` table), so every
analysis process on every host searches the same photos.

The table (:class:`refundlens.store.tables.ReusePhoto`, migration 0005) has the same shape
as the file store's, plus each row's hash version. Readers top up their in-memory search
with "rows with an id above the highest I have seen", which needs ids to become visible in
order (see :mod:`refundlens.index.store`):

- **SQLite** has one writer at a time and ``sqlite_autoincrement``: ids are handed out in
  commit order and never reused.
- **PostgreSQL** hands out ids from a sequence *before* commit, so two concurrent writers
  may commit out of order: a reader could see id 11 committed, move its mark past 10, and
  never see 10 when its writer commits a moment later. Writers therefore take
  ``LOCK TABLE reuse_photos IN SHARE ROW EXCLUSIVE MODE`` (which conflicts only with
  itself and other writers' modes, never with readers) before their first id, so every
  id is committed before the next is handed out. A write is one claim's few photos, so
  the lock is held for milliseconds (bulk imports hold it per batch).

A replaced key is deleted and inserted again (PostgreSQL's ``ON CONFLICT DO UPDATE``
would keep the old id, and readers would keep the old hashes).

Measured with ``bench/reuse_bench.py --stores`` at 100,000 photos on two busy cores
(docs/benchmarks.md): query p50 1.0–1.7 ms on SQLite and 1.8–2.7 ms on PostgreSQL against
0.6–1.0 ms from the file store (the search is the same; the database adds three statements);
one claim's photos commit in 2–7 ms (fsync, and PostgreSQL's table lock); bulk insert
10,000–22,000 photos/s; the first query loads ~7–8 µs per photo.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any, Iterator

import numpy as np
from sqlalchemy import bindparam, delete, func, insert, select, text
from sqlalchemy.engine import Connection, make_url

from ..store.db import Database
from ..store.tables import ReusePhoto
from .hashing import HASH_VERSION
from .store import HASH_COLUMNS, FetchedRow, StoredRow, stored_time

__all__ = ["DatabaseStore"]

_TABLE = ReusePhoto.__table__
_HASHES = [_TABLE.c[name] for name in HASH_COLUMNS]
#: Longest key the table takes (the column's length).
KEY_LENGTH = _TABLE.c.key.type.length
#: Keys per ``IN (...)`` list: under SQLite's and PostgreSQL's bound-parameter limits.
_IN_BATCH = 5_000

# The reading statements, built once: a query runs three of them, and building and keying a
# statement costs SQLAlchemy about as much as SQLite takes to run it.
_TOP = select(func.coalesce(func.max(_TABLE.c.id), 0))
_HASHES_AFTER = select(_TABLE.c.id, *_HASHES).where(
    _TABLE.c.id > bindparam("after"), _TABLE.c.id <= bindparam("top"),
    _TABLE.c.h_full.is_not(None), _TABLE.c.hash_version == HASH_VERSION)
_BY_SHA256 = select(_TABLE.c.id).where(_TABLE.c.sha256 == bindparam("sha256"))
_FETCH = select(_TABLE.c.id, _TABLE.c.key, _TABLE.c.sha256, _TABLE.c.fine, _TABLE.c.added_at,
                _TABLE.c.meta).where(_TABLE.c.id.in_(bindparam("ids", expanding=True)))
_COUNT = select(func.count()).select_from(_TABLE)


class DatabaseStore:
    """Rows in the ``reuse_photos`` table of ``database``: a
    :class:`~refundlens.store.Database` (borrowed: :meth:`close` leaves it open) or a
    database URL (the store opens, and closes, its own)."""

    def __init__(self, database: Database | str) -> None:
        if isinstance(database, Database):
            self._url = database.url.render_as_string(hide_password=False)
            self._db: Database | None = database
            self._owned = False
        elif isinstance(database, str):
            self._url, self._db, self._owned = database, None, True
        else:
            raise TypeError(f"got {type(database).__name__}, expected a Database or a "
                            f"database URL")
        self._conn: Connection | None = None  # the shared read connection in reading()

    def __reduce__(self) -> tuple[Any, ...]:
        # The URL only: the process that unpickles it (an analysis process) connects itself.
        return (DatabaseStore, (self._url,))

    def describe(self) -> str:
        return f"database {make_url(self._url).render_as_string(hide_password=True)!r}"

    def database(self) -> Database:
        if self._db is None:
            self._db = Database(self._url)
        return self._db

    def close(self) -> None:
        if self._owned and self._db is not None:
            self._db.dispose()
            self._db = None

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        if self._conn is not None:
            yield
            return
        with self.database().read_engine.connect() as conn:
            self._conn = conn
            try:
                yield
            finally:
                self._conn = None

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Connection]:
        if self._conn is not None:
            yield self._conn
            return
        with self.database().read_engine.connect() as conn:
            yield conn

    # --- writing --------------------------------------------------------------------

    def insert(self, rows: list[StoredRow], *, replace: bool = True) -> int:
        latest = {row[0]: row for row in rows}  # the last row of a key given twice wins
        for key in latest:
            if len(key) > KEY_LENGTH:
                raise ValueError(f"reuse index key {key[:40]!r}… ({len(key)} characters): "
                                 f"expected at most {KEY_LENGTH}")
        values = [_values(row) for row in latest.values()]
        if not values:
            return 0
        db = self.database()
        with db.write() as session:
            conn = session.connection()
            if not db.is_sqlite:  # ids in commit order: see the module docstring
                conn.execute(text("LOCK TABLE reuse_photos IN SHARE ROW EXCLUSIVE MODE"))
            keys = list(latest)
            for start in range(0, len(keys), _IN_BATCH):
                chunk = keys[start:start + _IN_BATCH]
                if replace:
                    conn.execute(delete(_TABLE).where(_TABLE.c.key.in_(chunk)))
                else:
                    stored = set(conn.execute(select(_TABLE.c.key).where(
                        _TABLE.c.key.in_(chunk))).scalars())
                    values = [v for v in values if v["key"] not in stored]
            if values:
                conn.execute(insert(_TABLE), values)
        return len(values)

    # --- reading --------------------------------------------------------------------

    def count(self) -> int:
        with self._reader() as conn:
            return int(conn.execute(_COUNT).scalar_one())

    def hashes_after(self, last_id: int) -> tuple[int, np.ndarray]:
        empty = np.empty((0, 1 + len(_HASHES)), np.int64)
        with self._reader() as conn:
            top = int(conn.execute(_TOP).scalar_one())
            if top <= last_id:
                return last_id, empty
            # Every id up to `top` is committed (see the module docstring), so a second
            # statement, even in another snapshot, sees all of them.
            result = conn.execute(_HASHES_AFTER, {"after": last_id, "top": top})
            chunks = [empty]
            while chunk := result.fetchmany(100_000):
                chunks.append(np.array([tuple(row) for row in chunk], dtype=np.int64))
            return top, np.concatenate(chunks)

    def ids_of_sha256(self, sha256: str) -> list[int]:
        with self._reader() as conn:
            return list(conn.execute(_BY_SHA256, {"sha256": sha256}).scalars())

    def fetch(self, ids: list[int]) -> list[FetchedRow]:
        with self._reader() as conn:
            rows = conn.execute(_FETCH, {"ids": ids}).all()
        return [(row_id, key, sha256, fine, stored_time(added_at), meta)
                for row_id, key, sha256, fine, added_at, meta in rows]

    def rows(self, *, batch_size: int) -> Iterator[list[StoredRow]]:
        columns = (_TABLE.c.id, _TABLE.c.key, _TABLE.c.sha256, *_HASHES, _TABLE.c.fine,
                   _TABLE.c.added_at, _TABLE.c.meta, _TABLE.c.hash_version)
        last = 0
        while True:
            with self._reader() as conn:
                batch = conn.execute(select(*columns).where(_TABLE.c.id > last)
                                     .order_by(_TABLE.c.id).limit(batch_size)).all()
            if not batch:
                return
            last = batch[-1][0]
            yield [_stored(row) for row in batch]


def _values(row: StoredRow) -> dict[str, Any]:
    key, sha256, *hashes, fine, added_at, meta = row
    return {"key": key, "sha256": sha256, "hash_version": HASH_VERSION,
            **dict(zip(HASH_COLUMNS, hashes)), "fine": fine,
            "added_at": datetime.fromisoformat(added_at),
            "meta": json.loads(meta) if meta else None}


def _stored(row: Any) -> StoredRow:
    """A fetched row in the neutral form; hashes of another version are left out (the row
    is then matched by sha256 only, as here)."""
    _, key, sha256, *hashes, fine, added_at, meta, version = row
    if version != HASH_VERSION:
        hashes, fine = [None] * len(hashes), None
    meta_text = None if meta is None else json.dumps(meta, ensure_ascii=False, sort_keys=True)
    return (key, sha256, *hashes, fine, stored_time(added_at), meta_text)
