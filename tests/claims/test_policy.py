"""Claims policy: loading and checking the file, every route, reasons, deadlines, and the
one-time evidence code."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from refundlens.claims.policy import (
    CODE_ALPHABET,
    CODE_LENGTH,
    DEFAULT_POLICY_PATH,
    ROUTE_REASONS,
    ROUTES,
    BuyerHistory,
    EvidenceOutcome,
    Policy,
    RouteReason,
    code_in_text,
    generate_one_time_code,
    load_policy,
    route_claim,
)
from refundlens.errors import ConfigError, PolicyError
from refundlens.reasons import REASONS

POLICY = Policy()
CLEAN = BuyerHistory()


def route(level="low", *, score=None, codes=(), amount="100", history=CLEAN, policy=POLICY,
          **kwargs):
    score = {"low": 10, "medium": 45, "high": 85}[level] if score is None else score
    return route_claim(policy, level=level, score=score, codes=list(codes),
                       amount=Decimal(amount), history=history, **kwargs)


def write(tmp_path: Path, text: str, name: str = "platform.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the default file ---------------------------------------------------------------------

def test_default_file_loads_to_the_defaults():
    assert load_policy() == Policy()
    assert load_policy(DEFAULT_POLICY_PATH) == Policy()


def test_default_file_sets_and_comments_every_key():
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    keys = list(yaml.safe_load(text))
    assert keys == [f.name for f in dataclasses.fields(Policy)]
    lines = text.splitlines()
    for key in keys:
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
        assert lines[at - 1].startswith("#"), f"{key} has no comment above it"


def test_default_review_strengths_cover_every_conclusive_and_strong_code():
    forced = {c for c, r in REASONS.items() if r.strength in POLICY.review_on_strengths}
    assert forced == {c for c, r in REASONS.items() if r.strength in ("conclusive", "strong")}
    assert "REFERENCE_ALTERED" in forced and "REUSED_PHOTO" in forced


def test_partial_file_keeps_other_defaults_and_reads_amounts_exactly(tmp_path):
    policy = load_policy(write(tmp_path, "auto_approve_max_amount: 199.99\n"
                                         "review_above_amount: '5000.50'\n"))
    assert policy.auto_approve_max_amount == Decimal("199.99")
    assert policy.review_above_amount == Decimal("5000.50")
    assert policy.review_sla_hours == Policy().review_sla_hours
    assert load_policy(write(tmp_path, "", "empty.yaml")) == Policy()
    assert load_policy(write(tmp_path, "review_above_amount: null\n")).review_above_amount \
        is None


# --- validation messages: the file, the key, what is accepted ------------------------------

def problem(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert message.startswith(f"policy '{path}'"), message
    assert info.value.source == str(path)
    assert isinstance(info.value, ConfigError)
    return message


def test_wrong_type_names_key_value_and_what_is_accepted(tmp_path):
    message = problem(tmp_path, "review_sla_hours: abc\n")
    assert message.endswith("review_sla_hours: got 'abc', expected a whole number of hours > 0")


@pytest.mark.parametrize("text, expected", [
    ("evidence_deadline_hours: 0\n", "evidence_deadline_hours: got 0, expected a whole "
                                     "number of hours > 0"),
    ("merchant_response_hours: 1.5\n", "merchant_response_hours: got 1.5, expected a whole"),
    ("history_window_days: yes\n", "history_window_days: got True, expected a whole number "
                                   "of days > 0"),
    ("max_prior_claims: -1\n", "max_prior_claims: got -1, expected a whole number ≥ 0"),
    ("auto_approve_max_amount: lots\n", "auto_approve_max_amount: got 'lots', expected an "
                                        "amount ≥ 0 such as 200 or 199.99"),
    ("auto_approve_max_amount: -5\n", "auto_approve_max_amount: got -5, expected an amount"),
    ("review_above_amount: .nan\n", "review_above_amount: got nan, expected an amount ≥ 0 "
                                    "such as 200 or 199.99, or null for no limit"),
    ("auto_approve_max_amount: null\n", "auto_approve_max_amount: got None, expected"),
    ("auto_approve_levels: low\n", "auto_approve_levels: got 'low', expected a list of risk "
                                   "levels from: low, medium, high, e.g. [low]"),
])
def test_each_wrong_value_is_named(tmp_path, text, expected):
    assert expected in problem(tmp_path, text)


def test_unknown_level_strength_and_code_list_what_is_accepted(tmp_path):
    assert "review_on_levels: got 'urgent', expected risk levels from: low, medium, high" \
        in problem(tmp_path, "review_on_levels: [high, urgent]\n")
    message = problem(tmp_path, "review_on_strengths: [conclusive, info]\n")
    assert "review_on_strengths: got 'info', expected finding strengths from: conclusive, " \
           "strong, moderate, weak" in message
    message = problem(tmp_path, "review_on_codes: [AI_WATERMARKS]\n")
    assert "review_on_codes: got 'AI_WATERMARKS', expected reason codes from: " in message
    assert "METADATA_SCREENSHOT" in message and "(did you mean 'AI_WATERMARK'?)" in message


def test_unknown_key_is_named_with_the_known_keys(tmp_path):
    message = problem(tmp_path, "review_sla_hour: 24\n")
    assert "unknown key 'review_sla_hour' (did you mean 'review_sla_hours'?); known keys: " \
           "auto_approve_levels, auto_approve_max_amount," in message
    assert "merchant_response_hours" in message


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(PolicyError) as info:
        load_policy(write(tmp_path, "colour: blue\nreview_sla_hours: abc\nmax_open_claims: x\n"))
    assert len(info.value.problems) == 3
    assert "has 3 problems:" in str(info.value)
    assert all(f"\n  - {p}" in str(info.value) for p in info.value.problems)


@pytest.mark.parametrize("text, expected", [
    ("auto_approve_levels: [low]\nreview_on_levels: [low, high]\n",
     "level 'low' is in auto_approve_levels and review_on_levels; a level takes one route"),
    ("evidence_on_levels: []\n",
     "level 'medium' is in none of auto_approve_levels, evidence_on_levels, review_on_levels"),
    ("auto_approve_levels: [low, high]\nreview_on_levels: []\n",
     "auto_approve_levels: 'high' is never auto-approved"),
    ("auto_approve_levels: [medium]\nevidence_on_levels: [low]\n",
     "level 'medium' is in auto_approve_levels but the lower level 'low' is in "
     "evidence_on_levels; a higher risk cannot get a more lenient route"),
    ("review_above_amount: 100\n",
     "review_above_amount (100) is below auto_approve_max_amount (200)"),
    ("max_evidence_rounds: 0\n",
     "evidence_on_levels is ['medium'] but max_evidence_rounds is 0"),
    ("review_sla_hours: 24\n",
     "review_sla_hours (24) is not longer than merchant_response_hours (48); the review would "
     "be due before the merchant's window to answer closes"),
])
def test_contradictory_settings_are_refused(tmp_path, text, expected):
    assert expected in problem(tmp_path, text)


def test_file_problems_missing_not_a_file_syntax_duplicate_top_level(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError, match=r"policy '.*nope\.yaml': no such file"):
        load_policy(missing)
    with pytest.raises(PolicyError, match="not a file"):
        load_policy(tmp_path)
    message = problem(tmp_path, "review_sla_hours: 72\nauto_approve_levels: [low\n")
    assert "YAML syntax error at line 3, column 1:" in message
    message = problem(tmp_path, "review_sla_hours: 72\nmax_open_claims: 1\n"
                                "review_sla_hours: 96\n")
    assert message.endswith("line 3: key 'review_sla_hours' is set twice (first at line 1)")
    assert "expected a mapping of policy keys to values, got list" in \
        problem(tmp_path, "- review_sla_hours: 72\n")


def test_policy_built_in_code_is_checked_and_normalised():
    policy = Policy(auto_approve_max_amount=300, review_on_levels=["high"])
    assert policy.auto_approve_max_amount == Decimal(300)
    assert policy.review_on_levels == ("high",)
    with pytest.raises(PolicyError, match=r"^policy: review_sla_hours: got '24', expected"):
        Policy(review_sla_hours="24")
    with pytest.raises(PolicyError, match="review_above_amount"):
        dataclasses.replace(POLICY, review_above_amount=Decimal("10"))


# --- routes -------------------------------------------------------------------------------

def test_low_risk_small_amount_clean_history_is_auto_approved():
    decision = route("low", amount="199.99")
    assert decision.route == "auto_approved"
    assert decision.codes == ("ROUTE_LOW_RISK", "ROUTE_AMOUNT_WITHIN_LIMIT",
                              "ROUTE_HISTORY_CLEAN")
    assert (decision.evidence_deadline, decision.review_sla, decision.merchant_response) == \
        (None, None, None)
    assert route("low", amount="200").route == "auto_approved"  # the limit is included


def test_medium_risk_requests_evidence_with_a_deadline():
    decision = route("medium")
    assert decision.route == "evidence_requested"
    assert decision.codes == ("ROUTE_MEDIUM_RISK",)
    assert decision.evidence_deadline == timedelta(hours=72)
    assert decision.evidence_round == 1
    assert decision.review_sla is None and decision.merchant_response is None


def test_low_risk_over_the_amount_limit_requests_evidence_amount_first():
    decision = route("low", amount="200.01")
    assert decision.route == "evidence_requested"
    assert decision.codes == ("ROUTE_AMOUNT_OVER_AUTO_LIMIT", "ROUTE_LOW_RISK")
    assert decision.reasons[0].params == {"amount": "200.01", "limit": "200.00"}


@pytest.mark.parametrize("history, code", [
    (BuyerHistory(claims_in_window=4), "ROUTE_HISTORY_PRIOR_CLAIMS"),
    (BuyerHistory(claims_in_window=1, rejected=1), "ROUTE_HISTORY_REJECTED"),
    (BuyerHistory(reused_photos=1), "ROUTE_HISTORY_REUSED_PHOTOS"),
    (BuyerHistory(open_claims=2), "ROUTE_HISTORY_OPEN_CLAIMS"),
])
def test_history_that_is_not_clean_blocks_auto_approval(history, code):
    decision = route("low", history=history)
    assert decision.route == "evidence_requested"
    assert decision.codes == (code, "ROUTE_LOW_RISK")


def test_history_at_its_limits_is_clean():
    history = BuyerHistory(claims_in_window=3, approved=3, open_claims=1)
    assert route("low", history=history).route == "auto_approved"


def test_high_risk_goes_to_review_with_sla_and_merchant_window():
    decision = route("high")
    assert decision.route == "in_review"
    assert decision.codes == ("ROUTE_HIGH_RISK",)
    assert decision.review_sla == timedelta(hours=72)
    assert decision.merchant_response == timedelta(hours=48)
    assert decision.merchant_response < decision.review_sla
    assert decision.evidence_deadline is None and decision.evidence_round is None


@pytest.mark.parametrize("code, reason", [
    ("AIGC_LABEL_TC260", "ROUTE_CONCLUSIVE_FINDING"),
    ("REFERENCE_DERIVED", "ROUTE_CONCLUSIVE_FINDING"),
    ("REUSED_PHOTO", "ROUTE_STRONG_FINDING"),
    ("AIGC_LABEL_TC260_MALFORMED", "ROUTE_STRONG_FINDING"),
])
def test_conclusive_or_strong_finding_forces_review_even_at_low_risk(code, reason):
    decision = route("low", score=20, codes=[code])
    assert decision.route == "in_review"
    assert decision.codes == (reason, "ROUTE_LOW_RISK")
    assert decision.reasons[0].params == {"finding": code, "strength": REASONS[code].strength}


def test_weak_findings_do_not_force_review_unless_listed():
    assert route("low", codes=["FORENSIC_ELA"]).route == "auto_approved"
    listed = Policy(review_on_codes=("METADATA_SCREENSHOT",))
    decision = route("low", codes=["METADATA_SCREENSHOT"], policy=listed)
    assert decision.route == "in_review"
    assert decision.codes[0] == "ROUTE_FINDING_NEEDS_REVIEW"
    assert "METADATA_SCREENSHOT (Screenshot, moderate)" in decision.reasons[0].message_en
    assert "截图，中等证据" in decision.reasons[0].message_zh
    by_strength = Policy(review_on_strengths=("conclusive", "strong", "weak"))
    assert route("low", codes=["FORENSIC_ELA"], policy=by_strength).codes[0] == \
        "ROUTE_FINDING_NEEDS_REVIEW"


def test_amount_over_review_limit_goes_to_review():
    decision = route("low", amount="2000.01")
    assert decision.route == "in_review"
    assert decision.codes == ("ROUTE_AMOUNT_OVER_REVIEW_LIMIT", "ROUTE_LOW_RISK")
    assert route("medium", amount="2000").route == "evidence_requested"
    no_limit = Policy(review_above_amount=None)
    assert route("medium", amount="1000000", policy=no_limit).route == "evidence_requested"


def test_detector_error_never_auto_approves():
    decision = route("low", detector_errors=True)
    assert decision.route == "in_review"
    assert decision.codes == ("ROUTE_DETECTOR_ERROR", "ROUTE_LOW_RISK")
    assert route("medium", detector_errors=True).codes == ("ROUTE_DETECTOR_ERROR",
                                                           "ROUTE_MEDIUM_RISK")


# --- after an evidence round --------------------------------------------------------------

FOUND = EvidenceOutcome(rounds=1, submitted=True, code_found=True)


def test_evidence_with_the_code_and_now_low_risk_is_auto_approved():
    decision = route("low", evidence=FOUND)
    assert decision.route == "auto_approved"
    assert decision.codes == ("ROUTE_LOW_RISK", "ROUTE_AMOUNT_WITHIN_LIMIT",
                              "ROUTE_HISTORY_CLEAN", "ROUTE_EVIDENCE_CODE_FOUND")


def test_evidence_without_the_code_goes_to_review_even_at_low_risk():
    missing = EvidenceOutcome(rounds=1, submitted=True, code_found=False)
    decision = route("low", evidence=missing)
    assert decision.route == "in_review"
    assert decision.codes == ("ROUTE_EVIDENCE_CODE_MISSING", "ROUTE_LOW_RISK")
    unchecked = EvidenceOutcome(rounds=1, submitted=True, code_found=None)
    assert route("low", evidence=unchecked).codes[0] == "ROUTE_EVIDENCE_CODE_UNCHECKED"


def test_expired_evidence_goes_to_review_never_rejected():
    expired = EvidenceOutcome(rounds=1, submitted=False, expired=True)
    decision = route("medium", evidence=expired)
    assert decision.route == "in_review"
    assert decision.codes == ("ROUTE_EVIDENCE_EXPIRED", "ROUTE_MEDIUM_RISK")
    assert decision.reasons[0].params == {"round": 1, "deadline_hours": 72}
    assert "never rejects" in decision.reasons[0].message_en


def test_rounds_exhausted_goes_to_review_and_remaining_rounds_ask_again():
    decision = route("medium", evidence=FOUND)
    assert decision.route == "in_review"
    assert decision.codes == ("ROUTE_EVIDENCE_ROUNDS_EXHAUSTED", "ROUTE_MEDIUM_RISK",
                              "ROUTE_EVIDENCE_CODE_FOUND")
    assert decision.reasons[0].params == {"rounds": 1, "max_rounds": 1}
    two = Policy(max_evidence_rounds=2)
    again = route("medium", evidence=FOUND, policy=two)
    assert again.route == "evidence_requested" and again.evidence_round == 2
    # the amount cannot change with evidence: still over the limit after the round → review
    over = route("low", amount="500", evidence=FOUND)
    assert over.codes == ("ROUTE_EVIDENCE_ROUNDS_EXHAUSTED", "ROUTE_AMOUNT_OVER_AUTO_LIMIT",
                          "ROUTE_LOW_RISK", "ROUTE_EVIDENCE_CODE_FOUND")


def test_no_evidence_rounds_sends_blocked_claims_to_review():
    never = Policy(max_evidence_rounds=0, evidence_on_levels=(),
                   review_on_levels=("medium", "high"))
    decision = route("low", amount="300", policy=never)
    assert decision.route == "in_review"
    assert decision.codes[0] == "ROUTE_EVIDENCE_ROUNDS_EXHAUSTED"
    assert route("medium", policy=never).codes == ("ROUTE_MEDIUM_RISK",)


def test_conclusive_finding_on_the_first_photo_outweighs_clean_evidence():
    decision = route("low", codes=["AI_WATERMARK"], evidence=FOUND)
    assert decision.route == "in_review"
    assert decision.codes == ("ROUTE_CONCLUSIVE_FINDING", "ROUTE_LOW_RISK",
                              "ROUTE_EVIDENCE_CODE_FOUND")


# --- reasons ------------------------------------------------------------------------------

def test_every_reason_that_applied_is_listed_deciding_first():
    decision = route("high", score=97, amount="500", detector_errors=True,
                     codes=["FORENSIC_ELA", "REUSED_PHOTO", "REFERENCE_ALTERED",
                            "REFERENCE_ALTERED"],
                     history=BuyerHistory(claims_in_window=5, rejected=2),
                     evidence=EvidenceOutcome(rounds=1, submitted=True, code_found=False))
    assert decision.route == "in_review"
    assert decision.codes == (
        "ROUTE_CONCLUSIVE_FINDING", "ROUTE_STRONG_FINDING", "ROUTE_EVIDENCE_CODE_MISSING",
        "ROUTE_HIGH_RISK", "ROUTE_DETECTOR_ERROR", "ROUTE_AMOUNT_OVER_AUTO_LIMIT",
        "ROUTE_HISTORY_PRIOR_CLAIMS", "ROUTE_HISTORY_REJECTED")
    assert decision.reasons[0].params["finding"] == "REFERENCE_ALTERED"


def test_level_reason_appears_once_on_every_route():
    for level in ("low", "medium", "high"):
        for kwargs in ({}, {"detector_errors": True}, {"amount": "900"}):
            codes = route(level, **kwargs).codes
            assert codes.count(f"ROUTE_{level.upper()}_RISK") == 1


def test_messages_render_in_both_languages_and_serialise():
    decision = route("medium", score=45, amount="120.5")
    reason = decision.reasons[0]
    assert reason.message_en == ("Risk is medium (score 45/100); the policy routes medium "
                                 "risk to a request for more evidence.")
    assert reason.message_zh == "风险中等（45/100 分）；按策略，中风险申请转补充凭证。"
    data = json.loads(json.dumps(decision.to_dict(), ensure_ascii=False))
    assert data["route"] == "evidence_requested"
    assert data["evidence_deadline_hours"] == 72 and data["review_sla_hours"] is None
    assert data["reasons"][0] == {"code": "ROUTE_MEDIUM_RISK", "params": {
        "level": "medium", "score": 45, "level_route": "evidence_requested"},
        "message_en": reason.message_en, "message_zh": reason.message_zh}


def test_every_route_reason_code_is_reachable_and_renders():
    scenarios = [
        route("low"), route("medium"), route("high"), route("low", amount="5000"),
        route("low", amount="300"), route("low", detector_errors=True),
        route("low", codes=["AI_WATERMARK", "REUSED_PHOTO"]),
        route("low", codes=["FORENSIC_ELA"], policy=Policy(review_on_codes=("FORENSIC_ELA",))),
        route("low", history=BuyerHistory(claims_in_window=9, rejected=9, reused_photos=9,
                                          open_claims=9)),
        route("low", evidence=FOUND), route("medium", evidence=FOUND),
        route("low", evidence=EvidenceOutcome(1, submitted=True, code_found=False)),
        route("low", evidence=EvidenceOutcome(1, submitted=True, code_found=None)),
        route("low", evidence=EvidenceOutcome(1, submitted=False, expired=True)),
    ]
    seen = {reason.code for d in scenarios for reason in d.reasons}
    # ROUTE_ANALYSIS_FAILED is written by the workflow when a claim's analysis fails for good
    assert seen | {"ROUTE_ANALYSIS_FAILED"} == set(ROUTE_REASONS)
    assert {d.route for d in scenarios} == set(ROUTES)
    for d in scenarios:
        for reason in d.reasons:
            assert "{" not in reason.message_en + reason.message_zh
    assert RouteReason("ROUTE_ANALYSIS_FAILED").to_dict()["message_zh"] == \
        "照片未能完成分析，需人工查看。"


def test_route_reason_codes_are_upper_snake_with_the_route_prefix():
    for code, spec in ROUTE_REASONS.items():
        assert code.startswith("ROUTE_") and code == code.upper() and " " not in code
        assert spec.template_en.endswith(".") and spec.template_zh.endswith("。")
    with pytest.raises(ValueError, match="route reason: got 'ROUTE_NOPE'"):
        RouteReason("ROUTE_NOPE")


# --- inputs -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"level": "critical"}, "level: got 'critical', expected one of: low, medium, high"),
    ({"score": 101}, "score: got 101, expected a whole number from 0 to 100"),
    ({"codes": ["AI_WATERMARKS"]}, "unknown reason code"),
    ({"codes": "AI_WATERMARK"}, "expected a sequence of codes"),
    ({"amount": 199.99}, "amount: got 199.99, expected a Decimal ≥ 0"),
    ({"amount": Decimal("-1")}, "expected a Decimal ≥ 0"),
    ({"evidence": EvidenceOutcome(2, submitted=False)}, "evidence round 2 is still open"),
])
def test_bad_inputs_are_refused(kwargs, match):
    args = {"level": "low", "score": 10, "codes": [], "amount": Decimal("10"),
            "history": CLEAN, **kwargs}
    with pytest.raises(ValueError, match=match):
        route_claim(POLICY, **args)


def test_history_and_evidence_outcome_check_their_values():
    with pytest.raises(ValueError, match="buyer history rejected: got -1"):
        BuyerHistory(rejected=-1)
    with pytest.raises(ValueError, match="evidence rounds: got 0"):
        EvidenceOutcome(rounds=0, submitted=True, code_found=True)
    with pytest.raises(ValueError, match="submitted and expired at once"):
        EvidenceOutcome(rounds=1, submitted=True, expired=True)
    with pytest.raises(ValueError, match="nothing was submitted"):
        EvidenceOutcome(rounds=1, submitted=False, code_found=True, expired=True)
    assert EvidenceOutcome(rounds=1, submitted=False).pending


# --- the one-time code --------------------------------------------------------------------

def test_alphabet_has_no_confusable_characters():
    assert not set(CODE_ALPHABET) & set("0OQD" "1IL" "2Z" "5S" "8B" "G" "UV" "J")
    assert len(set(CODE_ALPHABET)) == len(CODE_ALPHABET) == 19
    assert CODE_ALPHABET == CODE_ALPHABET.upper()


def test_generated_codes_use_the_alphabet_and_the_length_and_vary():
    codes = [generate_one_time_code() for _ in range(2000)]
    assert all(len(c) == CODE_LENGTH and set(c) <= set(CODE_ALPHABET) for c in codes)
    # 2000 draws from 19 × 18**5 ≈ 36 M codes: ~0.06 pairs collide on average (birthday
    # bound n²/2N), so one collision happens in ~1 run of 18; four would be a 1-in-millions
    # run, or a generator with far fewer codes than it should have
    assert len(codes) - len(set(codes)) <= 3
    assert not any(a == b for c in codes for a, b in zip(c, c[1:]))  # OCR merges runs
    assert set("".join(codes)) == set(CODE_ALPHABET)  # every character is used
    assert generate_one_time_code(random.Random(7)) == generate_one_time_code(random.Random(7))
    assert len(generate_one_time_code(length=8)) == 8
    with pytest.raises(ValueError, match="length: got 3"):
        generate_one_time_code(length=3)


@pytest.mark.parametrize("texts", [
    ["K7M4PX"],
    ["Code: K7 M4-PX"],
    ["code: k7m4px"],
    ["验证码：K7M4PX"],
    ["订单 12345", "Ｋ７Ｍ４ＰＸ"],                   # full-width OCR output
    ["K7M4", "PX"],                                 # written over two lines
    ["K7.M4.PX 2025-06-01"],
    ["K7M4PXA"],                                    # more written next to it
    ["K7M4Px"],                                     # one lower-case letter
    "K7 M4 PX",                                     # one string is one text
])
def test_code_is_found_in_noisy_ocr_text(texts):
    assert code_in_text("K7M4PX", texts)


def test_misreadings_outside_the_alphabet_map_back():
    assert code_in_text("K9M6PX", ["K q M b P X"])
    assert code_in_text("K9M6PX", ["KgMGPX"])


@pytest.mark.parametrize("texts", [
    [],
    [""],
    ["K7M4P"],                  # a character short
    ["K7M4PY"],                 # a different character
    ["K7M4 OPX"],               # a foreign character between
    ["K7M4码PX"],               # a CJK character between
    ["XP4M7K"],                 # reversed
    ["Code: KTM4PX"],           # T is a code character, not a misread 7
    ["PX", "K7M4"],             # lines in the wrong order
])
def test_code_is_not_found_in_other_text(texts):
    assert not code_in_text("K7M4PX", texts)


def test_code_in_text_refuses_a_code_outside_the_alphabet():
    with pytest.raises(ValueError, match="code: got 'K0M4PX', expected characters from"):
        code_in_text("K0M4PX", ["K0M4PX"])
    with pytest.raises(ValueError):
        code_in_text("", ["anything"])
    assert code_in_text("k7m4px", ["K7M4PX"])
