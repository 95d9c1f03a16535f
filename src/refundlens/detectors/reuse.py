"""Reuse detector: the photo (or a near copy of it) was already submitted under another key.

Detects: the same file (sha256), and the same picture rescaled, recompressed, tone-
adjusted, mirrored, lightly rotated (≤ ~2°), captioned or centre-cropped (≤ ~13 % per side),
against every photo in the deployment's :class:`~refundlens.index.ReuseIndex` (the
measured recall table is in ``bench/reuse_bench.py``'s output and
:mod:`refundlens.index.reuse`). One ``REUSED_PHOTO`` finding names the closest other
photo (its key and stored metadata: claim, buyer) and lists up to four more.

Cannot: see through heavy or off-centre crops, rotations beyond a few degrees, mirrored
*and* cropped copies, re-photographs of a screen, or a new photo of the same item; see
:mod:`refundlens.index.hashing`. It only knows what the caller added to the index: it
never writes (detectors are pure); the CLI or batch engine adds each photo after its
analysis, using ``info["hashes"]`` so nothing is hashed twice::

    index.add(key, PhotoHashes.from_dict(result.info["hashes"]), meta={...})

Known false positives: the same buyer filing the same photo twice for one order (a
duplicate claim, not a fraud), a series of near-identical shots from a tripod, and
flat catalog-style shots on white that differ only in small details; hence ``strong``,
not ``conclusive``, with the other key for a reviewer to compare.

References:
    C. Zauner, "Implementation and Benchmarking of Perceptual Image Hash Functions",
    Master's thesis, Upper Austria University of Applied Sciences, 2010.
    M. Norouzi, A. Punjani, D. J. Fleet, "Fast Search in Hamming Space with Multi-Index
    Hashing", CVPR 2012.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..index.hashing import photo_hashes
from ..index.reuse import DEFAULT_MAX_DISTANCE, DEFAULT_MAX_FINE_DISTANCE, ReuseMatch
from ..models import Photo
from .base import Detector, DetectorContext, DetectorOutput, Skip

__all__ = ["ReuseDetector"]

#: Other matches listed in a finding besides the closest one: enough for a reviewer to
#: see a pattern (one photo in five claims), short enough to read.
_LISTED = 4


class ReuseDetector(Detector):
    """``REUSED_PHOTO`` when the reuse index holds the photo, or a near copy, under
    another key."""

    name: ClassVar[str] = "reuse"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ("The same photo, or a near copy (rescaled, recompressed, "
                                  "mirrored, cropped), was submitted under another key.")
    codes: ClassVar[tuple[str, ...]] = ("REUSED_PHOTO",)

    def __init__(self, *, max_distance: int = DEFAULT_MAX_DISTANCE,
                 max_fine_distance: int = DEFAULT_MAX_FINE_DISTANCE) -> None:
        self.max_distance = max_distance
        self.max_fine_distance = max_fine_distance

    def run(self, photo: Photo, context: DetectorContext) -> DetectorOutput:
        if context.reuse_index is None:
            raise Skip("no reuse index configured")
        hashes = photo_hashes(photo)
        matches: list[ReuseMatch] = context.reuse_index.query(
            hashes, exclude=context.photo_key, max_distance=self.max_distance,
            max_fine_distance=self.max_fine_distance, limit=1 + _LISTED)
        info: dict[str, Any] = {"hashes": hashes.to_dict(), "matches": len(matches)}
        if not matches:
            return DetectorOutput([], info)
        best = matches[0]
        finding = self.finding(
            "REUSED_PHOTO",
            score=self._score(best),
            distance=best.distance,
            fine_distance=best.fine_distance,
            other=best.key,
            other_meta=dict(best.meta) if best.meta else None,
            other_added_at=best.added_at,
            exact=best.exact,
            relation=best.relation,
            also=[{"key": m.key, "distance": m.distance, "exact": m.exact,
                   "relation": m.relation, "meta": dict(m.meta) if m.meta else None}
                  for m in matches[1:]],
        )
        return DetectorOutput([finding], info)

    def _score(self, match: ReuseMatch) -> float:
        """1.0 for the same file or a copy at 64-bit distance 0 (the distance the message
        shows), falling linearly to 0.5 at ``max_distance``: the weakest accepted match
        still counts half of a strong finding, since it also passed the 256-bit
        verification (see :mod:`refundlens.index.reuse`)."""
        if match.exact:
            return 1.0
        return 1.0 - 0.5 * min(match.distance / max(self.max_distance, 1), 1.0)
