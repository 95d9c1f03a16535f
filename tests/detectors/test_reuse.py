"""The reuse detector: REUSED_PHOTO when the reuse index holds the photo under another key."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
from conftest import DATA, encode, jpeg, photo, recompress, textured_rgb

from refundlens import analyze, load_photo
from refundlens.analysis import run_detector
from refundlens.detectors import DetectorContext, detector_class
from refundlens.detectors.reuse import ReuseDetector
from refundlens.index import PhotoHashes, ReuseIndex, photo_hashes

REAL = DATA / "reuse"


@pytest.fixture
def index(tmp_path):
    idx = ReuseIndex.open(tmp_path / "reuse")
    yield idx
    idx.close()


@pytest.fixture
def original() -> bytes:
    return jpeg(textured_rgb(480, 360, seed=11), 92)


def run(detector, data, index, key="claim-2/photo-1"):
    return run_detector(detector, photo(data), DetectorContext(reuse_index=index,
                                                               photo_key=key))


def test_registered_under_its_name():
    assert detector_class("reuse") is ReuseDetector
    assert ReuseDetector.codes == ("REUSED_PHOTO",)


def test_skips_without_an_index(original):
    result = run_detector(ReuseDetector(), photo(original), DetectorContext())
    assert result.status == "skipped"
    assert result.error == "no reuse index configured"


def test_near_copy_in_another_claim_is_reported(index, original):
    index.add("claim-1/photo-1", photo(original), meta={"claim": "claim-1", "buyer": "b-7"})
    index.add("claim-9/photo-1", photo(jpeg(textured_rgb(480, 360, seed=12), 90)))
    pixels = cv2.resize(np.asarray(photo(original).pixels), (360, 270),
                        interpolation=cv2.INTER_AREA)
    result = run(ReuseDetector(), jpeg(pixels, 70), index)
    assert result.status == "ok"
    [finding] = result.findings
    assert finding.code == "REUSED_PHOTO"
    assert finding.details["other"] == "claim-1/photo-1"
    assert finding.details["other_meta"] == {"claim": "claim-1", "buyer": "b-7"}
    assert finding.details["exact"] is False
    assert finding.details["relation"] == "near_copy"
    assert 0 <= finding.details["distance"] <= 4
    # 1.0 at distance 0, falling linearly to 0.5 at the search radius (10).
    assert finding.score == pytest.approx(1.0 - 0.05 * finding.details["distance"])
    assert finding.details["also"] == []
    assert "claim-1/photo-1" in finding.message_en and "claim-1/photo-1" in finding.message_zh
    assert f"distance {finding.details['distance']}" in finding.message_en


def test_same_file_scores_one(index, original):
    index.add("claim-1/photo-1", photo(original))
    [finding] = run(ReuseDetector(), original, index).findings
    assert finding.details["exact"] is True and finding.details["distance"] == 0
    assert finding.score == 1.0
    assert finding.details["other_meta"] is None


def test_several_claims_listed_closest_first(index, original):
    index.add("claim-1/photo-1", photo(recompress(original, 60)))
    index.add("claim-3/photo-2", photo(original))
    index.add("claim-4/photo-1", photo(recompress(original, 40)))
    [finding] = run(ReuseDetector(), original, index).findings
    assert finding.details["other"] == "claim-3/photo-2" and finding.details["exact"]
    assert sorted(m["key"] for m in finding.details["also"]) == \
        ["claim-1/photo-1", "claim-4/photo-1"]


def test_its_own_key_is_not_a_match(index, original):
    index.add("claim-2/photo-1", photo(original))
    result = run(ReuseDetector(), original, index, key="claim-2/photo-1")
    assert result.status == "ok" and result.findings == ()


def test_new_photo_gives_hashes_to_add_without_rehashing(index, original):
    first = run(ReuseDetector(), original, index, key="claim-1/photo-1")
    assert first.findings == ()
    assert first.info["matches"] == 0
    hashes = PhotoHashes.from_dict(first.info["hashes"])
    assert hashes == photo_hashes(photo(original))
    index.add("claim-1/photo-1", first.info["hashes"], meta={"claim": "claim-1"})
    again = run(ReuseDetector(), recompress(original, 75), index, key="claim-5/photo-1")
    assert [f.details["other"] for f in again.findings] == ["claim-1/photo-1"]


def test_real_buyer_photos_of_one_product_stay_apart(index):
    """The closest pair of different buyer photos of one product in the shared data: each
    matches its own re-save, never the other."""
    first = (REAL / "bravo-orange-juice_buyer_0.jpg").read_bytes()
    second = (REAL / "bravo-orange-juice_buyer_2.jpg").read_bytes()
    index.add("buyer-0", load_photo(first))
    assert run(ReuseDetector(), second, index, key="buyer-2").findings == ()
    index.add("buyer-2", load_photo(second))
    for data, own in ((first, "buyer-0"), (second, "buyer-2")):
        resaved = recompress(data, 70)
        [finding] = run(ReuseDetector(), resaved, index, key="resave").findings
        assert finding.details["other"] == own and finding.details["also"] == []


def test_detector_and_context_pickle(index, original):
    """Ray ships the detector and the context to workers: the index travels as its path."""
    index.add("claim-1/photo-1", photo(original), meta={"claim": "claim-1"})
    context = DetectorContext(reuse_index=index, photo_key="claim-2/photo-1")
    detector, context2 = pickle.loads(pickle.dumps((ReuseDetector(max_distance=8), context)))
    assert detector.max_distance == 8
    result = run_detector(detector, photo(recompress(original, 80)), context2)
    assert [f.details["other"] for f in result.findings] == ["claim-1/photo-1"]
    context2.reuse_index.close()


def test_tiny_grey_and_flat_photos_run_cleanly(index):
    tiny = encode(np.full((1, 1, 3), 30, np.uint8), "PNG")
    grey = encode(cv2.cvtColor(textured_rgb(160, 120, seed=4), cv2.COLOR_RGB2GRAY), "JPEG",
                  quality=90)
    flat = jpeg(np.full((50, 70, 3), 240, np.uint8), 90)
    for data in (tiny, grey, flat):
        result = run(ReuseDetector(), data, index)
        assert result.status == "ok", result.error
        assert result.findings == ()
        index.add(f"seen-{len(index)}", result.info["hashes"])
    # Flat photos are matched only as the same file: another blank photo is no reuse.
    assert run(ReuseDetector(), jpeg(np.full((60, 60, 3), 120, np.uint8), 90),
               index).findings == ()
    assert [f.details["exact"] for f in run(ReuseDetector(), flat, index).findings] == [True]


def test_through_analyze(index, original):
    index.add("claim-1/photo-1", photo(original))
    analysis = analyze(photo(recompress(original, 85)), detectors=[ReuseDetector()],
                       context=DetectorContext(reuse_index=index, photo_key="claim-2/a"))
    assert analysis.codes() == ["REUSED_PHOTO"]
    assert analysis.risk.score > 0
