"""Error-level analysis: a region that recompresses differently from the rest of the photo.

Re-saving a JPEG at a known quality changes each 8×8 block by an amount (its *error level*)
that depends on the block's content and on its compression history: blocks already
quantised on a grid close to the re-save table change little, blocks that are not change
more (Krawetz 2007, §"Error Level Analysis"). A region pasted or painted after the photo's
earlier compression therefore shows an error level out of line with the rest.

The raw error level is dominated by texture (edges have high error everywhere), which is
why plain ELA images mislead people. Here each block's error level is compared with that
of blocks of the same texture and brightness in the same photo (:func:`~.anomaly.detrend`)
and only a compact region *above* the photo's own curve counts (the classic ELA
signature of content added after the last compression; the side below is dominated by flat
sky and backdrops on genuine photos).

Blind spot: a photo last saved at the re-save quality itself (90) re-saves almost
unchanged everywhere, edited region included; the ghost and noise methods still run.

Speed: JPEG blocks of the luma are coded independently (ITU-T T.81 §A.2; no chroma here),
so re-saving a mosaic of every ``step``-th block gives exactly the error those blocks would
have in a full re-save. Large photos are sampled this way to at most ``max_blocks`` blocks.

References:
    N. Krawetz, "A Picture's Worth... Digital Image Analysis and Forensics", Hacker Factor
    Solutions, 2007 (Black Hat DC 2008), §"Error Level Analysis".
    ITU-T T.81 (1992) / ISO/IEC 10918-1, §A.2 (block structure), Annex K.1 (tables).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .anomaly import Measurement, cell_means, detrend, find_region
from .grid import BLOCK, block_means, block_view

__all__ = ["DEFAULT_QUALITY", "error_level"]

#: The re-save quality of FotoForensics' ELA (Krawetz's public service) and of most ELA
#: tools: high enough that a clean single-compressed photo changes little.
DEFAULT_QUALITY = 90


def error_level(luma: np.ndarray, *, quality: int = DEFAULT_QUALITY,
                max_blocks: int = 50_000, target_cells: int = 1500) -> Measurement:
    """Measure error-level consistency on ``luma`` (uint8, stored orientation).

    Args:
        luma: the photo's luma on its JPEG grid (:func:`~.grid.stored_luma`).
        quality: the JPEG quality to re-save at.
        max_blocks: sample every ``step``-th block so that at most this many are re-saved.
        target_cells: about how many cells the photo is divided into for the region search.
    """
    n_blocks = (luma.shape[0] // BLOCK) * (luma.shape[1] // BLOCK)
    step = max(1, math.ceil(math.sqrt(n_blocks / max_blocks)))
    blocks = block_view(luma, step=step)
    by, bx = blocks.shape[:2]
    mosaic = np.ascontiguousarray(blocks.swapaxes(1, 2).reshape(by * BLOCK, bx * BLOCK))
    ok, encoded = cv2.imencode(".jpg", mosaic, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not JPEG-encode a {mosaic.shape} luma mosaic")
    resaved = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    level = block_means(cv2.absdiff(mosaic, resaved), BLOCK)

    pixels = mosaic.astype(np.float32)
    brightness = block_means(pixels, BLOCK)
    texture = np.sqrt(np.maximum(block_means(pixels * pixels, BLOCK) - brightness ** 2, 0.0))
    # Clipped blocks cannot move past 0/255 when re-saved, so their error level says
    # nothing about history: more than a quarter of the block at the rails excludes it.
    rails = ((mosaic >= 250) | (mosaic <= 4)).astype(np.float32)
    valid = block_means(rails, BLOCK) <= 0.25
    # log(level + 0.1): 0.1 grey levels is below JPEG's rounding error (±0.5), so flat
    # blocks that re-save exactly do not dominate the log scale.
    residual = detrend(np.log(level + 0.1), [np.log1p(texture), brightness], valid)

    size = max(1, round(math.sqrt(by * bx / target_cells)))
    cells = cell_means(residual, np.isfinite(residual), size)
    # A cell's residual has a robust σ of 0.1–0.35 on the genuine set (10th–90th
    # percentile); the floor of 0.05 keeps synthetic,
    # perfectly regular images from turning tiny spreads into huge z-scores.
    # Only a region with a *higher* error level than its texture predicts is reported: that
    # is the ELA signature of content added after the last compression (Krawetz 2007), while
    # the lower side is dominated, on genuine photos, by flat sky and backdrops that JPEG
    # already quantised to nothing (three quarters of the genuine-set regions above the
    # threshold were on that side).
    anomaly = find_region(cells, directions=(1,), spread_floor=0.05)
    info = {"quality": int(quality), "step": step, "blocks": int(by * bx),
            "cells": list(cells.shape)}
    return Measurement("ela", cells, size * step * BLOCK, anomaly, info)
