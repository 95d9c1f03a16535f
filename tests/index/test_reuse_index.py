"""The reuse index: hashing, the multi-index Hamming search, and the SQLite-backed store."""

from __future__ import annotations

import multiprocessing
import pickle
import sqlite3
import threading

import cv2
import numpy as np
import pytest
from conftest import encode, jpeg, photo, textured_rgb

from refundlens.errors import ConfigError
from refundlens.index import (
    HASH_VERSION,
    HammingSearch,
    PhotoHashes,
    ReuseIndex,
    hamming,
    photo_hashes,
)

TARGET = 37  # the stored photo the near-copy tests look for


def scene(seed: int, width: int = 160, height: int = 120) -> np.ndarray:
    """A cheap, distinct photo: a random low-frequency colour field, boxes and noise."""
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.uniform(0, 255, (4, 5, 3)).astype(np.float32), (width, height),
                       interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        x, y = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        image[y:y + int(rng.integers(8, 40)), x:x + int(rng.integers(8, 50))] = \
            rng.uniform(0, 255, 3)
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, np.ndarray, bytes, PhotoHashes]]:
    """200 photos as (key, pixels, JPEG bytes, hashes); photo TARGET is a textured one."""
    items = []
    for i in range(200):
        pixels = textured_rgb(320, 240, seed=5) if i == TARGET else scene(i)
        data = jpeg(pixels, 90)
        items.append((f"claim-{i}/1", pixels, data, photo_hashes(photo(data))))
    return items


@pytest.fixture
def index(tmp_path, corpus) -> ReuseIndex:
    idx = ReuseIndex.open(tmp_path / "reuse")
    idx.add_many((key, hashes, {"claim": key.split("/")[0], "buyer": f"b-{n}"})
                 for n, (key, _, _, hashes) in enumerate(corpus))
    yield idx
    idx.close()


def target(corpus) -> tuple[str, np.ndarray, bytes, PhotoHashes]:
    return corpus[TARGET]


def test_rescaled_recompressed_copy_is_found_with_its_key(index, corpus):
    key, pixels, _, _ = target(corpus)
    small = cv2.resize(pixels, (192, 144), interpolation=cv2.INTER_AREA)
    matches = index.query(photo(jpeg(small, 55)))
    assert [m.key for m in matches] == [key]
    match = matches[0]
    assert not match.exact and match.relation == "near_copy"
    assert match.distance <= 4 and match.fine_distance <= 24
    assert match.meta == {"claim": "claim-37", "buyer": "b-37"}


def test_different_photos_are_not_found(index):
    fresh = [scene(seed) for seed in range(1000, 1020)] + [textured_rgb(320, 240, seed=6)]
    for pixels in fresh:
        assert index.query(photo(jpeg(pixels, 85))) == []


def test_same_file_is_an_exact_match(index, corpus):
    key, _, data, _ = target(corpus)
    matches = index.query(photo(data))
    assert len(matches) == 1
    assert matches[0].key == key and matches[0].exact and matches[0].distance == 0
    assert matches[0].sha256 == photo(data).sha256


def test_exclude_drops_the_photos_own_key(index, corpus):
    key, pixels, data, _ = target(corpus)
    assert index.query(photo(data), exclude=key) == []
    assert index.query(photo(jpeg(pixels, 60)), exclude=key) == []
    assert [m.key for m in index.query(photo(data), exclude="claim-0/1")] == [key]


def test_mirrored_and_cropped_copies_are_found(index, corpus, tmp_path):
    key, pixels, _, _ = target(corpus)
    mirrored = index.query(photo(jpeg(np.ascontiguousarray(pixels[:, ::-1]), 80)))
    assert [(m.key, m.relation) for m in mirrored] == [(key, "mirrored")]
    cropped = index.query(photo(jpeg(np.ascontiguousarray(pixels[19:-19, 26:-26]), 80)))
    assert [(m.key, m.relation) for m in cropped] == [(key, "cropped")]
    # The other way round: the stored photo is the crop, the query the wider original.
    with ReuseIndex.open(tmp_path / "crops") as crops:
        crops.add("crop", photo(jpeg(np.ascontiguousarray(pixels[19:-19, 26:-26]), 80)))
        wider = crops.query(photo(jpeg(pixels, 70)))
        assert [(m.key, m.relation) for m in wider] == [("crop", "crop_source")]


def test_persists_across_reopen(index, corpus, tmp_path):
    key, pixels, _, _ = target(corpus)
    index.close()
    with ReuseIndex.open(tmp_path / "reuse", create=False) as again:
        assert len(again) == 200
        matches = again.query(photo(jpeg(pixels, 70)))
        assert [m.key for m in matches] == [key]
        assert matches[0].meta["buyer"] == "b-37"
        assert matches[0].added_at.endswith("+00:00")


def test_pickles_as_its_path_and_reopens_lazily(index, corpus, tmp_path):
    key, pixels, _, _ = target(corpus)
    index.query(photo(jpeg(pixels, 70)))  # loads the in-memory tables
    blob = pickle.dumps(index)
    assert len(blob) < 500  # the path, not the tables or a connection
    clone = pickle.loads(blob)
    assert clone.path == index.path
    assert [m.key for m in clone.query(photo(jpeg(pixels, 70)))] == [key]
    clone.close()
    # Unpickled where there is no index: it fails on use and creates nothing.
    stray = pickle.loads(pickle.dumps(ReuseIndex(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="no reuse.sqlite3"):
        stray.query(photo(jpeg(pixels, 70)))
    assert not (tmp_path / "missing").exists()


def test_reader_while_another_connection_writes(index, corpus, tmp_path):
    """Two index objects (two SQLite connections) on one directory, one writing in small
    transactions while the other queries: no errors, and the reader sees every row."""
    key, pixels, _, _ = target(corpus)
    new = [(f"late-{i}", photo_hashes(photo(jpeg(scene(5000 + i), 85)))) for i in range(120)]
    query = photo(jpeg(pixels, 60))
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            with ReuseIndex.open(tmp_path / "reuse") as writer:
                for start in range(0, len(new), 10):
                    writer.add_many(new[start:start + 10])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    seen = 0
    try:
        while not done.is_set() or seen < 3:
            assert [m.key for m in index.query(query)] == [key]
            seen += 1
    finally:
        thread.join()
    assert not errors
    assert len(index) == 320
    last_key, last_hashes = new[-1]
    assert [m.key for m in index.query(last_hashes)] == [last_key]


def _write_in_child(path: str, hashes: list[dict]) -> None:
    with ReuseIndex.open(path) as writer:
        for n, values in enumerate(hashes):
            writer.add(f"child-{n}", values)


def test_reader_while_another_process_writes(index, corpus, tmp_path):
    key, pixels, _, _ = target(corpus)
    new = [photo_hashes(photo(jpeg(scene(7000 + i), 85))) for i in range(40)]
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    child = multiprocessing.get_context(method).Process(
        target=_write_in_child, args=(str(tmp_path / "reuse"), [h.to_dict() for h in new]))
    child.start()
    query = photo(jpeg(pixels, 60))
    while child.is_alive():
        assert [m.key for m in index.query(query)] == [key]
    child.join()
    assert child.exitcode == 0
    assert len(index) == 240
    assert [m.key for m in index.query(new[-1])] == ["child-39"]


def test_adding_a_key_again_replaces_it(index, corpus):
    key, pixels, _, _ = target(corpus)
    replacement = scene(9000)
    index.add(key, photo(jpeg(replacement, 90)), meta={"claim": "claim-37", "buyer": "b-x"})
    assert len(index) == 200
    assert index.query(photo(jpeg(pixels, 70))) == []
    matches = index.query(photo(jpeg(replacement, 70)))
    assert [(m.key, m.meta["buyer"]) for m in matches] == [(key, "b-x")]


def test_limit_and_order_exact_first(tmp_path):
    pixels = textured_rgb(320, 240, seed=8)
    original = jpeg(pixels, 90)
    with ReuseIndex.open(tmp_path / "r") as idx:
        for n, quality in enumerate((40, 60, 75)):
            idx.add(f"copy-{n}", photo(jpeg(pixels, quality)))
        idx.add("same-file", photo(original))
        matches = idx.query(photo(original), limit=3)
        assert len(matches) == 3
        assert matches[0].key == "same-file" and matches[0].exact
        assert all(not m.exact for m in matches[1:])
        assert [m.fine_distance for m in matches] == sorted(m.fine_distance for m in matches)


def test_tiny_grey_and_flat_photos(tmp_path):
    one_pixel = photo(encode(np.full((1, 1, 3), 90, np.uint8), "PNG"), "1x1.png")
    grey = photo(encode(cv2.cvtColor(textured_rgb(200, 150, seed=3), cv2.COLOR_RGB2GRAY),
                        "JPEG", quality=90), "grey.jpg")
    flat_a = photo(jpeg(np.full((64, 64, 3), 128, np.uint8), 90), "flat-a.jpg")
    flat_b = photo(jpeg(np.full((80, 60, 3), 200, np.uint8), 90), "flat-b.jpg")
    assert not photo_hashes(one_pixel).informative
    assert photo_hashes(grey).informative
    assert not photo_hashes(flat_a).informative
    with ReuseIndex.open(tmp_path / "r") as idx:
        for name, item in (("one", one_pixel), ("grey", grey), ("flat-a", flat_a)):
            idx.add(name, item)
        # Flat photos share every pHash bit; they must match only as the same file.
        assert idx.query(flat_b) == []
        assert [m.key for m in idx.query(flat_a)] == ["flat-a"]
        assert idx.query(flat_a)[0].exact
        assert [m.key for m in idx.query(photo(jpeg(np.dstack([grey.gray] * 3), 70)))] == \
            ["grey"]


def test_hashes_round_trip_through_their_dict(corpus, tmp_path):
    hashes = corpus[3][3]
    values = hashes.to_dict()
    assert PhotoHashes.from_dict(values) == hashes
    assert len(values["phash64"]["full"]) == 16 and len(values["phash256"]["crop76"]) == 64
    with ReuseIndex.open(tmp_path / "r") as idx:
        idx.add("from-dict", values)
        assert idx.query(hashes)[0].key == "from-dict"
    with pytest.raises(ValueError, match="hash_version"):
        PhotoHashes.from_dict({**values, "hash_version": HASH_VERSION + 1})
    with pytest.raises(ValueError, match="phash64"):
        PhotoHashes.from_dict({"sha256": hashes.sha256})


def test_hamming_counts_bits():
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(b"\xff\x00", b"\x0f\x00") == 4
    with pytest.raises(TypeError, match="two ints or two bytes"):
        hamming(1, b"\x01")


def test_refuses_an_index_built_with_another_hash_version(tmp_path):
    ReuseIndex.open(tmp_path / "r").close()
    with sqlite3.connect(tmp_path / "r" / "reuse.sqlite3") as conn:
        conn.execute("UPDATE settings SET value = '0' WHERE name = 'hash_version'")
    with pytest.raises(ConfigError, match="hash version 0"):
        ReuseIndex.open(tmp_path / "r")


def test_refuses_a_file_that_is_not_an_index(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "reuse.sqlite3").write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match="expected a RefundLens reuse index"):
        ReuseIndex.open(tmp_path / "r")


def test_rejects_bad_arguments(index, corpus):
    hashes = corpus[0][3]
    with pytest.raises(ValueError, match="max_distance=12"):
        index.query(hashes, max_distance=12)
    with pytest.raises(ValueError, match="limit=0"):
        index.query(hashes, limit=0)
    with pytest.raises(ValueError, match="non-empty string"):
        index.add("", hashes)
    with pytest.raises(ValueError, match="not a JSON object"):
        index.add("k", hashes, meta={"when": object()})
    with pytest.raises(TypeError, match="expected a Photo"):
        index.add("k", b"bytes")
    assert len(index) == 200  # nothing half-written


def test_hamming_search_is_exact_against_brute_force():
    """Multi-index hashing must return exactly the entries a linear scan returns, for
    every radius it accepts, over uniform and clustered hashes, sorted part and tail."""
    rng = np.random.default_rng(4)
    search = HammingSearch()
    blocks = []
    for block in range(4):
        codes = rng.integers(0, 2**63, size=25_000, dtype=np.uint64) * np.uint64(2)
        # A cluster: one hash with 1–3 bits flipped, so buckets are uneven.
        flips = rng.integers(0, 64, size=(3000, 3)).astype(np.uint64)
        codes[:3000] = codes[0] ^ (np.uint64(1) << flips[:, 0]) ^ (np.uint64(1) << flips[:, 1])
        ids = np.arange(block * 25_000, (block + 1) * 25_000)
        search.add(codes, ids)
        blocks.append(codes)
    codes = np.concatenate(blocks)
    assert len(search) == 100_000
    for trial in range(150):
        query = int(codes[rng.integers(len(codes))])
        for bit in rng.choice(64, size=int(rng.integers(0, 12)), replace=False):
            query ^= 1 << int(bit)
        radius = trial % (HammingSearch.max_radius + 1)
        ids, dist = search.search(query, radius)
        expected = np.flatnonzero(np.bitwise_count(codes ^ np.uint64(query)) <= radius)
        assert sorted(ids.tolist()) == expected.tolist()
        assert np.array_equal(dist, np.bitwise_count(codes[ids] ^ np.uint64(query)))
    with pytest.raises(ValueError, match="radius 12"):
        search.search(0, 12)
