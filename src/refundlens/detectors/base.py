"""The detector contract: ``Detector``, its ``DetectorContext`` and ``Reference``.

A detector is a small class with a ``name``, a ``version`` and
``run(photo, context) -> list[Finding] | DetectorOutput``. It is pure (no database, no
network, no writes), picklable, and it may raise: :func:`refundlens.analyze` records a
raised exception as that detector's error and goes on. ``raise Skip("why")`` says there was
nothing to do (no references given, not a JPEG, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, Mapping

import numpy as np

from ..errors import ConfigError
from ..models import Finding, Photo, Region

__all__ = ["Detector", "DetectorContext", "DetectorOutput", "Reference", "Skip",
           "parse_time"]


class Skip(Exception):
    """Raised by ``run`` when the detector has nothing to do for this photo."""


@dataclass(frozen=True)
class Reference:
    """A merchant photo the claim photo is checked against."""

    photo: Photo
    kind: str = "listing"  # listing | shipping
    id: str = ""

    @property
    def label(self) -> str:
        return self.id or self.photo.source


@dataclass(frozen=True)
class DetectorContext:
    """What a detector may know beyond the photo. All fields are optional.

    ``reuse_index`` is a :class:`refundlens.index.ReuseIndex` (or anything with its
    ``query(photo_or_hashes, *, max_distance=, max_fine_distance=, exclude=, limit=)``);
    ``photo_key`` names this photo in the deployment so it does not match itself.
    """

    references: tuple[Reference, ...] = ()
    claim_time: datetime | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    reuse_index: Any = None
    photo_key: str | None = None
    evidence_code: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, *,
                     references: tuple[Reference, ...] = (), reuse_index: Any = None,
                     photo_key: str | None = None) -> "DetectorContext":
        """A context from a JSON object (batch input ``context``); times are ISO 8601."""
        values = dict(values or {})
        known = {"claim_time", "shipped_at", "delivered_at", "evidence_code"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"context: unknown field(s) {', '.join(unknown)}; accepted: "
                              f"{', '.join(sorted(known))}")
        return cls(
            references=references,
            claim_time=parse_time("claim_time", values.get("claim_time")),
            shipped_at=parse_time("shipped_at", values.get("shipped_at")),
            delivered_at=parse_time("delivered_at", values.get("delivered_at")),
            evidence_code=values.get("evidence_code"),
            reuse_index=reuse_index,
            photo_key=photo_key,
        )


def parse_time(name: str, value: Any) -> datetime | None:
    """An ISO 8601 time as an aware datetime (naive times are taken as UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"context.{name}={value!r}: expected an ISO 8601 time such as "
                              f"2026-11-23T10:00:00+08:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class DetectorOutput:
    """Findings plus ``info``: what the detector read that a reviewer may want to see
    (labels, signer, software), even when it found nothing; and ``map``, a float32
    alteration-likelihood map in [0, 1] (any resolution) computed whether or not it fired."""

    findings: list[Finding] = field(default_factory=list)
    info: Mapping[str, Any] = field(default_factory=dict)
    map: np.ndarray | None = None


class Detector:
    """Base class. Subclasses set ``name``, ``version``, ``description`` and ``codes`` (the
    reason codes they may emit) and implement :meth:`run`."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    description: ClassVar[str] = ""
    codes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> "Detector":
        """Build the detector from :class:`refundlens.config.Settings`."""
        return cls()

    def run(self, photo: Photo, context: DetectorContext) -> "list[Finding] | DetectorOutput":
        raise NotImplementedError

    def finding(self, code: str, *, score: float, region: Region | None = None,
                map: np.ndarray | None = None, **details: Any) -> Finding:
        if code not in self.codes:
            raise ValueError(f"detector {self.name!r} emits {code!r}, which is not in its "
                             f"codes {self.codes}")
        return Finding(code=code, detector=self.name, score=float(min(max(score, 0.0), 1.0)),
                       details=details, region=region, map=map)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"
