"""Perceptual photo hashes for the reuse index: DCT pHashes of the photo, its mirror image
and three centred crops, each at 64 bits (for search) and 256 bits (for verification),
plus the sha256 of the file.

The hash is Zauner's DCT-based hash (2010; the pHash library's ``ph_dct_imagehash``):
luma, shrink to 32×32 (an area average, standing in for his 7×7 mean filter), 2-D DCT-II,
keep the lowest-frequency AC coefficients, and set a bit where a coefficient is above
their median. Only the signs of AC coefficients relative to their median count, so the
hash does not move under rescaling, JPEG recompression, or brightness/contrast changes (a
positive affine change of luma scales every AC coefficient alike), and little under gamma
curves, blur and sharpening.

One deviation from Zauner, measured: his hash takes the 8×8 block of coefficients
(1..8, 1..8), which leaves out row 0 and column 0 — the purely horizontal and vertical
frequencies, the most stable ones under crops and small rotations. We take the first 64
(and 256) AC coefficients in JPEG zigzag order (ITU-T T.81, Figure A.6) instead, i.e. the
lowest frequencies of every orientation. On the shared data, at 64-bit distance ≤ 8, this
found 98 % of copies cropped by 10 % per side against 94 %, and 90 % of 3° rotations
against 80 %; the closest pair of different photos came 2 bits closer (10 against 12),
which the 256-bit verification absorbs.

The variants (:data:`VARIANTS`):

- ``full``: the whole photo. Catches rescaling (down to 1/4 and below), recompression
  (JPEG q ≥ 30), tone changes, blur, small captions, up to ~2 % crop per side and ~2°
  rotation.
- ``mirrored``: the whole photo flipped left–right. A mirror flips the sign of every odd
  horizontal frequency, which a plain pHash reads as a different photo.
- ``crop92``, ``crop84``, ``crop76``: the central 92 %, 84 % and 76 % of each side. Stored
  so that a centred crop of a stored photo (up to ~13 % per side) matches, and queried so
  that a stored photo that is a centred crop of the query matches too.

What none of them catches: crops above ~15 % per side, cutting more than ~5 % off one
side only (a screenshot's status bar, say), rotations beyond ~3° and 90° turns
(EXIF orientation is undone at load, so only pixel rotations matter), mirrored *and*
cropped copies, vertical flips, perspective changes (a photo of a screen), and a new photo
of the same item — that is the reference detector's job. Copies with a large pasted patch
(a forged stain over 5–10 % of the photo) are found about four times in five.

Photos with too little structure (a blank sheet, a 1×1 image, a smooth two-colour
gradient) have hashes that are mostly noise: bits whose coefficient sits at the median
flip under any re-save, and every flat photo shares one hash. When fewer than 48 of the
64 coefficients stand clear of the noise, the photo is marked ``informative=False`` and
matched by sha256 only.

References:
    C. Zauner, "Implementation and Benchmarking of Perceptual Image Hash Functions",
    Master's thesis, Upper Austria University of Applied Sciences, Hagenberg, 2010
    (the DCT-based hash and its benchmark).
    N. Ahmed, T. Natarajan, K. R. Rao, "Discrete Cosine Transform", IEEE Trans. Computers
    C-23(1), 1974 (the DCT-II).
    ITU-T T.81 (JPEG), Annex A.3.6, Figure A.6 (zigzag order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from ..models import Photo

__all__ = ["FINE_BITS", "HASH_BITS", "HASH_VERSION", "VARIANTS", "PhotoHashes", "hamming",
           "photo_hashes"]

#: Bits of the search hash (one SQLite INTEGER, one uint64 in memory).
HASH_BITS = 64
#: Bits of the verification hash: four times the coefficients, so a chance agreement
#: between different photos is far rarer (see :mod:`refundlens.index.reuse`).
FINE_BITS = 256
#: Changes whenever a change here would make stored hashes incomparable with new ones.
HASH_VERSION = 1

#: Hash variants, in the order they are stored: name -> fraction of each side kept,
#: with the mirror marked by a negative fraction.
VARIANTS: dict[str, float] = {
    "full": 1.0,
    "mirrored": -1.0,
    # 4, 8 and 12 % off each side: with the full hash, each matches centred crops within
    # ~2 % per side of its own, so together they cover 0–13 % per side (measured with
    # bench/reuse_bench.py: 99–100 % found at 3, 6, 10 and 13 %, 1 % at 16 %). A fourth
    # step would add a fifth to memory for crops that remove over half of the photo.
    "crop92": 0.92,
    "crop84": 0.84,
    "crop76": 0.76,
}

#: Side of the thumbnail the DCT runs on (32×32, as in Zauner 2010 and pHash).
_DCT_SIZE = 32

#: Long side of the grey working image all variants are cut from: 8× the DCT input, so
#: each thumbnail pixel averages ~25–64 working pixels (a 4:3 photo's 76 % crop to a
#: square one), enough for noise and JPEG blocking to average out.
_WORK_SIDE = 256

#: Photos larger than this are first shrunk with bilinear sampling, which reads only the
#: rows it needs (≈2 ms for 12 MP against ≈45 ms for a full area average); the area
#: average from here to the working size then removes most of the aliasing that
#: sampling let in. Measured: rescaled copies keep distance ≤ 2 in 90 % of photos.
_PRESHRINK_SIDE = 2 * _WORK_SIDE

#: A hash bit is noise when its coefficient is within this many grey levels of the median
#: (the DCT is orthonormal, so a coefficient's noise is the thumbnail's pixel noise, which
#: after averaging ≥ 25 pixels is a few tenths of a grey level even at JPEG q30).
_NOISE_LEVEL = 1.0
#: A photo is informative when at least this many of its 64 coefficients stand clear of
#: the noise. Measured on /work/shared/data: every real photo has ≥ 56; blank images 0; a
#: synthetic two-axis gradient (c2pa/C.jpg, whose energy is all in ~16 coefficients)
#: 17–24, and its 64-bit hash moved by 16–24 bits under a q50 re-save.
_MIN_STABLE_BITS = 48


def _zigzag(size: int) -> np.ndarray:
    """Flat indices of a size×size block in JPEG zigzag order (ITU-T T.81, Fig. A.6)."""
    cells = [(r, c) for r in range(size) for c in range(size)]
    # Odd anti-diagonals run top-right to bottom-left (row rising), even ones the reverse.
    cells.sort(key=lambda rc: (rc[0] + rc[1], rc[0] if (rc[0] + rc[1]) % 2 else rc[1]))
    return np.array([r * size + c for r, c in cells], dtype=np.intp)


_ZIGZAG = _zigzag(_DCT_SIZE)
_COARSE = _ZIGZAG[1:1 + HASH_BITS]   # skip the DC term: it carries brightness only
_FINE = _ZIGZAG[1:1 + FINE_BITS]


@dataclass(frozen=True)
class PhotoHashes:
    """What the reuse index stores for one photo.

    ``coarse`` holds one unsigned 64-bit hash per variant and ``fine`` one 32-byte hash
    per variant, both in :data:`VARIANTS` order; ``informative`` is False for photos with
    too little structure to hash, which are matched by ``sha256`` only.
    """

    sha256: str
    coarse: tuple[int, ...]
    fine: tuple[bytes, ...]
    informative: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.sha256, str) or len(self.sha256) != 64 or \
                self.sha256.strip("0123456789abcdef"):
            raise ValueError(f"PhotoHashes.sha256={self.sha256!r}: expected 64 lowercase "
                             f"hex digits")
        # map/set over builtins: this runs once per row of a million-row bulk load.
        coarse, fine = self.coarse, self.fine
        if len(coarse) != len(VARIANTS) or set(map(type, coarse)) != {int} or \
                min(coarse) < 0 or max(coarse) >> HASH_BITS:
            raise ValueError(f"PhotoHashes.coarse={coarse!r}: expected {len(VARIANTS)} "
                             f"unsigned {HASH_BITS}-bit integers")
        if len(fine) != len(VARIANTS) or set(map(type, fine)) != {bytes} or \
                set(map(len, fine)) != {FINE_BITS // 8}:
            raise ValueError(f"PhotoHashes.fine: expected {len(VARIANTS)} hashes of "
                             f"{FINE_BITS // 8} bytes")

    @property
    def phash(self) -> int:
        """The full-frame 64-bit pHash."""
        return self.coarse[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, hashes as hex by variant; read back by :meth:`from_dict`."""
        return {
            "sha256": self.sha256,
            "informative": self.informative,
            "hash_version": HASH_VERSION,
            "phash64": {name: f"{h:016x}" for name, h in zip(VARIANTS, self.coarse)},
            "phash256": {name: h.hex() for name, h in zip(VARIANTS, self.fine)},
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PhotoHashes":
        """Hashes from :meth:`to_dict` output (e.g. the reuse detector's ``info``).

        Raises:
            ValueError: a field is missing or malformed, or the hashes were made by
                another hash version (they would not compare).
        """
        try:
            version = int(values.get("hash_version", HASH_VERSION))
            if version != HASH_VERSION:
                raise ValueError(f"hash_version {version}, this build computes "
                                 f"{HASH_VERSION}; rehash the photo")
            return cls(
                sha256=str(values["sha256"]),
                coarse=tuple(int(values["phash64"][name], 16) for name in VARIANTS),
                fine=tuple(bytes.fromhex(values["phash256"][name]) for name in VARIANTS),
                informative=bool(values.get("informative", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"photo hashes: {exc}; expected the output of "
                             f"PhotoHashes.to_dict() (sha256, phash64 and phash256 by "
                             f"variant: {', '.join(VARIANTS)})") from exc


def photo_hashes(photo: Photo) -> PhotoHashes:
    """The reuse hashes of ``photo`` (≈3–5 ms for 12 MP: it works on a ≤256 px grey copy).

    Any size from 1×1 up, grey or colour, is accepted.
    """
    work = _working_gray(photo.pixels)
    coarse, fine, stable = zip(*(_dct_hashes(_thumbnail(work, fraction))
                                 for fraction in VARIANTS.values()))
    return PhotoHashes(sha256=photo.sha256, coarse=coarse, fine=fine,
                       informative=stable[0] >= _MIN_STABLE_BITS)


def hamming(a: int | bytes, b: int | bytes) -> int:
    """Number of differing bits between two hashes of the same kind."""
    if isinstance(a, bytes) and isinstance(b, bytes):
        return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()
    if isinstance(a, int) and isinstance(b, int):
        return (a ^ b).bit_count()
    raise TypeError(f"hamming: got {type(a).__name__} and {type(b).__name__}, expected two "
                    f"ints or two bytes")


def _dct_hashes(thumbnail: np.ndarray) -> tuple[int, bytes, int]:
    """The 64-bit (as int) and 256-bit (as bytes) hashes of a 32×32 float32 thumbnail, and
    how many of the 64 bits stand clear of the noise.

    Bit 63 / the first bit is the first AC coefficient in zigzag order.
    """
    spectrum = cv2.dct(thumbnail).ravel()
    coarse = spectrum[_COARSE]
    fine = spectrum[_FINE]
    median = np.median(coarse)
    coarse_bits = np.packbits(coarse > median).tobytes()
    fine_bits = np.packbits(fine > np.median(fine)).tobytes()
    stable = int(np.count_nonzero(np.abs(coarse - median) >= _NOISE_LEVEL))
    return int.from_bytes(coarse_bits, "big"), fine_bits, stable


def _working_gray(pixels: np.ndarray) -> np.ndarray:
    """Grey copy of ``pixels`` with the long side at most :data:`_WORK_SIDE`."""
    h, w = pixels.shape[:2]
    if max(h, w) > _PRESHRINK_SIDE:
        scale = _PRESHRINK_SIDE / max(h, w)
        pixels = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))),
                            interpolation=cv2.INTER_LINEAR)
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        gray = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
    elif pixels.ndim == 2:
        gray = np.ascontiguousarray(pixels)
    else:
        raise ValueError(f"photo pixels of shape {pixels.shape}: expected (H, W, 3) RGB or "
                         f"(H, W) grey")
    h, w = gray.shape
    if max(h, w) > _WORK_SIDE:
        scale = _WORK_SIDE / max(h, w)
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)
    return gray


def _thumbnail(gray: np.ndarray, fraction: float) -> np.ndarray:
    """The 32×32 float32 DCT input for one variant: the central ``|fraction|`` of each
    side, mirrored when ``fraction`` is negative. The aspect ratio is not kept (as in
    Zauner 2010): rescaled copies keep theirs, and squashing keeps crops comparable."""
    keep = abs(fraction)
    if keep < 1.0:
        h, w = gray.shape
        ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        gray = gray[y0:y0 + ch, x0:x0 + cw]
    if fraction < 0:
        gray = gray[:, ::-1]
    interpolation = cv2.INTER_AREA if min(gray.shape) >= _DCT_SIZE else cv2.INTER_LINEAR
    thumb = cv2.resize(np.ascontiguousarray(gray), (_DCT_SIZE, _DCT_SIZE),
                       interpolation=interpolation)
    return thumb.astype(np.float32)
