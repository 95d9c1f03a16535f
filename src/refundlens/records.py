"""JSON records of analyses: the shape of ``scan --json`` entries and batch output lines.

The JSON Schemas in ``refundlens/schemas/`` describe these records; tests validate real
output against them.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from .errors import RefundLensError
from .maps import save_mask_png
from .models import Analysis

__all__ = ["analysis_record", "error_record", "mask_filename", "write_mask"]

SCHEMA_VERSION = "1"


def analysis_record(analysis: Analysis, *, mask: str | None = None,
                    full: bool = False) -> dict[str, Any]:
    """The record of a successful analysis. ``full`` adds per-detector results and details."""
    record: dict[str, Any] = {
        "status": "ok",
        "error": None,
        "error_code": None,
        "sha256": analysis.sha256,
        "format": analysis.format,
        "width": analysis.width,
        "height": analysis.height,
        "risk": {"score": analysis.risk.score, "level": analysis.risk.level},
        "recommendation": analysis.risk.recommendation,
        "reasons": [r.code for r in analysis.risk.reasons],
        "findings": [_finding(f, full=full) for f in analysis.findings],
        "detector_errors": {r.detector: r.error for r in analysis.results
                            if r.status == "error"},
        "mask": mask,
        "timings_ms": analysis.timings_ms,
    }
    if full:
        record["detectors"] = [
            {"detector": r.detector, "version": r.version, "status": r.status,
             "error": r.error, "elapsed_ms": round(r.elapsed_ms, 2),
             "info": r.to_dict()["info"]}
            for r in analysis.results
        ]
    return record


def _finding(finding: Any, *, full: bool) -> dict[str, Any]:
    data = finding.to_dict()
    keep = ["code", "detector", "strength", "score", "message_en", "message_zh", "region"]
    if full:
        keep.append("details")
    return {key: data[key] for key in keep}


def error_record(error: BaseException | str, *, code: str | None = None) -> dict[str, Any]:
    """The record of an input that could not be analysed."""
    if isinstance(error, RefundLensError):
        code = code or error.code
    message = str(error)
    return {
        "status": "error",
        "error": message,
        "error_code": code or "error",
        "sha256": None,
        "format": None,
        "width": None,
        "height": None,
        "risk": None,
        "recommendation": None,
        "reasons": [],
        "findings": [],
        "detector_errors": {},
        "mask": None,
        "timings_ms": {},
    }


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def mask_filename(key: str) -> str:
    """A file name for ``key``'s mask: readable, and unique even when ``key`` had to change."""
    safe = _UNSAFE.sub("_", key).strip("._")[:80] or "item"
    if safe != key:
        safe += "-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
    return safe + ".png"


def write_mask(analysis: Analysis, directory: Path, key: str) -> str:
    """Write the analysis mask for ``key`` under ``directory``; returns its path."""
    return str(save_mask_png(analysis.mask(), Path(directory) / mask_filename(key)))
