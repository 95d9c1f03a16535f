"""Read models: the claim detail, the review queue and buyer history as JSON-ready dicts.

These are the shapes the REST API returns and the console and the PDF report render; they
are built from rows in one read transaction and never expose buyer PII or raw buyer ids.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select

from ..errors import InvalidInput, NotFound
from ..reasons import REASONS
from ..store.tables import (CLAIM_STATUSES, WAITING_STATUSES, Appeal, AuditEvent, AuditHead,
                            Claim, ClaimPhoto, Decision, EvidenceRequest, Merchant,
                            MerchantResponse, Order, PhotoCode, Product, QUEUE_INDEX,
                            QUEUE_MERCHANT_INDEX, ReferencePhoto, is_waiting, queue_order,
                            utcnow)
from .intake import buyer_pseudonym, format_amount
from .service import Service

__all__ = ["QUEUE_STATUSES", "buyer_history_view", "claim_detail", "claim_summary",
           "list_claims"]

QUEUE_STATUSES = WAITING_STATUSES


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def claim_summary(claim: Claim) -> dict[str, Any]:
    return {"id": claim.id, "status": claim.status, "route": claim.route,
            "type": claim.type, "amount": format_amount(claim.amount_cents),
            "currency": claim.currency, "merchant_id": claim.merchant_id,
            "order_id": claim.order_id, "buyer": claim.buyer,
            "risk": {"score": claim.risk_score, "level": claim.risk_level},
            "escalated": claim.escalated,
            "review_due_at": _iso(claim.review_due_at),
            "merchant_response_due_at": _iso(claim.merchant_response_due_at),
            "created_at": _iso(claim.created_at), "updated_at": _iso(claim.updated_at)}


def claim_detail(svc: Service, claim_id: str, *, merchant_scope: str | None = None
                 ) -> dict[str, Any]:
    """The full claim: analyses, findings, risk, route, deadlines, timeline.

    Raises:
        NotFound: no such claim, or it belongs to another merchant than ``merchant_scope``
            (the same answer, so ids of other merchants' claims are not confirmed).
    """
    with svc.db.read() as session:
        claim = session.get(Claim, claim_id)
        if claim is None or (merchant_scope and claim.merchant_id != merchant_scope):
            raise NotFound(f"claim {claim_id!r}: no such claim", field="claim_id")
        order = session.get(Order, claim.order_id)
        merchant = session.get(Merchant, claim.merchant_id)
        assert order is not None and merchant is not None
        photos = session.execute(select(ClaimPhoto).where(ClaimPhoto.claim_id == claim.id)
                                 .order_by(ClaimPhoto.position)).scalars().all()
        ref_ids = {p.matched_reference.get("id") for p in photos
                   if p.matched_reference and p.matched_reference.get("id")}
        references = {r.id: r for r in session.execute(select(ReferencePhoto).where(
            ReferencePhoto.id.in_(ref_ids))).scalars()} if ref_ids else {}
        requests = session.execute(select(EvidenceRequest).where(
            EvidenceRequest.claim_id == claim.id).order_by(EvidenceRequest.created_at)
        ).scalars().all()
        responses = session.execute(select(MerchantResponse).where(
            MerchantResponse.claim_id == claim.id).order_by(MerchantResponse.created_at)
        ).scalars().all()
        decisions = session.execute(select(Decision).where(Decision.claim_id == claim.id)
                                    .order_by(Decision.created_at)).scalars().all()
        appeals = session.execute(select(Appeal).where(Appeal.claim_id == claim.id)
                                  .order_by(Appeal.created_at)).scalars().all()
        events = session.execute(select(AuditEvent).where(AuditEvent.claim_id == claim.id)
                                 .order_by(AuditEvent.seq)).scalars().all()
        head = session.get(AuditHead, 1)
        skus = [i.get("sku") for i in order.items or []]
        products = {p.sku: p for p in session.execute(select(Product).where(
            Product.merchant_id == order.merchant_id, Product.sku.in_(skus))).scalars()} \
            if skus else {}

    def photo_view(p: ClaimPhoto) -> dict[str, Any]:
        analysis = _redacted(p.analysis, merchant_scope) if merchant_scope else p.analysis
        matched = None
        if p.matched_reference:
            ref = references.get(p.matched_reference.get("id") or "")
            matched = {**p.matched_reference,
                       "filename": ref.filename if ref else None,
                       "url": f"/api/v1/blobs/{p.matched_reference.get('sha256')}"
                       if p.matched_reference.get("sha256") else None}
        return {"id": p.id, "role": p.role, "position": p.position, "sha256": p.sha256,
                "filename": p.filename, "content_type": p.content_type, "width": p.width,
                "height": p.height, "evidence_request_id": p.evidence_request_id,
                "url": f"/api/v1/blobs/{p.sha256}",
                "status": None if analysis is None else analysis.get("status", "ok"),
                "risk": None if analysis is None else analysis.get("risk"),
                "findings": [] if analysis is None else analysis.get("findings", []),
                "error": None if analysis is None else analysis.get("error"),
                "mask_sha256": p.mask_sha256,
                "mask_url": f"/api/v1/blobs/{p.mask_sha256}" if p.mask_sha256 else None,
                "matched_reference": matched, "analysis": analysis,
                "analyzed_at": _iso(p.analyzed_at)}

    last_decision = decisions[-1] if decisions else None
    return {
        **claim_summary(claim),
        "reason": claim.reason,
        "risk": claim.risk if claim.risk else {"score": claim.risk_score,
                                               "level": claim.risk_level},
        "recommendation": claim.recommendation,
        "route_reasons": claim.route_reasons or [],
        "deadlines": {"review_due_at": _iso(claim.review_due_at),
                      "merchant_response_due_at": _iso(claim.merchant_response_due_at),
                      "evidence_due_at": _iso(claim.evidence_due_at)},
        "decided_at": _iso(claim.decided_at),
        "order": {"id": order.id, "merchant_id": order.merchant_id,
                  "merchant_name": merchant.name, "buyer": order.buyer,
                  "amount": format_amount(order.amount_cents), "currency": order.currency,
                  "items": [{**i, "product_id": products[i["sku"]].id if i.get("sku") in
                             products else None} for i in order.items or []],
                  "shipped_at": _iso(order.shipped_at), "delivered_at": _iso(order.delivered_at)},
        "photos": [photo_view(p) for p in photos],
        "evidence_requests": [
            {"id": r.id, "code": r.code, "status": r.status, "due_at": _iso(r.due_at),
             "code_found": r.code_found, "submitted_at": _iso(r.submitted_at),
             "created_at": _iso(r.created_at),
             "instructions_en": f"Write the code {r.code} on a piece of paper, put it beside "
                                f"the item so the damage and the code are both visible, and "
                                f"take a new photo; then take one more photo from another "
                                f"angle.",
             "instructions_zh": f"请在纸上写下验证码 {r.code}，放在商品旁边，使损坏处和验证码同时"
                                f"清晰可见，重新拍摄一张照片；再从另一个角度拍摄一张。"}
            for r in requests],
        "merchant_responses": [
            {"id": r.id, "text": r.text, "actor": r.actor, "created_at": _iso(r.created_at),
             "files": [{**f, "url": f"/api/v1/blobs/{f['sha256']}"} for f in r.files or []]}
            for r in responses],
        "decisions": [{"id": d.id, "outcome": d.outcome, "reason": d.reason, "actor": d.actor,
                       "kind": d.kind, "audit_hash": d.audit_hash,
                       "created_at": _iso(d.created_at)} for d in decisions],
        "appeals": [{"id": a.id, "reason": a.reason, "status": a.status, "actor": a.actor,
                     "created_at": _iso(a.created_at)} for a in appeals],
        "timeline": [{"seq": e.seq, "at": _iso(e.at), "actor": e.actor, "action": e.action,
                      "data": e.data, "hash": e.hash} for e in events],
        "audit": {"head_hash": head.hash if head else None, "head_seq": head.seq if head else 0,
                  "decision_hash": last_decision.audit_hash if last_decision else None},
    }


def _redacted(value: Any, merchant: str) -> Any:
    """A merchant sees that its claim's photo was reused elsewhere, not whose claim it was:
    reuse matches (``other``/``other_meta`` and ``also`` entries with ``key``/``meta``) of
    another merchant's photos lose their claim, photo and buyer ids."""
    if isinstance(value, list):
        return [_redacted(v, merchant) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _redacted(v, merchant) for k, v in value.items()}
    for key, meta in (("other", "other_meta"), ("key", "meta")):
        if isinstance(out.get(meta), dict) and out[meta].get("merchant_id") != merchant:
            out[key] = "(another merchant's claim)"
            out[meta] = {"merchant": "other"}
    return out


# A claim whose analysis failed (no score) or that has no deadline sorts last on both
# databases: IS NULL keys, as in the queue's index (tables.queue_order).
_SORTS = {
    "deadline": queue_order(),
    "risk": (Claim.risk_score.is_(None), Claim.risk_score.desc(), Claim.review_due_at.is_(None),
             Claim.review_due_at, Claim.id),
    "created": (Claim.created_at.desc(), Claim.id),
}


def list_claims(svc: Service, *, statuses: tuple[str, ...] | None = None,
                merchant_id: str | None = None, risk_level: str | None = None,
                code: str | None = None, min_age_hours: float | None = None,
                sort: str = "deadline", limit: int = 50, offset: int = 0,
                count_statuses: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A page of claims with the total; the review queue is ``statuses=QUEUE_STATUSES``.

    ``counts`` has the number of claims in each status (of ``merchant_id``'s claims when
    given); ``count_statuses`` limits it to those statuses, which reads only their claims
    instead of every claim ever filed."""
    if sort not in _SORTS:
        raise InvalidInput(f"sort: got {sort!r}, expected one of {', '.join(_SORTS)}",
                           field="sort")
    if not 1 <= limit <= 500:
        raise InvalidInput(f"limit: got {limit}, expected 1–500", field="limit")
    if offset < 0:
        raise InvalidInput(f"offset: got {offset}, expected ≥ 0", field="offset")
    for status in statuses or ():
        if status not in CLAIM_STATUSES:
            raise InvalidInput(f"status: got {status!r}, expected one or more of "
                               f"{', '.join(CLAIM_STATUSES)} (comma-separated)", field="status")
    conditions = []
    queue = bool(statuses) and set(statuses) <= set(QUEUE_STATUSES)
    if queue:
        conditions.append(is_waiting())  # as the queue's indexes say it
        if set(statuses) != set(QUEUE_STATUSES):
            conditions.append(Claim.status.in_(statuses))
    elif statuses:
        conditions.append(Claim.status.in_(statuses))
    if merchant_id:
        conditions.append(Claim.merchant_id == merchant_id)
    if risk_level:
        if risk_level not in ("low", "medium", "high"):
            raise InvalidInput(f"risk_level: got {risk_level!r}, expected low, medium or high",
                               field="risk_level")
        conditions.append(Claim.risk_level == risk_level)
    if min_age_hours is not None:
        conditions.append(Claim.created_at <= utcnow() - timedelta(hours=min_age_hours))
    if code:
        if code not in REASONS:
            raise InvalidInput(f"code: got {code!r}, expected a reason code from "
                               f"docs/reasons.md such as REFERENCE_ALTERED", field="code")
        # claims with a photo whose findings name the code
        conditions.append(Claim.id.in_(select(PhotoCode.claim_id)
                                       .where(PhotoCode.code == code)))
    where = and_(*conditions) if conditions else True
    page, count = select(Claim.id), select(func.count()).select_from(Claim)
    if queue:
        # SQLite plans without statistics (nothing runs ANALYZE) and takes any index on
        # status for a selective one, then sorts every waiting claim; INDEXED BY names the
        # queue's index (should it ever be dropped, an error instead of a slow plan).
        # PostgreSQL chooses from its statistics.
        index = QUEUE_MERCHANT_INDEX if merchant_id else QUEUE_INDEX
        page, count = (q.with_hint(Claim, f"INDEXED BY {index}", "sqlite")
                       for q in (page, count))
    with svc.db.read() as session:
        total = session.execute(count.where(where)).scalar_one()
        # the page's ids first, then their rows: skipping ``offset`` claims reads only the
        # index (PostgreSQL would otherwise fetch every skipped row from the table)
        ids = page.where(where).order_by(*_SORTS[sort]).limit(limit).offset(offset)
        rows = session.execute(select(Claim).where(Claim.id.in_(ids.correlate(None)))
                               .order_by(*_SORTS[sort])).scalars().all()
        counts = dict(session.execute(select(Claim.status, func.count()).where(
            Claim.merchant_id == merchant_id if merchant_id else True,
            Claim.status.in_(count_statuses) if count_statuses is not None else True)
            .group_by(Claim.status)).all())
    return {"total": total, "limit": limit, "offset": offset,
            "counts": counts, "claims": [claim_summary(c) for c in rows]}


def _stored_buyer(svc: Service, buyer: str) -> str:
    """``buyer`` as claims store it: a value of exactly a pseudonym's form is taken as one;
    anything else is the platform's raw id, pseudonymised as intake does."""
    if svc.pseudonymize.is_pseudonym(buyer):
        return buyer
    return buyer_pseudonym(svc, buyer, field="buyer")


def buyer_history_view(svc: Service, buyer: str, *, limit: int = 100, offset: int = 0
                       ) -> dict[str, Any]:
    """A buyer's claims across merchants, newest first, their outcomes and reused photos.

    ``buyer`` is a pseudonym (``b_`` + 32 hex digits) or the platform's raw buyer id, which
    is pseudonymised first and never stored nor returned. ``total``, ``outcomes``,
    ``merchants`` and ``reused_photos`` count every claim of the buyer; only ``claims`` is
    limited: ``limit`` claims from ``offset``.

    Raises:
        InvalidInput: ``limit`` outside 1–500, a negative ``offset``, or a raw id that is
            blank or longer than intake accepts.
    """
    if not 1 <= limit <= 500:
        raise InvalidInput(f"limit: got {limit}, expected 1–500", field="limit")
    if offset < 0:
        raise InvalidInput(f"offset: got {offset}, expected ≥ 0", field="offset")
    pseudonym = _stored_buyer(svc, buyer)
    theirs = Claim.buyer == pseudonym
    with svc.db.read() as session:
        total, merchants = session.execute(select(
            func.count(), func.count(Claim.merchant_id.distinct())).where(theirs)).one()
        outcomes = dict(session.execute(select(Claim.status, func.count()).where(theirs)
                                        .group_by(Claim.status)).all())
        claims = session.execute(select(Claim).where(theirs).order_by(
            Claim.created_at.desc(), Claim.id.desc()).limit(limit).offset(offset)
        ).scalars().all()
        # only the photos flagged REUSED_PHOTO (photo_codes) are read, of every claim
        flagged = session.execute(select(ClaimPhoto).join(
            PhotoCode, PhotoCode.photo_id == ClaimPhoto.id).join(
            Claim, Claim.id == ClaimPhoto.claim_id).where(
            theirs, PhotoCode.code == "REUSED_PHOTO").order_by(
            Claim.created_at.desc(), Claim.id.desc(), ClaimPhoto.position)).scalars().all()
    reused = []
    for p in flagged:
        for f in (p.analysis or {}).get("findings", []):
            if f.get("code") == "REUSED_PHOTO":
                details = f.get("details") or {}
                reused.append({"claim_id": p.claim_id, "photo_id": p.id,
                               "other": details.get("other"),
                               "other_meta": details.get("other_meta")})
    return {"buyer": pseudonym, "total": total, "limit": limit, "offset": offset,
            "claims": [claim_summary(c) for c in claims], "outcomes": outcomes,
            "merchants": merchants, "reused_photos": reused}
