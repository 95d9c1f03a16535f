"""The reuse index in the service's database (``reuse_photos``), on SQLite and PostgreSQL:
separate index objects with their own connections — as on two hosts — see each other's
photos, replacements and deletions of old hashes; concurrent writers never hide a row from a
reader that tops up by id; the index pickles as its URL; a file index merges in."""

from __future__ import annotations

import pickle
import threading
from datetime import datetime, timezone

import numpy as np
import pytest
from conftest import jpeg, photo, textured_rgb

from refundlens.index import HASH_VERSION, PhotoHashes, ReuseIndex, photo_hashes
from refundlens.index.dbstore import KEY_LENGTH
from refundlens.store import Database
from refundlens.store.tables import ReusePhoto


@pytest.fixture
def url(database_url: str) -> str:
    """A database at the newest schema (the PostgreSQL template already is)."""
    db = Database(database_url)
    db.upgrade()
    db.dispose()
    return database_url


def synthetic(n: int, seed: int = 0) -> list[PhotoHashes]:
    """Photos' hashes without photos: random 64-bit and 256-bit hashes, distinct sha256."""
    rng = np.random.default_rng(seed)
    return [PhotoHashes(f"{seed:032x}{i:032x}",
                        tuple(int(h) for h in rng.integers(0, 2**64, 5, dtype=np.uint64)),
                        tuple(rng.bytes(32) for _ in range(5))) for i in range(n)]


def near(hashes: PhotoHashes, bits: int = 3) -> PhotoHashes:
    """Another file with the same picture: a few bits of each hash flipped."""
    mask = (1 << bits) - 1
    return PhotoHashes("f" * 64, tuple(h ^ mask for h in hashes.coarse),
                       tuple(bytes([f[0] ^ mask]) + f[1:] for f in hashes.fine))


def test_two_hosts_see_each_others_photos(url):
    host_a, host_b = ReuseIndex.in_database(url), ReuseIndex.in_database(url)
    photos = synthetic(50)
    try:
        assert host_b.query(photos[7]) == []  # B has loaded its tables: now top up
        host_a.add_many((f"a-{i}", h, {"claim_id": f"c{i}"}) for i, h in enumerate(photos))
        [match] = host_b.query(near(photos[7]))
        assert (match.key, match.relation, match.meta) == ("a-7", "near_copy", {"claim_id": "c7"})
        assert match.distance == 3 and match.added_at.endswith("+00:00")
        # B replaces a photo A stored; A sees the new hashes and no longer the old ones.
        assert host_a.query(photos[8])[0].key == "a-8"
        [other] = synthetic(1, seed=9)
        host_b.add("a-8", other, meta={"claim_id": "c8-new"})
        assert host_a.query(near(photos[8])) == []
        assert [(m.key, m.meta) for m in host_a.query(near(other))] == \
            [("a-8", {"claim_id": "c8-new"})]
        assert len(host_a) == len(host_b) == 50
    finally:
        host_a.close()
        host_b.close()


def test_real_photos_exact_near_and_flat(url):
    """Hashes from real pixels through the database store: a recompressed copy, the same
    file, and a flat photo matched by its sha256 only."""
    pixels = textured_rgb(320, 240, seed=5)
    flat = photo(jpeg(np.full((64, 64, 3), 128, np.uint8), 90))
    with ReuseIndex.in_database(url) as index:
        index.add("claim-1/1", photo(jpeg(pixels, 90)), meta={"buyer": "b-1"})
        index.add("flat", flat)
        assert [(m.key, m.exact) for m in index.query(photo(jpeg(pixels, 90)))] == \
            [("claim-1/1", True)]
        [copy] = index.query(photo(jpeg(pixels, 55)))
        assert copy.key == "claim-1/1" and not copy.exact and copy.meta == {"buyer": "b-1"}
        assert [m.key for m in index.query(flat)] == ["flat"]
        assert index.query(photo(jpeg(np.full((60, 60, 3), 200, np.uint8), 90))) == []
        assert index.query(photo(jpeg(pixels, 90)), exclude="claim-1/1") == []


def test_concurrent_writers_never_hide_a_row_from_a_reader(url):
    """Four writers (own connections) add photos one transaction at a time while a reader
    keeps querying, so it tops up between commits. On PostgreSQL, ids come from a sequence
    before commit: without the writers' table lock a reader could pass an id whose
    transaction commits later and never load that row."""
    writers = [ReuseIndex.in_database(url) for _ in range(4)]
    reader = ReuseIndex.in_database(url)
    batches = [synthetic(40, seed=100 + w) for w in range(4)]
    errors: list[BaseException] = []

    def write(index: ReuseIndex, hashes: list[PhotoHashes], w: int) -> None:
        try:
            for i, h in enumerate(hashes):
                index.add(f"w{w}-{i}", h)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(writers[w], batches[w], w))
               for w in range(4)]
    probe = batches[0][0]
    try:
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            reader.query(probe)
        for thread in threads:
            thread.join()
        assert not errors
        # Every row reached the reader's in-memory search: near() copies are other files,
        # found only through it, not by sha256.
        for w, hashes in enumerate(batches):
            for i, h in enumerate(hashes):
                assert [m.key for m in reader.query(near(h))] == [f"w{w}-{i}"]
    finally:
        for index in (*writers, reader):
            index.close()


def test_pickles_as_its_url_and_reconnects(url):
    db = Database(url)
    try:
        index = ReuseIndex.in_database(db)  # borrowing the service's Database
        [h] = synthetic(1)
        index.add("k", h)
        blob = pickle.dumps(index)
        assert len(blob) < 500 and b"Engine" not in blob
        clone = pickle.loads(blob)
        assert [m.key for m in clone.query(near(h))] == ["k"]
        clone.close()
        index.close()  # borrowed: the Database stays usable
        assert db.ping()
    finally:
        db.dispose()


def test_keep_existing_keys_and_times(url):
    first, second = synthetic(2)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with ReuseIndex.in_database(url) as index:
        assert index.add_many([("k", first, {"v": 1}, when)]) == 1
        assert index.add_many([("k", second, {"v": 2})], replace=False) == 0
        [match] = index.query(first)
        assert (match.meta, match.added_at) == ({"v": 1}, "2026-01-02T03:04:05+00:00")
        # A key given twice in one call: the last one wins, as in the file store.
        assert index.add_many([("j", first), ("j", second)]) == 1
        assert [m.key for m in index.query(near(second))] == ["j"]
        with pytest.raises(ValueError, match=f"at most {KEY_LENGTH}"):
            index.add("x" * (KEY_LENGTH + 1), first)
        with pytest.raises(ValueError, match="timezone-aware"):
            index.add_many([("n", first, None, datetime(2026, 1, 1))])
        assert len(index) == 2


def test_rows_of_another_hash_version_match_only_as_the_same_file(url):
    old, other = synthetic(2)
    with ReuseIndex.in_database(url) as index:
        index.add("old", old)
        index.add("current", other)
        db = index.store.database()
        with db.write() as session:
            session.query(ReusePhoto).filter_by(key="old").update(
                {"hash_version": HASH_VERSION - 1})
        index.close()  # forget the tables loaded so far
        assert index.query(near(old)) == []
        assert [m.key for m in index.query(old)] == ["old"]  # same sha256
        assert [m.key for m in index.query(near(other))] == ["current"]


def test_a_file_index_merges_in_keeping_what_is_there(url, tmp_path):
    pixels = textured_rgb(320, 240, seed=7)
    hashes = photo_hashes(photo(jpeg(pixels, 90)))
    photos = synthetic(30, seed=3)
    with ReuseIndex.open(tmp_path / "file") as file_index:
        file_index.add_many([(f"f-{i}", h, {"i": i}) for i, h in enumerate(photos)])
        file_index.add("f-real", hashes, meta={"claim_id": "c-real"})
        with ReuseIndex.in_database(url) as index:
            index.add("f-0", photos[1], meta={"kept": True})
            assert index.merge(file_index, batch_size=7) == 30
            assert index.merge(file_index) == 0  # again: nothing new
            assert len(index) == 31
            [real] = index.query(photo(jpeg(pixels, 60)))
            assert (real.key, real.meta) == ("f-real", {"claim_id": "c-real"})
            file_time = file_index.query(photos[5])[0].added_at
            assert index.query(photos[5])[0].added_at == file_time
            assert [m.meta for m in index.query(photos[1]) if m.key == "f-0"] == \
                [{"kept": True}]
