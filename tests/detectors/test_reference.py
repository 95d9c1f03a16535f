"""The reference detector: REFERENCE_DERIVED when the claim photo is a merchant photo
(cropped, rescaled, rotated, mirrored, recoloured, recompressed, screenshot), and
REFERENCE_ALTERED with the changed regions when something was painted into it.

Forgeries are generated here from real photos (tests/data/reference, SOURCES.md): a crack,
a stain, a tear or a pasted patch, then a transform chain. The true box is where the edit
changed a pixel by more than 8 grey levels, carried through the same geometry.
"""

from __future__ import annotations

import math
import pickle
import re

import cv2
import numpy as np
import pytest
from conftest import DATA, jpeg, paste_patch, photo, textured_rgb

from refundlens import analyze, load_photo
from refundlens.analysis import run_detector
from refundlens.detectors import DetectorContext, Reference, detector_class
from refundlens.detectors.reference import (
    MIN_INLIERS,
    ReferenceDetector,
    compare_photos,
    describe_transform,
)
from refundlens.models import Region

REAL = DATA / "reference"
BUYERS = [REAL / f"alpro_buyer_{i}.jpg" for i in range(6)]
CATALOG = REAL / "alpro_catalog.jpg"


def pixels(path) -> np.ndarray:
    return load_photo(path).pixels


def context(*refs, kind: str = "listing") -> DetectorContext:
    return DetectorContext(references=tuple(
        Reference(ref, kind, f"ref-{i}") for i, ref in enumerate(refs)))


def run(claim, *refs, kind: str = "listing"):
    return run_detector(ReferenceDetector(), claim, context(*refs, kind=kind))


def codes(result) -> list[str]:
    return [f.code for f in result.findings]


# --- forgery factory: edits and transforms carry the truth mask along ------------------------


def truth_of(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    diff = np.abs(before.astype(np.int16) - after.astype(np.int16)).max(axis=2)
    return (diff > 8).astype(np.uint8) * 255


def crack(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    pts = np.array([[0.35, 0.3], [0.42, 0.38], [0.40, 0.47], [0.50, 0.55], [0.48, 0.66],
                    [0.56, 0.72]]) * [w, h]
    out = img.copy()
    cv2.polylines(out, [pts.astype(np.int32)], False, (25, 20, 18),
                  max(2, round(0.012 * min(h, w))), cv2.LINE_AA)
    return out


def stain(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (int(0.45 * w), int(0.5 * h)), (int(0.12 * w), int(0.09 * h)), 20, 0,
                360, 1.0, -1)
    alpha = cv2.GaussianBlur(mask, (0, 0), 0.03 * min(h, w))[..., None] * 0.7
    return (img * (1 - alpha) + np.array([130, 85, 30]) * alpha).astype(np.uint8)


def tear(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    angles = np.linspace(0, 2 * math.pi, 14, endpoint=False)
    radii = 0.1 * min(h, w) * (1 + 0.35 * np.sin(5 * angles))
    poly = np.stack([0.55 * w + radii * np.cos(angles), 0.4 * h + radii * np.sin(angles)], 1)
    out = img.copy()
    cv2.fillPoly(out, [poly.astype(np.int32)], (236, 236, 230), cv2.LINE_AA)
    return out


def patch(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return paste_patch(img, (int(0.3 * w), int(0.45 * h), int(0.2 * w), int(0.18 * h)),
                       seed=5)


def crop(img, mask, f):
    h, w = img.shape[:2]
    dx, dy = int(f * w), int(f * h)
    return img[dy:h - dy, dx:w - dx], mask[dy:h - dy, dx:w - dx]


def scale(img, mask, f):
    size = (round(img.shape[1] * f), round(img.shape[0] * f))
    return (cv2.resize(img, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC),
            cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST))


def rotate(img, mask, deg):
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST)
    s = math.sin(math.radians(abs(deg)))
    mx, my = int(h * s) + 1, int(w * s) + 1  # cut the corners the rotation exposed
    return img[my:h - my, mx:w - mx], mask[my:h - my, mx:w - mx]


def tone(img, mask, *, gain=1.2, offset=-20.0, gamma=0.8, saturation=1.3):
    f = (img.astype(np.float32) / 255.0) ** gamma
    luma = f @ np.float32([0.299, 0.587, 0.114])
    f = luma[..., None] + (f - luma[..., None]) * saturation
    return np.clip(f * 255 * gain + offset, 0, 255).astype(np.uint8), mask


def mirror(img, mask):
    return np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])


def screenshot(img, mask):
    """The photo full-width in a 1080×2340 phone viewer with status and tool bars."""
    canvas = np.full((2340, 1080, 3), 0, np.uint8)
    h, w = img.shape[:2]
    size = (1080, round(h * 1080 / w))
    y0 = (2340 - size[1]) // 2
    canvas[y0:y0 + size[1]] = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    full = np.zeros(canvas.shape[:2], np.uint8)
    full[y0:y0 + size[1]] = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    cv2.putText(canvas, "12:45", (40, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 3)
    cv2.rectangle(canvas, (0, 2200), (1080, 2340), (40, 40, 40), -1)
    cv2.putText(canvas, "Share   Edit   Delete", (180, 2290), cv2.FONT_HERSHEY_SIMPLEX, 1.5,
                (255, 255, 255), 3)
    return canvas, full


def box_of(mask: np.ndarray) -> Region:
    ys, xs = np.nonzero(mask)
    return Region(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                  int(ys.max() - ys.min() + 1))


def forge(base, edit, steps, quality=None):
    """(claim Photo, true box) for ``edit`` applied to ``base`` and then ``steps``."""
    edited = edit(base)
    img, mask = edited, truth_of(base, edited)
    for step in steps:
        img, mask = step(img, mask)
    data = jpeg(img, quality) if quality else jpeg(img, 95)
    return photo(data, "claim.jpg"), box_of(mask)


EDITS = {"crack": crack, "stain": stain, "tear": tear, "patch": patch}
CHAINS = {
    "crop10-scale0.7-q70": ([lambda i, m: crop(i, m, 0.1), lambda i, m: scale(i, m, 0.7)], 70),
    "scale1.8-rotate3-q80": ([lambda i, m: scale(i, m, 1.8), lambda i, m: rotate(i, m, 3)],
                             80),
    "filter-q75": ([lambda i, m: tone(i, m)], 75),
    "screenshot-q85": ([lambda i, m: crop(i, m, 0.05), screenshot], 85),
    "mirror-darker-q90": ([mirror, lambda i, m: tone(i, m, gain=0.8, offset=0, gamma=1.2,
                                                      saturation=0.7)], 90),
}


# --- registration and contract -------------------------------------------------------------


def test_registered_under_its_name():
    assert detector_class("reference") is ReferenceDetector
    assert ReferenceDetector.codes == ("REFERENCE_DERIVED", "REFERENCE_ALTERED")


def test_skips_without_references(make_photo):
    result = run_detector(ReferenceDetector(), make_photo(), DetectorContext())
    assert result.status == "skipped"
    assert result.error == "no reference photos given"


def test_tiny_claim_compares_to_nothing():
    tiny = photo(jpeg(np.full((1, 1, 3), 128, np.uint8)), "tiny.jpg")
    result = run(tiny, photo(jpeg(textured_rgb(320, 240))))
    assert result.status == "ok" and result.findings == ()
    assert result.info["references"][0]["reason"] == "too small to compare"


def test_picklable_without_its_cache():
    detector = ReferenceDetector(cache_size=3)
    ref = photo(jpeg(textured_rgb(400, 300, seed=3)))
    detector.run(ref, context(ref))
    clone = pickle.loads(pickle.dumps(detector))
    assert clone.cache_size == 3 and len(clone._cache) == 0 and len(detector._cache) == 1
    with pytest.raises(ValueError, match="cache_size"):
        ReferenceDetector(cache_size=-1)


# --- derived copies ------------------------------------------------------------------------


def test_recompressed_crop_is_derived_without_changes():
    base = pixels(BUYERS[0])
    claim = photo(jpeg(base[30:-30, 35:-35], 70), "crop.jpg")
    reference = load_photo(BUYERS[0])
    result = run(claim, reference, kind="shipping")
    assert codes(result) == ["REFERENCE_DERIVED"]
    derived = result.findings[0]
    assert derived.score >= 0.9
    assert derived.details["reference"] == "ref-0"
    assert derived.details["reference_kind_zh"] == "发货"
    assert derived.details["inliers"] >= MIN_INLIERS
    assert derived.details["reference_sha256"] == reference.sha256
    assert "cropped" in derived.details["transform_en"]
    assert "裁剪" in derived.details["transform_zh"]
    assert "scaled" not in derived.details["transform_en"]  # a crop keeps the scale
    # reference px (35, 30) is claim px (0, 0)
    m = np.array(derived.details["transform"])
    x, y, z = m @ [35.0, 30.0, 1.0]
    assert abs(x / z) < 1.0 and abs(y / z) < 1.0
    assert "shipping photo ref-0" in derived.message_en
    assert "?" not in derived.message_en and "?" not in derived.message_zh


@pytest.mark.parametrize("chain", sorted(CHAINS))
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_listing_photo_is_derived_and_altered_where_edited(edit, chain):
    steps, quality = CHAINS[chain]
    claim, truth = forge(pixels(BUYERS[0]), EDITS[edit], steps, quality)
    result = run(claim, load_photo(BUYERS[0]))
    assert codes(result) == ["REFERENCE_DERIVED", "REFERENCE_ALTERED"], result.info
    altered = result.findings[1]
    assert altered.region.iou(truth) >= 0.6, (altered.region, truth)
    assert altered.details["region_count"] == len(altered.details["regions"]) >= 1
    assert 0 < altered.details["area_percent"] < 15
    assert altered.map.dtype == np.float32 and altered.map.ndim == 2
    assert 0.0 <= altered.map.min() and altered.map.max() <= 1.0
    assert "?" not in altered.message_en and "?" not in altered.message_zh


def test_small_catalog_photo_edited_and_upscaled():
    # 198-px listing photo, tear painted, enlarged ×1.8 (the claim is larger than it)
    claim, truth = forge(pixels(CATALOG), tear, [lambda i, m: scale(i, m, 1.8)], 80)
    result = run(claim, load_photo(CATALOG))
    assert codes(result) == ["REFERENCE_DERIVED", "REFERENCE_ALTERED"]
    assert result.findings[1].region.iou(truth) >= 0.6
    assert "scaled ×1.80" in result.findings[0].details["transform_en"]


def smooth_fruit(size: int = 200, *, seed: int = 0) -> np.ndarray:
    """A nearly textureless product on white: a shaded orange ellipse whose pores are
    fainter than JPEG noise, and a dark stem."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = size / 2
    r2 = ((xx - c) / (0.42 * size)) ** 2 + ((yy - 1.04 * c) / (0.45 * size)) ** 2
    pores = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 0.8)
    shade = 1.0 - 0.25 * r2 - 0.1 * (xx - c) / size + 0.04 * pores
    body = np.array([250, 170, 30], np.float32) * shade[..., None]
    inside = cv2.GaussianBlur((r2 < 1).astype(np.float32), (0, 0), 0.7)[..., None]
    img = 255.0 * (1 - inside) + body * inside
    cv2.circle(img, (int(c), int(0.1 * size)), max(2, size // 40), (60, 50, 20), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("steps", [[lambda i, m: crop(i, m, 0.05)],
                                   [lambda i, m: scale(i, m, 1.6), lambda i, m: rotate(i, m, 3)]])
def test_crack_over_most_of_a_smooth_products_texture_is_derived_and_altered(steps):
    # The crack is most of what has texture in the claim; the reference's own texture
    # (outline, stem) is intact, and that is what derivation is judged on.
    base = smooth_fruit()
    claim, truth = forge(base, crack, steps, 70)
    result = run(claim, photo(jpeg(base, 90), "fruit.jpg"))
    assert codes(result) == ["REFERENCE_DERIVED", "REFERENCE_ALTERED"], result.info
    assert result.info["references"][0]["agreement"] >= 0.9
    assert result.findings[1].region.iou(truth) >= 0.6


def test_large_claim_regions_in_native_pixels():
    # a 12 MP-class claim (3000 × 2250) made from a 640-px photo: boxes come back in the
    # claim's own pixels
    base = textured_rgb(640, 480, seed=21)
    claim, truth = forge(base, crack, [lambda i, m: scale(i, m, 4.6875)], 90)
    assert (claim.width, claim.height) == (3000, 2250)
    result = run(claim, photo(jpeg(base, 95)))
    assert codes(result) == ["REFERENCE_DERIVED", "REFERENCE_ALTERED"]
    assert result.findings[1].region.iou(truth) >= 0.6


def test_screenshot_is_described_as_a_larger_frame():
    claim, _ = forge(pixels(BUYERS[2]), stain, [screenshot], 85)
    result = run(claim, load_photo(BUYERS[2]))
    derived = result.findings[0]
    assert "inside a larger frame" in derived.details["transform_en"]
    assert "scaled ×3.10" in derived.details["transform_en"]  # 348 px → 1080 px


def test_mirrored_copy_is_found_and_described():
    claim, _ = forge(pixels(BUYERS[4]), crack, [mirror], 90)
    result = run(claim, load_photo(BUYERS[4]))
    assert codes(result) == ["REFERENCE_DERIVED", "REFERENCE_ALTERED"]
    details = result.findings[0].details
    assert details["mirrored"] is True
    assert details["transform_en"].startswith("mirrored")
    assert ReferenceDetector(mirror=False).run(claim, context(load_photo(BUYERS[4]))) \
        .findings == []


def test_real_splice_on_a_real_photo():
    # OpenCV's ELA sample: the notebook photo with a penguin sticker, re-framed (sizes
    # differ). The true box was measured on ela_modified.jpg: connected components of luma
    # > 100 (body and feet) inside the notebook, x 290–521, y 138–382.
    claim = load_photo(REAL / "ela_modified.jpg")
    result = run(claim, load_photo(REAL / "ela_original.jpg"))
    assert codes(result) == ["REFERENCE_DERIVED", "REFERENCE_ALTERED"]
    assert result.findings[1].region.iou(Region(290, 138, 232, 245)) >= 0.6
    assert result.findings[1].details["region_count"] == 1
    assert "cropped" in result.findings[0].details["transform_en"]


def test_analysis_mask_comes_from_the_change_map():
    claim, truth = forge(pixels(BUYERS[0]), tear, [lambda i, m: crop(i, m, 0.1)], 85)
    analysis = analyze(claim, detectors=[ReferenceDetector()],
                       context=context(load_photo(BUYERS[0])))
    assert analysis.risk.level == "high"
    mask = analysis.mask()
    assert mask.shape == (claim.height, claim.width)
    inside = mask[truth.y:truth.y + truth.height, truth.x:truth.x + truth.width]
    assert inside.max() == 255
    assert (mask > 127).mean() < 0.1  # the rest of the photo stays dark
    ys, xs = np.nonzero(mask > 127)
    assert Region(int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1), int(np.ptp(ys) + 1)) \
        .iou(truth) >= 0.5


def test_only_the_source_reference_is_matched():
    claim, _ = forge(pixels(BUYERS[1]), stain, [lambda i, m: crop(i, m, 0.08)], 80)
    refs = [load_photo(p) for p in (CATALOG, BUYERS[0], BUYERS[1], REAL / "box.png")]
    result = run(claim, *refs)
    assert [f.details["reference"] for f in result.findings] == ["ref-2", "ref-2"]
    info = result.info["references"]
    assert [r["derived"] for r in info] == [False, False, True, False]
    assert {r["reference"] for r in info} == {"ref-0", "ref-1", "ref-2", "ref-3"}


# --- genuine photos are not derived ----------------------------------------------------------


@pytest.mark.parametrize("buyer", BUYERS, ids=lambda p: p.stem)
def test_buyer_photo_and_catalog_photo_of_one_product_are_not_derived(buyer):
    catalog, genuine = load_photo(CATALOG), load_photo(buyer)
    assert run(genuine, catalog).findings == ()
    assert run(catalog, genuine).findings == ()


def test_two_buyer_photos_of_one_product_are_not_derived():
    # buyer_0 and buyer_3 are near-identical framings of one carton in one hand (the
    # hardest genuine pair of this product on the bench)
    a, b = load_photo(BUYERS[0]), load_photo(BUYERS[3])
    for claim, ref in ((a, b), (b, a)):
        result = run(claim, ref)
        assert result.findings == ()
        assert result.info["references"][0]["agreement"] < 0.7


def test_box_in_a_scene_is_not_the_box_photo():
    scene, box = load_photo(REAL / "box_in_scene.png"), load_photo(REAL / "box.png")
    assert run(scene, box).findings == ()
    assert run(box, scene).findings == ()


def test_unrelated_reference_is_not_matched():
    result = run(load_photo(BUYERS[0]), load_photo(REAL / "box.png"))
    assert result.findings == ()
    assert result.info["references"][0]["inliers"] < MIN_INLIERS
    generated = run(photo(jpeg(textured_rgb(640, 480, seed=1))),
                    photo(jpeg(textured_rgb(640, 480, seed=2))))
    assert generated.findings == ()


def test_original_photo_against_its_edited_copy_is_not_derived_from_it():
    # the sticker covers a third of the texture: the merchant photo is not "derived" from
    # the buyer's edit (agreement under the threshold) — direction matters
    result = run(load_photo(REAL / "ela_original.jpg"), load_photo(REAL / "ela_modified.jpg"))
    assert result.findings == ()


# --- words ---------------------------------------------------------------------------------


def test_describe_transform_reads_scale_rotation_and_crop():
    base = textured_rgb(600, 400, seed=8)
    m = cv2.getRotationMatrix2D((300, 200), -4.0, 1.5)  # OpenCV: negative = clockwise
    warped = cv2.warpAffine(base, m, (900, 600))
    reference = photo(jpeg(base, 95))
    match = compare_photos(photo(jpeg(warped, 90)), reference)
    assert match.derived
    corners = np.array([[0, 0, 1], [600, 0, 1], [600, 400, 1], [0, 400, 1]], float)
    found = corners @ match.transform.T
    assert np.abs(found[:, :2] / found[:, 2:] - corners @ m.T).max() < 1.0
    en, zh = describe_transform(match, reference)
    angle = float(re.search(r"rotated ([0-9.]+)° clockwise", en).group(1))
    assert abs(angle - 4.0) <= 0.15
    assert "scaled ×1.50" in en and "cropped" in en and "inside a larger frame" in en
    assert "缩放 ×1.50" in zh and "顺时针旋转" in zh and "裁剪" in zh
