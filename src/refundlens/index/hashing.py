"""Perceptual photo hashes: a 64-bit DCT pHash of the photo, of its mirror image and of its
centre crop, plus the exact sha256 of the file.

The pHash follows Zauner (2010), §4.2 ("DCT based hash"): luma, low-pass, shrink to 32×32,
2-D DCT-II, keep the 8×8 block of the lowest frequencies *without* the DC row and column
(coefficients 1..8 × 1..8), and set bit ``i`` where coefficient ``i`` is above the median
of the 64. Because only the signs of AC coefficients relative to their median count, the
hash does not move under rescaling, JPEG recompression, or brightness/contrast changes
(any positive affine change of the luma scales every AC coefficient alike), and little
under gamma curves and mild filters.

What each hash catches (measured on /work/shared/data, see ``bench/reuse_bench.py``):

- ``phash``: the same photo rescaled (down to 1/8), recompressed (JPEG q ≥ 30), with
  brightness, contrast or gamma changed, slightly blurred or sharpened, with a small
  caption or sticker, or cropped by up to ~5 % per side.
- ``mirrored``: the pHash of the horizontally flipped photo. Stored in the index so a
  mirrored re-upload of a stored photo matches (a mirror flips the sign of every odd
  horizontal frequency, which a plain pHash reads as a different photo).
- ``crop``: the pHash of the central 80 % (per side) of the photo. Stored and queried so a
  centred crop of 10 % per side (±5 %) matches in either direction: a query that is a crop
  of a stored photo, or a stored photo that is a crop of the query.

What none of them catches: heavy or strongly off-centre crops (the photo's framing changes
what the 32×32 thumbnail holds), rotations beyond ~3° and 90° turns (EXIF orientation is
undone at load, so only pixel rotations matter), mirrored *and* cropped copies, vertical
flips, perspective changes (a photo of a screen showing the photo), and a genuinely new
photo of the same item. Those are what the reference detector's keypoint matching is for.

Near-flat photos (a blank sheet, a 1×1 image) have no structure for a pHash: their 64
coefficients are noise or zero, and every flat photo would share one hash. Their hashes
are marked ``informative=False`` and such photos are matched only by sha256.

References:
    C. Zauner, "Implementation and Benchmarking of Perceptual Image Hash Functions",
    Master's thesis, Upper Austria University of Applied Sciences, 2010, §4.2.
    N. Ahmed, T. Natarajan, K. R. Rao, "Discrete Cosine Transform", IEEE Trans. Computers,
    C-23(1), 1974 (the DCT-II).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from ..models import Photo

__all__ = ["CROP_FRACTION", "HASH_BITS", "PhotoHashes", "dct_hash", "hamming", "photo_hashes"]

#: Bits per perceptual hash: the 8×8 low-frequency DCT block of Zauner (2010), §4.2.
HASH_BITS = 64

#: Side of the thumbnail the DCT runs on (Zauner 2010, §4.2: 32×32).
_DCT_SIZE = 32

#: Fraction of each side kept by the crop hash. 0.8 (10 % off each side) sits where the
#: full-frame hash stops matching: in our measurement the full pHash of a centred crop
#: stays within the match distance up to ~5 % per side, and the crop hash covers ~5–15 %
#: per side, so the two together cover centred crops from 0 to ~15 % per side.
CROP_FRACTION = 0.8

#: Long side of the grey working image all hashes are cut from: 8× the 32-pixel DCT input,
#: so each thumbnail pixel averages ≥ 64 working pixels (noise and JPEG blocking average
#: out) and the 80 % crop still has > 6× the DCT input's resolution.
_WORK_SIDE = 256

#: Photos larger than this are first shrunk with bilinear sampling, which reads only the
#: rows it needs (≈2 ms for 12 MP against ≈45 ms for a full area average); the area
#: average from here to the working size then removes the aliasing that sampling let in.
_PRESHRINK_SIDE = 2 * _WORK_SIDE

#: A thumbnail whose luma standard deviation is below this many grey levels is treated
#: as flat (uninformative hash). One grey level is below JPEG's quantisation noise at any
#: usual quality, so only truly blank images fall under it; measured: every photo in
#: /work/shared/data is above 9.
_FLAT_STD = 1.0


@dataclass(frozen=True)
class PhotoHashes:
    """The hashes the reuse index stores for one photo.

    ``phash``, ``mirrored`` and ``crop`` are unsigned 64-bit integers (see the module
    docstring); ``informative`` is False for near-flat photos, which are matched by
    ``sha256`` only.
    """

    sha256: str
    phash: int
    mirrored: int
    crop: int
    informative: bool = True

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"PhotoHashes.sha256={self.sha256!r}: expected 64 lowercase "
                             f"hex digits")
        for name in ("phash", "mirrored", "crop"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < 1 << HASH_BITS:
                raise ValueError(f"PhotoHashes.{name}={value!r}: expected an unsigned "
                                 f"{HASH_BITS}-bit integer")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (hashes as 16 hex digits), read back by :meth:`from_dict`."""
        return {"sha256": self.sha256, "phash": f"{self.phash:016x}",
                "mirrored": f"{self.mirrored:016x}", "crop": f"{self.crop:016x}",
                "informative": self.informative}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PhotoHashes":
        """Hashes from :meth:`to_dict` output (e.g. the reuse detector's ``info``)."""
        try:
            return cls(sha256=str(values["sha256"]), phash=int(values["phash"], 16),
                       mirrored=int(values["mirrored"], 16), crop=int(values["crop"], 16),
                       informative=bool(values.get("informative", True)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"photo hashes {dict(values)!r}: expected sha256 and 16-digit "
                             f"hex phash, mirrored and crop ({exc})") from exc


def photo_hashes(photo: Photo) -> PhotoHashes:
    """The reuse hashes of ``photo``: sha256 of its bytes and three 64-bit pHashes.

    Works on a downscaled grey copy (≈3–5 ms for a 12 MP photo); any size from 1×1 up and
    grey or colour photos are accepted.
    """
    work = _working_gray(photo.pixels)
    thumb = _thumbnail(work)
    h, w = work.shape
    ch, cw = max(1, round(h * CROP_FRACTION)), max(1, round(w * CROP_FRACTION))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    crop = _thumbnail(work[y0:y0 + ch, x0:x0 + cw])
    return PhotoHashes(
        sha256=photo.sha256,
        phash=dct_hash(thumb),
        mirrored=dct_hash(thumb[:, ::-1]),
        crop=dct_hash(crop),
        informative=bool(thumb.std() >= _FLAT_STD),
    )


def dct_hash(thumbnail: np.ndarray) -> int:
    """Zauner's 64-bit DCT hash of a 32×32 float32 luma thumbnail, as an int.

    Bit 63 (most significant) is coefficient (1, 1); bits follow row-major order.
    """
    if thumbnail.shape != (_DCT_SIZE, _DCT_SIZE):
        raise ValueError(f"dct_hash: thumbnail of shape {thumbnail.shape}, expected "
                         f"({_DCT_SIZE}, {_DCT_SIZE})")
    coefficients = cv2.dct(np.ascontiguousarray(thumbnail, dtype=np.float32))[1:9, 1:9]
    bits = (coefficients > np.median(coefficients)).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def _working_gray(pixels: np.ndarray) -> np.ndarray:
    """Grey copy of ``pixels`` with the long side at most :data:`_WORK_SIDE`."""
    h, w = pixels.shape[:2]
    long_side = max(h, w)
    if long_side > _PRESHRINK_SIDE:
        scale = _PRESHRINK_SIDE / long_side
        pixels = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))),
                            interpolation=cv2.INTER_LINEAR)
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        gray = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
    elif pixels.ndim == 2:
        gray = np.ascontiguousarray(pixels)
    else:
        raise ValueError(f"photo pixels of shape {pixels.shape}: expected (H, W, 3) RGB "
                         f"or (H, W) grey")
    h, w = gray.shape
    if max(h, w) > _WORK_SIDE:
        scale = _WORK_SIDE / max(h, w)
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)
    return gray


def _thumbnail(gray: np.ndarray) -> np.ndarray:
    """The 32×32 float32 DCT input. The aspect ratio is not kept (as in Zauner 2010): a
    rescaled copy keeps its aspect, and squashing is what makes crops comparable."""
    interpolation = cv2.INTER_AREA if min(gray.shape) >= _DCT_SIZE else cv2.INTER_LINEAR
    return cv2.resize(gray, (_DCT_SIZE, _DCT_SIZE),
                      interpolation=interpolation).astype(np.float32)
