"""Claims policy: an analysed claim → a route (auto-approve, request evidence, review). Pure.

The policy is one frozen :class:`Policy`, read from a YAML file by :func:`load_policy` and
checked when it is built, so a bad file stops the service at start-up with every problem
named. :func:`route_claim` maps a claim's risk, findings, amount and buyer history (and,
after an evidence round, what came back) to a :class:`RouteDecision` whose reasons come from
the one table :data:`ROUTE_REASONS`. The rules, in words, are :data:`ROUTING_RULES`;
``docs/policy.md`` is generated from them, from the :class:`Policy` fields and from the
table, and a test fails when it drifts.

A machine never rejects: every route is ``auto_approved``, ``evidence_requested`` or
``in_review``, and a person decides every claim the machine does not approve.

Evidence rounds ask the buyer for a fresh photo with a one-time code
(:func:`generate_one_time_code`) written on paper beside the item; OCR of the new photos is
matched with :func:`code_in_text`.
"""

from __future__ import annotations

import difflib
import secrets
import unicodedata
from dataclasses import dataclass, field, fields
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from ..errors import PolicyError
from ..reasons import REASONS, STRENGTH_WEIGHTS, get_reason

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "DEFAULT_POLICY_PATH",
    "EFFECTS",
    "LEVELS",
    "ROUTES",
    "ROUTE_REASONS",
    "ROUTING_RULES",
    "BuyerHistory",
    "EvidenceOutcome",
    "Policy",
    "PolicyError",
    "RouteDecision",
    "RouteReason",
    "RouteReasonSpec",
    "code_in_text",
    "generate_one_time_code",
    "load_policy",
    "route_claim",
]

#: Risk levels from scoring, lowest first (``refundlens.scoring``).
LEVELS: tuple[str, ...] = ("low", "medium", "high")
#: Every route. None of them rejects.
ROUTES: tuple[str, ...] = ("auto_approved", "evidence_requested", "in_review")
#: Strengths a policy may send to review; ``info`` findings add no risk and are not accepted.
_REVIEW_STRENGTHS: tuple[str, ...] = tuple(s for s in STRENGTH_WEIGHTS if s != "info")

DEFAULT_POLICY_PATH = Path(__file__).with_name("default_policy.yaml")

#: The routing rules in words, in the order :func:`route_claim` applies them.
ROUTING_RULES: tuple[str, ...] = (
    "**Review** when any of these holds; they are the claim's first reasons, in this order: "
    "a finding whose strength is in `review_on_strengths` or whose code is in "
    "`review_on_codes`; an evidence round that came back without the one-time code, could "
    "not be checked for it, or did not come back by its deadline; a risk level in "
    "`review_on_levels`; an amount above `review_above_amount`; a detector error on any "
    "photo. A detector error goes to a person rather than to another evidence round: the "
    "analysis failed, not the buyer, and the buyer should not pay for it with more photos.",
    "**Request evidence** otherwise, when the level is in `evidence_on_levels`, or the "
    "level is in `auto_approve_levels` but the amount is above `auto_approve_max_amount` or "
    "the buyer's history is not clean: a fresh photo with a one-time code is what a "
    "reviewer would ask for first, and a forger cannot answer it with the merchant's photo. "
    "Once `max_evidence_rounds` rounds are used the claim goes to review instead "
    "(`ROUTE_EVIDENCE_ROUNDS_EXHAUSTED`).",
    "**Auto-approve** only when every condition holds: the level is in "
    "`auto_approve_levels`, the amount is at most `auto_approve_max_amount`, the history is "
    "clean, no detector failed, no finding forces review, and any evidence round came back "
    "with the code found.",
    "A clean history counts the buyer's claims filed in the `history_window_days` days "
    "before the routed claim (never the claim itself, nor one filed after it, so the route "
    "does not depend on how long the analysis took), with their statuses when the claim is "
    "routed: at most `max_prior_claims` claims, `max_prior_rejected` rejected, "
    "`max_reused_photos` photos reused in other claims and `max_open_claims` still open.",
    "**Never reject.** Expired evidence, a missing code or exhausted rounds send the claim "
    "to a person, who decides.",
    "Deadlines: `evidence_requested` carries `evidence_deadline`; `in_review` carries "
    "`review_sla` and `merchant_response` (the merchant's window to answer closes before the "
    "review is due).",
)


# --- the route reason table ---------------------------------------------------------------

#: What a route reason does to the route (the ``effect`` column of docs/policy.md).
EFFECTS: dict[str, str] = {
    "review": "sends the claim to review",
    "no_auto": "blocks auto-approval: evidence while rounds remain, then review",
    "auto": "a condition of auto-approval that holds",
    "level": "the risk level; its route is set by the `*_levels` keys",
}


@dataclass(frozen=True)
class RouteReasonSpec:
    """One row of :data:`ROUTE_REASONS`: a stable code, its effect and its message templates
    (``str.format`` fields from the reason's params, plus ``level_route_text``,
    ``finding_title`` and ``strength_text`` derived in the message's language)."""

    code: str
    effect: str
    template_en: str
    template_zh: str


def _s(code: str, effect: str, en: str, zh: str) -> RouteReasonSpec:
    return RouteReasonSpec(code, effect, en, zh)


_LEVEL_ZH = {"low": "低", "medium": "中等", "high": "高"}

_TABLE = [
    # --- findings that force review ---------------------------------------------------
    _s("ROUTE_CONCLUSIVE_FINDING", "review",
       "A photo has conclusive evidence, {finding} ({finding_title}); a person reviews every "
       "such claim.",
       "照片存在确定性证据 {finding}（{finding_title}），此类申请一律人工审核。"),
    _s("ROUTE_STRONG_FINDING", "review",
       "A photo has strong evidence, {finding} ({finding_title}); a person reviews every "
       "such claim.",
       "照片存在强证据 {finding}（{finding_title}），此类申请一律人工审核。"),
    _s("ROUTE_FINDING_NEEDS_REVIEW", "review",
       "A photo has {finding} ({finding_title}, {strength_text}), which the policy always "
       "sends to review.",
       "照片存在 {finding}（{finding_title}，{strength_text}），按策略一律人工审核。"),
    # --- evidence rounds --------------------------------------------------------------
    _s("ROUTE_EVIDENCE_CODE_MISSING", "review",
       "The new photos of evidence round {round} do not show the one-time code the buyer "
       "was asked to write beside the item.",
       "第 {round} 轮补充照片中未识别到要求买家写在商品旁的一次性验证码。"),
    _s("ROUTE_EVIDENCE_CODE_UNCHECKED", "review",
       "The new photos of evidence round {round} could not be checked for the one-time code "
       "(text recognition unavailable or failed).",
       "第 {round} 轮补充照片未能核验一次性验证码（文字识别不可用或失败）。"),
    _s("ROUTE_EVIDENCE_EXPIRED", "review",
       "The buyer sent no new photos within the {deadline_hours}-hour deadline of evidence "
       "round {round}; a person decides, and missing evidence alone never rejects a claim.",
       "买家未在第 {round} 轮补充凭证的 {deadline_hours} 小时期限内提交新照片；由人工决定，"
       "仅因未补充凭证不会驳回申请。"),
    # --- risk level -------------------------------------------------------------------
    _s("ROUTE_LOW_RISK", "level",
       "Risk is low (score {score}/100); the policy routes low risk to {level_route_text}.",
       "风险低（{score}/100 分）；按策略，低风险申请转{level_route_text}。"),
    _s("ROUTE_MEDIUM_RISK", "level",
       "Risk is medium (score {score}/100); the policy routes medium risk to "
       "{level_route_text}.",
       "风险中等（{score}/100 分）；按策略，中风险申请转{level_route_text}。"),
    _s("ROUTE_HIGH_RISK", "level",
       "Risk is high (score {score}/100); the policy routes high risk to {level_route_text}.",
       "风险高（{score}/100 分）；按策略，高风险申请转{level_route_text}。"),
    # --- amount, detectors, rounds ----------------------------------------------------
    _s("ROUTE_AMOUNT_OVER_REVIEW_LIMIT", "review",
       "The amount {amount} is above {limit}, over which a person reviews every claim.",
       "申请金额 {amount} 超过 {limit}，超过该金额的申请一律人工审核。"),
    _s("ROUTE_DETECTOR_ERROR", "review",
       "A detector failed on at least one photo, so the analysis is incomplete; the machine "
       "does not approve on an incomplete analysis.",
       "至少一张照片的检测出错，分析不完整；机器不会基于不完整的分析自动通过。"),
    _s("ROUTE_EVIDENCE_ROUNDS_EXHAUSTED", "review",
       "The claim would need more evidence, but {rounds} of {max_rounds} evidence round(s) "
       "are used; a person decides.",
       "该申请仍需补充凭证，但已用完 {rounds}/{max_rounds} 轮补充机会；由人工决定。"),
    _s("ROUTE_ANALYSIS_FAILED", "review",
       "The photos could not be analysed; a person must look at them.",
       "照片未能完成分析，需人工查看。"),
    # --- conditions of auto-approval that fail ----------------------------------------
    _s("ROUTE_AMOUNT_OVER_AUTO_LIMIT", "no_auto",
       "The amount {amount} is above the auto-approval limit {limit}.",
       "申请金额 {amount} 超过自动通过上限 {limit}。"),
    _s("ROUTE_HISTORY_PRIOR_CLAIMS", "no_auto",
       "The buyer filed {count} claim(s) in the {window_days} days before this one; a clean "
       "history has at most {limit}.",
       "买家在本申请之前 {window_days} 天内已有 {count} 笔售后申请，超过记录良好的上限 {limit}。"),
    _s("ROUTE_HISTORY_REJECTED", "no_auto",
       "{count} of the buyer's claims filed in the {window_days} days before this one were "
       "rejected; a clean history has at most {limit}.",
       "买家在本申请之前 {window_days} 天内的申请有 {count} 笔被驳回，超过记录良好的上限 {limit}。"),
    _s("ROUTE_HISTORY_REUSED_PHOTOS", "no_auto",
       "{count} photo(s) in the buyer's claims filed in the {window_days} days before this "
       "one were also used in other claims; a clean history has at most {limit}.",
       "买家在本申请之前 {window_days} 天内的申请中有 {count} 张照片也出现在其他申请中，"
       "超过记录良好的上限 {limit}。"),
    _s("ROUTE_HISTORY_OPEN_CLAIMS", "no_auto",
       "{count} of the buyer's claims filed in the {window_days} days before this one are "
       "still open; a clean history has at most {limit}.",
       "买家在本申请之前 {window_days} 天内的申请中有 {count} 笔尚未结案，超过记录良好的上限 {limit}。"),
    # --- conditions of auto-approval that hold ----------------------------------------
    _s("ROUTE_AMOUNT_WITHIN_LIMIT", "auto",
       "The amount {amount} is within the auto-approval limit {limit}.",
       "申请金额 {amount} 未超过自动通过上限 {limit}。"),
    _s("ROUTE_HISTORY_CLEAN", "auto",
       "The buyer's history is clean: in the {window_days} days before this claim, "
       "{claims} claim(s), {rejected} rejected, {reused_photos} reused photo(s), "
       "{open_claims} still open.",
       "买家记录良好：本申请之前 {window_days} 天内 {claims} 笔申请、{rejected} 笔被驳回、"
       "{reused_photos} 张重复照片、{open_claims} 笔尚未结案。"),
    _s("ROUTE_EVIDENCE_CODE_FOUND", "auto",
       "The new photos of evidence round {round} show the one-time code.",
       "第 {round} 轮补充照片中识别到一次性验证码。"),
]

#: The one table of route reason codes. Codes are stable: never renamed or reused.
ROUTE_REASONS: dict[str, RouteReasonSpec] = {spec.code: spec for spec in _TABLE}

_ROUTE_TEXT = {"auto_approved": ("auto-approval", "自动通过"),
               "evidence_requested": ("a request for more evidence", "补充凭证"),
               "in_review": ("human review", "人工审核")}
_STRENGTH_ZH = {"conclusive": "确定性证据", "strong": "强证据", "moderate": "中等证据",
                "weak": "弱证据", "info": "提示信息"}


@dataclass(frozen=True)
class RouteReason:
    """Why a claim took its route: a code from :data:`ROUTE_REASONS` and the values its
    messages are filled from (JSON-ready: amounts are strings)."""

    code: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in ROUTE_REASONS:
            raise ValueError(f"route reason: got {self.code!r}, expected one of: "
                             f"{', '.join(ROUTE_REASONS)}")

    def message(self, lang: str) -> str:
        """The message in ``lang`` ("en" or "zh")."""
        zh = lang == "zh"
        spec = ROUTE_REASONS[self.code]
        values = dict(self.params)
        if "level_route" in values:
            values["level_route_text"] = _ROUTE_TEXT[values["level_route"]][zh]
        if "finding" in values:
            reason = get_reason(values["finding"])
            values["finding_title"] = reason.title_zh if zh else reason.title_en
            values["strength_text"] = _STRENGTH_ZH[reason.strength] if zh else reason.strength
        return (spec.template_zh if zh else spec.template_en).format_map(values)

    @property
    def message_en(self) -> str:
        return self.message("en")

    @property
    def message_zh(self) -> str:
        return self.message("zh")

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "params": dict(self.params),
                "message_en": self.message_en, "message_zh": self.message_zh}


@dataclass(frozen=True)
class RouteDecision:
    """A route, its reasons (the deciding one first) and the deadlines the route starts:
    ``evidence_deadline`` for ``evidence_requested`` (with ``evidence_round``, the round
    being asked for); ``review_sla`` and ``merchant_response`` for ``in_review``."""

    route: str
    reasons: tuple[RouteReason, ...]
    evidence_deadline: timedelta | None = None
    evidence_round: int | None = None
    review_sla: timedelta | None = None
    merchant_response: timedelta | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        def hours(value: timedelta | None) -> float | None:
            return None if value is None else value.total_seconds() / 3600

        return {"route": self.route, "reasons": [r.to_dict() for r in self.reasons],
                "evidence_round": self.evidence_round,
                "evidence_deadline_hours": hours(self.evidence_deadline),
                "review_sla_hours": hours(self.review_sla),
                "merchant_response_hours": hours(self.merchant_response)}


# --- the policy and its checks ------------------------------------------------------------

class _Invalid(Exception):
    """A value is not accepted: ``got`` is the offending value (the whole value or one
    element of a list), ``expected`` what is accepted."""

    def __init__(self, expected: str, got: Any) -> None:
        super().__init__(expected)
        self.expected, self.got = expected, got


@dataclass(frozen=True)
class _Kind:
    """How one policy key is checked: ``accepts`` says what it takes (in messages and in
    docs); ``convert`` returns the normalised value or raises :class:`_Invalid`."""

    accepts: str
    convert: Callable[[Any], Any]


def _suggest(word: Any, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _whole(accepts: str, minimum: int) -> _Kind:
    def convert(value: Any) -> int:
        # bool is an int in Python: "yes" in YAML must not read as 1
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _Invalid(accepts, value)
        return value
    return _Kind(accepts, convert)


def _amount(*, optional: bool) -> _Kind:
    accepts = "an amount ≥ 0 such as 200 or 199.99" + (", or null for no limit" if optional
                                                       else "")

    def convert(value: Any) -> Decimal | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
            raise _Invalid(accepts, value)
        try:
            # via str: YAML reads 199.99 as a binary float; the amount meant is 199.99
            amount = Decimal(value) if isinstance(value, (Decimal, int)) \
                else Decimal(str(value).strip())
        except InvalidOperation:
            raise _Invalid(accepts, value) from None
        if not amount.is_finite() or amount < 0:
            raise _Invalid(accepts, value)
        return amount
    return _Kind(accepts, convert)


def _names(what: str, choices: Sequence[str]) -> _Kind:
    accepts = f"a list of {what} from: {', '.join(choices)}"

    def convert(value: Any) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)):
            raise _Invalid(f"{accepts}, e.g. [{choices[0]}]", value)
        for item in value:
            if item not in choices:
                raise _Invalid(f"{what} from: {', '.join(choices)}{_suggest(item, choices)}",
                               item)
        return tuple(dict.fromkeys(value))
    return _Kind(accepts, convert)


_HOURS = _whole("a whole number of hours > 0", 1)
_DAYS = _whole("a whole number of days > 0", 1)
_COUNT = _whole("a whole number ≥ 0", 0)
_LEVEL_LIST = _names("risk levels", LEVELS)


def _key(default: Any, kind: _Kind, doc: str) -> Any:
    return field(default=default, metadata={"kind": kind, "doc": doc})


@dataclass(frozen=True)
class Policy:
    """How claims are routed. Every field has a working default; build from a file with
    :func:`load_policy`. Construction checks every value and the settings against each other
    and raises :class:`PolicyError` listing all problems."""

    auto_approve_levels: tuple[str, ...] = _key(
        ("low",), _LEVEL_LIST,
        "Risk levels that may be auto-approved when every other condition holds.")
    auto_approve_max_amount: Decimal = _key(
        Decimal("200"), _amount(optional=False),
        "Largest amount auto-approved, in the platform's currency (yuan).")
    history_window_days: int = _key(
        180, _DAYS, "Days before the routed claim whose claims by the same buyer the history "
                    "counts.")
    max_prior_claims: int = _key(
        3, _COUNT, "Most earlier claims in the window for a clean history.")
    max_prior_rejected: int = _key(
        0, _COUNT, "Most rejected earlier claims in the window for a clean history.")
    max_reused_photos: int = _key(
        0, _COUNT, "Most photos in the window's earlier claims also used in other claims, "
                   "for a clean history.")
    max_open_claims: int = _key(
        1, _COUNT, "Most earlier claims in the window still open (undecided) for a clean "
                   "history.")
    evidence_on_levels: tuple[str, ...] = _key(
        ("medium",), _LEVEL_LIST, "Risk levels that get an evidence request.")
    max_evidence_rounds: int = _key(
        1, _COUNT, "Evidence rounds the policy asks for before sending a claim to review "
                   "(0: never ask; then `evidence_on_levels` must be empty).")
    evidence_deadline_hours: int = _key(
        72, _HOURS, "Hours the buyer has to send the new photos.")
    review_on_levels: tuple[str, ...] = _key(
        ("high",), _LEVEL_LIST, "Risk levels that go to review.")
    review_on_strengths: tuple[str, ...] = _key(
        ("conclusive", "strong"), _names("finding strengths", _REVIEW_STRENGTHS),
        "A finding of one of these strengths (docs/reasons.md) sends the claim to review, "
        "whatever the score.")
    review_on_codes: tuple[str, ...] = _key(
        (), _names("reason codes", tuple(REASONS)),
        "Further reason codes that always send the claim to review.")
    review_above_amount: Decimal | None = _key(
        Decimal("2000"), _amount(optional=True),
        "Amounts above this always go to review (null: no such limit); at least "
        "`auto_approve_max_amount`.")
    review_sla_hours: int = _key(
        72, _HOURS, "Hours from entering the review queue to the decision being due; longer "
                    "than `merchant_response_hours`, so the reviewer reads the merchant's "
                    "answer.")
    merchant_response_hours: int = _key(
        48, _HOURS, "Hours the merchant has to answer a claim in review.")

    def __post_init__(self) -> None:
        problems = []
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                object.__setattr__(self, f.name, f.metadata["kind"].convert(value))
            except _Invalid as bad:
                problems.append(f"{f.name}: got {bad.got!r}, expected {bad.expected}")
        if not problems:
            problems = _contradictions(self)
        if problems:
            raise PolicyError(_describe("", problems), problems=tuple(problems))

    def level_route(self, level: str) -> str:
        """The route the policy gives ``level`` before any other condition."""
        if level in self.review_on_levels:
            return "in_review"
        if level in self.evidence_on_levels:
            return "evidence_requested"
        return "auto_approved"


_GROUPS = ("auto_approve_levels", "evidence_on_levels", "review_on_levels")


def _contradictions(p: Policy) -> list[str]:
    problems = []
    where = {level: [g for g in _GROUPS if level in getattr(p, g)] for level in LEVELS}
    for level, groups in where.items():
        if len(groups) > 1:
            problems.append(f"level {level!r} is in {' and '.join(groups)}; a level takes "
                            f"one route")
        elif not groups:
            problems.append(f"level {level!r} is in none of {', '.join(_GROUPS)}; every risk "
                            f"level needs a route")
    if "high" in p.auto_approve_levels:
        problems.append("auto_approve_levels: 'high' is never auto-approved; put it in "
                        "review_on_levels or evidence_on_levels")
    if not problems:
        # a higher level may not get a more lenient route than a lower one
        rank = {level: _GROUPS.index(groups[0]) for level, groups in where.items()}
        for lower, higher in zip(LEVELS, LEVELS[1:]):
            if rank[lower] > rank[higher]:
                problems.append(f"level {higher!r} is in {where[higher][0]} but the lower "
                                f"level {lower!r} is in {where[lower][0]}; a higher risk "
                                f"cannot get a more lenient route")
    if p.review_above_amount is not None and p.review_above_amount < p.auto_approve_max_amount:
        problems.append(f"review_above_amount ({p.review_above_amount}) is below "
                        f"auto_approve_max_amount ({p.auto_approve_max_amount}); amounts "
                        f"between them would be both auto-approved and sent to review")
    if p.evidence_on_levels and p.max_evidence_rounds == 0:
        problems.append(f"evidence_on_levels is {list(p.evidence_on_levels)} but "
                        f"max_evidence_rounds is 0, so evidence could never be requested; "
                        f"set max_evidence_rounds ≥ 1 or move those levels to "
                        f"review_on_levels")
    if p.review_sla_hours <= p.merchant_response_hours:
        problems.append(f"review_sla_hours ({p.review_sla_hours}) is not longer than "
                        f"merchant_response_hours ({p.merchant_response_hours}); the review "
                        f"would be due before the merchant's window to answer closes")
    return problems


def _describe(source: str, problems: Sequence[str]) -> str:
    head = f"policy {source!r}" if source else "policy"
    if len(problems) == 1:
        return f"{head}: {problems[0]}"
    return f"{head} has {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first_line: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first_line = key, line, first_line


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key set twice (plain YAML keeps the last one silently)."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                raise _DuplicateKey(key_node.value, line, seen[key_node.value])
            seen[key_node.value] = line
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_policy(path: Path | str | None = None) -> Policy:
    """The policy in the YAML file ``path``; ``None`` reads the default file shipped with
    RefundLens (:data:`DEFAULT_POLICY_PATH`, every key documented). Keys left out keep
    their defaults.

    Raises:
        PolicyError: the file is missing or unreadable, is not valid YAML (with the line),
            has an unknown key, a value of the wrong type or out of range, or settings that
            contradict each other. The message names the file and every problem.
    """
    path = DEFAULT_POLICY_PATH if path is None else Path(path)
    source = str(path)

    def fail(*problems: str) -> PolicyError:
        return PolicyError(_describe(source, problems), source=source, problems=problems)

    if not path.exists():
        raise fail("no such file")
    if not path.is_file():
        raise fail("not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot be read: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except _DuplicateKey as dup:
        raise fail(f"line {dup.line}: key {dup.key!r} is set twice (first at line "
                   f"{dup.first_line})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise fail(f"YAML syntax error{where}: {problem}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise fail(f"expected a mapping of policy keys to values, got "
                   f"{type(data).__name__} {data!r}")
    known = [f.name for f in fields(Policy)]
    problems = [f"unknown key {key!r}{_suggest(key, known)}; known keys: {', '.join(known)}"
                for key in data if key not in known]
    try:
        policy = Policy(**{k: v for k, v in data.items() if k in known})
    except PolicyError as exc:
        problems += exc.problems
    if problems:
        raise fail(*problems)
    return policy


# --- routing ------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuyerHistory:
    """The buyer's record before the claim being routed: the claims filed in the
    ``Policy.history_window_days`` days before it (never the claim itself, nor one filed
    after it), counted by the caller with their statuses as they stand; ``open_claims`` is
    how many of them are still undecided."""

    claims_in_window: int = 0
    approved: int = 0
    rejected: int = 0
    reused_photos: int = 0
    open_claims: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"buyer history {f.name}: got {value!r}, expected a whole "
                                 f"number ≥ 0")


@dataclass(frozen=True)
class EvidenceOutcome:
    """What came of the latest evidence round: ``rounds`` asked so far (≥ 1), whether the
    buyer ``submitted`` new photos, whether OCR found the code in them (``None``: not
    checked, or nothing submitted), and whether the round ``expired`` unanswered. A round
    neither submitted nor expired is still open; :func:`route_claim` refuses it."""

    rounds: int
    submitted: bool
    code_found: bool | None = None
    expired: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"evidence rounds: got {self.rounds!r}, expected a whole number "
                             f"≥ 1 (no round asked: pass evidence=None)")
        if self.submitted and self.expired:
            raise ValueError("evidence outcome: submitted and expired at once; a round is "
                             "one or the other")
        if not self.submitted and self.code_found is not None:
            raise ValueError(f"evidence outcome: code_found={self.code_found!r} but nothing "
                             f"was submitted; expected None")

    @property
    def pending(self) -> bool:
        return not self.submitted and not self.expired


def _check_inputs(level: str, score: int, codes: Sequence[str], amount: Decimal,
                  history: BuyerHistory, evidence: EvidenceOutcome | None) -> None:
    if level not in LEVELS:
        raise ValueError(f"level: got {level!r}, expected one of: {', '.join(LEVELS)}")
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 100:
        raise ValueError(f"score: got {score!r}, expected a whole number from 0 to 100")
    if isinstance(codes, str):
        raise ValueError(f"codes: got the string {codes!r}, expected a sequence of codes")
    unknown = [c for c in codes if c not in REASONS]
    if unknown:
        raise ValueError(f"codes: got unknown reason code(s) {', '.join(map(repr, unknown))}; "
                         f"expected codes from docs/reasons.md")
    if isinstance(amount, bool) or not isinstance(amount, (Decimal, int)) \
            or not Decimal(amount).is_finite() or amount < 0:
        raise ValueError(f"amount: got {amount!r}, expected a Decimal ≥ 0 (floats lose "
                         f"cents)")
    if not isinstance(history, BuyerHistory):
        raise ValueError(f"history: got {history!r}, expected a BuyerHistory")
    if evidence is not None and evidence.pending:
        raise ValueError(f"evidence round {evidence.rounds} is still open (neither submitted "
                         f"nor expired); route the claim when the buyer answers or the "
                         f"deadline passes")


def _money(amount: Decimal) -> str:
    """``amount`` with cents ("99.50"), or every digit it has when it has more."""
    cents = amount.quantize(Decimal("0.01"))
    return format(cents if cents == amount else amount, "f")


def route_claim(policy: Policy, *, level: str, score: int, codes: Sequence[str],
                amount: Decimal, history: BuyerHistory, detector_errors: bool = False,
                evidence: EvidenceOutcome | None = None) -> RouteDecision:
    """Route one analysed claim (:data:`ROUTING_RULES`). Pure.

    Args:
        policy: the policy.
        level, score: the claim's current risk. After an evidence round, the caller passes
            the risk with the new photos included.
        codes: every reason code seen on any of the claim's photos, first and evidence, so
            a conclusive finding on the first photo still forces review.
        amount: the claimed amount, in the policy's currency.
        history: the buyer's claims filed before this one, over
            ``policy.history_window_days`` (:class:`BuyerHistory`).
        detector_errors: a detector failed on some photo (the analysis is incomplete).
        evidence: the latest evidence round's outcome; ``None`` before any was asked.

    Returns:
        The route, every reason that applied (the deciding one first) and the deadlines the
        route starts. Never a rejection.

    Raises:
        ValueError: an input is not accepted (unknown level or code, a float amount, an
            evidence round still open).
    """
    _check_inputs(level, score, codes, amount, history, evidence)
    amount = Decimal(amount)
    level_route = policy.level_route(level)
    level_reason = RouteReason(f"ROUTE_{level.upper()}_RISK",
                               {"level": level, "score": score, "level_route": level_route})

    review: list[RouteReason] = []
    order = list(STRENGTH_WEIGHTS)
    forcing = [c for c in dict.fromkeys(codes)
               if c in policy.review_on_codes or REASONS[c].strength in policy.review_on_strengths]
    for code in sorted(forcing, key=lambda c: order.index(REASONS[c].strength)):
        strength = REASONS[code].strength
        name = ("ROUTE_FINDING_NEEDS_REVIEW" if code in policy.review_on_codes
                else {"conclusive": "ROUTE_CONCLUSIVE_FINDING",
                      "strong": "ROUTE_STRONG_FINDING"}.get(strength,
                                                            "ROUTE_FINDING_NEEDS_REVIEW"))
        review.append(RouteReason(name, {"finding": code, "strength": strength}))

    evidence_context: list[RouteReason] = []
    if evidence is not None:
        round_ = {"round": evidence.rounds}
        if evidence.expired:
            review.append(RouteReason("ROUTE_EVIDENCE_EXPIRED", {
                **round_, "deadline_hours": policy.evidence_deadline_hours}))
        elif evidence.code_found is None:
            review.append(RouteReason("ROUTE_EVIDENCE_CODE_UNCHECKED", round_))
        elif not evidence.code_found:
            review.append(RouteReason("ROUTE_EVIDENCE_CODE_MISSING", round_))
        else:
            evidence_context.append(RouteReason("ROUTE_EVIDENCE_CODE_FOUND", round_))

    if level_route == "in_review":
        review.append(level_reason)
    limits = {"amount": _money(amount), "limit": _money(policy.auto_approve_max_amount)}
    blockers: list[RouteReason] = []
    if policy.review_above_amount is not None and amount > policy.review_above_amount:
        review.append(RouteReason("ROUTE_AMOUNT_OVER_REVIEW_LIMIT", {
            "amount": _money(amount), "limit": _money(policy.review_above_amount)}))
    elif amount > policy.auto_approve_max_amount:
        blockers.append(RouteReason("ROUTE_AMOUNT_OVER_AUTO_LIMIT", limits))
    if detector_errors:
        review.append(RouteReason("ROUTE_DETECTOR_ERROR"))

    window = policy.history_window_days
    for code, count, limit in (
            ("ROUTE_HISTORY_PRIOR_CLAIMS", history.claims_in_window, policy.max_prior_claims),
            ("ROUTE_HISTORY_REJECTED", history.rejected, policy.max_prior_rejected),
            ("ROUTE_HISTORY_REUSED_PHOTOS", history.reused_photos, policy.max_reused_photos),
            ("ROUTE_HISTORY_OPEN_CLAIMS", history.open_claims, policy.max_open_claims)):
        if count > limit:
            blockers.append(RouteReason(code, {"count": count, "limit": limit,
                                               "window_days": window}))

    # the level's own reason leads when the level decided; otherwise it follows the blockers
    if level_route == "evidence_requested":
        wants_evidence = [level_reason, *blockers]
    else:
        wants_evidence = [*blockers, level_reason] if blockers else []
    rounds_used = evidence.rounds if evidence is not None else 0

    if review:
        rest = [*blockers] + ([] if level_route == "in_review" else [level_reason])
        return _review(policy, [*review, *rest, *evidence_context])
    if wants_evidence:
        if rounds_used < policy.max_evidence_rounds:
            return RouteDecision(
                "evidence_requested", tuple([*wants_evidence, *evidence_context]),
                evidence_deadline=timedelta(hours=policy.evidence_deadline_hours),
                evidence_round=rounds_used + 1)
        exhausted = RouteReason("ROUTE_EVIDENCE_ROUNDS_EXHAUSTED",
                                {"rounds": rounds_used, "max_rounds": policy.max_evidence_rounds})
        return _review(policy, [exhausted, *wants_evidence, *evidence_context])
    clean = RouteReason("ROUTE_HISTORY_CLEAN", {
        "window_days": window, "claims": history.claims_in_window,
        "rejected": history.rejected, "reused_photos": history.reused_photos,
        "open_claims": history.open_claims})
    return RouteDecision("auto_approved", (level_reason,
                                           RouteReason("ROUTE_AMOUNT_WITHIN_LIMIT", limits),
                                           clean, *evidence_context))


def _review(policy: Policy, reasons: list[RouteReason]) -> RouteDecision:
    return RouteDecision("in_review", tuple(reasons),
                         review_sla=timedelta(hours=policy.review_sla_hours),
                         merchant_response=timedelta(hours=policy.merchant_response_hours))


# --- the one-time evidence code -----------------------------------------------------------

#: Characters of a one-time code: digits and capitals a buyer writes and OCR reads without
#: confusion. Left out, with what each is confused with: 0 O Q D (round shapes),
#: 1 I L (strokes), 2 Z, 5 S, 8 B, 6 G, U V, and J (read as "]" on rendered cards). No
#: character follows itself either: OCR merged "JJ" and "MMMM" runs in the workflow tests
#: (3 misreads in ~340 rendered codes before both rules).
CODE_ALPHABET = "34679ACEFHKMNPRTWXY"
CODE_LENGTH = 6  # 19 × 18**5 ≈ 36 M codes: a code proves a photo is fresh, it is not a secret

# OCR misreadings of a code character as a character outside the alphabet, mapped back.
# Sound because the source characters are not in the alphabet: the mapping can only turn a
# misread code character into itself, never one code character into another.
_OCR_LOWER = {"q": "9", "g": "9", "b": "6"}
_OCR_UPPER = {"G": "6"}
_BREAK = "|"


def generate_one_time_code(rng: Any = None, *, length: int = CODE_LENGTH) -> str:
    """A fresh one-time code for an evidence request, e.g. ``"K7M4PX"``.

    Args:
        rng: anything with ``choice`` (a ``random.Random`` for reproducible tests);
            ``None`` uses :mod:`secrets`, so codes cannot be predicted.
        length: characters, at least 4.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 4:
        raise ValueError(f"length: got {length!r}, expected a whole number ≥ 4")
    choice = secrets.choice if rng is None else rng.choice
    code: list[str] = []
    while len(code) < length:
        ch = choice(CODE_ALPHABET)
        if not code or ch != code[-1]:
            code.append(ch)
    return "".join(code)


def _code_chars(text: str) -> str:
    """``text`` as code characters: separators (spaces, punctuation) dropped, so "K7 M4-PX"
    reads as one run; any other letter, digit or CJK character becomes a break, so a code
    is never assembled across a word."""
    out = []
    for ch in unicodedata.normalize("NFKC", text):  # full-width Ｋ７ → K7
        ch = _OCR_LOWER.get(ch, ch).upper()
        ch = _OCR_UPPER.get(ch, ch)
        if ch in CODE_ALPHABET:
            out.append(ch)
        elif ch.isalnum():
            out.append(_BREAK)
    return "".join(out)


def code_in_text(code: str, texts: Iterable[str] | str) -> bool:
    """Whether the one-time ``code`` appears in OCR output ``texts`` (lines or boxes, in
    reading order; a single string is one text).

    Tolerant where OCR and handwriting vary: case, full-width characters, spaces and
    punctuation between characters ("k7 m4-px"), a code written over two lines (consecutive
    texts are joined), and misreadings onto characters outside the alphabet (q or g for 9,
    b or G for 6). Strict otherwise: every character must match, with nothing but separators
    between them; a misread that lands on another code character is a miss, which sends the
    claim to a person, never to a rejection.
    """
    wanted = code.upper() if isinstance(code, str) else code
    if not isinstance(wanted, str) or not wanted or any(c not in CODE_ALPHABET for c in wanted):
        raise ValueError(f"code: got {code!r}, expected characters from {CODE_ALPHABET}")
    if isinstance(texts, str):
        texts = [texts]
    return wanted in "".join(_code_chars(text) for text in texts)
