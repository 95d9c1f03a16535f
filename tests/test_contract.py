"""Every registered detector on odd and bad inputs: it answers ok or skipped, never crashes.

Derived from the registry, so a new detector is covered the day it is registered.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from conftest import encode, jpeg, textured_rgb
from refundlens import (
    CorruptPhotoError,
    DetectorContext,
    PhotoTooLargeError,
    Reference,
    load_photo,
)
from refundlens.analysis import run_detector
from refundlens.detectors import REGISTRY, create_detectors, detector_class
from refundlens.reasons import REASONS


def _odd_inputs() -> dict[str, bytes]:
    alpha = np.dstack([textured_rgb(90, 70, seed=2), np.full((70, 90), 128, np.uint8)])
    return {
        "jpeg": jpeg(textured_rgb(320, 240, seed=1), 85),
        "png_alpha": encode(alpha, "PNG"),
        "one_pixel": encode(np.zeros((1, 1, 3), np.uint8), "PNG"),
        "grayscale": encode(textured_rgb(100, 80, seed=3)[..., 0], "JPEG", quality=90),
        "tiny": encode(textured_rgb(3, 5, seed=4), "PNG"),
        "strip": jpeg(textured_rgb(2000, 6, seed=5), 90),
        "flat": jpeg(np.full((200, 200, 3), 127, np.uint8), 95),
    }


ODD = _odd_inputs()


@pytest.fixture(scope="module")
def detectors():
    return create_detectors(list(REGISTRY))


@pytest.fixture(scope="module")
def context():
    reference = load_photo(jpeg(textured_rgb(320, 240, seed=1), 95), name="listing.jpg")
    return DetectorContext(references=(Reference(reference, id="listing.jpg"),))


@pytest.mark.parametrize("name", list(REGISTRY))
def test_registry_entry_is_consistent(name):
    cls = detector_class(name)
    assert cls.name == name and cls.version and cls.description
    assert cls.codes and all(code in REASONS for code in cls.codes)


@pytest.mark.parametrize("kind", list(ODD))
def test_every_detector_handles_odd_inputs(detectors, context, kind):
    photo = load_photo(ODD[kind], name=f"{kind}.img")
    for detector in detectors:
        for ctx in (DetectorContext(), context):
            result = run_detector(detector, photo, ctx)
            assert result.status in ("ok", "skipped"), \
                f"{detector.name} on {kind}: {result.status}: {result.error}"
            for finding in result.findings:
                assert finding.code in detector.codes
                if finding.region is not None:
                    r = finding.region
                    assert 0 <= r.x and 0 <= r.y and r.x + r.width <= photo.width + 1 \
                        and r.y + r.height <= photo.height + 1, (detector.name, kind, r)


def test_detectors_pickle(detectors):
    for detector in detectors:
        clone = pickle.loads(pickle.dumps(detector))
        assert clone.name == detector.name


def test_bad_files_never_reach_detectors():
    data = ODD["jpeg"]
    with pytest.raises(CorruptPhotoError):
        load_photo(data[: len(data) // 3], name="truncated.jpg")
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    with pytest.raises(PhotoTooLargeError):
        load_photo(bomb, name="huge.png")
