"""``analyze``: run detectors on one photo, isolate and time each, score the results.

This is the one function the CLI, the batch engine and the service call.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Sequence

from .detectors import Detector, DetectorContext, DetectorOutput, Skip, create_detectors
from .imaging import load_photo
from .models import Analysis, DetectorResult, Photo
from .scoring import score_results

__all__ = ["analyze", "run_detector"]

log = logging.getLogger(__name__)


def run_detector(detector: Detector, photo: Photo, context: DetectorContext) -> DetectorResult:
    """Run one detector; a raised exception becomes an ``error`` result, never a crash."""
    start = time.perf_counter()
    try:
        output = detector.run(photo, context)
    except Skip as skip:
        return DetectorResult(detector.name, detector.version, "skipped", error=str(skip) or None,
                              elapsed_ms=(time.perf_counter() - start) * 1000.0)
    except Exception as exc:  # noqa: BLE001 - isolation boundary: one detector never sinks
        log.warning("detector %s failed on %s: %s", detector.name, photo.source, exc,
                    exc_info=True)
        return DetectorResult(detector.name, detector.version, "error",
                              error=f"{type(exc).__name__}: {exc}",
                              elapsed_ms=(time.perf_counter() - start) * 1000.0)
    elapsed = (time.perf_counter() - start) * 1000.0
    if isinstance(output, DetectorOutput):
        findings, info, values = tuple(output.findings), dict(output.info), output.map
    else:
        findings, info, values = tuple(output or ()), {}, None
    return DetectorResult(detector.name, detector.version, "ok", findings=findings,
                          elapsed_ms=elapsed, info=info, map=values)


def analyze(
    photo: Photo | str | os.PathLike[str],
    *,
    detectors: Sequence[Detector] | None = None,
    context: DetectorContext | None = None,
) -> Analysis:
    """Analyse one photo with ``detectors`` (default: every registered detector).

    Args:
        photo: a loaded :class:`Photo`, or a path that :func:`load_photo` loads (its errors
            propagate: a photo that cannot be loaded has no analysis).
        detectors: detector instances, e.g. from :func:`create_detectors`.
        context: references, order times and the reuse index.
    """
    start = time.perf_counter()
    if not isinstance(photo, Photo):
        photo = load_photo(photo)
    if detectors is None:
        detectors = create_detectors()
    context = context or DetectorContext()
    results = tuple(run_detector(d, photo, context) for d in detectors)
    return Analysis(
        source=photo.source,
        sha256=photo.sha256,
        format=photo.format,
        width=photo.width,
        height=photo.height,
        results=results,
        risk=score_results(results),
        elapsed_ms=(time.perf_counter() - start) * 1000.0,
    )
