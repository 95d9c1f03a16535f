"""EXIF thumbnail against the image: does the picture the camera wrote still match?

A camera writes a small JPEG preview (EXIF IFD1) at capture. Editors that change pixels
often keep it, so content painted or pasted afterwards is missing from it. The thumbnail is
turned by the EXIF orientation (cameras store it unrotated, like the main image), black
letterbox bars are trimmed, the image is reduced to the thumbnail's size and the two are
compared after a per-channel tone fit; a crop of the captured frame is located in the
thumbnail by normalised cross-correlation and compared there.

References:
    CIPA DC-008-2023 (Exif 3.0), §4.5.4 (IFD1, JPEGInterchangeFormat) and Table 4
    (Orientation); J. Kee, H. Farid, "Digital image authentication from thumbnails", SPIE
    Electronic Imaging 2010.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ...imaging import decode_embedded
from ...models import Photo, Region
from ..forensics.grid import orient

__all__ = ["THUMB_DIFFERENCE", "ThumbnailCheck", "thumbnail_difference"]

#: Worst-area difference above which the thumbnail shows other content: 0.12 of full scale
#: (~30 grey levels averaged over ≥ 3% of the picture). Genuine camera thumbnails in the
#: shared sample (exif-samples: 51 with thumbnails) stay at or below 0.07 after the tone fit
#: and alignment; re-saving the image at JPEG quality 50 adds < 0.02.
THUMB_DIFFERENCE = 0.12
#: Normalised cross-correlation that locates a cropped image inside its thumbnail: 0.85
#: (the same scene at ±1 px and another tone curve scores above 0.9 in the sample files).
_ALIGN_CORRELATION = 0.85


@dataclass(frozen=True)
class ThumbnailCheck:
    """The thumbnail comparison: ``difference`` (0–1, the worst compact area's mean
    absolute difference after tone fitting, in units of full scale), ``typical`` (the
    median cell's), ``correlation`` of the two pictures, the ``orientation`` under which
    the thumbnail matched best, ``cropped`` when the image is a crop of what the thumbnail
    shows, the per-cell difference ``map`` over the whole image and, for a mismatch, its
    ``region`` in photo pixels."""

    difference: float
    typical: float
    correlation: float
    orientation: int
    cropped: bool
    map: np.ndarray
    region: Region | None = None

    @property
    def mismatch(self) -> bool:
        """Content changed: an area differs by :data:`THUMB_DIFFERENCE` and stands out
        from the picture's typical difference (×3), or the whole picture differs
        (correlation < 0.5). A thumbnail merely rendered differently everywhere (other
        lens-distortion correction, another tone curve) is not a mismatch."""
        return self.difference >= THUMB_DIFFERENCE and (
            self.difference >= 3 * self.typical or self.correlation < 0.5)


def _trim_bars(thumb: np.ndarray) -> np.ndarray:
    """Remove letterbox bars from the thumbnail's edges: rows or columns of one constant
    near-black value (cameras pad 3:2 frames into 160×120 this way), not merely dark
    content. White is never trimmed: white margins are the content of product photos."""
    gray = thumb.astype(np.float32).mean(axis=2)

    def bar(values: np.ndarray) -> np.ndarray:
        mean = values.mean(axis=1)
        return (values.std(axis=1) < 2.5) & (mean < 16)

    def run(flags: np.ndarray) -> int:
        n = 0
        while n < flags.size // 3 and flags[n]:
            n += 1
        return n

    rows, cols = bar(gray), bar(gray.T)
    top, bottom = run(rows), run(rows[::-1])
    left, right = run(cols), run(cols[::-1])
    return thumb[top:thumb.shape[0] - bottom, left:thumb.shape[1] - right]


def _reduce(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """``pixels`` reduced to width × height; bilinear to 4× the target first (reads ~4
    samples per output pixel, ~1 ms on 12 MP) and area averaging from there, so the result
    averages ~64 samples per output pixel instead of a full 12 MP area pass (~90 ms)."""
    h, w = pixels.shape[:2]
    if w > 4 * width and h > 4 * height:
        pixels = cv2.resize(pixels, (4 * width, 4 * height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)


def _compare(thumb: np.ndarray, image: np.ndarray, *, orientation: int,
             cropped: bool) -> ThumbnailCheck:
    """Compare two same-size RGB pictures after a per-channel linear tone fit of ``image``
    onto ``thumb``."""
    t = cv2.GaussianBlur(thumb.astype(np.float32), (0, 0), 1.0)
    i = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.0)
    fitted = np.empty_like(i)
    for c in range(3):
        x, y = i[..., c], t[..., c]
        var = float(x.var())
        slope = float(((x - x.mean()) * (y - y.mean())).mean()) / var if var > 1e-6 else 0.0
        slope = min(max(slope, 0.5), 2.0)  # a tone curve, not an inversion
        fitted[..., c] = (x - x.mean()) * slope + y.mean()
    residual = np.abs(t - fitted).mean(axis=2)
    gt, gi = t.mean(axis=2), fitted.mean(axis=2)
    denom = float(gt.std() * gi.std())
    correlation = float(((gt - gt.mean()) * (gi - gi.mean())).mean() / denom) \
        if denom > 1e-6 else 1.0
    # Cells of ~1/12 of the short side, and the worst 2×2 block of cells (~3% of the
    # picture at 160×120): a change must cover a compact area, not a few pixels of
    # resampling difference along an edge.
    cell = max(3, min(residual.shape) // 12)
    cells = cv2.resize(residual, (max(1, residual.shape[1] // cell),
                                  max(1, residual.shape[0] // cell)),
                       interpolation=cv2.INTER_AREA)
    pooled = cv2.erode(cells, np.ones((2, 2), np.uint8)) if min(cells.shape) >= 2 else cells
    return ThumbnailCheck(float(pooled.max()) / 255.0, float(np.median(cells)) / 255.0,
                          correlation, orientation, cropped, cells)


def _locate_crop(thumb: np.ndarray,
                 pixels: np.ndarray) -> tuple[float, tuple[int, int, int, int]] | None:
    """Where the image lies inside the thumbnail if it is a crop of the captured frame:
    (correlation, (x, y, w, h) in thumbnail pixels), or None."""
    th, tw = thumb.shape[:2]
    h, w = pixels.shape[:2]
    target = cv2.GaussianBlur(cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY), (0, 0), 1.0)
    fit = min(tw / w, th / h)

    def match(factor: float) -> tuple[float, tuple[int, int, int, int]] | None:
        cw, ch = int(round(w * fit * factor)), int(round(h * fit * factor))
        if cw < 24 or ch < 24 or cw > tw or ch > th or (cw == tw and ch == th):
            return None
        small = cv2.GaussianBlur(cv2.cvtColor(_reduce(pixels, cw, ch), cv2.COLOR_RGB2GRAY),
                                 (0, 0), 1.0)
        _, score, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(target, small,
                                                              cv2.TM_CCOEFF_NORMED))
        return float(score), (x, y, cw, ch)

    # Crops down to half the frame's width (smaller ones leave too few thumbnail pixels to
    # compare), coarse steps of 2.5% refined to 0.5% around the best.
    candidates = [m for f in np.arange(1.0, 0.49, -0.025) if (m := match(float(f)))]
    if not candidates:
        return None
    coarse = max(candidates)
    factor = coarse[1][2] / (w * fit)
    refined = [m for f in np.arange(factor - 0.02, factor + 0.021, 0.005)
               if (m := match(float(f)))]
    best = max([coarse, *refined])
    return best if best[0] >= _ALIGN_CORRELATION else None


def thumbnail_difference(photo: Photo) -> ThumbnailCheck | None:
    """Compare the EXIF thumbnail with the image, or None when there is nothing to compare
    (no thumbnail, undecodable, or no orientation or crop under which the two line up)."""
    if not photo.exif_thumbnail:
        return None
    thumb = decode_embedded(photo.exif_thumbnail)
    if thumb is None or min(thumb.shape[:2]) < 16 or min(photo.width, photo.height) < 16:
        return None
    aspect = photo.width / photo.height
    best: ThumbnailCheck | None = None
    # The EXIF orientation first; the other seven only to explain a mismatch away (a tool
    # that rotated the pixels and reset Orientation but kept the old thumbnail).
    order = [photo.orientation] + [o for o in range(1, 9) if o != photo.orientation]
    for orientation in order:
        candidate = _trim_bars(orient(thumb, orientation))
        th, tw = candidate.shape[:2]
        if min(th, tw) < 16:
            continue
        checks = []
        # 6%: more than thumbnail rounding (3:2 in 160×107 is off by 0.3%).
        if abs(math.log((tw / th) / aspect)) <= 0.06:
            checks.append(_compare(candidate, _reduce(photo.pixels, tw, th),
                                   orientation=orientation, cropped=False))
        if orientation == photo.orientation and (not checks or checks[0].mismatch):
            located = _locate_crop(candidate, photo.pixels)
            if located is not None:
                x, y, cw, ch = located[1]
                checks.append(_compare(candidate[y:y + ch, x:x + cw],
                                       _reduce(photo.pixels, cw, ch),
                                       orientation=orientation, cropped=True))
        for check in checks:
            if best is None or (check.mismatch, check.difference) < (best.mismatch,
                                                                     best.difference):
                best = check
        if best is not None and best.orientation == photo.orientation and not best.mismatch:
            return best
    if best is None or not best.mismatch:
        return best
    cells = best.map
    ys, xs = np.nonzero(cells >= THUMB_DIFFERENCE * 255.0 * 0.75)
    if not ys.size:
        return best
    sy, sx = photo.height / cells.shape[0], photo.width / cells.shape[1]
    region = Region(int(xs.min() * sx), int(ys.min() * sy),
                    int(math.ceil((xs.max() - xs.min() + 1) * sx)),
                    int(math.ceil((ys.max() - ys.min() + 1) * sy)))
    return replace(best, region=region)
