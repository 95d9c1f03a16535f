"""Reference comparison: is the claim photo the merchant's own photo, and what was changed?

PROTOTYPE (being tuned)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from ..models import Finding, Photo, Region
from .base import Detector, DetectorContext, DetectorOutput, Reference, Skip

__all__ = ["ReferenceDetector", "ReferenceMatch", "compare_to_reference", "prepare_image"]

WORK_MAX_SIDE = 1024
WORK_MIN_SIDE = 512
ORB_FEATURES = 2000
ORB_FAST_THRESHOLD = 12
RATIO = 0.8
REPROJ_THRESHOLD = 3.0
MIN_MATCHES = 12
MIN_INLIERS = 20
NCC_AGREE = 0.7
INFORMATIVE_STD = 4.0
MIN_AGREEMENT = 0.6
MIN_COVERAGE = 0.1


@dataclass(frozen=True, eq=False)
class PreparedImage:
    rgb: np.ndarray
    gray: np.ndarray
    scale: float
    width: int
    height: int
    points: np.ndarray
    descriptors: np.ndarray | None


def prepare_image(pixels: np.ndarray) -> PreparedImage:
    height, width = pixels.shape[:2]
    longest = max(height, width)
    if longest > WORK_MAX_SIDE:
        factor = math.ceil(longest / WORK_MAX_SIDE)
        if factor > 1 and longest / factor <= WORK_MAX_SIDE:
            size = (max(1, width // factor), max(1, height // factor))
            small = cv2.resize(pixels[:size[1] * factor, :size[0] * factor], size,
                               interpolation=cv2.INTER_AREA)
            scale = 1.0 / factor
        else:
            scale = WORK_MAX_SIDE / longest
            small = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    elif longest < WORK_MIN_SIDE:
        scale = WORK_MIN_SIDE / longest
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(pixels, size, interpolation=cv2.INTER_CUBIC)
    else:
        scale = 1.0
        small = np.ascontiguousarray(pixels)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    orb = cv2.ORB_create(nfeatures=ORB_FEATURES, fastThreshold=ORB_FAST_THRESHOLD)
    keypoints, descriptors = orb.detectAndCompute(gray, None)
    points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
    return PreparedImage(small, gray, scale, width, height, points, descriptors)


@dataclass(frozen=True, eq=False)
class ReferenceMatch:
    derived: bool
    reason: str
    matches: int = 0
    inliers: int = 0
    model: str = ""
    transform: np.ndarray | None = None  # reference px -> claim px (3x3)
    agreement: float = 0.0
    informative: float = 0.0
    coverage: float = 0.0
    residual: float = 0.0
    stats: dict = field(default_factory=dict)
    regions: tuple = ()
    area_percent: float = 0.0
    map: np.ndarray | None = None


def _match(ref: PreparedImage, claim: PreparedImage) -> tuple[np.ndarray, np.ndarray]:
    if ref.descriptors is None or claim.descriptors is None or len(ref.descriptors) < 2 \
            or len(claim.descriptors) < 2:
        return np.empty((0, 2), np.float32), np.empty((0, 2), np.float32)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(ref.descriptors, claim.descriptors, k=2)
    src, dst = [], []
    for pair in pairs:
        if len(pair) == 2 and pair[0].distance < RATIO * pair[1].distance:
            src.append(pair[0].queryIdx)
            dst.append(pair[0].trainIdx)
    return ref.points[src], claim.points[dst]


def _project(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    ones = np.ones((len(points), 1), np.float64)
    h = np.hstack([points.astype(np.float64), ones]) @ matrix.T
    return h[:, :2] / h[:, 2:3]


def _fit(src: np.ndarray, dst: np.ndarray) -> tuple[str, np.ndarray, np.ndarray] | None:
    candidates = []
    sim, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                         ransacReprojThreshold=REPROJ_THRESHOLD,
                                         maxIters=2000, confidence=0.999, refineIters=10)
    if sim is not None:
        candidates.append(("similarity", np.vstack([sim, [0, 0, 1]])))
    aff, _ = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC,
                                  ransacReprojThreshold=REPROJ_THRESHOLD,
                                  maxIters=2000, confidence=0.999, refineIters=10)
    if aff is not None:
        candidates.append(("affine", np.vstack([aff, [0, 0, 1]])))
    if len(src) >= 8:
        hom, _ = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, REPROJ_THRESHOLD,
                                    maxIters=2000, confidence=0.999)
        if hom is not None and abs(hom[2, 2]) > 1e-9:
            candidates.append(("homography", hom / hom[2, 2]))
    best = None
    counts = []
    for name, matrix in candidates:
        err = np.linalg.norm(_project(matrix, src) - dst, axis=1)
        inl = err < REPROJ_THRESHOLD
        counts.append((name, matrix, inl))
    if not counts:
        return None
    top = max(int(c[2].sum()) for c in counts)
    for name, matrix, inl in counts:  # simplest model within 3% of the best
        if inl.sum() >= 0.97 * top:
            best = (name, matrix, inl)
            break
    return best


def _scale_of(matrix: np.ndarray) -> float:
    return float(math.sqrt(abs(np.linalg.det(matrix[:2, :2]))))


def compare_to_reference(claim: PreparedImage, ref: PreparedImage) -> ReferenceMatch:
    src, dst = _match(ref, claim)
    if len(src) < MIN_MATCHES:
        return ReferenceMatch(False, "few matches", matches=len(src))
    fitted = _fit(src, dst)
    if fitted is None:
        return ReferenceMatch(False, "no model", matches=len(src))
    model, matrix, inl = fitted
    ninl = int(inl.sum())
    if ninl < MIN_INLIERS:
        return ReferenceMatch(False, "few inliers", matches=len(src), inliers=ninl, model=model)
    if model == "homography":
        refined, _ = cv2.findHomography(src[inl], dst[inl], 0)
        if refined is not None:
            matrix = refined / refined[2, 2]
    residual = float(np.median(np.linalg.norm(_project(matrix, src[inl]) - dst[inl], axis=1)))
    dense = _dense(claim, ref, matrix)
    to_orig = np.diag([1 / claim.scale, 1 / claim.scale, 1.0]) @ matrix @ \
        np.diag([ref.scale, ref.scale, 1.0])
    derived = dense["agreement"] >= MIN_AGREEMENT and dense["coverage"] >= MIN_COVERAGE
    return ReferenceMatch(derived, "ok" if derived else "dense disagreement",
                          matches=len(src), inliers=ninl, model=model, transform=to_orig,
                          agreement=dense["agreement"], informative=dense["informative"],
                          coverage=dense["coverage"], residual=residual, stats=dense,
                          regions=dense.get("regions", ()), map=dense.get("map"))


def _dense(claim: PreparedImage, ref: PreparedImage, matrix: np.ndarray) -> dict[str, Any]:
    h, w = claim.gray.shape
    s = _scale_of(matrix)
    ref_rgb = ref.rgb
    m = matrix.copy()
    if s < 0.8:
        size = (max(1, round(ref_rgb.shape[1] * s)), max(1, round(ref_rgb.shape[0] * s)))
        fx, fy = size[0] / ref_rgb.shape[1], size[1] / ref_rgb.shape[0]
        ref_rgb = cv2.resize(ref_rgb, size, interpolation=cv2.INTER_AREA)
        m = m @ np.diag([1 / fx, 1 / fy, 1.0])
    warped = cv2.warpPerspective(ref_rgb, m, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT)
    footprint = cv2.warpPerspective(np.full(ref_rgb.shape[:2], 255, np.uint8), m, (w, h),
                                    flags=cv2.INTER_NEAREST)
    pixel = max(1.0, s, 1.0 / max(claim.scale, 1e-9) if claim.scale > 1 else 1.0)
    if claim.scale > 1:
        pixel = max(pixel, claim.scale)
    border = int(math.ceil(2 * pixel)) + 2
    overlap = cv2.erode(footprint, np.ones((2 * border + 1, 2 * border + 1), np.uint8)) > 0
    n_overlap = int(overlap.sum())
    ref_area = ref.rgb.shape[0] * ref.rgb.shape[1] * s * s
    coverage = n_overlap / ref_area if ref_area else 0.0
    if n_overlap < 100:
        return {"agreement": 0.0, "informative": 0.0, "coverage": coverage}
    sigma = max(1.0, 0.6 * pixel)
    a = cv2.GaussianBlur(cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), sigma)
    b = cv2.GaussianBlur(claim.gray.astype(np.float32), (0, 0), sigma)
    win = int(max(11, round(8 * pixel))) | 1
    mu_a = cv2.boxFilter(a, -1, (win, win))
    mu_b = cv2.boxFilter(b, -1, (win, win))
    var_a = np.maximum(cv2.boxFilter(a * a, -1, (win, win)) - mu_a * mu_a, 0)
    var_b = np.maximum(cv2.boxFilter(b * b, -1, (win, win)) - mu_b * mu_b, 0)
    cov = cv2.boxFilter(a * b, -1, (win, win)) - mu_a * mu_b
    ncc = cov / np.sqrt(var_a * var_b + 1e-3)
    informative = overlap & (np.maximum(var_a, var_b) > INFORMATIVE_STD ** 2)
    n_inf = int(informative.sum())
    agree = informative & (ncc > NCC_AGREE)
    agreement = agree.sum() / n_inf if n_inf else 0.0
    return {"agreement": float(agreement), "informative": n_inf / n_overlap,
            "coverage": float(coverage), "sigma": sigma, "win": win,
            "ncc_median": float(np.median(ncc[informative])) if n_inf else 0.0}


class ReferenceDetector(Detector):
    name = "reference"
    version = "0.1"
    description = "Claim photo derived from a merchant reference photo, and changed regions"
    codes = ("REFERENCE_DERIVED", "REFERENCE_ALTERED")

    def run(self, photo: Photo, context: DetectorContext) -> DetectorOutput:
        if not context.references:
            raise Skip("no reference photos given")
        raise NotImplementedError
