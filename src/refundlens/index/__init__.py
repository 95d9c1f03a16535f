"""Photo indexes: the reuse index (every photo a deployment has seen, for exact and near
copies) and the perceptual hashes it is built on.

The caller writes, detectors only read::

    from refundlens.index import ReuseIndex, photo_hashes

    index = ReuseIndex.from_settings(settings)        # <data_dir>/reuse/reuse.sqlite3
    index = ReuseIndex.in_database(service.db)        # or the service's, shared by hosts
    hashes = photo_hashes(photo)                      # or PhotoHashes.from_dict(info)
    index.query(hashes, exclude="claim-17/1")         # -> [ReuseMatch, ...]
    index.add("claim-17/1", hashes, meta={"claim": "claim-17", "buyer": "b-9"})

Modules: :mod:`.hashing` (pHash variants), :mod:`.search` (multi-index Hamming search),
:mod:`.reuse` (the index: search and verification over a store), :mod:`.store` (the storage
interface), :mod:`.filestore` (a SQLite file of its own), :mod:`.dbstore` (the service's
database).
"""

from __future__ import annotations

from .hashing import (
    FINE_BITS,
    HASH_BITS,
    HASH_VERSION,
    VARIANTS,
    PhotoHashes,
    hamming,
    photo_hashes,
)
from .reuse import (
    DEFAULT_MAX_DISTANCE,
    DEFAULT_MAX_FINE_DISTANCE,
    RELATIONS,
    ReuseIndex,
    ReuseMatch,
)
from .search import HammingSearch

__all__ = [
    "DEFAULT_MAX_DISTANCE",
    "DEFAULT_MAX_FINE_DISTANCE",
    "FINE_BITS",
    "HASH_BITS",
    "HASH_VERSION",
    "RELATIONS",
    "VARIANTS",
    "HammingSearch",
    "PhotoHashes",
    "ReuseIndex",
    "ReuseMatch",
    "hamming",
    "photo_hashes",
]
