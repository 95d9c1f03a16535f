"""Reference comparison: is the claim photo made from the merchant's own photo, and what
was changed in it?

The commonest forged "damage" photo is the merchant's listing photo (or shipping photo)
with a crack, tear, dent or stain painted in by an AI editing app, then cropped, rescaled,
rotated a little, mirrored, recoloured with a filter, recompressed, or shown in a phone
screenshot. For every reference in the context this detector decides whether the claim
photo is *derived* from it; if so it aligns the two and outlines what changed.

How:

1. **Features.** Each photo gets a working copy (longest side 512–1024 px; small photos are
   enlarged so ORB's 31-px patches fit, never reduced below native) and ORB keypoints [1].
2. **One transform.** Matches passing Lowe's ratio test [2] are fitted by a RANSAC
   similarity and a MAGSAC++ homography [3]; the better one's inliers give a least-squares
   homography. A homography that bends the frame strongly (corner scales differing by more
   than ×1.5) is refused: edits and screenshots do not do that, a new viewpoint does. When
   too few matches agree, the mirrored claim is tried.
3. **Dense proof.** Keypoints are not proof: two genuine photos of one printed carton share
   hundreds of keypoints that one homography fits. The reference is warped onto the claim,
   the alignment refined by a dense Lucas–Kanade step [4], and two tests over the whole
   overlap must pass, both measured at the grain of the coarser photo's native pixel:

   - *appearance*: at least ``MIN_AGREEMENT`` of the windows where the reference has
     texture correlate (zero-mean NCC) above ``NCC_AGREE`` (texture only the claim has is
     an addition, left to step 4). NCC per window ignores tone curves, filters and vignettes; a
     recompressed, rescaled copy keeps it near 1, while another shot differs in fine
     structure, blur, noise, lighting and background;
   - *geometry*: in at least ``MIN_PRECISION`` of the windows with texture in two
     directions the residual shift is under half a native pixel. A copy has one exact
     transform; a second shot has parallax and lens differences no single one absorbs.
     Where under ``MIN_LK_WINDOWS`` of the overlap has such texture (a smooth fruit on
     white) this test abstains. A dense refinement is kept only if it makes the windows
     more exact without lowering the appearance agreement.

   The overlap is the reference's footprint cut to the claim's photo rectangle (out from
   the matched points to the first uniform row/column — a screenshot's canvas — or the
   frame edge). The dense steps run on that footprint at no more than
   ``ANALYSIS_MAX_SIDE`` px.
4. **Changes.** The aligned reference is given the claim's colours by a robust photometric
   model (per-channel tone curve, 3×4 colour matrix, second curve for clipping, a smooth
   multiplicative gain field for vignettes, and a residual 8×8×8 colour table, as phone
   filters use, kept only where the whole photo agrees on it) so filters cancel. The
   change is how far each claim pixel lies outside the range of the reference within one
   grain (luma at full, chroma at half resolution, as JPEG stores it), less a fraction of
   the local contrast; thresholded at ``K_NOISE`` robust σ of the residual [5] with
   hysteresis [6], cleaned, and grouped (a crack drawn in several strokes and the two
   shaded halves of a dent are one region).

Cannot:
    - tell a copy from a frame of the same burst or video, or from the HDR and normal
      versions one phone saves of one capture (bench: the iPhone HDR pair is called
      derived, correctly in substance: one exposure burst);
    - find a reference warped non-rigidly (liquify), or under a strong perspective
      (a photo of a screen held at a steep angle);
    - see a change under about 0.3 % of the frame's long side (the analysis grid), or one
      that shifts colours by less than the recompression noise, or a recolouring of a
      colour that the change covers almost entirely (the colour table absorbs it);
    - call a photo derived when the change covers most of the reference's texture (under
      ``MIN_AGREEMENT`` intact);
    - align a nearly textureless product whose working copy yields too few ORB corners
      (there is no keypoint-free fallback: on such photos the outline is all that could
      be compared, and two shots of one smooth object in one pose share it).

Known false positives:
    - ALTERED where the buyer only added a sticker, text or frame: true changes, not damage;
      the regions say where and a person judges;
    - DERIVED for the near-identical captures above.

References:
    [1] E. Rublee et al., "ORB: an efficient alternative to SIFT or SURF", ICCV 2011.
    [2] D. G. Lowe, "Distinctive image features from scale-invariant keypoints", IJCV
        60(2), 2004, §7.1 (ratio test, 0.8).
    [3] D. Barath et al., "MAGSAC++, a fast, reliable and accurate robust estimator",
        CVPR 2020 (OpenCV ``USAC_MAGSAC``).
    [4] S. Baker, I. Matthews, "Lucas-Kanade 20 years on: a unifying framework", IJCV
        56(3), 2004, §2.1.
    [5] P. J. Huber, "Robust estimation of a location parameter", Ann. Math. Statist. 35,
        1964 (Huber weights, k = 1.345); F. R. Hampel, JASA 69, 1974 (σ ≈ 1.4826·MAD).
    [6] J. Canny, "A computational approach to edge detection", IEEE PAMI 8(6), 1986,
        §V (hysteresis thresholds).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..models import Finding, Photo, Region
from .base import Detector, DetectorContext, DetectorOutput, Reference, Skip

__all__ = ["PreparedImage", "ReferenceDetector", "ReferenceMatch", "compare_photos",
           "compare_prepared", "describe_transform", "prepare_image"]

# --- working copies and features ----------------------------------------------------------
#: Longest side of the working copy: enough for ORB on a 12 MP photo, and reached from
#: 12 MP by an integer area reduction (fast path, exact coordinates).
WORK_MAX_SIDE = 1024
#: Smaller photos are enlarged to this: ORB needs 31-px patches and a pyramid, and listing
#: photos are often 200–400 px (GroceryStore: catalog 198 px, buyer 348 px).
WORK_MIN_SIDE = 512
#: Longest side of the grid the dense steps run on (the footprint only). 640 px keeps them
#: at ~50 ms at 12 MP on one core; a 0.5 %-of-frame crack stays ≥ 3 px wide.
ANALYSIS_MAX_SIDE = 640
#: Below this (native px) there is nothing to compare.
MIN_NATIVE_SIDE = 32
#: ORB keypoints per photo. Brute-force Hamming matching is quadratic: 1000 × 1000 costs
#: ~10 ms on one core, 2000 × 2000 ~40 ms; a derived photo keeps hundreds of inliers.
ORB_FEATURES = 1000
#: FAST threshold below OpenCV's 20, so dark, low-contrast products still yield corners;
#: and the fainter one used when that finds under half of ORB_FEATURES.
ORB_FAST_THRESHOLD = 12
ORB_FAINT_THRESHOLD = 5
#: Lowe's ratio test [2] §7.1.
RATIO = 0.8
#: Inlier distance in working px: ORB corners sit to ~1 px at the pyramid levels used;
#: 3 px is OpenCV's default for homographies.
REPROJ_THRESHOLD = 3.0
MIN_MATCHES = 12
#: Inliers needed before any dense test: 20 fix an 8-DOF homography with margin; unrelated
#: photos give ≤ 14 chance inliers (bench, 300 unrelated pairs).
MIN_INLIERS = 20
#: Largest ratio of the transform's local scale between frame corners. A phone held ~15°
#: off a screen gives ≤ 1.3; beyond 1.5 it is a different viewpoint.
MAX_ANISOTROPY = 1.5

# --- dense derivation test (step 3); tuned on the bench's "tune" split only --------------
#: Blur (σ) and window side of the correlation test, in native pixels of the coarser photo.
#: 0.6 px of blur removes JPEG and resampling noise but keeps the fine structure a second
#: shot does not reproduce; 6-px windows are local enough for parallax to show. (Tune
#: split, 210 forgeries vs 420 genuine pairs: this pair gave the widest gap of the 10 tried.)
NCC_BLUR = 0.6
NCC_WINDOW = 6
#: Least blur (σ, grid px). Where a photo is as sharp as the grid, bilinear/area
#: resampling blurs it by an amount that depends on the sub-pixel phase, differently in
#: the two photos, and the half-pixel test fails on exact copies (found on the report
#: split's first run: camera photos of 450–1600 px, precision 0.64–0.80 at σ 0.6).
ALIAS_BLUR = 1.0
#: Local standard deviation (grey levels) above which a window has texture: ~4× the
#: residual of a blurred q70 JPEG.
INFORMATIVE_STD = 4.0
#: A window agrees when its zero-mean NCC exceeds this.
NCC_AGREE = 0.9
#: Fraction of the windows textured in the reference that must agree. Tune split: derived
#: ≥ 0.86 (edits included), genuine same-product pairs ≤ 0.58; the threshold sits in the
#: gap.
MIN_AGREEMENT = 0.7
#: Smallest eigenvalue of the windowed structure tensor (grey levels² per px) for a
#: Lucas–Kanade shift estimate: texture in two directions.
LK_MIN_EIGEN = 4.0
#: Residual shift (native px of the coarser photo) that counts as exact: half a pixel.
PRECISE_SHIFT = 0.5
#: Fraction of two-direction windows that must be exact. Tune split: derived ≥ 0.87,
#: genuine pairs that reached this test ≤ 0.73.
MIN_PRECISION = 0.8
#: The geometry test abstains when under this fraction of the overlap has two-direction
#: texture (a smooth product on white): the appearance test decides alone.
MIN_LK_WINDOWS = 0.02
#: Above this precision the keypoint transform is already exact and the dense refinement
#: pass is skipped (it would move the model by hundredths of a pixel).
SKIP_REFINE = 0.97
#: Smallest part of the reference (by area) that must be visible in the claim.
MIN_COVERAGE = 0.1
#: A claim row/column whose grey range over the matched span is at most this is a uniform
#: canvas (screenshot letterbox): JPEG ringing in a flat area stays within ±3 levels.
UNIFORM_LINE_RANGE = 6

# --- changed regions (step 4) ----------------------------------------------------------
#: Seed threshold in robust σ of the luma residual (6σ: a Gaussian tail of 2e-9 per px;
#: JPEG residuals are heavier-tailed) and its floor in grey levels (~5 % of full scale, a
#: change plainly visible on a phone). Tune split with ``--per-reference 2`` (70 unedited
#: copies, 140 edits): 10 / 5σ put a region on 3 copies, 14 / 6σ on 1, at the cost of 1
#: edit found; with the default ``--per-reference 3`` both put none on 71 copies and find
#: the same 203 of 209 edits (IoU 0.758 → 0.750).
K_NOISE = 6.0
MIN_CHANGE = 14.0
#: Growing threshold of the hysteresis [6], in robust σ and grey levels: regions extend to
#: the soft rim of a stain.
K_LOW = 2.5
MIN_CHANGE_LOW = 5.0
#: Blur before differencing, in grains: JPEG ringing alternates in sign over ~2 px and
#: averages out; a painted crack keeps its sign.
CHANGE_BLUR = 1.0
#: Part of the local contrast (max − min of the reference within one grain) a change must
#: exceed: recompression overshoot and filter clipping grow with edge contrast. 0.2 took
#: unedited copies with a region from 13 % to 0 % on the tune split.
EDGE_TOLERANCE = 0.2
#: The same for chroma, which JPEG keeps at a quarter of the samples: thin coloured text
#: loses most of its colour contrast at q70.
CHROMA_EDGE_TOLERANCE = 0.4
#: Smallest changed group, as a fraction of the overlap (0.05 %: a 10 × 40 px crack in a
#: 1024 × 768 frame).
MIN_REGION_FRACTION = 0.0005
#: Pieces closer than this fraction of the frame diagonal are one region.
GROUP_DISTANCE = 0.04
#: Photometric samples: 6000 made the tone curves noisy enough for false regions on the
#: tune split; 12000 did not.
PHOTOMETRY_SAMPLES = 12000

_KIND_ZH = {"listing": "商品", "shipping": "发货"}
_EMPTY = np.empty((0, 2), np.float32)


# --- working copies ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """A photo's working copy and ORB features, reusable across comparisons."""

    rgb: np.ndarray  # working RGB uint8
    gray: np.ndarray  # working luma uint8
    scale: float  # working px per native px
    width: int  # native size
    height: int
    points: np.ndarray  # (N, 2) float32 keypoints, working px
    descriptors: np.ndarray | None  # (N, 32) uint8
    _mirror: list = field(default_factory=list, repr=False)  # lazily: mirrored features

    def mirrored_features(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Keypoints and descriptors of the left–right mirrored working copy (cached)."""
        if not self._mirror:
            self._mirror.append(_features(np.ascontiguousarray(self.gray[:, ::-1])))
        return self._mirror[0]


def _features(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    keypoints, descriptors = cv2.ORB_create(
        nfeatures=ORB_FEATURES, fastThreshold=ORB_FAST_THRESHOLD).detectAndCompute(gray, None)
    if len(keypoints) < ORB_FEATURES // 2:
        # A smooth product (fruit, a plain case) or a low-contrast filter leaves few
        # corners at the usual threshold: ask for fainter ones.
        keypoints, descriptors = cv2.ORB_create(
            nfeatures=ORB_FEATURES, fastThreshold=ORB_FAINT_THRESHOLD).detectAndCompute(gray,
                                                                                       None)
    return np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2), descriptors


def prepare_image(pixels: np.ndarray) -> PreparedImage:
    """Working copy (longest side in [WORK_MIN_SIDE, WORK_MAX_SIDE]) and ORB features of
    RGB ``uint8`` pixels."""
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected RGB uint8 pixels (H, W, 3), got {pixels.dtype} "
                         f"{pixels.shape}")
    height, width = pixels.shape[:2]
    longest = max(height, width)
    if longest > WORK_MAX_SIDE:
        # An integer factor takes INTER_AREA's fast box path (~2× faster at 12 MP) and
        # keeps coordinates exact: x_work = x_native / factor.
        factor = math.ceil(longest / WORK_MAX_SIDE)
        size = (max(1, width // factor), max(1, height // factor))
        small = cv2.resize(pixels[:size[1] * factor, :size[0] * factor], size,
                           interpolation=cv2.INTER_AREA)
        scale = 1.0 / factor
    elif longest < WORK_MIN_SIDE:
        size = (max(1, round(width * WORK_MIN_SIDE / longest)),
                max(1, round(height * WORK_MIN_SIDE / longest)))
        small = cv2.resize(pixels, size, interpolation=cv2.INTER_CUBIC)
        scale = size[0] / width
    else:
        small, scale = np.ascontiguousarray(pixels), 1.0
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return PreparedImage(small, gray, scale, width, height, *_features(gray))


# --- the result ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ReferenceMatch:
    """One claim photo against one reference photo.

    ``transform`` maps reference pixels to claim pixels (native, 3×3); ``regions`` are the
    changed regions in claim pixels, largest first; ``map`` is the change likelihood
    (float32 0–1, 0.5 at the seed threshold) over the whole claim frame at the analysis
    grid; ``coverage`` the part of the reference visible; ``frame_fraction`` the part of
    the claim frame it fills.
    """

    derived: bool
    reason: str
    matches: int = 0
    inliers: int = 0
    mirrored: bool = False
    transform: np.ndarray | None = None
    agreement: float = 0.0
    precision: float | None = None
    coverage: float = 0.0
    frame_fraction: float = 0.0
    regions: tuple[Region, ...] = ()
    changed_fraction: float = 0.0
    peak: float = 0.0
    map: np.ndarray | None = field(default=None, repr=False)

    def to_info(self) -> dict[str, Any]:
        return {"derived": self.derived, "reason": self.reason, "matches": self.matches,
                "inliers": self.inliers, "mirrored": self.mirrored,
                "agreement": round(self.agreement, 4),
                "precision": None if self.precision is None else round(self.precision, 4),
                "coverage": round(min(self.coverage, 1.0), 4),
                "regions": len(self.regions)}


# --- geometry ------------------------------------------------------------------------------


def _match(ref_descriptors: np.ndarray | None, ref_points: np.ndarray,
           claim_descriptors: np.ndarray | None, claim_points: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    if ref_descriptors is None or claim_descriptors is None or len(ref_descriptors) < 2 \
            or len(claim_descriptors) < 2:
        return _EMPTY, _EMPTY
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(ref_descriptors, claim_descriptors, k=2)
    good = [(p[0].queryIdx, p[0].trainIdx) for p in pairs
            if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if not good:
        return _EMPTY, _EMPTY
    idx = np.array(good)
    return ref_points[idx[:, 0]], claim_points[idx[:, 1]]


def _resampling(sx: float, sy: float) -> np.ndarray:
    """Coordinates after resizing by (sx, sy): OpenCV maps pixel centres, so
    x' = (x + 0.5)·sx − 0.5. Ignoring the half pixel shifts a ×0.5 copy by 0.25 px, which
    the half-pixel precision test would see."""
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


def _project(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    h = np.hstack([points.astype(np.float64), np.ones((len(points), 1))]) @ matrix.T
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate fits give inf/nan,
        return h[:, :2] / h[:, 2:3]  # which then fail every distance test


def _plausible(matrix: np.ndarray | None, width: float, height: float) -> bool:
    """A transform an edit or a screenshot can make: it keeps the frame in front of the
    camera and bends it by at most MAX_ANISOTROPY between corners."""
    if matrix is None:
        return False
    scales = _local_scales(matrix, width, height)
    return bool(scales.min() > 0 and scales.max() / scales.min() <= MAX_ANISOTROPY)


def _fit(src: np.ndarray, dst: np.ndarray, width: float, height: float
         ) -> tuple[np.ndarray, np.ndarray] | None:
    """The plausible model with most inliers among a RANSAC similarity, a MAGSAC++
    homography [3] and least-squares homographies refitted on their inliers (a homography
    also fits every similarity). Few true matches on a smooth, repetitive surface (a
    fruit) can let a wrong homography collect more chance inliers than the similarity."""
    candidates = []
    sim, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                         ransacReprojThreshold=REPROJ_THRESHOLD,
                                         maxIters=2000, confidence=0.999, refineIters=10)
    if sim is not None:
        candidates.append(np.vstack([sim, [0.0, 0.0, 1.0]]))
    if len(src) >= 8:
        hom, _ = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, REPROJ_THRESHOLD,
                                    maxIters=2000, confidence=0.999)
        if hom is not None and abs(hom[2, 2]) > 1e-12:
            candidates.append(hom / hom[2, 2])
    best, fallback = None, None
    for matrix in candidates:
        inliers = np.linalg.norm(_project(matrix, src) - dst, axis=1) < REPROJ_THRESHOLD
        options = [(matrix, inliers)]
        if inliers.sum() >= 8:
            refined, _ = cv2.findHomography(src[inliers], dst[inliers], 0)
            if refined is not None and abs(refined[2, 2]) > 1e-12:
                refined = refined / refined[2, 2]
                again = np.linalg.norm(_project(refined, src) - dst, axis=1) < REPROJ_THRESHOLD
                options.insert(0, (refined, again))
        for option in options:
            if _plausible(option[0], width, height):
                if best is None or option[1].sum() > best[1].sum():
                    best = option
            elif fallback is None or option[1].sum() > fallback[1].sum():
                fallback = option
    return best if best is not None else fallback


def _jacobian(matrix: np.ndarray, x: float, y: float) -> np.ndarray | None:
    d = matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2]
    if abs(d) <= 1e-9:
        return None
    px = (matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]) / d
    py = (matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]) / d
    return np.array([[matrix[0, 0] - px * matrix[2, 0], matrix[0, 1] - px * matrix[2, 1]],
                     [matrix[1, 0] - py * matrix[2, 0], matrix[1, 1] - py * matrix[2, 1]]]) / d


def _local_scales(matrix: np.ndarray, width: float, height: float) -> np.ndarray:
    """sqrt|det J| of a homography at the four corners and the centre of a frame (all 0
    when the frame crosses the horizon)."""
    out = []
    for x, y in ((0, 0), (width, 0), (width, height), (0, height), (width / 2, height / 2)):
        d = matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2]
        jac = _jacobian(matrix, x, y)
        if jac is None or d * matrix[2, 2] <= 0:
            return np.zeros(5)
        out.append(math.sqrt(abs(np.linalg.det(jac))))
    return np.array(out)


def _content_box(gray: np.ndarray, points: np.ndarray) -> tuple[int, int, int, int]:
    """The claim's photo rectangle (x0, y0, x1, y1): from the box of the matched points
    out to the first uniform row/column (a screenshot's canvas) or the frame edge."""
    h, w = gray.shape
    x0, y0 = np.floor(points.min(axis=0)).astype(int)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, max(x1, x0 + 1)), min(h, max(y1, y0 + 1))
    span = gray[:, x0:x1]
    uniform_rows = (span.max(axis=1).astype(np.int16) - span.min(axis=1)) <= UNIFORM_LINE_RANGE
    span = gray[y0:y1, :]
    uniform_cols = (span.max(axis=0).astype(np.int16) - span.min(axis=0)) <= UNIFORM_LINE_RANGE

    def extend(uniform: np.ndarray, start: int, step: int, stop: int) -> int:
        i = start
        while i != stop and not uniform[i if step > 0 else i - 1]:
            i += step
        return i

    return (extend(uniform_cols, x0, -1, 0), extend(uniform_rows, y0, -1, 0),
            extend(uniform_cols, x1, 1, w), extend(uniform_rows, y1, 1, h))


# --- photometry ----------------------------------------------------------------------------


def _group_medians(keys: np.ndarray, values: np.ndarray, n_keys: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Median of ``values`` ((N,) or (N, C)) per integer key in [0, n_keys), and the
    counts: one sort per column of (key, value) packed into a float."""
    counts = np.bincount(keys, minlength=n_keys)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    middle = np.minimum(starts + counts // 2, max(len(keys) - 1, 0))
    columns = values.reshape(len(keys), -1).astype(np.float64)
    out = np.zeros((n_keys, columns.shape[1]), np.float64)
    if len(keys):
        base = keys.astype(np.float64) * 8192.0
        for c in range(columns.shape[1]):
            packed = base + np.clip(columns[:, c], -2048.0, 2047.0) + 2048.0
            out[:, c] = np.sort(packed)[middle] - np.arange(n_keys) * 8192.0 - 2048.0
    return out.reshape((n_keys,) + values.shape[1:]), counts


def _isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for value, weight in zip(values, weights):
        blocks.append([float(value), float(weight), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.repeat([b[0] for b in blocks], [int(b[2]) for b in blocks])


def _tone_lut(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """A monotone 256-entry curve from ``src`` levels (uint8) to ``dst`` levels: the
    median of ``dst`` per 8-level bin of ``src`` (robust to the changed minority), made
    non-decreasing by count-weighted isotonic regression, the end slopes continued."""
    bins = (src >> 3).astype(np.intp)
    medians, counts = _group_medians(bins, dst, 32)
    centres = np.bincount(bins, weights=src.astype(np.float64), minlength=32) / \
        np.maximum(counts, 1)
    enough = counts >= max(20, len(src) // 1000)  # fewer samples: an unstable median
    if np.count_nonzero(enough) < 2:
        shift = float(np.median(dst) - np.median(src))
        return np.clip(np.arange(256, dtype=np.float32) + shift, 0, 255)
    xs = centres[enough]
    ys = _isotonic(medians[enough], counts[enough])
    levels = np.arange(256, dtype=np.float64)
    curve = np.interp(levels, xs, ys)
    # Beyond the levels seen, continue the end slopes (bounded) rather than clamp: a rare
    # bright or dark colour still follows the filter's curve.
    for end, inner, side in ((0, 1, levels < xs[0]), (-1, -2, levels > xs[-1])):
        slope = (ys[end] - ys[inner]) / max(xs[end] - xs[inner], 1e-6)
        curve[side] = ys[end] + min(max(slope, 0.25), 4.0) * (levels[side] - xs[end])
    return np.clip(curve, 0, 255).astype(np.float32)


def _huber_solve(a: np.ndarray, y: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Least squares ``a @ x ≈ y`` (y (N,) or (N, C)) with Huber weights at 1.345 σ [5],
    σ from the median absolute residual (all columns share the weights)."""
    weights = np.ones(len(a))
    x = np.zeros((a.shape[1],) + y.shape[1:])
    for _ in range(iterations):
        aw = a.T * weights
        x = np.linalg.solve(aw @ a + 1e-6 * np.eye(a.shape[1]), aw @ y)
        residual = np.abs(y - a @ x)
        if residual.ndim > 1:
            residual = np.sqrt((residual ** 2).sum(axis=1))
        sigma = 1.4826 * float(np.median(residual)) + 1e-3
        weights = np.minimum(1.0, 1.345 * sigma / np.maximum(residual, 1e-9))
    return x


def _poly_terms(xs: np.ndarray, ys: np.ndarray, width: int, height: int) -> np.ndarray:
    norm = 2.0 / max(width, height)
    u, v = (xs - width / 2) * norm, (ys - height / 2) * norm
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)


def _cube_index(rgb: np.ndarray) -> np.ndarray:
    q = (rgb >> 5).astype(np.int16)
    return (q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2]).astype(np.intp)


@dataclass
class _Photometry:
    """The claim's colours as a function of the aligned reference's: a per-channel tone
    curve (brightness, contrast, gamma), a 3×4 colour matrix (saturation, tint), a second
    curve (the clipping that follows a boost), times a smooth gain field (vignette,
    graduated filters, uneven screen: its log a quadratic in x, y, as in flat-field
    correction), plus a residual per cell of an 8×8×8 colour table (phone filters are
    3-D colour tables). Medians and Huber weights keep the changed minority out."""

    first: np.ndarray  # (1, 256, 3) float32
    matrix: np.ndarray  # (3, 4) float32: colour transform for cv2.transform
    second: np.ndarray  # (1, 256, 3) float32
    gain: np.ndarray  # (6, 3) log-gain coefficients
    cube: np.ndarray  # (512, 3) float32
    width: int
    height: int

    @classmethod
    def fit(cls, src: np.ndarray, dst: np.ndarray, xs: np.ndarray, ys: np.ndarray,
            width: int, height: int) -> "_Photometry":
        """From reference samples ``src`` (N, 3) uint8 and claim samples ``dst`` at
        positions ``xs``, ``ys``."""
        dst = dst.astype(np.float64)
        terms = _poly_terms(xs.astype(np.float64), ys.astype(np.float64), width, height)
        sub = slice(None, None, max(1, len(src) // 5000))  # a 6-term field needs fewer
        gain = np.zeros((6, 3))
        for _ in range(2):  # tone given the gain, then the gain given the tone
            target = np.clip(dst / np.exp(terms @ gain), 0, 255)
            first = [_tone_lut(src[:, c], target[:, c]) for c in range(3)]
            toned = np.stack([first[c][src[:, c]] for c in range(3)], axis=-1)
            ones = np.ones((len(toned), 1))
            colour = _huber_solve(np.hstack([toned, ones]), target)  # (4, 3)
            mixed = np.clip(toned @ colour[:3] + colour[3] + 0.5, 0, 255).astype(np.uint8)
            second = [_tone_lut(mixed[:, c], target[:, c]) for c in range(3)]
            model = np.stack([second[c][mixed[:, c]] for c in range(3)], axis=-1)
            gain = _log_gain(model[sub], dst[sub], terms[sub])
            if np.abs(terms[sub] @ gain).max() < 0.01:  # under 1 %: no field to refit on
                break
        fitted = cls(np.stack(first, -1)[None], np.hstack([colour[:3].T, colour[3][:, None]])
                     .astype(np.float32), np.stack(second, -1)[None], gain,
                     np.zeros((512, 3), np.float32), width, height)
        residual = dst - fitted.apply(src[None], xs=xs, ys=ys)[0]
        fitted.cube = _colour_table(_cube_index(src), residual, xs, ys, width, height)
        return fitted

    def apply(self, rgb: np.ndarray, *, xs: np.ndarray | None = None,
              ys: np.ndarray | None = None) -> np.ndarray:
        """The model (float32) for an RGB uint8 image of the fitted frame, or for a
        (1, N, 3) row of samples at positions ``xs``, ``ys``."""
        mixed = cv2.transform(cv2.LUT(rgb, self.first), self.matrix)
        mixed = np.clip(mixed, 0, 255, out=mixed).astype(np.uint8)
        model = cv2.LUT(mixed, self.second)
        if xs is not None and ys is not None:
            model *= np.exp(_poly_terms(xs.astype(np.float64), ys.astype(np.float64),
                                        self.width, self.height) @ self.gain)[None]
        else:
            h, w = rgb.shape[:2]
            gy, gx = np.mgrid[0:33, 0:33].astype(np.float64)
            grid = np.exp(_poly_terms(gx * w / 32, gy * h / 32, w, h) @ self.gain)
            model *= cv2.resize(grid.astype(np.float32), (w, h),
                                interpolation=cv2.INTER_LINEAR)
        model += self.cube[_cube_index(rgb)]
        return model


def _colour_table(cells: np.ndarray, residual: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                  width: int, height: int) -> np.ndarray:
    """The residual per colour cell that the whole photo agrees on: medians per cell in
    each block of a 4×4 grid; a channel's correction is the smallest of them when all share
    its sign, else 0, and a cell needs ≥ 3 blocks with ≥ 8 samples. A filter bends a colour
    the same way everywhere; a painted change bends it in one place, which cannot move
    this."""
    blocks = (np.minimum(ys * 4 // height, 3) * 4 + np.minimum(xs * 4 // width, 3))
    medians, counts = _group_medians(cells * 16 + blocks.astype(np.intp), residual, 512 * 16)
    medians = medians.reshape(512, 16, 3)
    present = (counts.reshape(512, 16) >= 8)[..., None]
    magnitude = np.where(present, np.abs(medians), np.inf).min(axis=1)
    positive = np.where(present, medians > 0, True).all(axis=1)
    negative = np.where(present, medians < 0, True).all(axis=1)
    table = np.where(positive, magnitude, np.where(negative, -magnitude, 0.0))
    table[present[..., 0].sum(axis=1) < 3] = 0.0
    return np.nan_to_num(table, posinf=0.0).astype(np.float32)


def _log_gain(model: np.ndarray, observed: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """Per-channel log-gain coefficients (6, 3): observed ≈ model · exp(terms @ c)."""
    coef = np.zeros((6, 3))
    for c in range(3):
        usable = (model[:, c] > 16) & (observed[:, c] > 4)  # near-black ratios are noise
        if np.count_nonzero(usable) >= 100:
            ratio = np.log(observed[usable, c] / model[usable, c])
            coef[:, c] = np.clip(_huber_solve(terms[usable], ratio), -1.0, 1.0)
    return coef


# --- dense alignment and proof ---------------------------------------------------------------


def _lucas_kanade(a: np.ndarray, b: np.ndarray, win: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Lucas–Kanade step per window [4]: b(x) ≈ a(x + d). Returns dx, dy and the
    structure tensor's smaller eigenvalue (window mean)."""
    ix = cv2.Sobel(a, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    iy = cv2.Sobel(a, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    r = b - a
    k = (win, win)
    sxx, syy, sxy = cv2.blur(ix * ix, k), cv2.blur(iy * iy, k), cv2.blur(ix * iy, k)
    sxr, syr = cv2.blur(ix * r, k), cv2.blur(iy * r, k)
    det = sxx * syy - sxy * sxy
    trace = sxx + syy
    smallest = (trace - np.sqrt(np.maximum(trace * trace - 4 * det, 0))) * 0.5
    det = np.maximum(det, 1e-6)
    return (syy * sxr - sxy * syr) / det, (sxx * syr - sxy * sxr) / det, smallest


@dataclass
class _Aligned:
    matrix: np.ndarray  # reference working px -> analysis px
    warped: np.ndarray  # reference RGB on the analysis grid (uint8)
    valid: np.ndarray  # bool: compared pixels
    pixel: float  # the grain: native px of the coarser photo, in analysis px
    coverage: float
    n_valid: int
    agreement: float
    precision: float | None


def _refine(state: dict[str, Any], pixel: float) -> np.ndarray | None:
    """The transform corrected by the Lucas–Kanade shifts: view point x sees the warped
    reference at x + d, i.e. the reference point M⁻¹(x + d); a homography is refitted on a
    sample (RANSAC drops changed regions and windows where one step is not enough)."""
    dx, dy, matrix = state["dx"], state["dy"], state["matrix"]
    ys, xs = np.nonzero(state["textured2d"])
    stride = max(1, len(xs) // 3000)
    xs, ys = xs[::stride], ys[::stride]
    d = np.stack([dx[ys, xs], dy[ys, xs]], 1)
    keep = np.hypot(d[:, 0], d[:, 1]) < 2 * pixel
    if keep.sum() < 50:
        return None
    pts = np.stack([xs, ys], 1).astype(np.float64)[keep]
    source = _project(np.linalg.inv(matrix), pts + d[keep])
    refined, _ = cv2.findHomography(source, pts, cv2.RANSAC, 0.5 * pixel)
    if refined is None or abs(refined[2, 2]) < 1e-12:
        return None
    return refined / refined[2, 2]


def _align(view: PreparedImage, ref: PreparedImage, matrix: np.ndarray,
           points: np.ndarray) -> _Aligned | None:
    """Warp ``ref`` onto ``view`` by ``matrix``, refine, and run the two dense tests."""
    h, w = view.gray.shape
    rh, rw = ref.gray.shape
    scale = float(_local_scales(matrix, rw, rh)[4])
    ref_rgb, pre = ref.rgb, np.eye(3)
    # Bring the reference down to the coarser of the grid and the claim's native pixel by
    # area averaging before warping, as the app that shrank the claim did: a warp that
    # shrinks aliases, and detail finer than the claim's pixels cannot be in the claim.
    reduce = scale / max(1.0, view.scale)
    if reduce < 0.8:
        size = (max(1, round(rw * reduce)), max(1, round(rh * reduce)))
        ref_rgb = cv2.resize(ref_rgb, size, interpolation=cv2.INTER_AREA)
        pre = _resampling(rw / size[0], rh / size[1])
    pixel = max(1.0, view.scale, ref.scale * scale)  # the coarser native pixel, grid px
    # At least ALIAS_BLUR grid px: interpolation and reduction blur sharp content by an
    # amount that depends on the sub-pixel phase, differently in the two photos.
    sigma = max(NCC_BLUR * pixel, ALIAS_BLUR)
    win = int(round(NCC_WINDOW * pixel)) | 1
    border = int(math.ceil(2 * sigma)) + 2
    left, top, right, bottom = _content_box(view.gray, points)
    rect = np.zeros((h, w), np.uint8)
    rect[top:bottom, left:right] = 255
    b = cv2.GaussianBlur(view.gray.astype(np.float32), (0, 0), sigma)
    # Band-pass for Lucas–Kanade: a smooth gain left by a filter (vignette) would otherwise
    # read as a shift along every edge.
    b_band = b - cv2.GaussianBlur(b, (0, 0), 3 * sigma)
    ref_gray = cv2.cvtColor(ref_rgb, cv2.COLOR_RGB2GRAY)
    kernel = np.ones((2 * border + 1, 2 * border + 1), np.uint8)

    frame = np.array([[0, 0], [rw, 0], [rw, rh], [0, rh]], float)

    def measure(matrix: np.ndarray) -> dict[str, Any] | None:
        """Overlap, tone-matched blurred reference and the Lucas–Kanade shifts for one
        transform."""
        footprint = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(footprint, np.round(_project(matrix, frame)).astype(np.int32), 255)
        valid = cv2.erode(footprint & rect, kernel, borderType=cv2.BORDER_CONSTANT,
                          borderValue=0) > 0
        n_valid = int(np.count_nonzero(valid))
        if n_valid < 400:
            return None
        warped_gray = cv2.warpPerspective(ref_gray, matrix @ pre, (w, h),
                                          flags=cv2.INTER_CUBIC)
        lut = _tone_lut(warped_gray[valid][::3], view.gray[valid][::3])
        a = cv2.GaussianBlur(lut[warped_gray], (0, 0), sigma)
        dx, dy, smallest = _lucas_kanade(a - cv2.GaussianBlur(a, (0, 0), 3 * sigma),
                                         b_band, win)
        textured2d = valid & (smallest > LK_MIN_EIGEN)
        n_2d = int(np.count_nonzero(textured2d))
        exact = float(np.mean(np.hypot(dx[textured2d], dy[textured2d]) / pixel
                              < PRECISE_SHIFT)) if n_2d else 0.0
        precision = exact if n_2d >= MIN_LK_WINDOWS * n_valid else None
        return dict(matrix=matrix, valid=valid, n_valid=n_valid, dx=dx, dy=dy,
                    textured2d=textured2d, n_2d=n_2d, exact=exact, precision=precision,
                    agreement=_agreement(a, b, valid, win))

    state = measure(matrix)
    if state is None:
        return None
    if state["n_2d"] >= 100 and state["exact"] < SKIP_REFINE:
        refined = _refine(state, pixel)
        # Keep a refinement only if it makes the alignment more exact and the content agree
        # no less. Smooth or repetitive texture can mislead one Lucas–Kanade step: on a
        # smooth product the few two-direction windows sit on its outline and stem, and a
        # homography fitted to their shifts can be exact there and wrong everywhere else
        # (report split: a 198-px apple catalog photo, agreement 0.99 before, 0.41 after).
        again = measure(refined) if refined is not None else None
        if again is not None and again["exact"] > state["exact"] \
                and again["agreement"] >= state["agreement"]:
            state = again
    matrix, valid, n_valid = state["matrix"], state["valid"], state["n_valid"]
    warped = cv2.warpPerspective(ref_rgb, matrix @ pre, (w, h), flags=cv2.INTER_CUBIC)
    return _Aligned(matrix, warped, valid, pixel, n_valid / (rw * rh * scale * scale),
                    n_valid, state["agreement"], state["precision"])


def _agreement(a: np.ndarray, b: np.ndarray, valid: np.ndarray, win: int) -> float:
    """Fraction of the windows where the reference ``a`` has texture whose zero-mean NCC
    with the claim ``b`` exceeds NCC_AGREE (both blurred, on the analysis grid).

    The question is whether the reference's content is in the claim, so the windows are
    those where the reference has texture. Texture only the claim has (a crack drawn on a
    smooth fruit, a background the reference lacks) is an addition, for the change step to
    outline; counting it as disagreement made an edit on a nearly textureless product
    outweigh everything that matched.
    """
    k = (win, win)
    mean_a, mean_b = cv2.blur(a, k), cv2.blur(b, k)
    var_a = np.maximum(cv2.blur(a * a, k) - mean_a * mean_a, 0)
    var_b = np.maximum(cv2.blur(b * b, k) - mean_b * mean_b, 0)
    ncc = (cv2.blur(a * b, k) - mean_a * mean_b) / np.sqrt(var_a * var_b + 1e-3)
    textured = valid & (var_a > INFORMATIVE_STD ** 2)
    n_textured = int(np.count_nonzero(textured))
    return float(np.count_nonzero(textured & (ncc > NCC_AGREE)) / n_textured) \
        if n_textured else 0.0


# --- changed regions -----------------------------------------------------------------------


def _excess(ref: list[np.ndarray], obs: list[np.ndarray], grain: float, tolerance: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How far each observed value lies outside the range of the reference within one
    grain (both blurred by CHANGE_BLUR grains), less EDGE_TOLERANCE of that range; the
    maximum over channels, and the first channel blurred (reference, observed)."""
    sigma = max(1.0, CHANGE_BLUR * grain)
    reach = 2 * max(1, round(grain)) + 1
    kernel = np.ones((reach, reach), np.uint8)
    out, first = None, None
    for r, o in zip(ref, obs):
        r = cv2.GaussianBlur(r, (0, 0), sigma)
        o = cv2.GaussianBlur(o, (0, 0), sigma)
        lo, hi = cv2.erode(r, kernel), cv2.dilate(r, kernel)
        e = np.maximum(lo - o, o - hi) - tolerance * (hi - lo)
        out = e if out is None else np.maximum(out, e)
        first = first or (r, o)
    return np.maximum(out, 0), first[0], first[1]


def _changes(view: PreparedImage, al: _Aligned
             ) -> tuple[list[tuple[tuple[int, int, int, int], int]], float, float, np.ndarray]:
    """Changed groups ((x0, y0, x1, y1) analysis px, changed px), the changed fraction of
    the overlap, the peak over the seed threshold, and the 0–1 map."""
    valid = al.valid
    h, w = valid.shape
    step = max(1, int(math.sqrt(al.n_valid / PHOTOMETRY_SAMPLES)))
    ys, xs = np.nonzero(valid[::step, ::step])
    ys, xs = ys * step, xs * step
    photometry = _Photometry.fit(al.warped[ys, xs], view.rgb[ys, xs], xs, ys, w, h)
    ref = cv2.cvtColor(np.clip(photometry.apply(al.warped), 0, 255), cv2.COLOR_RGB2YCrCb)
    obs = cv2.cvtColor(view.rgb.astype(np.float32), cv2.COLOR_RGB2YCrCb)
    ref_y, ref_cr, ref_cb = cv2.split(ref)
    obs_y, obs_cr, obs_cb = cv2.split(obs)
    # Luma at the grain; chroma at half resolution, as JPEG and phones store it (4:2:0).
    excess, blurred_ref, blurred_obs = _excess([ref_y], [obs_y], al.pixel, EDGE_TOLERANCE)
    residual = (blurred_obs - blurred_ref)[ys, xs]
    half = (max(1, w // 2), max(1, h // 2))
    shrunk = [cv2.resize(c, half, interpolation=cv2.INTER_AREA)
              for c in (ref_cr, ref_cb, obs_cr, obs_cb)]
    chroma, _, _ = _excess(shrunk[:2], shrunk[2:], al.pixel, CHROMA_EDGE_TOLERANCE)
    np.maximum(excess, cv2.resize(chroma, (w, h), interpolation=cv2.INTER_LINEAR), out=excess)
    # Resampling and recompression smear the photo's own edges (and a screenshot's canvas)
    # over about three chroma blur lengths: a change must lie inside that band.
    band = int(math.ceil(3 * max(1.0, CHANGE_BLUR * 2 * al.pixel)))
    inner = cv2.erode(valid.astype(np.uint8), np.ones((2 * band + 1, 2 * band + 1), np.uint8),
                      borderType=cv2.BORDER_CONSTANT, borderValue=0)
    excess[inner == 0] = 0
    noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    low = max(MIN_CHANGE_LOW, K_LOW * noise)
    high = max(MIN_CHANGE, K_NOISE * noise)
    change_map = np.clip(excess / (2 * high), 0, 1).astype(np.float32)

    mask = cv2.morphologyEx((excess > low).astype(np.uint8), cv2.MORPH_OPEN,
                            np.ones((3, 3), np.uint8))
    n, labels = cv2.connectedComponents(mask, connectivity=8)
    if n <= 1:
        return [], 0.0, 0.0, change_map
    peaks = np.zeros(n, np.float32)
    np.maximum.at(peaks, labels.ravel(), excess.ravel())
    keep = peaks >= high  # hysteresis: components grown at ``low`` that reach ``high``
    keep[0] = False
    mask = keep[labels].astype(np.uint8)
    gap = max(3, int(GROUP_DISTANCE * math.hypot(h, w)))
    grouped = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (gap, gap)))
    n_groups, group_labels = cv2.connectedComponents(grouped, connectivity=8)
    py, px = np.nonzero(mask)
    group_of = group_labels[py, px]
    groups = []
    for g in range(1, n_groups):
        sel = group_of == g
        area = int(np.count_nonzero(sel))
        if area >= MIN_REGION_FRACTION * al.n_valid:
            gx, gy = px[sel], py[sel]
            groups.append(((int(gx.min()), int(gy.min()), int(gx.max()) + 1,
                            int(gy.max()) + 1), area))
    groups.sort(key=lambda g: -g[1])
    changed = sum(area for _, area in groups) / max(al.n_valid, 1)
    peak = float(excess[mask > 0].max() / high) if groups else 0.0
    return groups, changed, peak, change_map


# --- comparison ----------------------------------------------------------------------------


def _view(image: PreparedImage, box: tuple[int, int, int, int], factor: int) -> PreparedImage:
    """The part ``box`` (x0, y0, x1, y1) of ``image`` reduced by an integer factor (area
    averaging), without features."""
    x0, y0, x1, y1 = box
    w, h = max(1, (x1 - x0) // factor), max(1, (y1 - y0) // factor)
    part = image.rgb[y0:y0 + h * factor, x0:x0 + w * factor]
    rgb = part if factor == 1 else cv2.resize(part, (w, h), interpolation=cv2.INTER_AREA)
    rgb = np.ascontiguousarray(rgb)
    return PreparedImage(rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), image.scale / factor,
                         image.width, image.height, _EMPTY, None)


def _geometry(claim: PreparedImage, ref: PreparedImage, *, mirrored: bool
              ) -> tuple[int, np.ndarray | None, np.ndarray]:
    """Matches, the reference → claim working homography (None if too few inliers), and
    the claim working positions of the inliers."""
    if mirrored:
        points, descriptors = claim.mirrored_features()
    else:
        points, descriptors = claim.points, claim.descriptors
    src, dst = _match(ref.descriptors, ref.points, descriptors, points)
    if len(src) < MIN_MATCHES:
        return len(src), None, _EMPTY
    fitted = _fit(src, dst, ref.gray.shape[1], ref.gray.shape[0])
    if fitted is None or fitted[1].sum() < MIN_INLIERS:
        return len(src), None, dst[fitted[1]] if fitted is not None else _EMPTY
    matrix, inliers = fitted
    dst = dst[inliers]
    if mirrored:  # fitted in mirrored coordinates: compose with the mirror
        flip = np.array([[-1.0, 0, claim.gray.shape[1] - 1], [0, 1, 0], [0, 0, 1]])
        matrix = flip @ matrix
        dst = np.stack([claim.gray.shape[1] - 1 - dst[:, 0], dst[:, 1]], 1)
    return len(src), matrix, dst


def compare_prepared(claim: PreparedImage, ref: PreparedImage, *, mirror: bool = True
                     ) -> ReferenceMatch:
    """Compare a prepared claim photo with a prepared reference photo; with ``mirror``,
    the mirrored claim is tried too when the direct comparison finds no derivation."""
    if min(claim.width, claim.height, ref.width, ref.height) < MIN_NATIVE_SIDE:
        return ReferenceMatch(False, "too small to compare")
    result = _compare(claim, ref, *_geometry(claim, ref, mirrored=False), mirrored=False)
    if mirror and not result.derived:
        flipped = _compare(claim, ref, *_geometry(claim, ref, mirrored=True), mirrored=True)
        if flipped.derived or flipped.inliers > result.inliers:
            return flipped
    return result


def _compare(claim: PreparedImage, ref: PreparedImage, matches: int,
             matrix: np.ndarray | None, points: np.ndarray, *, mirrored: bool
             ) -> ReferenceMatch:
    n_inliers = len(points)
    if matrix is None:
        reason = "too few keypoint matches" if matches < MIN_MATCHES \
            else "too few consistent matches"
        return ReferenceMatch(False, reason, matches=matches, inliers=n_inliers,
                              mirrored=mirrored)
    rh, rw = ref.gray.shape
    if not _plausible(matrix, rw, rh):
        return ReferenceMatch(False, "perspective too strong for an edit", matches=matches,
                              inliers=n_inliers, mirrored=mirrored)
    scales = _local_scales(matrix, rw, rh)
    # The dense steps run on the footprint's box only, on a grid no finer than the coarser
    # photo's native pixel and no larger than ANALYSIS_MAX_SIDE: the claim is cut to the
    # box and reduced by an integer factor (exact coordinates).
    h, w = claim.gray.shape
    corners = _project(matrix, np.array([[0, 0], [rw, 0], [rw, rh], [0, rh]], float))
    bx0, by0 = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, [w, h])
    bx1, by1 = np.clip(np.ceil(corners.max(axis=0)).astype(int), 0, [w, h])
    grain = max(1.0, claim.scale, ref.scale * float(scales[4]))
    factor = max(1, int(grain), math.ceil(max(bx1 - bx0, by1 - by0) / ANALYSIS_MAX_SIDE))
    bx0, by0 = int(bx0 - bx0 % factor), int(by0 - by0 % factor)
    if min(bx1 - bx0, by1 - by0) < 8 * factor:
        return ReferenceMatch(False, "overlap too small", matches=matches, inliers=n_inliers,
                              mirrored=mirrored)
    view = _view(claim, (bx0, by0, int(bx1), int(by1)), factor)
    to_view = _resampling(1.0 / factor, 1.0 / factor) @ np.array(
        [[1.0, 0, -bx0], [0, 1.0, -by0], [0, 0, 1.0]])
    al = _align(view, ref, to_view @ matrix, _project(to_view, points))
    if al is None:
        return ReferenceMatch(False, "overlap too small", matches=matches, inliers=n_inliers,
                              mirrored=mirrored)
    native = np.linalg.inv(_resampling(claim.scale, claim.scale)) @ np.linalg.inv(to_view) @ \
        al.matrix @ _resampling(ref.scale, ref.scale)
    common = dict(matches=matches, inliers=n_inliers, mirrored=mirrored,
                  transform=native / native[2, 2], agreement=al.agreement,
                  precision=al.precision, coverage=al.coverage,
                  frame_fraction=al.n_valid * factor * factor / (h * w))
    if al.coverage < MIN_COVERAGE:
        return ReferenceMatch(False, "too little of the reference visible", **common)
    if al.agreement < MIN_AGREEMENT:
        return ReferenceMatch(False, "content differs after alignment", **common)
    if al.precision is not None and al.precision < MIN_PRECISION:
        return ReferenceMatch(False, "alignment not exact (another shot)", **common)
    groups, changed, peak, view_map = _changes(view, al)
    change_map = np.zeros((-(-h // factor), -(-w // factor)), np.float32)
    vy, vx = by0 // factor, bx0 // factor
    vh = min(view_map.shape[0], change_map.shape[0] - vy)
    vw = min(view_map.shape[1], change_map.shape[1] - vx)
    change_map[vy:vy + vh, vx:vx + vw] = view_map[:vh, :vw]
    regions = []
    for (x0, y0, x1, y1), _ in groups:
        rx0 = int(math.floor((bx0 + x0 * factor) / claim.scale))
        ry0 = int(math.floor((by0 + y0 * factor) / claim.scale))
        rx1 = min(claim.width, int(math.ceil((bx0 + x1 * factor) / claim.scale)))
        ry1 = min(claim.height, int(math.ceil((by0 + y1 * factor) / claim.scale)))
        regions.append(Region(rx0, ry0, rx1 - rx0, ry1 - ry0))
    return ReferenceMatch(True, "derived", regions=tuple(regions), changed_fraction=changed,
                          peak=peak, map=change_map, **common)


def compare_photos(claim: Photo, reference: Photo, *, mirror: bool = True) -> ReferenceMatch:
    """Compare a claim photo with one reference photo (see the module docstring)."""
    return compare_prepared(prepare_image(claim.pixels), prepare_image(reference.pixels),
                            mirror=mirror)


# --- the detector --------------------------------------------------------------------------


def describe_transform(match: ReferenceMatch, reference: Photo) -> tuple[str, str]:
    """The transform in words, English and Chinese, e.g. "scaled ×1.32, rotated 2.1°
    clockwise, cropped (74% of the reference visible)"."""
    matrix = match.transform
    if matrix is None:
        raise ValueError("describe_transform: the match has no transform")
    jac = _jacobian(matrix, reference.width / 2, reference.height / 2)
    if jac is None:
        return "perspective", "透视变形"
    if match.mirrored:  # describe the rotation of the unmirrored part
        jac = jac @ np.diag([-1.0, 1.0])
    scale = math.sqrt(abs(np.linalg.det(jac)))
    # Angle of the nearest rotation; with y pointing down, positive turns clockwise.
    angle = math.degrees(math.atan2(jac[1, 0] - jac[0, 1], jac[0, 0] + jac[1, 1]))
    singular = np.linalg.svd(jac, compute_uv=False)
    corners = _local_scales(matrix, reference.width, reference.height)
    en, zh = [], []
    if match.mirrored:
        en.append("mirrored")
        zh.append("镜像翻转")
    if abs(scale - 1) >= 0.01:
        en.append(f"scaled ×{scale:.2f}")
        zh.append(f"缩放 ×{scale:.2f}")
    if abs(angle) >= 0.3:
        turn_en = "clockwise" if angle > 0 else "counter-clockwise"
        en.append(f"rotated {abs(angle):.1f}° {turn_en}")
        zh.append(f"{'顺时针' if angle > 0 else '逆时针'}旋转 {abs(angle):.1f}°")
    if singular[0] / max(singular[1], 1e-9) > 1.02:
        en.append("stretched")
        zh.append("拉伸")
    if corners.min() > 0 and corners.max() / corners.min() > 1.02:
        en.append("perspective")
        zh.append("透视变形")
    if match.coverage < 0.95:
        pct = round(100 * min(match.coverage, 1.0))
        en.append(f"cropped ({pct}% of the reference visible)")
        zh.append(f"裁剪（保留参考图的 {pct}%）")
    if match.frame_fraction < 0.8:
        en.append("inside a larger frame (screenshot or border)")
        zh.append("置于更大画面中（截图或边框）")
    if not en:
        return "same size and framing", "尺寸与构图相同"
    return ", ".join(en), "，".join(zh)


class ReferenceDetector(Detector):
    """Claim photos derived from the merchant's reference photos, and what was changed.

    Prepared references are cached by content hash (``cache_size`` entries), so a listing
    photo compared with many claims in one process is described once.
    """

    name = "reference"
    version = "1.1"
    description = ("Claim photo geometrically derived from a merchant reference photo "
                   "(cropped, rescaled, rotated, mirrored, recoloured, screenshot), and its "
                   "changed regions")
    codes = ("REFERENCE_DERIVED", "REFERENCE_ALTERED")

    def __init__(self, *, cache_size: int = 64, mirror: bool = True) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size={cache_size}: expected 0 or more")
        self.cache_size = cache_size
        self.mirror = mirror
        self._cache: OrderedDict[str, PreparedImage] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"cache_size": self.cache_size, "mirror": self.mirror}  # cache rebuilt there

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def _prepared(self, photo: Photo) -> PreparedImage:
        cached = self._cache.get(photo.sha256)
        if cached is not None:
            self._cache.move_to_end(photo.sha256)
            return cached
        prepared = prepare_image(photo.pixels)
        if self.cache_size:
            self._cache[photo.sha256] = prepared
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return prepared

    def run(self, photo: Photo, context: DetectorContext) -> DetectorOutput:
        if not context.references:
            raise Skip("no reference photos given")
        claim = prepare_image(photo.pixels)
        findings: list[Finding] = []
        compared = []
        for reference in context.references:
            match = compare_prepared(claim, self._prepared(reference.photo),
                                     mirror=self.mirror)
            compared.append({"reference": reference.label, "kind": reference.kind,
                             **match.to_info()})
            if match.derived:
                findings += self._findings(reference, match)
        return DetectorOutput(findings, {"references": compared})

    def _findings(self, reference: Reference, match: ReferenceMatch) -> list[Finding]:
        transform_en, transform_zh = describe_transform(match, reference.photo)
        matrix = [[round(float(v), 6) for v in row] for row in match.transform]
        # Derived is conclusive; the score grows with the share of the texture that matched
        # (0.75 at MIN_AGREEMENT, 1.0 when all of it did).
        margin = (match.agreement - MIN_AGREEMENT) / (1.0 - MIN_AGREEMENT)
        shared = dict(reference=reference.label, reference_id=reference.id,
                      reference_kind=reference.kind,
                      reference_kind_zh=_KIND_ZH.get(reference.kind, reference.kind),
                      reference_sha256=reference.photo.sha256, transform=matrix)
        out = [self.finding(
            "REFERENCE_DERIVED", score=0.75 + 0.25 * min(max(margin, 0.0), 1.0),
            inliers=match.inliers, transform_en=transform_en, transform_zh=transform_zh,
            mirrored=match.mirrored, agreement=round(match.agreement, 4),
            precision=None if match.precision is None else round(match.precision, 4),
            coverage_percent=round(100 * min(match.coverage, 1.0), 1), **shared)]
        if match.regions:
            # How far the strongest change rises over the seed threshold: 0.5 at it, 1.0
            # at three times it.
            out.append(self.finding(
                "REFERENCE_ALTERED", score=0.5 + 0.25 * min(max(match.peak - 1.0, 0.0), 2.0),
                region=match.regions[0], map=match.map, region_count=len(match.regions),
                area_percent=round(100 * match.changed_fraction, 2),
                regions=[r.to_dict() for r in match.regions], **shared))
        return out
