"""The photo as the encoder saw it: luma in stored orientation, on the 8×8 JPEG block grid.

``Photo.pixels`` is turned upright by the EXIF orientation, but a JPEG's 8×8 DCT blocks are
laid out on the stored (unrotated) image. The compression-based methods (ELA, ghost) must
work on that grid, so the luma is turned back to its stored orientation here, and maps and
regions are turned forward again with the same table (:data:`_FORWARD`) before they leave.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ...models import Photo, Region

__all__ = ["CellGrid", "block_means", "block_view", "orient", "stored_luma", "unorient"]

BLOCK = 8  # the JPEG DCT block (ITU-T T.81 §A.2)


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """``array`` in stored orientation turned the way EXIF ``orientation`` says (as
    ``PIL.ImageOps.exif_transpose`` does); a view where numpy allows."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, -1)
    if orientation == 7:
        return np.rot90(array, 2).swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, 1)
    return array


def unorient(array: np.ndarray, orientation: int) -> np.ndarray:
    """The inverse of :func:`orient`: an upright array back in stored orientation."""
    inverse = {6: 8, 8: 6}.get(orientation, orientation)  # the others are their own inverse
    return orient(array, inverse)


def stored_luma(photo: Photo) -> np.ndarray:
    """ITU-R BT.601 luma (the JPEG Y channel, up to rounding) as ``uint8`` in the stored
    orientation, so that row 0, column 0 starts the JPEG block grid."""
    gray = cv2.cvtColor(photo.pixels, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(unorient(gray, photo.orientation))


def block_view(luma: np.ndarray, *, step: int = 1) -> np.ndarray:
    """Every ``step``-th 8×8 block of ``luma`` in both directions, shape (by, bx, 8, 8).

    The partial blocks at the right and bottom edges are left out.
    """
    by, bx = luma.shape[0] // BLOCK, luma.shape[1] // BLOCK
    blocks = luma[:by * BLOCK, :bx * BLOCK].reshape(by, BLOCK, bx, BLOCK).swapaxes(1, 2)
    return blocks[::step, ::step]


def block_means(values: np.ndarray, size: int) -> np.ndarray:
    """Means of ``values`` over non-overlapping ``size``×``size`` blocks (partial blocks at
    the right and bottom edges left out), as float32.

    OpenCV's area interpolation at an integer factor is exactly this box mean, several
    times faster than numpy's strided reductions.
    """
    by, bx = values.shape[0] // size, values.shape[1] // size
    data = values[:by * size, :bx * size]
    if data.dtype != np.float32:
        data = data.astype(np.float32)
    return cv2.resize(data, (bx, by), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class CellGrid:
    """How a method's grid of cells lies on the stored image: cell (i, j) covers stored
    pixels ``[i*cell, (i+1)*cell) × [j*cell, (j+1)*cell)``; ``cell`` is a multiple of 8."""

    cell: int
    stored_width: int
    stored_height: int
    orientation: int

    def heatmap(self, values: np.ndarray) -> np.ndarray:
        """``values`` (one per cell, in [0, 1]) as a float32 map at 1/8 of the photo's
        size, upright, covering the whole photo (pixels no cell covers read 0)."""
        rep = self.cell // BLOCK
        full = np.repeat(np.repeat(np.nan_to_num(values, nan=0.0), rep, axis=0), rep, axis=1)
        out = np.zeros((-(-self.stored_height // BLOCK), -(-self.stored_width // BLOCK)),
                       np.float32)
        h, w = min(out.shape[0], full.shape[0]), min(out.shape[1], full.shape[1])
        out[:h, :w] = full[:h, :w]
        return np.ascontiguousarray(orient(out, self.orientation))

    def region(self, mask: np.ndarray) -> Region:
        """The bounding box of the cells in ``mask``, in upright photo pixels."""
        ys, xs = np.nonzero(mask)
        x0, x1 = int(xs.min()) * self.cell, min((int(xs.max()) + 1) * self.cell,
                                                 self.stored_width)
        y0, y1 = int(ys.min()) * self.cell, min((int(ys.max()) + 1) * self.cell,
                                                 self.stored_height)
        w, h = self.stored_width, self.stored_height
        # The box's corners turned with the same table as the pixels.
        corners = {
            1: (x0, y0, x1, y1), 2: (w - x1, y0, w - x0, y1), 3: (w - x1, h - y1, w - x0, h - y0),
            4: (x0, h - y1, x1, h - y0), 5: (y0, x0, y1, x1), 6: (h - y1, x0, h - y0, x1),
            7: (h - y1, w - x1, h - y0, w - x0), 8: (y0, w - x1, y1, w - x0),
        }[self.orientation if 1 <= self.orientation <= 8 else 1]
        return Region(corners[0], corners[1], corners[2] - corners[0], corners[3] - corners[1])
