"""Scoring: detector results → :class:`~refundlens.models.Risk`. Pure.

Each reason code contributes ``weight(strength) × score`` of its strongest finding (several
findings of one code, e.g. three changed regions, are one piece of evidence, not three);
contributions combine as independent evidence, ``risk = 1 − Π(1 − c)``, on 0–100.

Levels (DESIGN.md, "Scoring and policy"): any conclusive finding with score ≥ 0.5 makes the
level high, whatever the sum; otherwise ≥ 70 is high, ≥ 30 medium. One moderate finding
(35) asks for evidence; one weak finding (15) does not, two do not (28), three do (39).
Recommendation: low → approve, medium → request_evidence, high → review. A photo on which a
detector failed is never approved by the machine: a low risk there becomes review, since the
evidence is incomplete.
"""

from __future__ import annotations

from typing import Iterable

from .models import DetectorResult, Risk, RiskReason
from .reasons import get_reason

__all__ = ["HIGH", "MEDIUM", "score_results"]

HIGH = 70
MEDIUM = 30
_CONCLUSIVE_MIN_SCORE = 0.5


def score_results(results: Iterable[DetectorResult]) -> Risk:
    results = list(results)
    best: dict[str, float] = {}
    for result in results:
        for finding in result.findings:
            best[finding.code] = max(best.get(finding.code, 0.0), finding.score)
    contributions = {code: get_reason(code).weight * score for code, score in best.items()}
    remaining = 1.0
    for value in contributions.values():
        remaining *= 1.0 - value
    score = int(round(100.0 * (1.0 - remaining)))
    conclusive = any(get_reason(code).strength == "conclusive" and s >= _CONCLUSIVE_MIN_SCORE
                     for code, s in best.items())
    if conclusive or score >= HIGH:
        level = "high"
    elif score >= MEDIUM:
        level = "medium"
    else:
        level = "low"
    recommendation = {"low": "approve", "medium": "request_evidence", "high": "review"}[level]
    if recommendation == "approve" and any(r.status == "error" for r in results):
        recommendation = "review"
    reasons = tuple(
        RiskReason(code, round(100.0 * value, 2))
        for code, value in sorted(contributions.items(), key=lambda kv: (-kv[1], kv[0]))
        if value > 0
    )
    return Risk(score=score, level=level, recommendation=recommendation, reasons=reasons)
