"""Shared fixtures: image factories (generated photos, JPEG at a quality, recompression,
pasted patches, stripped EXIF) and the paths of committed test data."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from refundlens import Photo, load_photo

DATA = Path(__file__).parent / "data"

#: The claims-service fixtures (database per test on SQLite and PostgreSQL, API client).
pytest_plugins = ["service_fixtures"]


def textured_rgb(width: int = 640, height: int = 480, *, seed: int = 0) -> np.ndarray:
    """A photo-like RGB image: smooth shapes and gradients plus fine sensor-like noise.

    Deterministic for a seed, with enough texture for keypoints and enough noise for
    forensic statistics to behave as on a camera photo.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        image[..., c] = 60 + 80 * (xx / width) + 40 * np.sin(yy / (23 + 7 * c) + c)
    for _ in range(40):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        top = max(2.0, min(width, height) / 5)  # tiny images get tiny shapes
        r = rng.uniform(min(8.0, top / 2), top)
        color = rng.uniform(0, 255, 3)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
        image[mask] = 0.55 * image[mask] + 0.45 * color
    for _ in range(25):
        x0, y0 = rng.integers(0, max(1, width - 10)), rng.integers(0, max(1, height - 10))
        wmax, hmax = max(2, width // 6), max(2, height // 6)
        w, h = rng.integers(min(5, wmax - 1), wmax), rng.integers(min(5, hmax - 1), hmax)
        image[y0:y0 + h, x0:x0 + w] = 0.6 * image[y0:y0 + h, x0:x0 + w] + \
            0.4 * rng.uniform(0, 255, 3)
    image += rng.normal(0, 3.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def painted_crack(reference: np.ndarray) -> np.ndarray:
    """A forgery: the (merchant's) photo with a dark wavy 'crack' painted across a third of
    it, the edit a buyer's app adds to an intact product."""
    forged = reference.copy()
    h, w = forged.shape[:2]
    for i in range(w // 3):
        y = h // 2 + int(12 * np.sin(i / 9))
        forged[y - 2:y + 3, w // 3 + i] = (25, 22, 20)
    return forged


def encode(array: np.ndarray, fmt: str = "JPEG", **save: Any) -> bytes:
    """Encode an array with Pillow (``quality=`` etc. pass through)."""
    buffer = io.BytesIO()
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[array.shape[2] if array.ndim == 3 else 2]
    Image.fromarray(array, mode=mode).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def jpeg(array: np.ndarray, quality: int = 90, **save: Any) -> bytes:
    return encode(array, "JPEG", quality=quality, **save)


def recompress(data: bytes, quality: int) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        return jpeg(np.asarray(im.convert("RGB")), quality)


def paste_patch(array: np.ndarray, box: tuple[int, int, int, int], *,
                color: tuple[int, int, int] | None = None, seed: int = 1) -> np.ndarray:
    """Copy of ``array`` with box (x, y, w, h) replaced by a flat colour or another texture."""
    x, y, w, h = box
    out = array.copy()
    if color is not None:
        out[y:y + h, x:x + w] = color
    else:
        out[y:y + h, x:x + w] = textured_rgb(w, h, seed=seed)
    return out


def photo(data: bytes, name: str = "test.jpg") -> Photo:
    return load_photo(data, name=name)


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def make_photo() -> Callable[..., Photo]:
    """``make_photo(width, height, seed=, fmt=, quality=)`` → a loaded generated Photo."""

    def factory(width: int = 640, height: int = 480, *, seed: int = 0, fmt: str = "JPEG",
                quality: int = 90, name: str | None = None) -> Photo:
        array = textured_rgb(width, height, seed=seed)
        data = jpeg(array, quality) if fmt == "JPEG" else encode(array, fmt)
        return load_photo(data, name=name or f"generated-{seed}.{fmt.lower()}")

    return factory
