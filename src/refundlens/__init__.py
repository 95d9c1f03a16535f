"""RefundLens: verify the photos behind e-commerce refund claims.

The public API::

    from refundlens import load_photo, analyze, create_detectors, DetectorContext, Reference

    photo = load_photo("claim.jpg")
    ref = Reference(load_photo("listing.jpg"), kind="listing")
    result = analyze(photo, context=DetectorContext(references=(ref,)))
    result.risk.level, [f.code for f in result.findings]
"""

from __future__ import annotations

from .analysis import analyze
from .config import Settings, load_settings
from .detectors import DetectorContext, Reference, create_detectors, detector_names
from .errors import (
    BatchInputError,
    ConfigError,
    CorruptPhotoError,
    DetectorError,
    EmptyPhotoError,
    PhotoError,
    PhotoTooLargeError,
    RefundLensError,
    UnsupportedFormatError,
)
from .imaging import load_photo
from .models import Analysis, DetectorResult, Finding, Photo, Region, Risk
from .reasons import REASONS

__version__ = "0.1.0"

__all__ = [
    "REASONS",
    "Analysis",
    "BatchInputError",
    "ConfigError",
    "CorruptPhotoError",
    "DetectorContext",
    "DetectorError",
    "DetectorResult",
    "EmptyPhotoError",
    "Finding",
    "Photo",
    "PhotoError",
    "PhotoTooLargeError",
    "Reference",
    "RefundLensError",
    "Region",
    "Risk",
    "Settings",
    "UnsupportedFormatError",
    "analyze",
    "create_detectors",
    "detector_names",
    "load_photo",
    "load_settings",
]
