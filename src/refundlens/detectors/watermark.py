"""Open Stable Diffusion invisible watermark (the ``dwtDct`` scheme of ``invisible-watermark``).

What it detects
    The watermark that the reference Stable Diffusion scripts embed in every output with the
    ``invisible-watermark`` package's default ``dwtDct`` method:

    - ``sd1``: CompVis ``scripts/txt2img.py`` / ``img2img.py`` (SD v1.x): the 136 bits of the
      UTF-8 bytes ``StableDiffusionV1``, embedded on uint8 pixels;
    - ``sd2``: Stability-AI ``stablediffusion`` scripts (SD v2.x): the 32 bits of ``SDV2``,
      embedded on uint8 pixels;
    - ``sdxl``: Stability-AI ``generative-models`` and the diffusers SDXL pipelines: the 48-bit
      mark ``0b101100111110110010010000011110111011000110011110``, embedded on float32 pixels
      (so OpenCV's YUV offset is 0.5, not 128). The variant ``sdxl-rgb`` covers pipelines that
      hand RGB pixels to the BGR-expecting encoder (older diffusers releases).

The scheme, as the package implements it (reproduced here from its algorithm, with an
encoder, :func:`embed_watermark`, for tests and benchmarks): convert BGR to YUV with OpenCV
(``COLOR_BGR2YUV``); for each of channels 0 and 1 whose scale is non-zero (the default
scales are ``[0, 36, 36]`` and the loop stops after channel 1, so only **U** carries the
mark, at scale 36; on the real files Y and V read at chance), crop to a multiple of 4, take the one-level Haar DWT and keep the LL
band; split LL into 4x4 blocks in row-major order; block ``n`` carries payload bit
``n mod L``. In each block the largest-magnitude value among positions 1..15 (position 0
excluded) is quantised: ``v -> sign(v) * (floor(|v| / 36) + 0.25 + 0.5 * bit) * 36``; the
package's decoder reads ``(|v| mod 36) > 18`` per block and takes the majority over the
blocks that carry the same bit. Despite the method's name (and the README's "max
non-DC coefficients of DCT blocks"), the LL values themselves are quantised: on the 23
real SD v1 outputs of the shared data, reading the largest 4x4 *DCT*
coefficient of each LL block (or its DC term) agrees with the payload at chance (0.49-0.54
of blocks), reading the LL values themselves agrees on 0.60-0.94 of blocks.

Decision
    Quantising the block maximum *down* (bit 0) often makes another value the maximum, so
    blocks carrying a 0 read 0 only 21-87 % of the time while blocks carrying a 1 read 1
    92-100 % of the time (measured on the 23 real files): the majority decode is biased to
    1 and recovers all 136 bits from only 7 of them, and nothing from one. The
    decision therefore uses a *rank decode*: for each payload bit, the fraction of its
    blocks that read 1; the ``k`` bits with the highest fractions decode as 1, where ``k``
    is the number of ones in the scheme's payload (public). Under "no watermark" the blocks
    carry nothing about the payload, so which ``k`` positions come out on top is unrelated
    to it and the number of payload ones among them is hypergeometric(L, k, k); its exact
    upper tail is the p-value (ties at the cut are resolved against the payload, so the
    p-value holds for any tie-break). Unlike a binomial test of the majority decode against
    1/2, this stays exact when an image decodes mostly as 0 or 1 (flat grey areas read 0)
    and is immune to the 0/1 asymmetry: it recovers all 136 bits from 22 of the 23 real
    files and 130 from the last, and round-trips :func:`embed_watermark` exactly for every
    payload. The majority decode and its binomial p-value are still reported in ``info``.

    The p-value is Bonferroni-corrected over every (size, scheme) read (20-40 per photo)
    and a finding needs corrected p < 1e-6: at millions of photos a day this detector may
    produce fewer than one chance hit per 10^6 photos. At ~36 reads that takes about
    102/136 bits for ``sd1``, 44/48 for ``sdxl`` and all 32 for ``sd2`` (whose payload is
    too short for anything less to be significant). The score is 0.8 at the threshold and
    reaches 1.0 ten decades below it.

Sizes tried
    Editing apps rescale, so the photo is read at its native size (up to 1536 x 1536; the
    reference scripts write about 1 MP at most) and at the sizes its generator would have
    written, as if the rescale were undone: shorter side 384-768 px (``sd1``), 512-1024
    (``sd2``), 640-1024 (``sdxl``, its buckets), in steps of 64, and 1/2, 1/3, 1/4 of the
    photo when that is a multiple of 8 (every scheme), for rescale factors from 0.45 (a
    x0.5 downscale) to 4 (a x4 upscaler). The longer side follows the aspect ratio, rounded
    to a multiple of 8 (SD sizes are); photos more elongated than 4:1 are read natively
    only. Resampling works on the U plane straight to the LL resolution (half the candidate
    size; the LL band is twice the 2x2 mean) with area averaging, which is exact for a x0.5
    downscale. On the 23 real SD v1 files this finds every one as committed and after
    x0.5, x0.75, x4/3, x1.5, x2 and x3 rescales (Pillow and OpenCV resamplers).

    Performance: a photo over 1536 x 1536 (a 12 MP camera photo) is not read natively: no
    reference script wrote it at that size, and every candidate is then an upscale of x1.5
    or more, so its pixels are first halved (OpenCV's fast exact 2x2 mean) while they still
    cover the largest candidate. A 12 MP photo costs two halvings, one colour conversion of
    ~0.75 MP and six area resizes; smaller photos keep a pyramid of exact halvings and
    resize each candidate from the smallest level still twice its size (``_Pyramid``).

What it cannot detect
    - Anything after lossy compression: the mark lives in the chroma plane at a step of 18
      grey levels per 2x2 cell, and JPEG chroma subsampling and quantisation erase it: of
      the 23 real files re-saved as JPEG, 0 decode at quality 90, 2 at 95, 20 at 98. A
      failed decode is "no evidence", never evidence of a genuine photo.
    - Crops (the block grid and the bit numbering shift), rotations, flips, heavy filters;
      rescales to sizes off the candidate list or off the 8-pixel grid.
    - Generators that do not embed it (Midjourney, DALL-E, most apps, A1111 and ComfyUI by
      default), other payloads (e.g. InvokeAI's own text), the ``dwtDctSvd`` and ``rivaGan``
      methods.

Known false positives
    None expected: the threshold bounds the chance rate, and the rank decode's test does
    not assume balanced bits. No finding on the 238 genuine photos of the shared data large
    enough to read (camera_exif, catalog_and_buyer, c2pa, opencv_samples; smallest
    corrected p 0.15), on 64 generated photos, or on the unwatermarked SD output
    ``vazkir_00001.png``.

References
    - ShieldMnt/invisible-watermark, README, "dwtDct" method (frequency embedding with
      DWT, default scale 36, block 4); Stable Diffusion's use of it: CompVis/stable-diffusion
      ``scripts/txt2img.py`` (``put_watermark``, payload ``StableDiffusionV1``),
      Stability-AI/stablediffusion (``SDV2``), Stability-AI/generative-models
      ``sgm/inference/helpers.py`` (``WATERMARK_MESSAGE``, 48 bits).
    - I. J. Cox, M. L. Miller, J. A. Bloom, J. Fridrich, T. Kalker, *Digital Watermarking and
      Steganography*, 2nd ed., 2008, ch. 5 (watermarking with side information:
      quantisation-based embedding) and ch. 7 (analyzing errors: false-positive
      probability of a detector).
    - B. Chen, G. W. Wornell, "Quantization index modulation: a class of provably good
      methods for digital watermarking and information embedding", IEEE Trans. Inf. Theory
      47(4):1423-1443, 2001 (the QIM and dither-modulation sections: the embed rule above).
    - Hypergeometric (Fisher) tail for the overlap of two k-subsets: any text on exact
      permutation tests, e.g. E. L. Lehmann, J. P. Romano, *Testing Statistical
      Hypotheses*, 3rd ed., 2005, sec. 4.5 (comparing two binomials: Fisher's exact test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..models import Photo
from .base import Detector, DetectorContext, DetectorOutput, Skip

__all__ = ["SCHEMES", "Match", "Scheme", "WatermarkDetector", "block_bits", "binomial_tail",
           "decode_votes", "embed_watermark", "haar_ll", "hypergeometric_tail",
           "payload_bits", "plan_reads", "rank_overlap", "read_marks"]

#: Quantisation step and LL block size of the package's defaults (``scales=[0, 36, 36]``,
#: ``block=4``); every SD script uses the defaults.
SCALE = 36.0
BLOCK = 4

#: Family-wise false-hit rate per photo (module docstring, "Decision").
ALPHA = 1e-6
#: Native decode only up to 1536 x 1536 (module docstring, "Sizes tried").
NATIVE_MAX_PIXELS = 1536 * 1536
#: Rescale factors (photo / candidate) worth undoing: a x0.5 downscale .. a x4 upscaler.
MIN_FACTOR, MAX_FACTOR = 0.45, 4.0
#: The reference encoder refuses images under 256 x 256; a candidate must be at least that.
MIN_SIDE = 256
#: No generator's output is more elongated (SDXL's most extreme bucket is 1536 x 640, 2.4:1);
#: beyond this only the native size is read.
MAX_ASPECT = 4.0
#: The last resize to a candidate averages at least this many source pixels per output
#: pixel along each axis (see ``_Pyramid``).
MIN_AREA_RATIO = 2.0

def payload_bits(payload: bytes | str) -> np.ndarray:
    """The bits the package embeds for a payload: ``bytes`` MSB first (its 'bytes' mode),
    or a string of '0'/'1' (its 'bits' mode)."""
    if isinstance(payload, bytes):
        return np.unpackbits(np.frombuffer(payload, np.uint8))
    if not payload or set(payload) - {"0", "1"}:
        raise ValueError(f"payload {payload!r}: expected bytes or a string of 0/1 bits")
    return np.array([int(c) for c in payload], np.uint8)


@dataclass(frozen=True)
class Scheme:
    """One payload as one pipeline embeds it."""

    name: str
    label: str
    payload: str
    bits: tuple[int, ...]
    offset: float  # OpenCV's YUV offset: 128 for uint8 pixels, 0.5 for float32 pixels
    channel_order: str  # "bgr": the encoder got BGR, as it expects; "rgb": it got RGB
    short_sides: tuple[int, ...]  # shorter sides the generator is used at


_SDXL_BITS = bin(0b101100111110110010010000011110111011000110011110)[2:]


def _bits(payload: bytes | str) -> tuple[int, ...]:
    return tuple(int(b) for b in payload_bits(payload))


SCHEMES: tuple[Scheme, ...] = (
    # SD v1 is trained at 512; the scripts take any multiple of 64 and users go 384-768.
    Scheme("sd1", "Stable Diffusion v1", "StableDiffusionV1", _bits(b"StableDiffusionV1"),
           128.0, "bgr", tuple(range(384, 768 + 1, 64))),
    # SD v2: 512 (base) and 768 (v-models), and the sizes between and around.
    Scheme("sd2", "Stable Diffusion v2", "SDV2", _bits(b"SDV2"),
           128.0, "bgr", tuple(range(512, 1024 + 1, 64))),
    # SDXL's aspect-ratio buckets have shorter sides 640-1024.
    Scheme("sdxl", "Stable Diffusion XL", _SDXL_BITS, _bits(_SDXL_BITS),
           0.5, "bgr", tuple(range(640, 1024 + 1, 64))),
    Scheme("sdxl-rgb", "Stable Diffusion XL (RGB order)", _SDXL_BITS, _bits(_SDXL_BITS),
           0.5, "rgb", tuple(range(640, 1024 + 1, 64))),
)


# --- the scheme ------------------------------------------------------------------------

def _u_planes(rgb: np.ndarray) -> np.ndarray:
    """The encoder's U plane less its offset of 128, for both channel orders: float32
    (H, W, 2), channel 0 for "bgr", 1 for "rgb". OpenCV's 8-bit conversion, as the
    package's own decoder uses (its rounding, at most 0.5, is noise against the 18-level
    step) and several times faster than a float transform."""
    planes = np.empty(rgb.shape[:2] + (2,), np.float32)
    planes[..., 0] = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)[..., 1]  # the true B, G, R
    planes[..., 1] = cv2.cvtColor(rgb, cv2.COLOR_BGR2YUV)[..., 1]  # R and B swapped
    planes -= np.float32(128.0)
    return planes


def _halve(image: np.ndarray) -> np.ndarray:
    """Exact 2x2 means (an odd last row or column is dropped): OpenCV's INTER_AREA at
    factor 2, its fastest path."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    return cv2.resize(image[:2 * h, :2 * w], (w, h), interpolation=cv2.INTER_AREA)


def haar_ll(plane: np.ndarray) -> np.ndarray:
    """LL band of a one-level orthonormal Haar DWT (``pywt.dwt2(x, 'haar')[0]``) of the
    plane cropped to a multiple of 4, as the encoder crops it: twice the 2x2 mean."""
    h, w = plane.shape[0] // 4 * 4, plane.shape[1] // 4 * 4
    return _halve(np.ascontiguousarray(plane[:h, :w], np.float32)) * np.float32(2.0)


def _blocks(ll: np.ndarray) -> np.ndarray:
    """4x4 blocks of an LL band in row-major block order, flattened: (n, 16)."""
    rows, cols = ll.shape[0] // BLOCK, ll.shape[1] // BLOCK
    cut = ll[:rows * BLOCK, :cols * BLOCK]
    return cut.reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3).reshape(-1, BLOCK * BLOCK)


def block_bits(ll: np.ndarray) -> np.ndarray:
    """The bit each 4x4 block of an LL band reads, in row-major block order.

    The decoder reads ``|v| mod 36 > 18`` for the block's carrier ``v``, the value of
    largest magnitude at positions 1..15. Only ``|v|`` matters, so the block maximum of
    ``|LL|`` with each block's position 0 left out is the carrier magnitude (ties too).
    """
    rows, cols = ll.shape[0] // BLOCK, ll.shape[1] // BLOCK
    magnitude = np.abs(ll[:rows * BLOCK, :cols * BLOCK])
    carrier = magnitude[0::BLOCK, 1::BLOCK].copy()
    # Fifteen strided maxima: several times faster than a reduce over the block axes.
    for i in range(BLOCK):
        for j in range(BLOCK):
            if i or j > 1:
                np.maximum(carrier, magnitude[i::BLOCK, j::BLOCK], out=carrier)
    return (np.mod(carrier.ravel(), SCALE) > SCALE / 2).astype(np.uint8)


def decode_votes(bits: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per payload bit: how many blocks read 1, and how many blocks carry it (block ``n``
    carries bit ``n mod length``)."""
    index = np.arange(len(bits)) % length
    ones = np.bincount(index, weights=bits, minlength=length)
    total = np.bincount(index, minlength=length)
    return ones, total


def embed_watermark(rgb: np.ndarray, bits: np.ndarray | tuple[int, ...], *,
                    float_pixels: bool = False, channel_order: str = "bgr") -> np.ndarray:
    """Embed ``bits`` as the package's ``dwtDct`` encoder does (for tests and benchmarks).

    ``float_pixels`` mimics the SDXL pipelines (float32 pixels, YUV offset 0.5, rounded to
    ``uint8`` only at the end); ``channel_order="rgb"`` hands the RGB array to the
    BGR-expecting encoder, as older diffusers releases did. Returns RGB ``uint8``.
    """
    import pywt  # only the encoder needs the detail bands and the inverse DWT

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"embed_watermark: got {rgb.dtype} {rgb.shape}, expected uint8 HxWx3")
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise ValueError(f"embed_watermark: {rgb.shape[1]}x{rgb.shape[0]} is under "
                         f"{MIN_SIDE}x{MIN_SIDE}, which the reference encoder refuses")
    payload = np.asarray(bits, np.uint8)
    handed = rgb[..., ::-1] if channel_order == "bgr" else rgb  # what the encoder gets
    handed = np.ascontiguousarray(handed, np.float32 if float_pixels else np.uint8)
    yuv = cv2.cvtColor(handed, cv2.COLOR_BGR2YUV)
    h, w = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
    ll, details = pywt.dwt2(yuv[:h, :w, 1].astype(np.float64), "haar")
    rows, cols = ll.shape[0] // BLOCK, ll.shape[1] // BLOCK
    blocks = _blocks(ll).copy()
    n = np.arange(len(blocks))
    magnitude = np.abs(blocks)
    magnitude[:, 0] = -1.0  # position 0 never carries
    position = np.argmax(magnitude, axis=1)  # first of equals wins, as in the package
    value = blocks[n, position]
    bit = payload[n % len(payload)]
    blocks[n, position] = np.where(value >= 0, 1.0, -1.0) * \
        (np.floor(np.abs(value) / SCALE) + 0.25 + 0.5 * bit) * SCALE
    ll[:rows * BLOCK, :cols * BLOCK] = blocks.reshape(rows, cols, BLOCK, BLOCK).transpose(
        0, 2, 1, 3).reshape(rows * BLOCK, cols * BLOCK)
    plane = pywt.idwt2((ll, details), "haar")
    if float_pixels:
        yuv[:h, :w, 1] = plane
    else:
        # The package assigns the float plane into the uint8 YUV array: truncation.
        yuv[:h, :w, 1] = np.clip(plane, 0, 255).astype(np.uint8)
    out = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR)
    if float_pixels:
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out[..., ::-1] if channel_order == "bgr" else out)


# --- statistics ------------------------------------------------------------------------

def binomial_tail(matched: int, n: int) -> float:
    """P(X >= matched) for X ~ Binomial(n, 1/2), exact."""
    return sum(math.comb(n, i) for i in range(matched, n + 1)) / 2 ** n


def hypergeometric_tail(overlap: int, n: int, ones_payload: int, ones_decoded: int) -> float:
    """P(O >= overlap), O = positions that are 1 in both the payload and a uniformly random
    arrangement of ``ones_decoded`` ones among ``n`` positions; exact."""
    hits = sum(math.comb(ones_payload, i) * math.comb(n - ones_payload, ones_decoded - i)
               for i in range(overlap, min(ones_payload, ones_decoded) + 1))
    return hits / math.comb(n, ones_decoded)


@dataclass(frozen=True)
class Match:
    """One scheme read at one size.

    ``matched`` / ``p_value``: the rank decode and its exact test (the decision);
    ``plain_matched`` / ``p_binomial``: the package's own majority decode against chance
    (reported for reviewers; not used to decide, see the module docstring).
    """

    scheme: Scheme
    size: tuple[int, int]  # (width, height) the photo was read at
    bits: int
    matched: int
    p_value: float
    plain_matched: int
    p_binomial: float


def rank_overlap(fractions: np.ndarray, payload: np.ndarray) -> int:
    """Payload ones among the ``payload.sum()`` positions with the highest fraction of
    blocks reading 1. Ties at the cut are resolved against the payload (payload-0
    positions take the remaining ones first), so the test's p-value holds for any
    tie-break."""
    k = int(payload.sum())
    cut = np.sort(fractions)[::-1][k - 1]
    above = fractions > cut
    tied = fractions == cut
    left = k - int(above.sum())
    return int((above & (payload == 1)).sum()) + max(0, left - int((tied & (payload == 0)).sum()))


def _match(scheme: Scheme, bits: np.ndarray, size: tuple[int, int]) -> Match:
    payload = np.array(scheme.bits, np.uint8)
    n, k = len(payload), int(payload.sum())
    ones, total = decode_votes(bits, n)
    fractions = ones / np.maximum(total, 1)
    overlap = rank_overlap(fractions, payload)
    # The package's decode: majority, ties to 1 (its mean * 255 > 127).
    plain = (ones * 2 >= total) & (total > 0)
    plain_matched = int((plain == payload.astype(bool)).sum())
    return Match(scheme, size, n, matched=2 * overlap + n - 2 * k,
                 p_value=hypergeometric_tail(overlap, n, k, k),
                 plain_matched=plain_matched, p_binomial=binomial_tail(plain_matched, n))


# --- sizes and reading -----------------------------------------------------------------

def plan_reads(width: int, height: int) -> list[tuple[tuple[int, int], tuple[Scheme, ...]]]:
    """The (width, height) sizes to read a photo at, each with the schemes tested there:
    native (every scheme), each scheme's generation sizes, and the integer fractions
    1/2..1/4 of the photo (every scheme), within the rescale factors undone."""
    short, long = min(width, height), max(width, height)
    reads: dict[tuple[int, int], list[Scheme]] = {}
    if width * height <= NATIVE_MAX_PIXELS and short >= MIN_SIDE:
        reads[(width, height)] = list(SCHEMES)
    if short == 0 or long / short > MAX_ASPECT:
        return [(size, tuple(schemes)) for size, schemes in reads.items()]
    divisors = {short // k for k in (2, 3, 4) if short % k == 0 and (short // k) % 8 == 0}
    for s0 in sorted(divisors | {s for scheme in SCHEMES for s in scheme.short_sides}):
        factor = short / s0
        if s0 < MIN_SIDE or not MIN_FACTOR <= factor <= MAX_FACTOR:
            continue
        # SD sizes are multiples of 8 (the latent is 1/8 of the image).
        l0 = max(8, int(round(long / factor / 8)) * 8)
        size = (l0, s0) if width >= height else (s0, l0)
        schemes = reads.setdefault(size, [])
        for scheme in SCHEMES:
            if (s0 in divisors or s0 in scheme.short_sides) and scheme not in schemes:
                schemes.append(scheme)
    return [(size, tuple(schemes)) for size, schemes in reads.items() if schemes]




class _Pyramid:
    """The U planes and their exact 2x2-mean reductions, made on demand.

    Resampling to a candidate starts from the smallest level still MIN_AREA_RATIO times the
    target's size, so the final ``INTER_AREA`` still averages 2x2 or more source pixels per
    output: close to one area resize of the full plane (which keeps, e.g., the exact 3x3
    cell of a x1.5 upscale), at a fraction of its cost. Starting from the smallest level
    that merely covers the target found 21 of the 23 real SD v1 files after an OpenCV
    bilinear x1.5 upscale and 20 after a Pillow bicubic x4/3, against 23 and 23 here.
    """

    def __init__(self, planes: np.ndarray) -> None:
        self.levels = [planes]

    def ll(self, target: tuple[int, int]) -> np.ndarray:
        """The LL bands (H, W, 2) of the photo at twice ``target`` (width, height)."""
        index = 0
        base_h, base_w = self.levels[0].shape[:2]
        while (base_w >> (index + 1) >= MIN_AREA_RATIO * target[0]
               and base_h >> (index + 1) >= MIN_AREA_RATIO * target[1]):
            index += 1
        while len(self.levels) <= index:
            self.levels.append(_halve(self.levels[-1]))
        source = self.levels[index]
        if source.shape[1] == target[0] and source.shape[0] == target[1]:
            return source * np.float32(2.0)
        shrink = source.shape[1] >= target[0] and source.shape[0] >= target[1]
        resized = cv2.resize(source, target,
                             interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return resized * np.float32(2.0)


def read_marks(rgb: np.ndarray,
               reads: list[tuple[tuple[int, int], tuple[Scheme, ...]]]) -> list[Match]:
    """Every planned (size, scheme) read of an RGB ``uint8`` photo."""
    height, width = rgb.shape[:2]
    native = (width, height)
    source = np.ascontiguousarray(rgb)  # OpenCV needs it; a no-op for decoded photos
    if reads and native not in {size for size, _ in reads}:
        # No native read (a big photo, so every candidate undoes an upscale of x1.5 or
        # more): halve the pixels while the result still covers the largest LL target.
        # Halving is OpenCV's fast path (3 ms for 12 MP, where one x5 INTER_AREA takes
        # 16 ms), and the uint8 rounding of a 2x2 mean (at most 0.5) is noise against the
        # 18-level quantisation step. Keeping twice the target instead (as the pyramid
        # does) found nothing more on SD v1 / SDXL marks upscaled x3-x4 (16 of 16 either
        # way) and cost 1.7x the time.
        need_w = max(w0 // 4 * 2 for (w0, _), _ in reads)
        need_h = max(h0 // 4 * 2 for (_, h0), _ in reads)
        while source.shape[1] // 2 >= need_w and source.shape[0] // 2 >= need_h:
            source = _halve(source)
    pyramid = _Pyramid(_u_planes(source))
    channel = {"bgr": 0, "rgb": 1}
    matches = []
    for size, schemes in reads:
        if size == native:
            lls = np.dstack([haar_ll(pyramid.levels[0][..., c]) for c in (0, 1)])
        else:
            lls = pyramid.ll((size[0] // 4 * 2, size[1] // 4 * 2))
        bits: dict[tuple[str, float], np.ndarray] = {}
        for scheme in schemes:
            key = (scheme.channel_order, scheme.offset)
            if key not in bits:
                # The LL of a constant c is 2c: the offset can enter after resampling.
                bits[key] = block_bits(lls[..., channel[scheme.channel_order]]
                                       + np.float32(2.0 * scheme.offset))
            matches.append(_match(scheme, bits[key], size))
    return matches


# --- the detector ----------------------------------------------------------------------

class WatermarkDetector(Detector):
    """Decodes the open Stable Diffusion watermark (SD v1, v2, SDXL payloads)."""

    name = "watermark"
    version = "1"
    description = ("Open Stable Diffusion invisible watermark (invisible-watermark dwtDct: "
                   "SD v1 'StableDiffusionV1', SD v2 'SDV2', SDXL 48-bit), read at the "
                   "native size and at candidate generation sizes, with exact tests.")
    codes = ("AI_WATERMARK",)

    def __init__(self, *, alpha: float = ALPHA) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"WatermarkDetector: alpha={alpha!r}, expected 0 < alpha < 1")
        self.alpha = alpha

    def run(self, photo: Photo, context: DetectorContext) -> DetectorOutput:
        width, height = photo.width, photo.height
        reads = plan_reads(width, height)
        if not reads:
            raise Skip(f"{width}x{height}: too small to carry the open SD watermark "
                       f"(the encoder needs {MIN_SIDE}x{MIN_SIDE} or more)")
        matches = read_marks(photo.pixels, reads)
        tests = len(matches)  # the Bonferroni count: every (size, scheme) read
        best: dict[str, Match] = {}
        for m in matches:
            if m.scheme.name not in best or m.p_value < best[m.scheme.name].p_value:
                best[m.scheme.name] = m
        # p-values as text: they reach 1e-40, and JSON output rounds floats to 6 decimals.
        info: dict[str, Any] = {
            "sizes_read": [f"{w}x{h}" for (w, h), _ in reads],
            "tests": tests,
            "alpha": self.alpha,
            "schemes": {name: {
                "payload": m.scheme.payload, "bits": m.bits, "size": f"{m.size[0]}x{m.size[1]}",
                "matched": m.matched, "agreement": round(m.matched / m.bits, 4),
                "p_value": f"{m.p_value:.2e}",
                "p_corrected": f"{min(1.0, m.p_value * tests):.2e}",
                "plain_matched": m.plain_matched, "p_binomial": f"{m.p_binomial:.2e}"}
                for name, m in best.items()},
        }
        findings = []
        winner = min(best.values(), key=lambda m: m.p_value)
        corrected = min(1.0, winner.p_value * tests)
        if corrected < self.alpha:
            # 0.8 at the threshold, 1.0 ten decades below it: past the threshold the
            # evidence is conclusive; the score only orders how overwhelming it is.
            decades = math.log10(self.alpha) - math.log10(max(corrected, 1e-300))
            findings.append(self.finding(
                "AI_WATERMARK", score=0.8 + 0.2 * min(1.0, decades / 10.0),
                scheme=winner.scheme.label, payload=winner.scheme.payload,
                matched=winner.matched, bits=winner.bits, p_value=f"{corrected:.1e}",
                size=f"{winner.size[0]}x{winner.size[1]}",
                agreement=round(winner.matched / winner.bits, 4), tests=tests))
        return DetectorOutput(findings, info)
