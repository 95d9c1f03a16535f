"""The reviewer's console: the queue and the claim page with its actions.

Actions call the claims workflow (decide, request_evidence, escalate, add_note) with the
actor ``user:<username>``; the workflow writes the audit event and the webhook deliveries
in the same transaction, so everything done here shows in the API and the webhooks.

Appealed claims wait in the queue beside those in review (``?status=appealed`` shows only
them), marked with the outcome appealed; deciding one answers the appeal. Reviewers file
no appeals: they come from the buyer through the platform, or from the merchant
(``merchant.py``), as the API allows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select

from ...claims import views, workflow
from ...errors import InvalidInput, RequestError
from ...reasons import REASONS
from ...store.tables import Claim, Decision, Merchant, utcnow
from .claimview import claim_view, shipping_evidence
from .render import ConsoleRoute, Ctx, check_csrf, render, reviewer, see_other

__all__ = ["PAGE_SIZE", "QueueFilters", "router"]

router = APIRouter(route_class=ConsoleRoute)

PAGE_SIZE = 50
AGES = ("1", "4", "24", "72")
#: Merchants offered in the queue's filter (a larger platform types the id instead).
MAX_MERCHANT_CHOICES = 500
#: The statuses the queue counts (queue.html), not every status a claim ever had.
COUNTED = ("in_review", "appealed", "evidence_requested")


class QueueFilters:
    """The queue's filters, checked: merchant id, risk level, reason code, minimum age,
    status (in review or appealed)."""

    def __init__(self, merchant: str = "", level: str = "", code: str = "",
                 age: str = "", status: str = "") -> None:
        self.merchant = merchant.strip()[:40]
        self.level = level.strip()
        self.code = code.strip()
        self.age = age.strip()
        self.status = status.strip()
        if self.status and self.status not in views.QUEUE_STATUSES:
            raise InvalidInput(f"status: got {self.status!r}, expected one of "
                               f"{', '.join(views.QUEUE_STATUSES)}", field="status")
        if self.level and self.level not in ("low", "medium", "high"):
            raise InvalidInput(f"level: got {self.level!r}, expected low, medium or high",
                               field="level")
        if self.code and self.code not in REASONS:
            raise InvalidInput(f"code: got {self.code!r}, expected a reason code such as "
                               f"REFERENCE_ALTERED (docs/reasons.md)", field="code")
        if self.age and self.age not in AGES:
            raise InvalidInput(f"age: got {self.age!r}, expected one of {', '.join(AGES)} "
                               f"(hours)", field="age")

    @classmethod
    def from_query(cls, query: str) -> "QueueFilters":
        values = dict(parse_qsl(query or ""))
        try:
            return cls(values.get("merchant", ""), values.get("level", ""),
                       values.get("code", ""), values.get("age", ""),
                       values.get("status", ""))
        except InvalidInput:
            return cls()

    def query(self) -> str:
        return urlencode({k: v for k, v in (("merchant", self.merchant), ("level", self.level),
                                            ("code", self.code), ("age", self.age),
                                            ("status", self.status)) if v})

    def page(self, ctx: Ctx, *, offset: int, limit: int) -> dict[str, Any]:
        return views.list_claims(
            ctx.svc, statuses=(self.status,) if self.status else views.QUEUE_STATUSES,
            merchant_id=self.merchant or None,
            risk_level=self.level or None, code=self.code or None,
            min_age_hours=float(self.age) if self.age else None, sort="deadline",
            limit=limit, offset=offset, count_statuses=COUNTED)


def _merchant_names(ctx: Ctx, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    with ctx.svc.db.read() as session:
        return dict(session.execute(select(Merchant.id, Merchant.name)
                                    .where(Merchant.id.in_(ids))).all())


def _merchant_choices(ctx: Ctx) -> list[tuple[str, str]]:
    with ctx.svc.db.read() as session:
        return [(m.id, m.name) for m in session.execute(
            select(Merchant.id, Merchant.name).order_by(Merchant.name, Merchant.id)
            .limit(MAX_MERCHANT_CHOICES)).all()]


def _appealed_outcomes(ctx: Ctx, claims: list[dict[str, Any]]) -> dict[str, str]:
    """For each appealed claim, the outcome appealed (its latest decision): ``approved``,
    ``rejected``, or ``auto_approved`` for the policy's."""
    ids = [c["id"] for c in claims if c["status"] == "appealed"]
    if not ids:
        return {}
    with ctx.svc.db.read() as session:
        rows = session.execute(select(Decision.claim_id, Decision.outcome, Decision.kind)
                               .where(Decision.claim_id.in_(ids))
                               .order_by(Decision.created_at)).all()
    return {r.claim_id: "auto_approved" if r.kind == "policy" else r.outcome for r in rows}


def _overdue(ctx: Ctx) -> int:
    """Waiting claims past their review deadline (ix_claims_queue: status, due)."""
    with ctx.svc.db.read() as session:
        return session.execute(select(func.count()).select_from(Claim).where(
            Claim.status.in_(views.QUEUE_STATUSES), Claim.review_due_at < utcnow())
        ).scalar_one()


def claim_link(claim_id: str, *, index: int | None = None, query: str = "",
               done: str = "") -> str:
    params = {}
    if index is not None:
        params["i"] = str(index)
        if query:
            params["q"] = query
    if done:
        params["done"] = done
    return f"/console/claims/{claim_id}" + (f"?{urlencode(params)}" if params else "")


@router.get("/console/queue", include_in_schema=False)
def queue(request: Request, merchant: str = "", level: str = "", code: str = "",
          age: str = "", status: str = "", page: int = 1, done: str = "") -> Response:
    ctx = reviewer(request)
    filters = QueueFilters(merchant, level, code, age, status)
    page = max(1, page)
    offset = (page - 1) * PAGE_SIZE
    result = filters.page(ctx, offset=offset, limit=PAGE_SIZE)
    pages = max(1, -(-result["total"] // PAGE_SIZE))
    names = _merchant_names(ctx, {c["merchant_id"] for c in result["claims"]})
    appealed = _appealed_outcomes(ctx, result["claims"])
    query = filters.query()
    rows = [{**c, "merchant_name": names.get(c["merchant_id"], c["merchant_id"]),
             "appeal_of": appealed.get(c["id"], "") if c["status"] == "appealed" else None,
             "sla": ctx.sla(c["review_due_at"]),
             "link": claim_link(c["id"], index=offset + i, query=query)}
            for i, c in enumerate(result["claims"])]

    def page_link(n: int) -> str:
        return "/console/queue?" + urlencode([*parse_qsl(query), ("page", str(n))])

    return render(ctx, "queue.html", rows=rows, filters=filters, total=result["total"],
                  counts=result["counts"], overdue=_overdue(ctx), page=page, pages=pages,
                  prev_link=page_link(page - 1) if page > 1 else "",
                  next_link=page_link(page + 1) if page < pages else "",
                  merchants=_merchant_choices(ctx), ages=AGES, done=done)


def _neighbours(ctx: Ctx, claim_id: str, index: int | None, query: str
                ) -> tuple[str, str]:
    """Links to the previous and next claims in the queue the reviewer came from."""
    if index is None:
        return "", ""
    filters = QueueFilters.from_query(query)
    start = max(0, index - 1)
    ids = [c["id"] for c in filters.page(ctx, offset=start, limit=3)["claims"]]
    if claim_id in ids:
        at = start + ids.index(claim_id)
        before = ids[:ids.index(claim_id)]
        after = ids[ids.index(claim_id) + 1:]
    else:  # decided meanwhile: the claim that took its place is next
        at = index
        before = ids[:index - start]
        after = ids[index - start:]
    prev = claim_link(before[-1], index=at - 1, query=query) if before else ""
    nxt = claim_link(after[0], index=at if claim_id not in ids else at + 1, query=query) \
        if after else ""
    return prev, nxt


def _filed(claim: dict[str, Any]) -> tuple[datetime, str]:
    return datetime.fromisoformat(claim["created_at"]), claim["id"]


def review_page(ctx: Ctx, claim_id: str, *, index: int | None = None, query: str = "",
                done: str = "", error: str = "", status: int = 200,
                form: dict[str, str] | None = None) -> Response:
    detail = views.claim_detail(ctx.svc, claim_id)
    history = views.buyer_history_view(ctx.svc, detail["buyer"], limit=50)
    # the claims routing did not count: filed after this one (the same order as
    # workflow.buyer_history: time, then id)
    later = {h["id"] for h in history["claims"] if _filed(h) > _filed(detail)}
    prev, nxt = _neighbours(ctx, claim_id, index, query)
    claim_status = detail["status"]
    return render(
        ctx, "claim_review.html", status=status, claim=detail,
        view=claim_view(detail, ctx.lang), history=history, later=later,
        shipping=shipping_evidence(ctx.svc, detail["order_id"]),
        review_sla=ctx.sla(detail["deadlines"]["review_due_at"]),
        merchant_sla=ctx.sla(detail["deadlines"]["merchant_response_due_at"], near_hours=4),
        can_decide=claim_status in workflow.OPEN_FOR_DECISION,
        can_request_evidence=claim_status in ("in_review", "appealed"),
        can_escalate=claim_status not in ("approved", "rejected"),
        prev_link=prev, next_link=nxt, index="" if index is None else str(index),
        query=query, queue_link="/console/queue" + (f"?{query}" if query else ""),
        done=done, error=error, form=form or {})


def _index(value: str) -> int | None:
    return int(value) if value.isdigit() and int(value) < 10**7 else None


def _act(request: Request, claim_id: str, csrf_token: str, i: str, q: str, done: str,
         form: dict[str, str], action: Callable[[Ctx], Any]) -> Response:
    """Run a reviewer action; then go on to the next claim in the queue if this one left
    it, else back to this claim. A refused action shows the claim with the reason."""
    ctx = reviewer(request)
    check_csrf(ctx, csrf_token)
    index = _index(i)
    filters = QueueFilters.from_query(q)
    query = filters.query()
    if done in ("approved", "rejected"):
        with ctx.svc.db.read() as session:
            if session.execute(select(Claim.status).where(Claim.id == claim_id)
                               ).scalar_one_or_none() == "appealed":
                done = f"appeal_{done}"  # the decision answers the appeal: say so
    try:
        result = action(ctx)
    except RequestError as exc:
        if exc.status == 404:
            raise
        return review_page(ctx, claim_id, index=index, query=query, error=str(exc),
                           status=exc.status, form=form)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"ok": True, "done": done, "result": result})
    with ctx.svc.db.read() as session:
        claim_status = session.execute(select(Claim.status).where(Claim.id == claim_id)
                                       ).scalar_one()
    if claim_status in views.QUEUE_STATUSES:
        return see_other(ctx, claim_link(claim_id, index=index, query=query, done=done))
    if index is None:
        return see_other(ctx, claim_link(claim_id, done=done))
    following = filters.page(ctx, offset=index, limit=1)["claims"]
    if following:
        return see_other(ctx, claim_link(following[0]["id"], index=index, query=query,
                                         done=done))
    return see_other(ctx, "/console/queue?" + urlencode([*parse_qsl(query), ("done", done)]))


@router.post("/console/claims/{claim_id}/approve", include_in_schema=False)
def approve(request: Request, claim_id: str, csrf_token: str = Form(""), i: str = Form(""),
            q: str = Form("")) -> Response:
    return _act(request, claim_id, csrf_token, i, q, "approved", {},
                lambda ctx: workflow.decide(ctx.svc, claim_id, outcome="approved",
                                            reason="", actor=ctx.user.actor).id)


@router.post("/console/claims/{claim_id}/reject", include_in_schema=False)
def reject(request: Request, claim_id: str, reason: str = Form(""),
           csrf_token: str = Form(""), i: str = Form(""), q: str = Form("")) -> Response:
    return _act(request, claim_id, csrf_token, i, q, "rejected", {"reason": reason},
                lambda ctx: workflow.decide(ctx.svc, claim_id, outcome="rejected",
                                            reason=reason, actor=ctx.user.actor).id)


@router.post("/console/claims/{claim_id}/request-evidence", include_in_schema=False)
def request_evidence(request: Request, claim_id: str, note: str = Form(""),
                     csrf_token: str = Form(""), i: str = Form(""),
                     q: str = Form("")) -> Response:
    return _act(request, claim_id, csrf_token, i, q, "evidence", {"note": note},
                lambda ctx: workflow.request_evidence(ctx.svc, claim_id, actor=ctx.user.actor,
                                                      note=note).id)


@router.post("/console/claims/{claim_id}/escalate", include_in_schema=False)
def escalate(request: Request, claim_id: str, reason: str = Form(""),
             csrf_token: str = Form(""), i: str = Form(""), q: str = Form("")) -> Response:
    return _act(request, claim_id, csrf_token, i, q, "escalated", {"escalate": reason},
                lambda ctx: workflow.escalate(ctx.svc, claim_id, reason=reason,
                                              actor=ctx.user.actor).id)


@router.post("/console/claims/{claim_id}/notes", include_in_schema=False)
def add_note(request: Request, claim_id: str, text: str = Form(""),
             csrf_token: str = Form(""), i: str = Form(""), q: str = Form("")) -> Response:
    return _act(request, claim_id, csrf_token, i, q, "note", {"text": text},
                lambda ctx: workflow.add_note(ctx.svc, claim_id, text=text,
                                              actor=ctx.user.actor))
