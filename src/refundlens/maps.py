"""Likelihood maps: resize, combine and write them as 8-bit masks."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from PIL import Image

__all__ = ["combine_maps", "resize_map", "save_mask_png"]


def resize_map(values: np.ndarray, *, width: int, height: int) -> np.ndarray:
    """A float32 map in [0, 1] stretched (bilinear) to ``width`` × ``height``."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"a map must be 2-D, got shape {values.shape}")
    if values.shape != (height, width):
        values = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(values, 0.0, 1.0)


def combine_maps(maps: Iterable[np.ndarray], *, width: int, height: int) -> np.ndarray:
    """The pixelwise maximum of ``maps`` at ``width`` × ``height`` as ``uint8`` 0–255."""
    combined = np.zeros((height, width), dtype=np.float32)
    for values in maps:
        np.maximum(combined, resize_map(values, width=width, height=height), out=combined)
    return np.round(combined * 255.0).astype(np.uint8)


def save_mask_png(mask: np.ndarray, path: str | Path) -> Path:
    """Write an 8-bit grayscale PNG; returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="L").save(path, format="PNG")
    return path
