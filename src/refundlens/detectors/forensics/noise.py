"""Noise-level inconsistency: a region noisier than the rest of the photo.

A camera photo carries noise from one sensor, one ISO and one denoising pass, so its local
noise level is a smooth function of brightness and content. A region pasted from another
photo (another camera, another ISO, another scale) has a different noise level. Each tile's
noise standard deviation is estimated from the finest diagonal wavelet band, as Mahdian &
Saic 2009 (§3) do per block with Donoho's estimator, then compared with tiles of the same
brightness and structure in the same photo (:func:`~.anomaly.detrend`) — the local,
content-aware comparison of Lyu et al. 2014 (§3).

Two departures from the papers, both measured: σ comes from the mean absolute HH₁
coefficient (√(π/2)·E|x|) rather than the median, because in clean 8-bit photos the median
sits on the 0.5 steps HH₁ takes and cannot resolve small differences; and only regions
*noisier* than predicted are reported — cleaner regions are, on genuine photos, mostly
flat sky, backdrops and phone-denoised areas (see the calibration in the package).

Runs at native resolution (downscaling averages noise away while texture survives) on a
lattice of tiles, every ``step``-th tile, so that at most ~3 megapixels are analysed.

References:
    D. L. Donoho, I. M. Johnstone, "Ideal spatial adaptation by wavelet shrinkage",
    Biometrika 81(3):425–455, 1994, §4.2.
    B. Mahdian, S. Saic, "Using noise inconsistencies for blind image forensics", Image
    and Vision Computing 27(10):1497–1503, 2009, §3.
    S. Lyu, X. Pan, X. Zhang, "Exposing region splicing forgeries with blind local noise
    estimation", International Journal of Computer Vision 110(2):202–221, 2014, §3.
"""

from __future__ import annotations

import math

import numpy as np

from .anomaly import Measurement, detrend, find_region
from .grid import block_means

__all__ = ["noise_level"]

#: E|x| = σ·√(2/π) for x ~ N(0, σ²).
_MEAN_ABS_GAUSS = math.sqrt(math.pi / 2)


def noise_level(luma: np.ndarray, *, max_pixels: int = 3_000_000) -> Measurement:
    """Measure noise-level consistency on ``luma`` (uint8, any orientation).

    Args:
        luma: the photo's luma (:func:`~.grid.stored_luma`).
        max_pixels: sample tiles on a lattice so that at most about this many pixels are
            analysed.
    """
    # Noise is a per-pixel property: downscaling averages it away (by the factor) while
    # texture survives, so the estimate runs at native resolution on a lattice of tiles,
    # every ``step``-th tile in both directions.
    tile = 32 if min(luma.shape) >= 1200 else 16
    ty, tx = luma.shape[0] // tile, luma.shape[1] // tile
    step = max(1, math.ceil(math.sqrt(ty * tx * tile * tile / max_pixels)))
    tiles = luma[:ty * tile, :tx * tile].reshape(ty, tile, tx, tile)[::step, :, ::step, :]
    by, bx = tiles.shape[0], tiles.shape[2]
    img = tiles.reshape(by * tile, bx * tile).astype(np.float32)
    a, b = img[0::2, 0::2], img[0::2, 1::2]
    c, d = img[1::2, 0::2], img[1::2, 1::2]
    half = tile // 2
    # Haar HH₁ (orthonormal). σ from the mean absolute value, √(π/2)·E|x| for Gaussian
    # noise: unlike the median it is not stuck on the 0.5 steps that 8-bit pixels give
    # HH₁; edges that inflate it are removed by the structure term below.
    sigma = block_means(np.abs(a - b - c + d), half) * (0.5 * _MEAN_ABS_GAUSS)
    brightness = block_means(img, tile)
    # Structure from 4×4 means, where noise is averaged down four-fold: their gradients
    # measure the edges and texture that leak into HH₁ and raise σ.
    coarse = block_means(img, 4)
    grad = np.abs(np.diff(coarse, axis=1, append=coarse[:, -1:])) + \
        np.abs(np.diff(coarse, axis=0, append=coarse[-1:, :]))
    structure = block_means(grad, tile // 4)
    # Noise vanishes where pixels clip; a tile more than 10% at the rails is left out.
    rails = ((img >= 250) | (img <= 4)).astype(np.float32)
    valid = block_means(rails, tile) <= 0.10
    # log(σ + 0.25): a quarter grey level is below what 8-bit quantisation alone leaves
    # (1/√12 ≈ 0.29), so noise-free flat tiles stay on a finite scale.
    residual = detrend(np.log(sigma + 0.25).astype(np.float32),
                       [brightness, np.log1p(structure)], valid)
    # A tile's residual has a robust σ of 0.2–0.5 on the genuine set (10th–90th
    # percentile); the floor of 0.05 keeps near-constant
    # synthetic images from producing huge z-scores.
    # Only *noisier* regions are reported. Regions cleaner than their brightness and
    # structure predict are, on genuine photos, mostly flat sky, backdrops and HDR-merged
    # areas that the phone denoised: on the calibration set that side fired on 0.6% of
    # genuine photos while finding 0.7% of the splices.
    anomaly = find_region(residual, directions=(1,), spread_floor=0.05)
    info = {"tile": tile, "step": step, "cells": [by, bx],
            "median_sigma": round(float(np.median(sigma[valid])) if valid.any() else 0.0, 3)}
    return Measurement("noise", residual, tile * step, anomaly, info)
