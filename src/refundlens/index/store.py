"""Where a :class:`~refundlens.index.reuse.ReuseIndex` keeps its rows: the storage interface.

The index does the searching and the verification; a store only keeps rows durably and
hands them back. Two stores implement it:

- :class:`~refundlens.index.filestore.FileStore`: a SQLite file of its own
  (``<dir>/reuse.sqlite3``), for the CLI's ``scan`` and ``batch`` and the Ray batch engine;
- :class:`~refundlens.index.dbstore.DatabaseStore`: the ``reuse_photos`` table of the
  claims service's database (SQLite or PostgreSQL), shared by every worker on every host.

What a store must guarantee, since the index keeps an in-memory copy of the 64-bit hashes
and tops it up with "rows with an id above the highest I have seen":

- ids only grow: a replaced key gets a new, higher id (never the old one, never one below a
  row another reader may already have seen), and a row with id *n* is visible to readers
  no later than any row with an id above *n*;
- a store pickles as what it needs to reopen itself (a path, a database URL), never as a
  connection, and opens lazily where it is unpickled.

Rows cross the interface as plain tuples, in the order the bulk paths use them:

- :data:`StoredRow` ``(key, sha256, h_full, h_mirrored, h_crop92, h_crop84, h_crop76,
  fine, added_at, meta)``: hashes as *signed* 64-bit integers (the same bits as the
  unsigned hash; SQL has no unsigned 64-bit type) or all ``None`` for a photo too flat to
  hash, ``fine`` the five 32-byte verification hashes joined (or ``None``), ``added_at`` an
  ISO 8601 UTC time to the second, ``meta`` a JSON object as text (or ``None``);
- :data:`FetchedRow` ``(id, key, sha256, fine, added_at, meta)`` with ``meta`` decoded.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any, Iterator, Protocol

import numpy as np

from .hashing import VARIANTS

__all__ = ["FetchedRow", "HASH_COLUMNS", "ReuseStore", "StoredRow", "stored_time"]

#: One column per hash variant, in :data:`~refundlens.index.hashing.VARIANTS` order.
HASH_COLUMNS = tuple(f"h_{name}" for name in VARIANTS)

StoredRow = tuple[Any, ...]
FetchedRow = tuple[Any, ...]


def stored_time(when: datetime) -> str:
    """A row's ``added_at`` as it crosses the interface: ISO 8601, UTC, to the second."""
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


class ReuseStore(Protocol):
    """The durable rows of a reuse index. Calls come one at a time (the index holds a
    lock around them)."""

    def describe(self) -> str:
        """Where the rows are, for messages and ``repr`` (no password)."""

    def insert(self, rows: list[StoredRow], *, replace: bool = True) -> int:
        """Store ``rows`` in one transaction. ``replace``: a key already stored is
        replaced (with a new id); otherwise it is kept and the row skipped. Returns how
        many rows were written."""

    def count(self) -> int:
        """How many photos are stored."""

    def hashes_after(self, last_id: int) -> tuple[int, np.ndarray]:
        """``(top, rows)``: the highest id now stored (at least ``last_id``) and, as an
        ``int64`` array of ``(id, *hashes)`` rows, the photos with hashes whose id is
        above ``last_id`` and at most ``top``, read in one snapshot."""

    def ids_of_sha256(self, sha256: str) -> list[int]:
        """Ids of the rows holding the file with this sha256."""

    def fetch(self, ids: list[int]) -> list[FetchedRow]:
        """The rows with these ids that still exist (any order)."""

    def rows(self, *, batch_size: int) -> Iterator[list[StoredRow]]:
        """Every row, oldest first, ``batch_size`` at a time (to copy an index)."""

    def reading(self) -> AbstractContextManager[Any]:
        """A context in which the calls above share one connection (one query's reads)."""

    def close(self) -> None:
        """Release connections; a later call reopens."""
