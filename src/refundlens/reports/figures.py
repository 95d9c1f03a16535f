"""Report figures: stored photos decoded, downscaled, with the alteration mask and numbered
region marks drawn on them, as JPEGs the claim PDF loads by a short ``figure:`` URL.

Figures are not inlined as ``data:`` URIs: WeasyPrint's HTML parser is pure Python and read
the base64 text character by character — about a quarter of a second per report with
three phone photos.

Marks are drawn into the pixels (not laid over in CSS) so that every PDF viewer and printer
shows them, and so that a page image shows what the reader saw.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import PhotoError
from ..imaging import load_preview

__all__ = ["FIGURE_SCHEME", "MAX_IMAGE_SIDE", "ImageStore", "StoredImage", "draw_marks",
           "finding_regions", "fit", "overlay", "reference_polygon"]

#: Longest side of an embedded image, px. Two photos side by side on A4 are ~88 mm wide
#: each; 1200 px is ~350 dpi there, sharp in print, and ~150–250 KB as JPEG.
MAX_IMAGE_SIDE = 1200
_JPEG_QUALITY = 85
#: URL scheme of a report's figures (``figure:3``), served by :meth:`ImageStore.figure_bytes`.
FIGURE_SCHEME = "figure"
# box colours (RGB) by strength: red for deterministic evidence, amber for the rest
_BOX_COLOR = {"conclusive": (220, 30, 50), "strong": (235, 90, 0), "moderate": (240, 160, 0),
              "weak": (240, 190, 0), "info": (120, 130, 150)}
_OVERLAY_RGB = (255, 0, 40)
_OVERLAY_MAX_ALPHA = 0.55


class StoredImage:
    """A stored image for display: RGB pixels, oriented as analysed and downscaled to at most
    :data:`MAX_IMAGE_SIDE`, with its native size — or why there is none."""

    def __init__(self, pixels: np.ndarray | None = None, *, width: int = 0, height: int = 0,
                 error: str | None = None) -> None:
        self.pixels = pixels
        self.width = width
        self.height = height
        self.error = error


class ImageStore:
    """Stored images for one report, each file decoded once (a listing photo matched by
    several claim photos, a mask) and kept only downscaled.

    Decoding goes through :func:`~refundlens.imaging.load_preview`, the display side of the
    one decoder: it applies EXIF orientation as the analysis did, so finding regions line
    up, and decodes a large photo at a reduced scale (a 12 MP JPEG at 1/2: most of the
    report's time on phone photos went into decoding and shrinking full-size pixels). A
    missing blob or an undecodable file becomes a note in the report, not a failed report:
    the reader must see that the photo exists and why it is not shown.
    """

    def __init__(self, load_blob: Callable[[str], bytes]) -> None:
        self._load_blob = load_blob
        self._images: dict[str, StoredImage] = {}
        self._figures: dict[str, bytes] = {}

    def figure(self, pixels: np.ndarray | Image.Image) -> str:
        """Encode a figure as JPEG; returns the URL the report's ``<img>`` loads it by."""
        image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels, "RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=_JPEG_QUALITY, optimize=False)
        url = f"{FIGURE_SCHEME}:{len(self._figures) + 1}"
        self._figures[url] = buffer.getvalue()
        return url

    def figure_bytes(self, url: str) -> bytes | None:
        """The JPEG a :meth:`figure` URL names, or None."""
        return self._figures.get(url)

    def get(self, sha256: str | None, name: str) -> StoredImage:
        if not sha256:
            return StoredImage(error="no file stored")
        if sha256 not in self._images:
            self._images[sha256] = self._load(sha256, name)
        return self._images[sha256]

    def _load(self, sha256: str, name: str) -> StoredImage:
        try:
            data = self._load_blob(sha256)
        except KeyError:  # its message is only the key
            return StoredImage(error=f"file sha256 {sha256[:16]}… is not in the blob store")
        except (LookupError, OSError) as exc:
            return StoredImage(error=f"file sha256 {sha256[:16]}… could not be read: {exc}")
        try:
            preview = load_preview(data, side=MAX_IMAGE_SIDE, name=name)
        except PhotoError as exc:
            return StoredImage(error=str(exc))
        return StoredImage(fit(preview.pixels, MAX_IMAGE_SIDE), width=preview.width,
                           height=preview.height)


def fit(pixels: np.ndarray, side: int) -> np.ndarray:
    """``pixels`` downscaled (area-averaged) so that the longer side is at most ``side``."""
    height, width = pixels.shape[:2]
    factor = side / max(height, width)
    if factor >= 1.0:
        return pixels
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def overlay(pixels: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``pixels`` with ``mask`` (uint8 0–255, any size) blended in as translucent red."""
    if mask is None or not mask.any():
        return pixels
    height, width = pixels.shape[:2]
    if mask.shape != (height, width):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
    alpha = mask.astype(np.float32) * (_OVERLAY_MAX_ALPHA / 255.0)
    red = np.empty_like(pixels)
    red[:] = _OVERLAY_RGB
    # per-pixel weights in one OpenCV pass: several times faster than numpy float arrays
    return cv2.blendLinear(pixels, red, 1.0 - alpha, alpha)


def _label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_marks(image: Image.Image, marks: Sequence[dict[str, Any]], *, polygons: bool) -> None:
    """Draw numbered boxes (or polygons) in place; ``marks`` carry display coordinates."""
    draw = ImageDraw.Draw(image)
    line = max(2, round(max(image.size) / 250))
    font = _label_font(max(12, round(max(image.size) / 30)))
    tags: list[tuple[float, float, float, float]] = []
    # the most important finding last, so its box is on top where boxes overlap
    for mark in sorted(marks, key=lambda m: -m["number"]):
        color = _BOX_COLOR.get(mark["strength"], _BOX_COLOR["weak"])
        points = mark["points"]
        if polygons:
            draw.line(points + points[:1], fill=(255, 255, 255), width=line + 2)
            draw.line(points + points[:1], fill=color, width=line)
        else:
            (x0, y0), (x1, y1) = points
            draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline=(255, 255, 255),
                           width=line + 2)
            draw.rectangle((x0, y0, x1, y1), outline=color, width=line)
        tag = str(mark["number"])
        left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
        pad = max(2, line)
        tx = min(max(0.0, min(p[0] for p in points)), image.width - (right - left) - 2 * pad)
        ty = min(p[1] for p in points) - (bottom - top) - 2 * pad
        if ty < 0:  # no room above the box: put the tag just inside it
            ty = min(p[1] for p in points)
        width, height = right - left + 2 * pad, bottom - top + 2 * pad
        while any(tx < x1 and tx + width > x0 and ty < y1 and ty + height > y0
                  for x0, y0, x1, y1 in tags) and tx + 2 * width < image.width:
            tx += width + 1  # boxes that start together: tags side by side, not stacked
        tags.append((tx, ty, tx + width, ty + height))
        draw.rectangle((tx, ty, tx + width, ty + height), fill=color)
        draw.text((tx + pad - left, ty + pad - top), tag, fill=(255, 255, 255), font=font)


def _region_box(value: Any) -> tuple[float, float, float, float] | None:
    """(x, y, w, h) from a region dict; ``width``/``height`` or ``w``/``h`` keys."""
    if not isinstance(value, Mapping):
        return None
    try:
        x, y = float(value["x"]), float(value["y"])
        w = float(value["width"] if "width" in value else value["w"])
        h = float(value["height"] if "height" in value else value["h"])
    except (KeyError, TypeError, ValueError):
        return None
    return (x, y, w, h) if w > 0 and h > 0 else None


def finding_regions(finding: Mapping[str, Any]) -> list[tuple[float, float, float, float]]:
    details = finding.get("details") or {}
    listed = details.get("regions") if isinstance(details, Mapping) else None
    boxes = [b for b in (_region_box(r) for r in listed or ()) if b]
    if not boxes:  # the finding's region is the union when there are several
        box = _region_box(finding.get("region"))
        boxes = [box] if box else []
    return boxes


def reference_polygon(box: tuple[float, float, float, float], transform: Any,
                       ) -> list[tuple[float, float]] | None:
    """The photo box carried onto the reference: ``transform`` maps reference → photo."""
    try:
        matrix = np.asarray(transform, dtype=np.float64).reshape(3, 3)
        inverse = np.linalg.inv(matrix)
    except (TypeError, ValueError, np.linalg.LinAlgError):
        return None
    x, y, w, h = box
    corners = np.array([[x, y, 1], [x + w, y, 1], [x + w, y + h, 1], [x, y + h, 1]], np.float64)
    mapped = corners @ inverse.T
    if np.any(np.abs(mapped[:, 2]) < 1e-9):
        return None
    mapped = mapped[:, :2] / mapped[:, 2:3]
    return [(float(px), float(py)) for px, py in mapped] if np.all(np.isfinite(mapped)) \
        else None
