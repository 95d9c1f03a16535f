"""Reuse index benchmark: robustness on real photos, and speed and memory at scale.

Part 1 (robustness) hashes every photo under the shared data folder, groups the ones that
are the same picture (same sha256, or same aspect and a 64×64 grey correlation ≥ 0.95:
the C2PA fixtures and the EXIF orientation set hold many), and reports

- the distance distributions between different photos (the best variant pair, as the
  index compares them), with buyer photos of the same product apart;
- for each edit (recompression, rescale, tone, crops, rotations, mirror, pasted patches),
  the share of photos whose edited copy the index finds, at several thresholds;
- how many pairs of different photos the index matches at the same thresholds.

Part 2 (scale) builds an index of N photos (default one million) of synthetic hashes —
half uniform, half "structured": clusters around the real photos' hashes with 25 % of bits
flipped, which are as far apart as real different photos but crowd the same buckets — and
reports bulk insert, load, memory and query latency (near duplicates and misses), then
compares the in-memory search with faiss ``IndexBinaryFlat`` and ``IndexBinaryMultiHash``
on the same hashes. Finally it times the reuse detector on a 12 MP photo against it.

Part 3 (``--stores``) builds the same index over each store at ``--store-photos`` photos:
its own SQLite file (the CLI's), and the claims service's database on SQLite and on
PostgreSQL (a throwaway cluster with fsync on, as the service's would run), and reports
bulk insert, one claim's photos per transaction (the service's pattern), size, the first
query, query latency, and query latency when another host added a claim just before (the
query tops its tables up first).

Usage::

    python bench/reuse_bench.py                   # both parts, ~3-5 minutes on one core
    python bench/reuse_bench.py --photos 200000   # smaller scale part
    python bench/reuse_bench.py --skip-scale      # robustness only
    python bench/reuse_bench.py --skip-robustness --skip-scale --stores file,sqlite,postgresql
                                                  # the stores at 100,000 photos
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from refundlens import load_photo  # noqa: E402
from refundlens.errors import PhotoError  # noqa: E402
from refundlens.index import (  # noqa: E402
    DEFAULT_MAX_DISTANCE,
    DEFAULT_MAX_FINE_DISTANCE,
    VARIANTS,
    HammingSearch,
    PhotoHashes,
    ReuseIndex,
    hamming,
    photo_hashes,
)

SHARED = Path("/work/shared/data")
#: (64-bit radius, 256-bit radius) settings compared; 256 = no verification.
SETTINGS = [(6, 256), (8, 256), (10, 256), (8, 56), (10, 48), (10, 56), (11, 64)]


# --- part 1: robustness ------------------------------------------------------------------

def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _scale(a: np.ndarray, s: float) -> np.ndarray:
    size = (max(1, round(a.shape[1] * s)), max(1, round(a.shape[0] * s)))
    return cv2.resize(a, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)


def _crop(a: np.ndarray, f: float, side: str = "centre") -> np.ndarray:
    h, w = a.shape[:2]
    dy, dx = round(h * f), round(w * f)
    if side == "centre":
        return a[dy:h - dy, dx:w - dx]
    if side == "bottom":
        return a[:h - 2 * dy]
    return a[:, :w - 2 * dx]


def _rotate(a: np.ndarray, degrees: float) -> np.ndarray:
    h, w = a.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(a, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def _patch(a: np.ndarray, area: float) -> np.ndarray:
    """A flat blotch over ``area`` of the photo, a third in from the top left: the crude
    version of a forged stain."""
    b = a.copy()
    h, w = a.shape[:2]
    ph, pw = int(h * area ** 0.5), int(w * area ** 0.5)
    b[h // 3:h // 3 + ph, w // 3:w // 3 + pw] = (120, 70, 40)
    return b


def _caption(a: np.ndarray) -> np.ndarray:
    b = a.copy()
    h, w = a.shape[:2]
    cv2.putText(b, "SALE 2025", (w // 20, h - h // 12), cv2.FONT_HERSHEY_SIMPLEX, w / 400,
                (255, 255, 255), max(1, w // 150))
    return b


def _tone(a: np.ndarray, gain: float = 1.0, offset: float = 0.0, gamma: float = 1.0):
    x = ((a.astype(np.float32) / 255.0) ** gamma) * 255.0
    return np.clip((x - 128) * gain + 128 + offset, 0, 255).astype(np.uint8)


#: name -> (edit, JPEG quality of the copy)
EDITS = {
    "JPEG q50": (lambda a: a, 50),
    "JPEG q30": (lambda a: a, 30),
    "rescale ×0.5": (lambda a: _scale(a, 0.5), 85),
    "rescale ×0.25": (lambda a: _scale(a, 0.25), 85),
    "upscale ×1.5": (lambda a: _scale(a, 1.5), 85),
    "brightness +30": (lambda a: _tone(a, offset=30), 85),
    "contrast ×1.3": (lambda a: _tone(a, gain=1.3), 85),
    "gamma 0.7": (lambda a: _tone(a, gamma=0.7), 85),
    "blur σ1.5": (lambda a: cv2.GaussianBlur(a, (0, 0), 1.5), 85),
    "caption text": (_caption, 85),
    "patch 2 %": (lambda a: _patch(a, 0.02), 85),
    "patch 5 %": (lambda a: _patch(a, 0.05), 85),
    "patch 10 %": (lambda a: _patch(a, 0.10), 85),
    "crop 3 %/side": (lambda a: _crop(a, 0.03), 85),
    "crop 6 %/side": (lambda a: _crop(a, 0.06), 85),
    "crop 10 %/side": (lambda a: _crop(a, 0.10), 85),
    "crop 13 %/side": (lambda a: _crop(a, 0.13), 85),
    "crop 16 %/side": (lambda a: _crop(a, 0.16), 85),
    "crop 5 % bottom": (lambda a: _crop(a, 0.025, "bottom"), 85),
    "crop 10 % right": (lambda a: _crop(a, 0.05, "right"), 85),
    "rotate 1°": (lambda a: _rotate(a, 1), 85),
    "rotate 2°": (lambda a: _rotate(a, 2), 85),
    "rotate 3°": (lambda a: _rotate(a, 3), 85),
    "rotate 5°": (lambda a: _rotate(a, 5), 85),
    "mirror": (lambda a: a[:, ::-1], 85),
    "mirror + crop 10 %": (lambda a: _crop(a[:, ::-1], 0.10), 85),
    "flip vertical": (lambda a: a[::-1], 85),
}


def _thumb64(pixels: np.ndarray) -> np.ndarray:
    g = cv2.resize(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), (64, 64),
                   interpolation=cv2.INTER_AREA).astype(np.float32)
    return (g - g.mean()) / (g.std() + 1e-6)


def duplicate_groups(photos: dict[str, object]) -> dict[str, int]:
    """Group ids: photos that are the same picture (sha256, or same aspect and 64×64
    grey correlation ≥ 0.97 — re-encodes, metadata edits, orientation twins; the closest
    pair of genuinely different photos, two catalog cartons of one brand, is at 0.958)."""
    names = list(photos)
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    thumbs = {n: _thumb64(photos[n].pixels) for n in names}
    aspect = {n: np.log(photos[n].width / photos[n].height) for n in names}
    for a, b in itertools.combinations(names, 2):
        same = photos[a].sha256 == photos[b].sha256 or (
            abs(aspect[a] - aspect[b]) < 0.03 and float((thumbs[a] * thumbs[b]).mean()) >= 0.97)
        if same:
            parent[root(a)] = root(b)
    ids = {r: i for i, r in enumerate(sorted({root(n) for n in names}))}
    return {n: ids[root(n)] for n in names}


def pair_distances(a: PhotoHashes, b: PhotoHashes) -> tuple[int, int, int | None]:
    """Distances of the variant pairs the index compares (the query's full hash against
    every stored variant, its crops against the stored full hash, both directions):
    (lowest 64-bit, lowest 256-bit, lowest 256-bit among pairs within the widest search
    radius — what verification sees — or None if no pair is a candidate)."""
    best64, best256, verified = 64, 256, None
    for q, s in ((a, b), (b, a)):
        pairs = [(0, j) for j in range(len(VARIANTS))]
        pairs += [(i, 0) for i, name in enumerate(VARIANTS) if name.startswith("crop")]
        for i, j in pairs:
            d64, d256 = hamming(q.coarse[i], s.coarse[j]), hamming(q.fine[i], s.fine[j])
            best64, best256 = min(best64, d64), min(best256, d256)
            if d64 <= HammingSearch.max_radius:
                verified = d256 if verified is None else min(verified, d256)
    return best64, best256, verified


def _second(item: tuple) -> object:
    return item[1]


def robustness(data: Path, max_side: int) -> None:
    files = sorted(p for p in data.rglob("*") if p.is_file()
                   and p.suffix.lower() not in (".md", ".txt", "") and p.name != "LICENSE")
    photos, skipped = {}, 0
    for path in files:
        try:
            photos[str(path.relative_to(data))] = load_photo(path)
        except PhotoError:
            skipped += 1
    hashes = {name: photo_hashes(p) for name, p in photos.items()}
    groups = duplicate_groups(photos)
    sizes = Counter(groups.values())
    print(f"## Robustness on {data} ({len(photos)} photos decoded, {skipped} refused)\n")
    print(f"{sum(1 for s in sizes.values() if s > 1)} groups of the same picture, "
          f"{sum(s for s in sizes.values() if s > 1)} photos; "
          f"{sum(1 for h in hashes.values() if not h.informative)} flat photo(s) "
          f"(matched by sha256 only).\n")

    diff64, diff256, verified, same_product = [], [], [], []
    for a, b in itertools.combinations(photos, 2):
        if groups[a] == groups[b] or not (hashes[a].informative and hashes[b].informative):
            continue
        d64, d256, v = pair_distances(hashes[a], hashes[b])
        diff64.append(d64)
        diff256.append(d256)
        if v is not None:
            verified.append((d64, v, a, b))
        pa, pb = Path(a), Path(b)
        if pa.parts[0] == pb.parts[0] == "catalog_and_buyer" and pa.parent == pb.parent \
                and pa.name.startswith("buyer") and pb.name.startswith("buyer"):
            same_product.append((d64, d256, a, b))
    d64, d256 = np.array(diff64), np.array(diff256)
    print(f"Different photos: {len(d64)} pairs (lowest over the variant pairs the index "
          f"compares).\n")
    print("| distance | mean | sd | lowest values (count) |")
    print("|---|---|---|---|")
    for label, arr in (("64-bit", d64), ("256-bit", d256)):
        tail = sorted(Counter(arr.tolist()).items())[:6]
        print(f"| {label} | {arr.mean():.1f} | {arr.std():.1f} | "
              f"{', '.join(f'{k} ({n})' for k, n in tail)} |")
    print(f"\nPairs with a variant pair within 64-bit distance "
          f"{HammingSearch.max_radius} (search candidates): {len(verified)}; their 256-bit "
          f"distances: "
          f"{', '.join(f'{v} ({a} / {b})' for _, v, a, b in sorted(verified, key=_second))}.")
    sp = np.array([(x[0], x[1]) for x in same_product])
    closest = min(same_product)
    print(f"\nBuyer photos of the same product ({len(sp)} pairs): 64-bit lowest "
          f"{sp[:, 0].min()}, median {np.median(sp[:, 0]):.0f}; 256-bit lowest "
          f"{sp[:, 1].min()}, median {np.median(sp[:, 1]):.0f}; closest pair "
          f"{closest[2]} / {closest[3]} ({closest[0]}, {closest[1]}).\n")

    with tempfile.TemporaryDirectory() as tmp:
        index = ReuseIndex.open(tmp)
        index.add_many((name, h) for name, h in hashes.items())
        false_pairs = {s: set() for s in SETTINGS}
        for name, h in hashes.items():
            for s in SETTINGS:
                for m in index.query(h, max_distance=s[0], max_fine_distance=s[1],
                                     exclude=name, limit=50):
                    if groups[m.key] != groups[name]:
                        false_pairs[s].add(frozenset((name, m.key)))

        found = {edit: {s: 0 for s in SETTINGS} for edit in EDITS}
        tried = 0
        t0 = time.perf_counter()
        for name, p in photos.items():
            if min(p.width, p.height) < 64 or not hashes[name].informative:
                continue
            tried += 1
            base = p.pixels
            if max(base.shape[:2]) > max_side:  # the edits' cost, not the hashes', grows
                base = _scale(base, max_side / max(base.shape[:2]))
            for edit, (fn, quality) in EDITS.items():
                copy = photo_hashes(load_photo(_jpeg(np.ascontiguousarray(fn(base)), quality),
                                               name="copy.jpg"))
                for s in SETTINGS:
                    matches = index.query(copy, max_distance=s[0], max_fine_distance=s[1],
                                          limit=50)
                    if any(groups[m.key] == groups[name] for m in matches):
                        found[edit][s] += 1
        index.close()
    print(f"Edited copies found (share of {tried} photos; copies made from the photo "
          f"scaled to ≤{max_side} px, {time.perf_counter() - t0:.0f} s). Columns: "
          f"64-bit radius / 256-bit radius; /256 = no verification; "
          f"**{DEFAULT_MAX_DISTANCE}/{DEFAULT_MAX_FINE_DISTANCE}** is the default.\n")
    head = [f"{a}/{b}" if (a, b) != (DEFAULT_MAX_DISTANCE, DEFAULT_MAX_FINE_DISTANCE)
            else f"**{a}/{b}**" for a, b in SETTINGS]
    print("| edit | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(SETTINGS))
    for edit, row in found.items():
        print(f"| {edit} | " + " | ".join(f"{row[s] / tried:.0%}" for s in SETTINGS) + " |")
    print("| **different-photo pairs matched** | " + " | ".join(
        f"{len(false_pairs[s])} / {len(d64)}" for s in SETTINGS) + " |")
    for s in SETTINGS:
        if false_pairs[s] and s == (DEFAULT_MAX_DISTANCE, DEFAULT_MAX_FINE_DISTANCE):
            print(f"\nMatched at the default: {sorted(tuple(sorted(p)) for p in false_pairs[s])}")
    print()


# --- part 2: scale -----------------------------------------------------------------------

def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def synthetic(n: int, seeds: list[PhotoHashes], rng: np.random.Generator):
    """(coarse uint64 (n, 5), fine uint8 (n, 160)): half uniform, half clustered."""
    k = len(VARIANTS)
    coarse = rng.integers(0, 2**63, size=(n, k), dtype=np.uint64) * np.uint64(2) \
        + rng.integers(0, 2, size=(n, k), dtype=np.uint64)
    fine = rng.integers(0, 256, size=(n, 32 * k), dtype=np.uint8)
    half = n // 2
    pick = rng.integers(0, len(seeds), size=n - half)
    seed_coarse = np.array([s.coarse for s in seeds], dtype=np.uint64)
    seed_fine = np.array([np.frombuffer(b"".join(s.fine), np.uint8) for s in seeds])
    # 25 % of bits flipped (the AND of two random words): siblings land ~24 bits apart,
    # like real different photos, and crowd the same buckets.
    def quarter(shape, dtype):
        high = np.iinfo(dtype).max
        return rng.integers(0, high, size=shape, dtype=dtype, endpoint=True) & \
            rng.integers(0, high, size=shape, dtype=dtype, endpoint=True)
    coarse[half:] = seed_coarse[pick] ^ quarter((n - half, 1), np.uint64)
    fine[half:] = seed_fine[pick] ^ quarter((n - half, 32 * k), np.uint8)
    return coarse, fine


def _hashes(coarse: np.ndarray, fine: np.ndarray, i: int, sha: str) -> PhotoHashes:
    row = fine[i].tobytes()
    return PhotoHashes(sha, tuple(coarse[i].tolist()),
                       tuple(row[j * 32:(j + 1) * 32] for j in range(len(VARIANTS))))


def _pct(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"{np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f}"


def _near_copy(coarse: np.ndarray, fine: np.ndarray, i: int,
               rng: np.random.Generator) -> PhotoHashes:
    """Photo ``i`` as another file: 0–6 bits of each 64-bit hash and ~5 % of each 256-bit
    hash flipped."""
    flips = rng.choice(64, size=int(rng.integers(0, 7)), replace=False)
    mask = sum(1 << int(b) for b in flips)
    q = _hashes(coarse, fine, i, "f" * 64)
    fine_mask = np.packbits(rng.random(32 * 8) < 0.05).tobytes()  # ~13 bits
    return PhotoHashes(q.sha256, tuple(c ^ mask for c in q.coarse),
                       tuple(bytes(a ^ b for a, b in zip(f, fine_mask)) for f in q.fine))


def _lookups(index: ReuseIndex, coarse: np.ndarray, fine: np.ndarray, queries: int,
             seeds: list[PhotoHashes], rng: np.random.Generator
             ) -> tuple[list[float], list[float], int, int]:
    """Timed queries: (near-duplicate s, miss s, near duplicates found, misses matched)."""
    near, miss, found, false = [], [], 0, 0
    for i in rng.integers(0, len(coarse), size=queries).tolist():
        q = _near_copy(coarse, fine, i, rng)
        t = time.perf_counter()
        matches = index.query(q)
        near.append(time.perf_counter() - t)
        found += any(m.key == f"photo-{i}" for m in matches)
    fresh_c, fresh_f = synthetic(queries, seeds, np.random.default_rng(1))
    for i in range(queries):
        q = _hashes(fresh_c, fresh_f, i, "e" * 64)
        t = time.perf_counter()
        matches = index.query(q)
        miss.append(time.perf_counter() - t)
        false += bool(matches)
    return near, miss, found, false


#: Photos per claim in the per-claim insert and top-up timings (the service indexes a
#: claim's photos in one transaction when its analysis finishes).
CLAIM_PHOTOS = 3


@contextlib.contextmanager
def _store(kind: str) -> Iterator[tuple[Callable[[], ReuseIndex], Callable[[], float]]]:
    """(open a new index object on the store, the store's size in MB) for ``file``, or the
    service database on ``sqlite`` or ``postgresql`` (a throwaway cluster, fsync on)."""
    from refundlens.store import Database

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        if kind == "file":
            yield (lambda: ReuseIndex.open(tmp),
                   lambda: sum(f.stat().st_size for f in Path(tmp).iterdir()) / 1e6)
            return
        server = None
        if kind == "sqlite":
            url = f"sqlite:///{tmp}/refundlens.db"
        else:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from pgserver import PostgresServer

            server = PostgresServer(durable=True)
            url = server.start()
        db = Database(url)
        db.upgrade()

        def size() -> float:
            if kind == "sqlite":
                return sum(f.stat().st_size for f in Path(tmp).iterdir()) / 1e6
            with db.engine.connect() as conn:
                return conn.exec_driver_sql(
                    "SELECT pg_total_relation_size('reuse_photos')").scalar_one() / 1e6
        try:
            yield (lambda: ReuseIndex.in_database(url)), size
        finally:
            db.dispose()
            if server is not None:
                server.stop()


def stores(kinds: list[str], n: int, queries: int, seeds: list[PhotoHashes]) -> None:
    """The same index over each store: its own SQLite file (the CLI's), the service
    database on SQLite, on PostgreSQL (the service's, shared by hosts)."""
    rng = np.random.default_rng(0)
    coarse, fine = synthetic(n, seeds, rng)
    extra_c, extra_f = synthetic(1000 * CLAIM_PHOTOS, seeds, np.random.default_rng(5))
    print(f"## Stores: {n:,} photos, one core\n")
    print("| store | bulk insert photos/s | one claim's 3 photos: ms p50 / p99 | size MB "
          "(B/photo) | first query s | near duplicate ms p50 / p99 | miss ms p50 / p99 | "
          "query after another host added a claim ms p50 / p99 | found / matched misses |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind in kinds:
        with _store(kind) as (open_index, size):
            index = open_index()
            t = time.perf_counter()
            index.add_many(((f"photo-{i}", _hashes(coarse, fine, i, f"{i:064x}"))
                            for i in range(n)), batch_size=10_000)
            bulk = n / (time.perf_counter() - t)
            claims, extra = [], iter(range(len(extra_c)))
            for c in range(200):
                batch = [(f"claim-{c}/{k}", _hashes(extra_c, extra_f, j, f"{j:064x}"),
                          {"claim_id": f"claim-{c}"}) for k, j in zip(range(CLAIM_PHOTOS), extra)]
                t = time.perf_counter()
                index.add_many(batch)
                claims.append(time.perf_counter() - t)
            index.close()
            mb = size()
            index = open_index()  # a new process: the first query loads every row
            t = time.perf_counter()
            index.query(_hashes(coarse, fine, 0, "0" * 64))
            load = time.perf_counter() - t
            near, miss, found, false = _lookups(index, coarse, fine, queries, seeds, rng)
            # Another host adds a claim before each query: the query tops up 3 rows first.
            other, topped = open_index(), []
            for c in range(200, 200 + min(queries, 800) // 4):
                other.add_many([(f"claim-{c}/{k}", _hashes(extra_c, extra_f, j, f"{j:064x}"))
                                for k, j in zip(range(CLAIM_PHOTOS), extra)])
                q = _near_copy(coarse, fine, int(rng.integers(0, n)), rng)
                t = time.perf_counter()
                index.query(q)
                topped.append(time.perf_counter() - t)
            other.close()
            index.close()
        total = n + 200 * CLAIM_PHOTOS
        print(f"| {kind} | {bulk:,.0f} | {_pct(claims).replace('|', '/')} | {mb:.0f} "
              f"({mb * 1e6 / total:.0f}) | {load:.2f} | {_pct(near).replace('|', '/')} | "
              f"{_pct(miss).replace('|', '/')} | {_pct(topped).replace('|', '/')} | "
              f"{found} / {queries}, {false} / {queries} |")
    print()


def scale(n: int, queries: int, seeds: list[PhotoHashes]) -> None:
    rng = np.random.default_rng(0)
    coarse, fine = synthetic(n, seeds, rng)
    print(f"## Scale: {n:,} photos ({len(VARIANTS)} hashes each), one core\n")
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        index = ReuseIndex.open(tmp)
        t = time.perf_counter()
        index.add_many(((f"photo-{i}", _hashes(coarse, fine, i, f"{i:064x}"))
                        for i in range(n)), batch_size=50_000)
        insert_s = time.perf_counter() - t
        size_mb = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 1e6
        index.close()
        index = ReuseIndex.open(tmp, create=False)
        rss0 = _rss_mb()
        t = time.perf_counter()
        index.query(_hashes(coarse, fine, 0, "0" * 64))  # first query loads the tables
        load_s = time.perf_counter() - t
        table_mb, rss_mb = index.memory_bytes / 1e6, _rss_mb() - rss0

        near, miss, found, false = _lookups(index, coarse, fine, queries, seeds, rng)

        print("| step | result |\n|---|---|")
        print(f"| bulk insert (`add_many`) | {insert_s:.1f} s, {n / insert_s:,.0f} photos/s |")
        print(f"| SQLite file | {size_mb:.0f} MB ({size_mb * 1e6 / n:.0f} B/photo) |")
        print(f"| first query (loads the tables) | {load_s:.1f} s |")
        print(f"| in-memory tables | {table_mb:.0f} MB ({table_mb * 1e6 / n:.0f} B/photo); "
              f"process RSS +{rss_mb:.0f} MB |")
        print(f"| near duplicates found | {found} / {queries} |")
        print(f"| misses matched (false) | {false} / {queries} |\n")
        print("| `ReuseIndex.query` (radius 10, verified) | p50 ms | p99 ms |\n|---|---|---|")
        print(f"| near duplicate | {_pct(near)} |")
        print(f"| miss | {_pct(miss)} |\n")
        detector_timing(index)
        index.close()
    compare_search(coarse.ravel(), queries)


def compare_search(codes: np.ndarray, queries: int) -> None:
    """One probe over every stored hash (n × 5), radius 10: ours vs faiss."""
    import faiss

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(2)
    picks = codes[rng.integers(0, len(codes), size=queries)]
    qs = [int(c) ^ (1 << int(rng.integers(0, 64))) ^ (1 << int(rng.integers(0, 64)))
          for c in picks]
    xq = np.array(qs, dtype=np.uint64).view(np.uint8).reshape(-1, 8)
    rows = []

    rss0 = _rss_mb()
    t = time.perf_counter()
    ours = HammingSearch()
    ours.add(codes, np.arange(len(codes)))
    build = time.perf_counter() - t
    samples = []
    for q in qs:
        t = time.perf_counter()
        ours.search(q, 10)
        samples.append(time.perf_counter() - t)
    rows.append(("multi-index hashing, numpy (ours)", build, ours.nbytes / 1e6,
                 _rss_mb() - rss0, samples))
    del ours

    xb = codes.view(np.uint8).reshape(-1, 8)
    for label, make, count in (
            ("faiss IndexBinaryFlat (exhaustive)", lambda: faiss.IndexBinaryFlat(64), 50),
            ("faiss IndexBinaryMultiHash (4×16, nflip 2)", lambda: _multihash(faiss), 50)):
        rss0 = _rss_mb()
        t = time.perf_counter()
        index = make()
        index.add(xb)
        build = time.perf_counter() - t
        samples = []
        for i in range(count):
            t = time.perf_counter()
            index.range_search(xq[i:i + 1], 11)  # faiss keeps distances < radius
            samples.append(time.perf_counter() - t)
        rows.append((label, build, float("nan"), _rss_mb() - rss0, samples))
        del index
    print(f"Search structures, one probe at radius 10 over {len(codes):,} hashes:\n")
    print("| structure | build s | tables MB | RSS +MB | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for label, build, mb, rss, samples in rows:
        mb_text = f"{mb:.0f}" if mb == mb else "–"
        print(f"| {label} | {build:.1f} | {mb_text} | {rss:.0f} | {_pct(samples)} |")
    print()


def _multihash(faiss):
    index = faiss.IndexBinaryMultiHash(64, 4, 16)
    index.nflip = 2
    return index


def detector_timing(index: ReuseIndex) -> None:
    from refundlens.analysis import run_detector
    from refundlens.detectors import DetectorContext
    from refundlens.detectors.reuse import ReuseDetector

    base = cv2.resize(np.random.default_rng(3).integers(0, 255, (12, 16, 3), dtype=np.uint8),
                      (4000, 3000), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(4).normal(0, 4, base.shape)
    big = load_photo(_jpeg(np.clip(base + noise, 0, 255).astype(np.uint8), 90), name="12mp.jpg")
    detector = ReuseDetector()
    context = DetectorContext(reuse_index=index, photo_key="bench")
    run_detector(detector, big, context)
    times = [run_detector(detector, big, context).elapsed_ms for _ in range(15)]
    hashing = []
    for _ in range(15):
        t = time.perf_counter()
        photo_hashes(big)
        hashing.append((time.perf_counter() - t) * 1000)
    print(f"Reuse detector on a 12 MP JPEG (4000×3000) against this index: median "
          f"{statistics.median(times):.1f} ms, max {max(times):.1f} ms (hashing alone "
          f"median {statistics.median(hashing):.1f} ms).\n")


def _seeds(data: Path) -> list[PhotoHashes]:
    """Real photos' hashes the structured synthetic hashes cluster around."""
    return [photo_hashes(load_photo(path))
            for path in sorted((data / "catalog_and_buyer").rglob("*.jpg"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--photos", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--max-side", type=int, default=1024,
                        help="edited copies are made from the photo scaled to this size")
    parser.add_argument("--skip-robustness", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--stores", default="", metavar="KINDS",
                        help="also compare stores at --store-photos photos: comma-separated "
                             "file, sqlite, postgresql (the service database on each)")
    parser.add_argument("--store-photos", type=int, default=100_000)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if not args.skip_robustness:
        robustness(args.data, args.max_side)
    if not args.skip_scale:
        scale(args.photos, args.queries, _seeds(args.data))
    kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    unknown = set(kinds) - {"file", "sqlite", "postgresql"}
    if unknown:
        parser.error(f"--stores: unknown {', '.join(sorted(unknown))}; known: file, sqlite, "
                     f"postgresql")
    if kinds:
        stores(kinds, args.store_photos, args.queries, _seeds(args.data))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
