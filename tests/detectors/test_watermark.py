"""The open Stable Diffusion watermark detector: the scheme's pieces against their references
(PyWavelets, OpenCV, scipy.stats), encoder -> decoder round trips for every payload, the
rescales and re-saves it must survive, what it must not flag, and real SD outputs."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, encode, jpeg, photo, textured_rgb
from refundlens import load_photo
from refundlens.detectors import create_detectors
from refundlens.detectors.base import DetectorContext, Skip
from refundlens.detectors.watermark import (
    ALPHA,
    SCHEMES,
    WatermarkDetector,
    binomial_tail,
    block_bits,
    decode_votes,
    embed_watermark,
    haar_ll,
    hypergeometric_tail,
    payload_bits,
    plan_reads,
    rank_overlap,
    read_marks,
)
from refundlens.errors import PhotoError

HERE = DATA / "watermark"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SCHEME = {s.name: s for s in SCHEMES}
CTX = DetectorContext()


@lru_cache(maxsize=None)
def clean(width: int, height: int, seed: int) -> np.ndarray:
    image = textured_rgb(width, height, seed=seed)
    image.flags.writeable = False  # shared between tests
    return image


def marked(scheme_name: str, width: int = 512, height: int = 512, *, seed: int = 0) -> np.ndarray:
    scheme = SCHEME[scheme_name]
    return embed_watermark(clean(width, height, seed), scheme.bits,
                           float_pixels=scheme.offset < 1, channel_order=scheme.channel_order)


def png(rgb: np.ndarray) -> bytes:
    return encode(rgb, "PNG", compress_level=1)  # lossless all the same; fast


def rescaled_png(rgb: np.ndarray, factor: float) -> bytes:
    image = Image.fromarray(rgb)
    size = (round(image.width * factor), round(image.height * factor))
    return png(np.asarray(image.resize(size, Image.LANCZOS if factor < 1 else Image.BICUBIC)))


def run(data: bytes, name: str = "claim.png"):
    return WatermarkDetector().run(photo(data, name), CTX)


# --- the scheme's pieces ---------------------------------------------------------------

def test_payloads_are_the_published_bits():
    assert len(SCHEME["sd1"].bits) == 136 and len(SCHEME["sd2"].bits) == 32
    assert bytes(np.packbits(SCHEME["sd1"].bits)) == b"StableDiffusionV1"
    assert bytes(np.packbits(SCHEME["sd2"].bits)) == b"SDV2"
    sdxl = int("".join(map(str, SCHEME["sdxl"].bits)), 2)
    assert sdxl == 0b101100111110110010010000011110111011000110011110
    assert len(SCHEME["sdxl"].bits) == 48 and SCHEME["sdxl-rgb"].bits == SCHEME["sdxl"].bits
    with pytest.raises(ValueError, match="expected bytes or a string of 0/1"):
        payload_bits("10x1")


def test_haar_ll_is_pywavelets_ll_band_of_the_cropped_plane():
    pywt = pytest.importorskip("pywt")
    plane = np.random.default_rng(1).uniform(-60, 60, (103, 150)).astype(np.float32)
    expected, _ = pywt.dwt2(plane[:100, :148].astype(np.float64), "haar")
    assert np.allclose(haar_ll(plane), expected, atol=1e-3)


def test_u_planes_are_opencv_u_for_both_channel_orders():
    import cv2

    from refundlens.detectors.watermark import _u_planes

    rgb = textured_rgb(64, 48, seed=3)
    planes = _u_planes(rgb)
    bgr_u = cv2.cvtColor(np.ascontiguousarray(rgb[..., ::-1]), cv2.COLOR_BGR2YUV)[..., 1]
    swapped_u = cv2.cvtColor(rgb, cv2.COLOR_BGR2YUV)[..., 1]
    assert np.array_equal(planes[..., 0], bgr_u.astype(np.float32) - 128)
    assert np.array_equal(planes[..., 1], swapped_u.astype(np.float32) - 128)


def test_block_bits_read_the_largest_value_outside_position_zero():
    ll = np.random.default_rng(2).uniform(-400, 400, (32, 48)).astype(np.float32)
    blocks = ll.reshape(8, 4, 12, 4).transpose(0, 2, 1, 3).reshape(-1, 16)
    position = np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1
    carrier = np.abs(blocks[np.arange(len(blocks)), position])
    assert np.array_equal(block_bits(ll), (carrier % 36 > 18).astype(np.uint8))
    ones, total = decode_votes(block_bits(ll), 10)
    assert total.sum() == 96 and np.array_equal(total, [10] * 6 + [9] * 4)
    assert ones.sum() == block_bits(ll).sum()


def test_exact_tails_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    assert binomial_tail(101, 136) == pytest.approx(stats.binom.sf(100, 136, 0.5), rel=1e-9)
    assert binomial_tail(0, 32) == 1.0
    for overlap, n, k in ((50, 136, 68), (13, 32, 13), (25, 48, 27), (3, 48, 27)):
        assert hypergeometric_tail(overlap, n, k, k) == pytest.approx(
            stats.hypergeom.sf(overlap - 1, n, k, k), rel=1e-9)


def test_rank_overlap_resolves_ties_against_the_payload():
    payload = np.array([1, 1, 0, 0, 1, 0], np.uint8)
    # All fractions equal (a flat image): the worst tie-break puts the three ones on the
    # three payload zeros.
    assert rank_overlap(np.full(6, 0.9), payload) == 0
    assert rank_overlap(np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.3]), payload) == 3
    assert rank_overlap(np.array([0.9, 0.5, 0.5, 0.1, 0.5, 0.1]), payload) == 1 + 1


def test_plan_reads_native_first_then_generation_sizes():
    reads = plan_reads(512, 512)
    sizes = [size for size, _ in reads]
    assert sizes[0] == (512, 512) and len(reads[0][1]) == len(SCHEMES)
    assert (768, 768) in sizes and (1024, 1024) in sizes  # a x0.67 and a x0.5 downscale
    assert all(s.name != "sd1" for s in dict(reads)[(1024, 1024)])  # SD v1 stops at 768
    # A 12 MP photo: never native, only upscales of at most x4, longer side on the 8 grid.
    big = plan_reads(4000, 3000)
    assert (4000, 3000) not in dict(big)
    assert all(3000 / h <= 4.0 and w % 8 == 0 for (w, h), _ in big)
    assert plan_reads(120, 90) == []


# --- round trips -----------------------------------------------------------------------

@pytest.mark.parametrize("name", [s.name for s in SCHEMES])
def test_encoder_decoder_round_trip_is_exact(name):
    for seed in (0, 1):
        matches = read_marks(marked(name, seed=seed), [((512, 512), SCHEMES)])
        mine = next(m for m in matches if m.scheme.name == name)
        assert mine.matched == mine.bits  # every payload bit recovered
        others = [m for m in matches if m.scheme.payload != SCHEME[name].payload]
        assert all(m.p_value > 1e-4 for m in others)  # other payloads read at chance


@pytest.mark.parametrize("name", ["sd1", "sd2", "sdxl", "sdxl-rgb"])
def test_detector_reports_the_scheme_with_its_message(name):
    output = run(png(marked(name, seed=1)))
    assert [f.code for f in output.findings] == ["AI_WATERMARK"]
    finding = output.findings[0]
    scheme = SCHEME[name]
    assert finding.details["scheme"] == scheme.label
    assert finding.details["matched"] == finding.details["bits"] == len(scheme.bits)
    assert float(finding.details["p_value"]) < ALPHA and 0.8 <= finding.score <= 1.0
    assert scheme.payload in finding.message_en and "p = " in finding.message_en
    assert scheme.payload in finding.message_zh


@pytest.mark.parametrize("factor", [1.5, 0.75])
@pytest.mark.parametrize("name, size", [("sd1", (512, 512)), ("sdxl", (768, 640))])
def test_detected_after_rescale(name, size, factor):
    output = run(rescaled_png(marked(name, *size, seed=0), factor))
    assert output.findings, output.info["schemes"][name]
    assert output.findings[0].details["scheme"] == SCHEME[name].label
    assert output.findings[0].details["size"] == f"{size[0]}x{size[1]}"  # rescale undone


def test_detected_after_png_resave_through_pillow():
    first = encode(marked("sd1", 768, 640, seed=0), "PNG")
    with Image.open(io.BytesIO(first)) as im:
        again = encode(np.asarray(im.convert("RGB")), "PNG", optimize=True)
    assert run(again).findings[0].details["matched"] >= 130


def test_jpeg_erases_the_mark_and_is_no_evidence():
    # Documented limitation: DWT-DCT does not survive JPEG at quality 90.
    output = run(jpeg(marked("sd1", seed=0), 90), "claim.jpg")
    assert output.findings == []
    assert float(output.info["schemes"]["sd1"]["p_corrected"]) > ALPHA


# --- what must not be flagged ----------------------------------------------------------

def test_clean_generated_photos_are_not_flagged():
    # 4 seeds x 6 crops at different offsets and sizes (each crop shifts the block grid
    # and the bit numbering, so it decodes afresh); PNG and JPEG, as claims arrive.
    crops = [(0, 0, 512, 512), (3, 5, 640, 480), (11, 2, 384, 576), (7, 13, 448, 448),
             (20, 1, 576, 384), (5, 30, 400, 520)]
    for seed in range(4):
        base = textured_rgb(660, 600, seed=100 + seed)
        for i, (x, y, w, h) in enumerate(crops):
            part = np.ascontiguousarray(base[y:y + h, x:x + w])
            data = png(part) if i % 2 == 0 else jpeg(part, 95)
            output = run(data)
            assert output.findings == [], (seed, i, output.info["schemes"])
            # info always carries every scheme's best read
            assert set(output.info["schemes"]) == {s.name for s in SCHEMES}


def test_flat_photos_decode_as_chance_not_as_a_mark():
    # A flat grey or white photo reads the same bit everywhere: the test must not see a
    # payload in that (a binomial test of the majority decode would be biased here).
    for value in (128, 255, 0, 200):
        output = run(png(np.full((512, 512, 3), value, np.uint8)))
        assert output.findings == []
        assert all(float(s["p_value"]) > 0.01 for s in output.info["schemes"].values())


def test_too_small_photo_is_skipped():
    with pytest.raises(Skip, match="too small"):
        run(png(textured_rgb(150, 120, seed=6)))


# --- real files ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Extile1_txt2img_00022.png", "yimouwu_txt2img_00006.png",
                                  "bento170502_txt2img_00183.png",
                                  "bento170502_txt2img_00180.png"])
def test_real_sd_v1_outputs_are_detected(name):
    output = run((HERE / name).read_bytes(), name)
    assert [f.details["payload"] for f in output.findings] == ["StableDiffusionV1"]
    assert output.findings[0].details["matched"] >= 130  # measured: 130-136 of 136
    assert output.findings[0].score == pytest.approx(1.0)


def test_real_sd_output_without_the_mark_is_not_flagged():
    output = run((HERE / "vazkir_00001.png").read_bytes(), "vazkir_00001.png")
    assert output.findings == []
    assert float(output.info["schemes"]["sd1"]["p_corrected"]) > 0.01


def test_real_sd_output_detected_after_downscale():
    with Image.open(HERE / "Extile1_txt2img_00022.png") as im:
        rgb = np.asarray(im.convert("RGB"))
    output = run(rescaled_png(rgb, 0.75))
    assert output.findings and output.findings[0].details["size"] == "512x512"


def test_registered_and_picklable():
    import pickle

    (detector,) = create_detectors(["watermark"])
    assert isinstance(pickle.loads(pickle.dumps(detector)), WatermarkDetector)
    with pytest.raises(ValueError, match="alpha"):
        WatermarkDetector(alpha=0.0)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")
def test_no_finding_on_genuine_shared_photos():
    detector = WatermarkDetector()
    read = flagged = 0
    for folder in ("camera_exif", "catalog_and_buyer"):
        for path in sorted((SHARED / folder).rglob("*")):
            if path.suffix.lower() not in (".jpg", ".jpeg", ".heic", ".heif", ".png"):
                continue
            try:
                loaded = load_photo(path.read_bytes(), name=path.name)
                output = detector.run(loaded, CTX)
            except (PhotoError, Skip):
                continue
            read += 1
            flagged += bool(output.findings)
    assert read > 150 and flagged == 0
