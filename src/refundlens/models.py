"""Frozen value types shared by every layer: Photo, Region, Finding, DetectorResult, Risk,
Analysis.

Nothing here touches a database, a file or the network; all of it pickles (Ray ships these
between processes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

import numpy as np

from .reasons import get_reason, render_message

__all__ = [
    "Analysis",
    "DetectorResult",
    "Finding",
    "Photo",
    "Region",
    "Risk",
    "RiskReason",
]


@dataclass(frozen=True, eq=False, repr=False)
class Photo:
    """A decoded photo with its original bytes. Made only by :func:`refundlens.load_photo`.

    ``pixels`` is RGB ``uint8`` (H, W, 3) after EXIF orientation; ``alpha`` is the alpha
    channel where the file had one. Metadata is what the container carried, read once at
    load: ``exif`` maps tag names to values (0th IFD, Exif IFD and GPS IFD merged), ``xmp``
    holds every XMP packet found as text, ``text`` the textual chunks (PNG tEXt/zTXt/iTXt,
    GIF/WebP comments) keyed by their keyword.
    """

    source: str
    data: bytes
    sha256: str
    format: str
    pixels: np.ndarray
    alpha: np.ndarray | None = None
    mode: str = "RGB"
    orientation: int = 1
    exif: Mapping[str, Any] = field(default_factory=dict)
    xmp: tuple[str, ...] = ()
    text: Mapping[str, str] = field(default_factory=dict)
    exif_thumbnail: bytes | None = None
    jpeg_quantization: Mapping[int, tuple[int, ...]] | None = None
    frames: int = 1

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    @cached_property
    def gray(self) -> np.ndarray:
        """Luma (ITU-R BT.601) as ``uint8`` (H, W)."""
        rgb = self.pixels.astype(np.float32)
        luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        return np.clip(luma + 0.5, 0, 255).astype(np.uint8)

    def __repr__(self) -> str:
        return (f"Photo({self.source!r}, {self.format} {self.width}x{self.height}, "
                f"{self.size_bytes} bytes, sha256={self.sha256[:12]})")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("gray", None)  # cached; cheap to recompute, large to ship
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


@dataclass(frozen=True)
class Region:
    """An axis-aligned box in photo pixel coordinates (after orientation)."""

    x: int
    y: int
    width: int
    height: int

    def to_dict(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}

    @property
    def area(self) -> int:
        return self.width * self.height

    def iou(self, other: "Region") -> float:
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1 = min(self.x + self.width, other.x + other.width)
        y1 = min(self.y + self.height, other.y + other.height)
        inter = max(0, x1 - x0) * max(0, y1 - y0)
        union = self.area + other.area - inter
        return inter / union if union else 0.0


@dataclass(frozen=True, eq=False)
class Finding:
    """One piece of evidence: what was seen (``code``), how sure (``score`` 0–1), where.

    ``details`` holds the facts behind the message (and fills its template); ``map`` is an
    optional float32 likelihood map in [0, 1] of any resolution, stretched to the photo.
    """

    code: str
    detector: str
    score: float
    details: Mapping[str, Any] = field(default_factory=dict)
    region: Region | None = None
    map: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        get_reason(self.code)  # unknown codes fail where they are made
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"finding {self.code}: score {self.score} outside [0, 1]")

    @property
    def strength(self) -> str:
        return get_reason(self.code).strength

    @property
    def message_en(self) -> str:
        return render_message(self.code, self.details, lang="en")

    @property
    def message_zh(self) -> str:
        return render_message(self.code, self.details, lang="zh")

    def message(self, lang: str) -> str:
        return self.message_zh if lang == "zh" else self.message_en

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "detector": self.detector,
            "strength": self.strength,
            "score": round(float(self.score), 4),
            "message_en": self.message_en,
            "message_zh": self.message_zh,
            "region": self.region.to_dict() if self.region else None,
            "details": _jsonable(self.details),
        }


@dataclass(frozen=True)
class DetectorResult:
    """What one detector did on one photo: ``ok`` (ran; findings may be empty), ``skipped``
    (nothing to do, e.g. no references given) or ``error`` (it failed; ``error`` says how)."""

    detector: str
    version: str
    status: str
    findings: tuple[Finding, ...] = ()
    error: str | None = None
    elapsed_ms: float = 0.0
    info: Mapping[str, Any] = field(default_factory=dict)
    map: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "elapsed_ms": round(self.elapsed_ms, 2),
            "findings": [f.to_dict() for f in self.findings],
            "info": _jsonable(self.info),
        }


@dataclass(frozen=True)
class RiskReason:
    code: str
    contribution: float

    def to_dict(self) -> dict[str, Any]:
        reason = get_reason(self.code)
        return {"code": self.code, "contribution": round(self.contribution, 2),
                "title_en": reason.title_en, "title_zh": reason.title_zh}


@dataclass(frozen=True)
class Risk:
    """0–100 risk with level (low | medium | high), recommendation (approve |
    request_evidence | review) and reasons ordered by contribution."""

    score: int
    level: str
    recommendation: str
    reasons: tuple[RiskReason, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "level": self.level,
                "recommendation": self.recommendation,
                "reasons": [r.to_dict() for r in self.reasons]}


@dataclass(frozen=True, eq=False)
class Analysis:
    """Every detector's result on one photo, and the risk scored from them."""

    source: str
    sha256: str
    format: str
    width: int
    height: int
    results: tuple[DetectorResult, ...]
    risk: Risk
    elapsed_ms: float = 0.0

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for r in self.results for f in r.findings)

    @property
    def timings_ms(self) -> dict[str, float]:
        return {r.detector: round(r.elapsed_ms, 2) for r in self.results}

    def result(self, detector: str) -> DetectorResult | None:
        return next((r for r in self.results if r.detector == detector), None)

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def mask(self) -> np.ndarray:
        """The alteration-likelihood map as ``uint8`` (H, W) at photo size.

        The reference difference where the photo is derived from a reference (it is
        measured, not estimated); the forensic maps otherwise (the findings' maps, and the
        map a forensic detector computed even when nothing stood out). All zeros — no
        evidence of local alteration — when no detector produced a map.
        """
        from .maps import combine_maps  # local: keeps models free of OpenCV at import

        reference = [f.map for f in self.findings
                     if f.code.startswith("REFERENCE_") and f.map is not None]
        forensic = [f.map for f in self.findings
                    if f.code.startswith("FORENSIC_") and f.map is not None]
        forensic += [r.map for r in self.results
                     if r.map is not None and r.detector == "forensics"]
        return combine_maps(reference or forensic, width=self.width, height=self.height)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "sha256": self.sha256,
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "risk": self.risk.to_dict(),
            "recommendation": self.risk.recommendation,
            "findings": [f.to_dict() for f in self.findings],
            "detectors": [r.to_dict() for r in self.results],
            "timings_ms": self.timings_ms,
            "elapsed_ms": round(self.elapsed_ms, 2),
        }


def _jsonable(value: Any) -> Any:
    """Details as JSON-safe values (numpy scalars and arrays, tuples, regions, bytes)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Region):
        return value.to_dict()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float):
        return float(f"{value:.6g}")  # significant digits: p-values like 6e-39 survive
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
