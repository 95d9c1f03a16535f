"""Scoring: contributions, levels and the never-approve-on-error rule."""

from __future__ import annotations

from refundlens.models import DetectorResult, Finding
from refundlens.reasons import REASONS, STRENGTH_WEIGHTS, render_message
from refundlens.scoring import score_results


def result(*findings: Finding, status: str = "ok", name: str = "x") -> DetectorResult:
    return DetectorResult(name, "1", status, findings=tuple(findings))


def f(code: str, score: float = 1.0) -> Finding:
    return Finding(code, "x", score)


def test_nothing_found_is_low_and_approved():
    risk = score_results([result(), result(name="y")])
    assert (risk.score, risk.level, risk.recommendation) == (0, "low", "approve")


def test_one_conclusive_finding_is_high_and_review():
    risk = score_results([result(f("REFERENCE_ALTERED", 0.9))])
    assert risk.level == "high" and risk.recommendation == "review"
    assert risk.reasons[0].code == "REFERENCE_ALTERED"


def test_one_weak_finding_stays_low_three_reach_medium():
    assert score_results([result(f("FORENSIC_ELA"))]).level == "low"
    assert score_results([result(f("FORENSIC_ELA"), f("FORENSIC_NOISE"))]).level == "low"
    three = score_results([result(f("FORENSIC_ELA"), f("FORENSIC_NOISE"),
                                  f("FORENSIC_DOUBLE_JPEG"))])
    assert three.level == "medium" and three.recommendation == "request_evidence"


def test_same_code_twice_counts_once():
    once = score_results([result(f("FORENSIC_ELA", 0.8))])
    twice = score_results([result(f("FORENSIC_ELA", 0.8), f("FORENSIC_ELA", 0.5))])
    assert once.score == twice.score


def test_reasons_are_ordered_by_contribution():
    risk = score_results([result(f("FORENSIC_ELA"), f("REUSED_PHOTO"),
                                 f("METADATA_SCREENSHOT"))])
    contributions = [r.contribution for r in risk.reasons]
    assert contributions == sorted(contributions, reverse=True)
    assert [r.code for r in risk.reasons][0] == "REUSED_PHOTO"


def test_info_findings_add_nothing():
    risk = score_results([result(f("METADATA_C2PA_PRESENT"))])
    assert risk.score == 0 and risk.reasons == ()


def test_a_failed_detector_is_never_approved():
    risk = score_results([result(), result(status="error", name="reference")])
    assert risk.level == "low" and risk.recommendation == "review"


def test_every_reason_has_both_texts_and_a_known_strength():
    for reason in REASONS.values():
        assert reason.strength in STRENGTH_WEIGHTS
        assert reason.title_en and reason.title_zh and reason.template_en and reason.template_zh
        # every template renders with no details at all (missing fields read '?')
        assert render_message(reason.code, {}, lang="en")
        assert render_message(reason.code, {}, lang="zh")
