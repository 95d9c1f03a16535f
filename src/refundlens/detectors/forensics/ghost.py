"""JPEG ghosts: a region that still carries an earlier compression the rest does not.

When a JPEG is re-quantised with the table of quality *q*, blocks whose DCT coefficients
already lie on that table's lattice change very little: a region that was once saved at
*q* (a patch cut from another JPEG, a photo re-saved before the edit) shows a "ghost" — a
dip of the re-compression error at *q* that the rest of the photo does not show (Farid
2009, §2, eq. 1–3). Farid re-saves the image at every quality; here the same difference is
computed in the DCT domain, which is exact up to pixel rounding (Parseval): for each 8×8
block, coefficient ``c`` re-quantised with step ``T_q`` errs by ``c - T_q·round(c/T_q)``.

The error is normalised per coefficient by what it would be for coefficients with no
history at *q*: values already on the photo's final lattice ``T_f`` spread uniformly over
``T_q/T_f`` points, so their mean squared error is ``(T_q² − T_f²)/12``. The ratio ``R`` is
≈ 1 without a ghost and ≈ 0 with one, whatever the block's content, so a cell is compared
with the photo's typical ``R`` directly. Only coefficients that quantise to a non-zero
value at *q* (``|c| ≥ T_q/2``) and positions where ``T_q ≥ 1.5·T_f`` (a lattice coarser
than the final one) carry information and are counted.

The region is the most significant one over all qualities searched; its reported
``ghost_quality`` is the lowest quality at which it still dips (a patch saved at 50 also
dips at 75 and 90, whose finer lattices nearly contain the coarser one).

Only aligned ghosts are searched (the patch kept the 8×8 grid phase of the photo); a patch
pasted at an arbitrary offset keeps its ghost on a shifted grid, which Farid finds by
trying all 64 shifts — too slow for this budget. Only for JPEG files.

References:
    H. Farid, "Exposing Digital Forgeries From JPEG Ghosts", IEEE Trans. Information
    Forensics and Security 4(1):154–160, 2009, §2.
    Z. Lin, J. He, X. Tang, C.-K. Tang, "Fast, automatic and fine-grained tampered JPEG
    image detection via DCT coefficient analysis", Pattern Recognition 42(11):2492–2501,
    2009, §3 (double quantisation of aligned DCT coefficients).
    ITU-T T.81 (1992), Annex K.1, Table K.1 (the IJG luminance table) and the IJG libjpeg
    quality scaling (jcparam.c, ``jpeg_quality_scaling``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Mapping

import cv2
import numpy as np

from .anomaly import Measurement, find_region, robust_z
from .grid import BLOCK, block_view

__all__ = ["GHOST_QUALITIES", "estimate_quality", "ghost", "ijg_table"]

#: ITU-T T.81 Table K.1, luminance, natural (row-major) order.
_K1 = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], np.float32).reshape(8, 8)

#: Qualities searched for a ghost: the range that editing apps, messengers and web
#: platforms save at (50–95); below 50 an earlier save would be visibly blocky.
GHOST_QUALITIES = (50, 55, 60, 65, 70, 75, 80, 85, 90, 95)

_C = np.array([[(math.sqrt(0.125) if u == 0 else 0.5) * math.cos((2 * x + 1) * u * math.pi / 16)
                for x in range(8)] for u in range(8)], np.float32)  # orthonormal DCT-II


@lru_cache(maxsize=None)
def ijg_table(quality: int) -> np.ndarray:
    """The IJG (libjpeg) luminance quantisation table for ``quality`` 1–100, (8, 8)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality {quality}: expected 1–100")
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    table = np.clip(np.floor((_K1 * scale + 50) / 100), 1, 255).astype(np.float32)
    table.setflags(write=False)
    return table


@lru_cache(maxsize=1)
def _log_tables() -> np.ndarray:
    return np.log(np.stack([ijg_table(q) for q in range(1, 101)]))


def estimate_quality(table: np.ndarray) -> int:
    """The IJG quality whose luminance table is closest to ``table`` (mean absolute log
    ratio); for custom camera tables this is the IJG-equivalent quality."""
    target = np.log(np.maximum(np.asarray(table, np.float32).reshape(8, 8), 1))
    return int(np.abs(_log_tables() - target).mean(axis=(1, 2)).argmin()) + 1


def ghost(luma: np.ndarray, quantization: Mapping[int, tuple[int, ...]], *,
          qualities: tuple[int, ...] = GHOST_QUALITIES, max_blocks: int = 8_000,
          target_cells: int = 900) -> Measurement:
    """Search ``luma`` (uint8, stored orientation) for an aligned JPEG ghost.

    Args:
        luma: the photo's luma on its JPEG grid (:func:`~.grid.stored_luma`).
        quantization: the file's quantisation tables (``Photo.jpeg_quantization``);
            table 0 (luminance) is used.
        qualities: IJG qualities to test.
        max_blocks: sample every ``step``-th block so that at most this many are used.
        target_cells: about how many cells the photo is divided into.
    """
    final = np.asarray(quantization[0], np.float32).reshape(8, 8)
    n_blocks = (luma.shape[0] // BLOCK) * (luma.shape[1] // BLOCK)
    step = max(1, math.ceil(math.sqrt(n_blocks / max_blocks)))
    blocks = block_view(luma, step=step)
    by, bx = blocks.shape[:2]
    n = by * bx
    # Separable 2-D DCT as two products of all blocks' rows with the 8×8 DCT matrix
    # (OpenCV's gemm: single-threaded and fast for this shape, where a threaded BLAS spends
    # more time waking threads than computing). The result is each block's coefficient
    # matrix transposed, so the tables are transposed too.
    rows = blocks.reshape(-1, 8).astype(np.float32) - 128.0
    half = cv2.gemm(rows, _C, 1.0, None, 0.0, flags=cv2.GEMM_2_T)
    half = np.ascontiguousarray(half.reshape(n, 8, 8).swapaxes(1, 2)).reshape(-1, 8)
    coefficients = cv2.gemm(half, _C, 1.0, None, 0.0, flags=cv2.GEMM_2_T).reshape(n, 64)
    final_t = final.T.reshape(64)

    size = max(1, round(math.sqrt(n / target_cells)))
    gy, gx = by // size, bx // size
    best = None
    curves: dict[int, float] = {}
    residuals: dict[int, np.ndarray] = {}
    for quality in qualities:
        table = ijg_table(quality).T.reshape(64)
        usable = table >= 1.5 * final_t
        if int(usable.sum()) < 3:
            continue
        steps = np.round(coefficients / table)
        # Counted: usable positions whose coefficient is non-zero at quality q (|c| ≥ T_q/2).
        selected = ((steps != 0) & usable).astype(np.float32)
        err = np.einsum("nk,nk->n", np.square(coefficients - table * steps), selected)
        exp = np.einsum("nk,k->n", selected,
                        np.where(usable, (table ** 2 - final_t ** 2) / 12.0, 0.0)
                        .astype(np.float32))
        count = selected.sum(axis=1)
        err, exp, count = err.reshape(by, bx), exp.reshape(by, bx), count.reshape(by, bx)
        err_c = _group_sum(err, size, gy, gx)
        exp_c = _group_sum(exp, size, gy, gx)
        count_c = _group_sum(count, size, gy, gx)
        # 12 coefficients give R a relative standard error of ~0.4 for R ≈ 1 (each
        # squared error is roughly exponential); fewer and the cell is left out.
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(count_c >= 12, err_c / exp_c, np.nan)
        if np.isfinite(ratio).sum() == 0:
            continue
        curves[quality] = round(float(np.nanmedian(ratio)), 3)
        # log(R + 0.05): a perfect ghost (R → 0) is limited to the rounding noise of
        # decoding, ~0.05 of the no-ghost error at the qualities searched.
        residual = np.log(ratio + 0.05).astype(np.float32)
        residuals[quality] = residual
        # Cells' log-ratios have a robust σ of 0.13–0.2 on genuine photos; the floor of
        # 0.1 keeps a photo with uniformly perfect ratios from inflating z.
        anomaly = find_region(residual, directions=(-1,), spread_floor=0.1)
        if anomaly is not None and (best is None or anomaly.statistic > best[1].statistic):
            best = (quality, anomaly, residual)
    info = {"final_quality": estimate_quality(final), "step": step, "blocks": int(by * bx),
            "median_ratio": curves}
    if best is None:
        return Measurement("ghost", np.full((gy, gx), np.nan, np.float32), size * step * BLOCK,
                           None, info)
    info["ghost_quality"] = _earliest_quality(residuals, best[1].mask, fallback=best[0])
    return Measurement("ghost", best[2], size * step * BLOCK, best[1], info)


def _earliest_quality(residuals: dict[int, np.ndarray], mask: np.ndarray, *,
                      fallback: int) -> int:
    """The lowest quality at which the region shows a ghost (mean z ≤ −3).

    A lattice of quality *q* also lies close to the lattices of finer tables (at ~2q the
    steps are about halved), so a patch saved at 50 dips at 50, 75, 90...; the coarsest
    table it still sits on is the one it was saved with (Farid 2009, §2, Fig. 1).
    """
    for quality in sorted(residuals):
        z = robust_z(residuals[quality], spread_floor=0.1)[mask]
        z = z[np.isfinite(z)]
        if z.size and float(z.mean()) <= -3.0:
            return quality
    return fallback


def _group_sum(values: np.ndarray, size: int, gy: int, gx: int) -> np.ndarray:
    return values[:gy * size, :gx * size].reshape(gy, size, gx, size).sum(axis=(1, 3))
