"""In-memory Hamming-radius search over 64-bit hashes by multi-index hashing.

Each hash is cut into four 16-bit chunks and, for each chunk position, a copy of the
hashes is kept sorted by that chunk with a 65,537-entry offset table (a counting sort), so
each bucket is one contiguous run of memory. By the pigeonhole principle, two hashes
within Hamming distance ``r`` agree to within ``r // 4`` bits on at least one chunk, so
probing every chunk value within ``r // 4`` bits of the query's (1, 17 or 137 values for
``r // 4`` = 0, 1, 2) finds every entry within ``r`` — exactly, with no false negatives —
after checking the full distance of each candidate. At radius 10 (``r // 4 = 2``) over
five million uniformly spread hashes that is 4 × 137 buckets of ~76 entries, ~42,000
candidates checked in ~0.3 ms (``bench/reuse_bench.py``); memory is 56 bytes per entry
(four sorted copies of the hash, four ``uint32`` positions, the id).

New entries go to an unsorted tail that is scanned linearly, and are merged into the
sorted tables when the tail grows past 1/8 of the table (amortised O(1) per insert).

``bench/reuse_bench.py`` compares this with faiss ``IndexBinaryFlat`` (exhaustive) and
``IndexBinaryMultiHash`` at one million photos.

References:
    M. Norouzi, A. Punjani, D. J. Fleet, "Fast Search in Hamming Space with Multi-Index
    Hashing", CVPR 2012, §3 (multi-index hashing and its pigeonhole search radius).
    D. Greene, M. Parnas, F. Yao, "Multi-Index Hashing for Information Retrieval",
    FOCS 1994.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

__all__ = ["HammingSearch"]

_CHUNKS = 4
_CHUNK_BITS = 16
_CHUNK_VALUES = 1 << _CHUNK_BITS
#: Largest per-chunk probe radius we precompute masks for: 2 → full radius ≤ 11.
_MAX_CHUNK_RADIUS = 2
#: The tail is merged once it holds this many entries or 1/8 of the table, whichever is
#: larger: a linear scan of 64k uint64 takes ~0.1 ms, a merge at 5 M entries ~0.3 s.
_MIN_TAIL = 1 << 16


def _probe_masks(radius: int) -> np.ndarray:
    """All 16-bit masks with at most ``radius`` bits set (1, 17, 137 for 0, 1, 2)."""
    masks = [0]
    for k in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(_CHUNK_BITS), k)]
    return np.array(masks, dtype=np.int64)


_MASKS = [_probe_masks(r) for r in range(_MAX_CHUNK_RADIUS + 1)]
_SHIFTS = np.arange(_CHUNKS, dtype=np.uint64) * np.uint64(_CHUNK_BITS)
#: Where each chunk's offset table starts in the concatenated offsets.
_BLOCK_BASE = np.arange(_CHUNKS, dtype=np.int64) * (_CHUNK_VALUES + 1)


class HammingSearch:
    """Hashes (uint64) with integer ids, searchable by Hamming radius. Not thread-safe:
    the owner serialises access."""

    max_radius = _CHUNKS * (_MAX_CHUNK_RADIUS + 1) - 1

    def __init__(self) -> None:
        self._size = 0
        # For each chunk c, block c of these (c*size .. (c+1)*size) holds the hashes
        # sorted by chunk c and their positions in ``_ids``: the entries of one bucket
        # are contiguous, so a probe reads runs of memory instead of scattered words.
        self._sorted_codes = np.empty(0, np.uint64)
        self._sorted_pos = np.empty(0, np.uint32)
        self._offsets = np.zeros(_CHUNKS * (_CHUNK_VALUES + 1), np.int64)
        self._ids = np.empty(0, np.int64)
        self._tail_codes: list[np.ndarray] = []
        self._tail_ids: list[np.ndarray] = []
        self._tail_size = 0

    def __len__(self) -> int:
        return self._size + self._tail_size

    @property
    def nbytes(self) -> int:
        """Memory held by the tables, in bytes."""
        return (self._sorted_codes.nbytes + self._sorted_pos.nbytes + self._offsets.nbytes
                + self._ids.nbytes + sum(a.nbytes for a in self._tail_codes)
                + sum(a.nbytes for a in self._tail_ids))

    def add(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Add hashes (uint64, or int64 reinterpreted bit for bit) with their ids."""
        codes = np.ascontiguousarray(codes).view(np.uint64).ravel()
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if codes.shape != ids.shape:
            raise ValueError(f"HammingSearch.add: {codes.size} hashes but {ids.size} ids")
        if codes.size == 0:
            return
        self._tail_codes.append(codes.copy())
        self._tail_ids.append(ids.copy())
        self._tail_size += codes.size
        if self._tail_size >= max(_MIN_TAIL, self._size // 8):
            self._merge()

    def search(self, query: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids and distances of every entry within ``radius`` bits of ``query``.

        An id added several times (with different hashes) may appear several times.
        """
        if not 0 <= radius <= self.max_radius:
            raise ValueError(f"radius {radius}: expected 0..{self.max_radius}")
        q = np.uint64(query)
        found_ids, found_dist = [], []
        if self._size:
            positions = self._candidates(q, radius // _CHUNKS)
            dist = np.bitwise_count(self._sorted_codes[positions] ^ q)
            # An entry close on several chunks is a candidate once per chunk.
            hits, first = np.unique(self._sorted_pos[positions[dist <= radius]],
                                    return_index=True)
            found_ids.append(self._ids[hits])
            found_dist.append(dist[dist <= radius][first])
        for codes, ids in zip(self._tail_codes, self._tail_ids):
            dist = np.bitwise_count(codes ^ q)
            keep = dist <= radius
            found_ids.append(ids[keep])
            found_dist.append(dist[keep])
        if not found_ids:
            return np.empty(0, np.int64), np.empty(0, np.uint8)
        return np.concatenate(found_ids), np.concatenate(found_dist).astype(np.uint8)

    def _candidates(self, q: np.uint64, chunk_radius: int) -> np.ndarray:
        """Positions in the sorted blocks whose chunk is within ``chunk_radius`` bits of
        the query's same chunk: all probes of all chunks in one vectorised pass."""
        values = ((q >> _SHIFTS) & np.uint64(0xFFFF)).astype(np.int64)
        keys = (_MASKS[chunk_radius][None, :] ^ values[:, None]) + _BLOCK_BASE[:, None]
        starts = self._offsets[keys.ravel()]
        lengths = self._offsets[keys.ravel() + 1] - starts
        total = int(lengths.sum())
        # Flatten the ranges [start, start + length) without a Python loop.
        run_start = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        return run_start + np.arange(total)

    def _merge(self) -> None:
        """Fold the tail into the sorted blocks (a stable counting sort per chunk)."""
        codes = np.empty(self._size, np.uint64)
        codes[self._sorted_pos[:self._size]] = self._sorted_codes[:self._size]
        codes = np.concatenate([codes, *self._tail_codes])
        self._ids = np.concatenate([self._ids, *self._tail_ids])
        self._tail_codes, self._tail_ids, self._tail_size = [], [], 0
        n = self._size = codes.size
        # uint32 positions: 4 G entries is far past what one process holds.
        self._sorted_codes = np.empty(_CHUNKS * n, np.uint64)
        self._sorted_pos = np.empty(_CHUNKS * n, np.uint32)
        self._offsets = np.empty(_CHUNKS * (_CHUNK_VALUES + 1), np.int64)
        for c in range(_CHUNKS):
            chunk = ((codes >> _SHIFTS[c]) & np.uint64(0xFFFF)).astype(np.uint16)
            order = np.argsort(chunk, kind="stable")
            self._sorted_codes[c * n:(c + 1) * n] = codes[order]
            self._sorted_pos[c * n:(c + 1) * n] = order
            block = self._offsets[c * (_CHUNK_VALUES + 1):(c + 1) * (_CHUNK_VALUES + 1)]
            block[0] = c * n
            np.cumsum(np.bincount(chunk, minlength=_CHUNK_VALUES), out=block[1:])
            block[1:] += c * n
