"""ForensicsDetector: ELA, noise and JPEG-ghost regions on generated splices, the 8×8 grid
under EXIF orientation, the real OpenCV splice sample, and no finding on genuine files."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from conftest import DATA, encode, jpeg, photo, recompress, textured_rgb
from refundlens import load_photo
from refundlens.detectors import DetectorContext
from refundlens.detectors.base import Skip
from refundlens.detectors.forensics import THRESHOLDS, ForensicsDetector
from refundlens.detectors.forensics.anomaly import find_region
from refundlens.detectors.forensics.ghost import estimate_quality, ijg_table
from refundlens.detectors.forensics.grid import CellGrid, orient, unorient
from refundlens.models import Region

SAMPLES = DATA / "forensics"
PATCH = Region(400, 296, 256, 192)  # 8-aligned, so an earlier compression keeps its grid


def bbox(mask: np.ndarray) -> Region:
    ys, xs = np.nonzero(mask)
    return Region(int(xs.min()), int(ys.min()), int(xs.max() - xs.min()) + 1,
                  int(ys.max() - ys.min()) + 1)


def run(p):
    return ForensicsDetector().run(p, DetectorContext())


def codes(output) -> list[str]:
    return sorted(f.code for f in output.findings)


def overlap(a: Region, b: Region) -> float:
    ix = max(0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    iy = max(0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    return ix * iy / min(a.area, b.area)


@pytest.fixture(scope="module")
def camera_photo() -> np.ndarray:
    """A generated photo as a camera would leave it: decoded from JPEG quality 95."""
    return load_photo(jpeg(textured_rgb(1024, 768, seed=1), 95)).pixels


def spliced(base: np.ndarray, *, patch_quality: int, seed: int = 5) -> np.ndarray:
    """``base`` with :data:`PATCH` replaced by another picture saved at ``patch_quality``."""
    donor = load_photo(jpeg(textured_rgb(PATCH.width, PATCH.height, seed=seed),
                            patch_quality)).pixels
    out = base.copy()
    out[PATCH.y:PATCH.y + PATCH.height, PATCH.x:PATCH.x + PATCH.width] = donor
    return out


# --- genuine and clean -------------------------------------------------------------------


def test_clean_photo_and_its_recompression_raise_nothing():
    original = jpeg(textured_rgb(1024, 768, seed=2), 90)
    for data in (original, recompress(original, 75), recompress(original, 95)):
        out = run(photo(data))
        assert codes(out) == [], out.info
        assert set(out.info) == {"ela", "noise", "ghost"}


def test_png_runs_without_the_ghost():
    out = run(photo(encode(textured_rgb(640, 480, seed=3), "PNG"), "clean.png"))
    assert codes(out) == []
    assert "not a JPEG" in out.info["ghost"]["skipped"]
    assert out.info["ela"]["statistic"] < THRESHOLDS["ela"]


def test_small_photo_is_skipped():
    with pytest.raises(Skip, match="at least 128"):
        run(photo(jpeg(textured_rgb(200, 100), 90)))


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.iterdir()
                                        if p.suffix.lower() in (".jpg", ".heif")
                                        and "modified" not in p.name))
def test_genuine_files_raise_nothing(name):
    out = run(load_photo(SAMPLES / name))
    assert codes(out) == [], (name, out.info)


# --- generated splices ---------------------------------------------------------------------


@pytest.mark.parametrize("patch_quality,final_quality", [(50, 90), (60, 95), (70, 85)])
def test_patch_from_a_lower_quality_jpeg_shows_a_ghost(camera_photo, patch_quality,
                                                       final_quality):
    out = run(photo(jpeg(spliced(camera_photo, patch_quality=patch_quality), final_quality)))
    ghosts = [f for f in out.findings if f.code == "FORENSIC_DOUBLE_JPEG"]
    assert len(ghosts) == 1, out.info
    finding = ghosts[0]
    assert overlap(finding.region, PATCH) > 0.8, finding.region
    assert abs(finding.details["ghost_quality"] - patch_quality) <= 5
    assert finding.details["statistic"] >= THRESHOLDS["ghost"]
    assert 0.5 <= finding.score <= 1.0
    assert finding.details["score_text"] == f"{finding.score:.2f}"
    assert f"~{finding.details['ghost_quality']}" in finding.message_en
    assert finding.strength == "weak"
    # The heat map covers the photo at 1/8 scale and is brightest on the patch.
    heat = finding.map
    assert heat.dtype == np.float32 and heat.shape == (96, 128)
    inside = heat[PATCH.y // 8 + 2:(PATCH.y + PATCH.height) // 8 - 2,
                  PATCH.x // 8 + 2:(PATCH.x + PATCH.width) // 8 - 2]
    assert inside.mean() > 0.5 > heat[:30, :30].mean()


@pytest.fixture(scope="module")
def web_photo() -> np.ndarray:
    """A generated photo that went through a quality-60 JPEG (a web or messenger copy)."""
    return load_photo(jpeg(textured_rgb(1024, 768, seed=1), 60)).pixels


def pasted(base: np.ndarray, *, noise: float, seed: int = 5) -> np.ndarray:
    donor = textured_rgb(PATCH.width, PATCH.height, seed=seed).astype(np.float32)
    donor += np.random.default_rng(seed).normal(0, noise, donor.shape) if noise else 0
    out = base.copy()
    out[PATCH.y:PATCH.y + PATCH.height, PATCH.x:PATCH.x + PATCH.width] = \
        np.clip(donor, 0, 255).astype(np.uint8)
    return out


def test_noisier_patch_is_found_by_its_noise(web_photo):
    # A patch from a high-ISO photo (noise σ 10 against the host's ~3, then smoothed by
    # quality 60), saved at 90.
    out = run(photo(jpeg(pasted(web_photo, noise=10.0), 90)))
    assert codes(out) == ["FORENSIC_NOISE"], out.info
    finding = out.findings[0]
    assert overlap(finding.region, PATCH) > 0.8, finding.region
    assert finding.details["direction"] == "higher"
    assert "noise" in finding.message_en and "噪声" in finding.message_zh


def test_uncompressed_patch_in_a_recompressed_photo_shows_in_ela(web_photo):
    # The background re-saved from quality 60 to 95 sits on the coarse quality-60 lattice
    # and barely changes at the ELA re-save; the pasted patch, never compressed, does.
    out = run(photo(jpeg(pasted(web_photo, noise=0.0), 95)))
    finding = next(f for f in out.findings if f.code == "FORENSIC_ELA")
    assert overlap(finding.region, PATCH) > 0.8, finding.region
    assert finding.details["ela_quality"] == 90
    assert finding.details["statistic"] >= THRESHOLDS["ela"] + 5


def test_ela_is_silent_at_its_own_quality(web_photo):
    # Known blind spot (documented): a photo last saved at the ELA quality re-saves almost
    # unchanged everywhere, pasted patch included.
    out = run(photo(jpeg(pasted(web_photo, noise=0.0), 90)))
    assert out.info["ela"]["statistic"] == 0.0


def test_same_quality_patch_is_not_a_ghost(camera_photo):
    # A patch never compressed before: nothing for the ghost search to find.
    donor = textured_rgb(PATCH.width, PATCH.height, seed=5)
    pixels = camera_photo.copy()
    pixels[PATCH.y:PATCH.y + PATCH.height, PATCH.x:PATCH.x + PATCH.width] = donor
    out = run(photo(jpeg(pixels, 90)))
    assert "FORENSIC_DOUBLE_JPEG" not in codes(out)


# --- orientation -----------------------------------------------------------------------------


def with_orientation(data: bytes, orientation: int) -> bytes:
    """``data`` with an APP1 Exif segment whose IFD0 holds only Orientation."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_grid_is_found_under_exif_orientation(camera_photo, orientation):
    stored = spliced(camera_photo, patch_quality=50)
    p = photo(with_orientation(jpeg(stored, 90), orientation))
    assert p.orientation == orientation
    out = run(p)
    finding = next(f for f in out.findings if f.code == "FORENSIC_DOUBLE_JPEG")
    # Where the patch lies in the upright photo.
    mask = np.zeros(stored.shape[:2], bool)
    mask[PATCH.y:PATCH.y + PATCH.height, PATCH.x:PATCH.x + PATCH.width] = True
    upright = bbox(orient(mask, orientation))
    assert overlap(finding.region, upright) > 0.8, (finding.region, upright)
    assert finding.map.shape == (math.ceil(p.height / 8), math.ceil(p.width / 8))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_and_cell_regions_agree(orientation):
    stored = np.arange(6 * 10).reshape(6, 10)
    assert np.array_equal(unorient(orient(stored, orientation), orientation), stored)
    cells = np.zeros((6, 10), bool)
    cells[1:3, 6:9] = True
    grid = CellGrid(cell=8, stored_width=80, stored_height=48, orientation=orientation)
    pixels = np.kron(cells, np.ones((8, 8), bool))
    assert grid.region(cells) == bbox(orient(pixels, orientation))


# --- the real OpenCV splice sample ---------------------------------------------------------


def test_opencv_sticker_splice():
    """A sticker spliced into a real product photo (OpenCV docs' ELA sample). Thresholds
    were set on genuine photos only; this file is a check, not a calibration input."""
    assert codes(run(load_photo(SAMPLES / "ela_original.jpg"))) == []
    out = run(load_photo(SAMPLES / "ela_modified.jpg"))
    sticker = Region(290, 140, 235, 235)  # drawn by hand around the penguin
    assert out.findings, out.info
    for finding in out.findings:
        assert overlap(finding.region, sticker) > 0.8, (finding.code, finding.region)


# --- pieces ----------------------------------------------------------------------------------


def test_ijg_tables_and_quality_estimate():
    assert ijg_table(50)[0, 0] == 16 and ijg_table(100).max() == 1
    for quality in (60, 75, 83, 95):
        p = photo(jpeg(textured_rgb(64, 64), quality))
        table = np.array(p.jpeg_quantization[0], np.float32).reshape(8, 8)
        assert np.array_equal(table, ijg_table(quality))  # Pillow writes IJG tables
        assert estimate_quality(table) == quality


def test_find_region_ignores_bands_and_lines():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, (30, 40)).astype(np.float32)
    blob = base.copy()
    blob[10:15, 12:18] += 8
    found = find_region(blob, spread_floor=0.05)
    assert found is not None and found.direction == 1 and found.cells >= 25
    band = base.copy()
    band[10:14, :] += 8  # edge to edge: a horizon, not a patch
    line = base.copy()
    line[5, 5:25] += 8  # one cell thin
    for residual in (band, line):
        hit = find_region(residual, spread_floor=0.05)
        assert hit is None or hit.statistic < 15


def test_options_are_validated():
    with pytest.raises(ValueError, match="unknown method"):
        ForensicsDetector(thresholds={"copy_move": 3})
    with pytest.raises(ValueError, match="quality"):
        ForensicsDetector(ela_quality=0)
    assert ForensicsDetector(thresholds={"ela": 99}).thresholds["ela"] == 99
