"""Claim state changes: routing after analysis, evidence, merchant answers, decisions.

States (DESIGN.md): submitted → analyzing → auto_approved | evidence_requested |
in_review → approved | rejected → appealed → approved | rejected. Each change here is one
transaction holding the new state, its audit event and its webhook deliveries. The
policy routes; only a person (a reviewer or admin) decides ``rejected``.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal
from typing import Any, Sequence

from sqlalchemy import and_, case, func, or_, select

from ..errors import Conflict, InvalidInput, NotFound
from ..imaging import sniff_video
from ..jobs import JobContext, enqueue
from ..store.tables import (Appeal, Claim, ClaimPhoto, Decision, EvidenceRequest,
                            MerchantResponse, PhotoCode, utcnow)
from .audit import append_event
from .intake import Upload, check_uploads, new_id
from .policy import (BuyerHistory, EvidenceOutcome, RouteDecision, RouteReason, code_in_text,
                     generate_one_time_code, route_claim)
from .service import Service
from .webhooks import emit

__all__ = [
    "DECIDED", "OPEN_FOR_DECISION", "add_merchant_response", "add_note", "appeal",
    "buyer_history", "decide", "escalate", "expire_evidence", "mark_analyzing",
    "on_job_failed", "request_evidence", "route_after_analysis", "submit_evidence",
]

DECIDED = ("approved", "rejected", "auto_approved")
OPEN_FOR_DECISION = ("in_review", "evidence_requested", "appealed", "analyzing", "submitted")
MAX_TEXT = 5000


def _claim_for_update(session: Any, claim_id: str) -> Claim:
    claim = session.execute(select(Claim).where(Claim.id == claim_id)
                            .with_for_update()).scalar_one_or_none()
    if claim is None:
        raise NotFound(f"claim {claim_id!r}: no such claim", field="claim_id")
    return claim


def _set_status(session: Any, claim: Claim, status: str, *, actor: str,
                data: dict[str, Any] | None = None) -> None:
    previous = claim.status
    claim.status = status
    claim.updated_at = utcnow()
    append_event(session, actor=actor, action="status_changed", claim_id=claim.id,
                 data={"from": previous, "to": status, **(data or {})})


# --- analysis and routing ------------------------------------------------------------------

def mark_analyzing(svc: Service, claim_id: str, *, actor: str) -> None:
    with svc.db.write() as session:
        claim = session.get(Claim, claim_id)
        if claim is not None and claim.status in ("submitted", "evidence_requested"):
            _set_status(session, claim, "analyzing", actor=actor)


def buyer_history(session: Any, claim: Claim, *, window_days: int) -> BuyerHistory:
    """The record of ``claim``'s buyer before it: the buyer's claims filed in the
    ``window_days`` days up to ``claim.created_at`` (on the same instant, those with a
    smaller id), counted with their statuses as they stand now.

    Claims filed after ``claim`` never count, so the route does not depend on how long the
    analysis took. ``open_claims`` are those earlier claims still undecided;
    ``reused_photos`` their photos with a ``REUSED_PHOTO`` finding (read from
    ``photo_codes``, indexed by code, not from the stored analyses)."""
    filed = claim.created_at
    earlier = and_(Claim.buyer == claim.buyer,
                   Claim.created_at >= filed - timedelta(days=window_days),
                   or_(Claim.created_at < filed,
                       and_(Claim.created_at == filed, Claim.id < claim.id)))

    def count(*where: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*where), 1), else_=0)), 0)

    row = session.execute(select(
        func.count(), count(Claim.status.in_(("approved", "auto_approved"))),
        count(Claim.status == "rejected"), count(Claim.status.not_in(DECIDED)))
        .where(earlier)).one()
    reused = session.execute(select(func.count()).select_from(PhotoCode).join(
        Claim, Claim.id == PhotoCode.claim_id).where(
        PhotoCode.code == "REUSED_PHOTO", earlier)).scalar_one()
    return BuyerHistory(claims_in_window=row[0], approved=row[1], rejected=row[2],
                        reused_photos=reused, open_claims=row[3])


def _claim_risk(photos: Sequence[ClaimPhoto]) -> tuple[dict[str, Any] | None, list[str], bool]:
    """The riskiest photo's risk, every finding code, and whether any analysis failed."""
    best: dict[str, Any] | None = None
    codes: list[str] = []
    errors = False
    for photo in photos:
        analysis = photo.analysis or {}
        if analysis.get("status") == "error":
            errors = True
            continue
        errors |= any(d.get("status") == "error" for d in analysis.get("detectors", []))
        codes += [f["code"] for f in analysis.get("findings", []) if f.get("code")]
        risk = analysis.get("risk")
        if risk and (best is None or risk["score"] > best["score"]):
            best = risk
    return best, sorted(set(codes)), errors


def _evidence_outcome(session: Any, claim: Claim, photos: Sequence[ClaimPhoto],
                      role: str) -> EvidenceOutcome | None:
    requests = session.execute(select(EvidenceRequest).where(
        EvidenceRequest.claim_id == claim.id).order_by(EvidenceRequest.created_at)
    ).scalars().all()
    if not requests:
        return None
    latest = requests[-1]
    if latest.status == "submitted":
        read = [(p.analysis or {}).get("text_read") for p in photos
                if p.evidence_request_id == latest.id]
        texts = [line for lines in read if lines for line in lines]
        # None: no photo could be read (OCR off, or every photo failed) — unchecked, not
        # missing; the policy sends that to a person too, with the right reason.
        latest.code_found = code_in_text(latest.code, texts) if any(
            lines is not None for lines in read) else None
        latest.status = "checked"
    return EvidenceOutcome(rounds=len(requests),
                           submitted=latest.status in ("submitted", "checked"),
                           code_found=latest.code_found, expired=latest.status == "expired")


def route_after_analysis(svc: Service, session: Any, claim: Claim, *, role: str = "claim",
                         actor: str = "policy",
                         states: tuple[str, ...] = ("analyzing",)) -> RouteDecision | None:
    """Route ``claim`` with everything seen so far (call inside the job's transaction).

    Only a claim in one of ``states`` is routed; one decided or escalated meanwhile keeps
    its state (the new analysis is still recorded)."""
    photos = session.execute(select(ClaimPhoto).where(ClaimPhoto.claim_id == claim.id)
                             .order_by(ClaimPhoto.position)).scalars().all()
    risk, codes, errors = _claim_risk(photos)
    claim.risk = risk
    claim.risk_score = risk["score"] if risk else None
    claim.risk_level = risk["level"] if risk else None
    claim.recommendation = risk["recommendation"] if risk else "review"
    evidence = _evidence_outcome(session, claim, photos, role)
    if claim.status not in states:
        return None
    if risk is None:
        # no photo could be analysed: there is no risk to route on (not "high, 100")
        decision = analysis_failed(svc.policy)
        apply_route(svc, session, claim, decision, actor=actor)
        return decision
    history = buyer_history(session, claim, window_days=svc.policy.history_window_days)
    level, score = risk["level"], risk["score"]
    if evidence is not None and evidence.code_found:
        # The buyer answered with fresh photos that carry the one-time code: the level to
        # route on is theirs — they are the proof asked for, and supersede the weak or
        # moderate signals that asked for it. Every code seen on any photo still counts,
        # so a conclusive or strong finding on the first photo still forces review.
        latest = max((p for p in photos if p.evidence_request_id), default=None,
                     key=lambda p: p.created_at)
        answered, _, _ = _claim_risk([p for p in photos if latest is not None and
                                      p.evidence_request_id == latest.evidence_request_id])
        if answered is not None:
            level, score = answered["level"], answered["score"]
    decision = route_claim(svc.policy, level=level, score=score,
                           codes=codes, amount=Decimal(claim.amount_cents) / 100,
                           history=history, detector_errors=errors or risk is None,
                           evidence=evidence)
    apply_route(svc, session, claim, decision, actor=actor)
    return decision


def analysis_failed(policy: Any) -> RouteDecision:
    """Review, because the photos could not be analysed (``ROUTE_ANALYSIS_FAILED``)."""
    return RouteDecision("in_review", (RouteReason("ROUTE_ANALYSIS_FAILED"),),
                         review_sla=timedelta(hours=policy.review_sla_hours),
                         merchant_response=timedelta(hours=policy.merchant_response_hours))


def apply_route(svc: Service, session: Any, claim: Claim, decision: RouteDecision, *,
                actor: str, extra: dict[str, Any] | None = None) -> None:
    now = utcnow()
    claim.route = decision.route
    claim.route_reasons = [r.to_dict() for r in decision.reasons]
    data = {"route": decision.route, "reasons": [r.code for r in decision.reasons],
            "risk": {"score": claim.risk_score, "level": claim.risk_level}}
    logged = {**data, **(extra or {})}  # the audit event's data; webhooks get ``data``
    if decision.route == "auto_approved":
        _set_status(session, claim, "auto_approved", actor=actor, data=logged)
        event = append_event(session, actor=actor, action="decided", claim_id=claim.id,
                             data={"outcome": "approved", "kind": "policy",
                                   "reasons": [r.code for r in decision.reasons]})
        session.add(Decision(id=new_id("dec"), claim_id=claim.id, outcome="approved",
                             reason="; ".join(r.message_en for r in decision.reasons),
                             actor=actor, kind="policy", audit_hash=event.hash))
        claim.decided_at = now
        emit(svc, session, "claim.routed", claim, data)
        emit(svc, session, "claim.decided", claim, {"outcome": "approved", "kind": "policy",
                                                    "audit_hash": event.hash})
    elif decision.route == "evidence_requested":
        due = now + (decision.evidence_deadline or timedelta(hours=72))
        _open_evidence_request(svc, session, claim, due=due, actor=actor, data=logged)
        emit(svc, session, "claim.routed", claim, {**data, "evidence_due_at": due.isoformat()})
    else:
        claim.review_due_at = now + (decision.review_sla or timedelta(hours=24))
        if decision.merchant_response is not None:
            claim.merchant_response_due_at = now + decision.merchant_response
        _set_status(session, claim, "in_review", actor=actor, data=logged)
        emit(svc, session, "claim.routed", claim, {
            **data, "review_due_at": claim.review_due_at.isoformat(),
            "merchant_response_due_at": claim.merchant_response_due_at.isoformat()
            if claim.merchant_response_due_at else None})


def _open_evidence_request(svc: Service, session: Any, claim: Claim, *, due: Any, actor: str,
                           data: dict[str, Any]) -> EvidenceRequest:
    request = EvidenceRequest(id=new_id("evr"), claim_id=claim.id,
                              code=generate_one_time_code(), due_at=due, requested_by=actor)
    session.add(request)
    claim.evidence_rounds += 1
    claim.evidence_due_at = due
    session.flush()
    _set_status(session, claim, "evidence_requested", actor=actor,
                data={**data, "evidence_request_id": request.id, "due_at": due.isoformat()})
    enqueue(session, "expire_evidence", claim_id=claim.id,
            payload={"evidence_request_id": request.id}, run_after=due)
    emit(svc, session, "claim.evidence_requested", claim,
         {"evidence_request_id": request.id, "code": request.code, "due_at": due.isoformat()})
    return request


def on_job_failed(svc: Service, ctx: JobContext, error: str) -> None:
    """An analysis that failed for good sends the claim to a person (never approves)."""
    if ctx.kind != "analyze_claim" or ctx.claim_id is None:
        return
    with svc.db.write() as session:
        claim = session.get(Claim, ctx.claim_id)
        if claim is None or claim.status not in ("submitted", "analyzing"):
            return
        apply_route(svc, session, claim, analysis_failed(svc.policy), actor="policy",
                    extra={"error": error.splitlines()[0][:500]})


# --- evidence ----------------------------------------------------------------------------

def submit_evidence(svc: Service, claim_id: str, photos: Sequence[Upload], *,
                    actor: str) -> EvidenceRequest:
    """The buyer's answer to the open evidence request: new photos to analyse."""
    checked = check_uploads(svc, photos, field="photos")
    with svc.db.read() as session:
        claim = session.get(Claim, claim_id)
        if claim is None:
            raise NotFound(f"claim {claim_id!r}: no such claim", field="claim_id")
    blobs = [c.blob for c in checked]
    svc.blobs.put_many(blobs)
    with svc.db.write() as session:
        claim = _claim_for_update(session, claim_id)
        request = session.execute(select(EvidenceRequest).where(
            EvidenceRequest.claim_id == claim_id, EvidenceRequest.status == "open")
        ).scalar_one_or_none()
        if claim.status != "evidence_requested" or request is None:
            raise Conflict(f"claim {claim_id}: no open evidence request (status "
                           f"{claim.status})", field="claim_id", code="no_open_request")
        if request.due_at < utcnow():
            raise Conflict(f"claim {claim_id}: the evidence request expired at "
                           f"{request.due_at.isoformat()}", field="claim_id",
                           code="evidence_expired")
        position = len(session.execute(select(ClaimPhoto.id).where(
            ClaimPhoto.claim_id == claim_id)).all())
        for i, item in enumerate(checked):
            session.add(ClaimPhoto(
                id=new_id("pho"), claim_id=claim_id, position=position + i,
                role="evidence", evidence_request_id=request.id, sha256=item.sha256,
                filename=item.upload.filename[:300] or f"evidence-{i}",
                content_type=item.info.content_type, width=item.info.width,
                height=item.info.height))
        request.status, request.submitted_at = "submitted", utcnow()
        session.flush()
        append_event(session, actor=actor, action="evidence_submitted", claim_id=claim_id,
                     data={"evidence_request_id": request.id,
                           "photos": [c.sha256 for c in checked]})
        _set_status(session, claim, "analyzing", actor=actor)
        enqueue(session, "analyze_claim", claim_id=claim_id, payload={"role": "evidence"})
        emit(svc, session, "claim.evidence_submitted", claim,
             {"evidence_request_id": request.id, "photos": len(checked)})
    return request


def expire_evidence(svc: Service, ctx: JobContext) -> None:
    """The ``expire_evidence`` job: an unanswered request past its deadline sends the
    claim to a person."""
    request_id = ctx.payload["evidence_request_id"]
    with svc.db.write() as session:
        request = session.get(EvidenceRequest, request_id)
        if request is None or request.status != "open":
            ctx.complete(session)
            return
        request.status = "expired"
        claim = _claim_for_update(session, request.claim_id)
        append_event(session, actor="policy", action="evidence_expired", claim_id=claim.id,
                     data={"evidence_request_id": request.id})
        route_after_analysis(svc, session, claim, role="evidence",
                             states=("evidence_requested",))
        ctx.complete(session)


def request_evidence(svc: Service, claim_id: str, *, actor: str, note: str = "") -> EvidenceRequest:
    """A reviewer asks the buyer for more evidence (beyond the policy's rounds)."""
    with svc.db.write() as session:
        claim = _claim_for_update(session, claim_id)
        if claim.status not in ("in_review", "appealed"):
            raise Conflict(f"claim {claim_id}: evidence can be requested in review, not in "
                           f"status {claim.status}", field="claim_id", code="invalid_state")
        due = utcnow() + timedelta(hours=svc.policy.evidence_deadline_hours)
        return _open_evidence_request(svc, session, claim, due=due, actor=actor,
                                      data={"note": note[:MAX_TEXT]})


# --- people ------------------------------------------------------------------------------

def decide(svc: Service, claim_id: str, *, outcome: Any, reason: Any, actor: str) -> Decision:
    """A person's decision. Rejecting needs a reason."""
    if outcome not in ("approved", "rejected"):
        raise InvalidInput(f"outcome: got {outcome!r}, expected approved or rejected",
                           field="outcome")
    reason = (reason or "").strip() if isinstance(reason, str) else ""
    if outcome == "rejected" and not reason:
        raise InvalidInput("reason: a rejection needs a reason the buyer can read",
                           field="reason")
    with svc.db.write() as session:
        claim = _claim_for_update(session, claim_id)
        if claim.status not in OPEN_FOR_DECISION:
            raise Conflict(f"claim {claim_id}: already decided ({claim.status}); an appeal "
                           f"reopens it", field="claim_id", code="invalid_state")
        was_appeal = claim.status == "appealed"
        _set_status(session, claim, outcome, actor=actor)
        event = append_event(session, actor=actor, action="decided", claim_id=claim.id,
                             data={"outcome": outcome, "reason": reason[:MAX_TEXT],
                                   "kind": "person", "appeal": was_appeal})
        decision = Decision(id=new_id("dec"), claim_id=claim.id, outcome=outcome,
                            reason=reason[:MAX_TEXT], actor=actor, kind="person",
                            audit_hash=event.hash)
        session.add(decision)
        claim.decided_at = utcnow()
        if was_appeal:
            for open_appeal in session.execute(select(Appeal).where(
                    Appeal.claim_id == claim.id, Appeal.status == "open")).scalars():
                open_appeal.status = "decided"
        for request in session.execute(select(EvidenceRequest).where(
                EvidenceRequest.claim_id == claim.id, EvidenceRequest.status == "open")).scalars():
            request.status = "cancelled"
        emit(svc, session, "claim.decided", claim,
             {"outcome": outcome, "reason": reason[:MAX_TEXT], "kind": "person",
              "audit_hash": event.hash})
    return decision


def appeal(svc: Service, claim_id: str, *, reason: Any, actor: str) -> Appeal:
    """Reopen a decided claim for review. The appeal is a new round: the merchant gets a
    fresh response window (``merchant_response_hours`` from now), told in the
    ``claim.appealed`` event, and may answer again until the new decision."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("reason: an appeal needs a reason", field="reason")
    with svc.db.write() as session:
        claim = _claim_for_update(session, claim_id)
        if claim.status not in ("approved", "rejected", "auto_approved"):
            raise Conflict(f"claim {claim_id}: only a decided claim can be appealed (status "
                           f"{claim.status})", field="claim_id", code="invalid_state")
        row = Appeal(id=new_id("apl"), claim_id=claim.id, reason=reason.strip()[:MAX_TEXT],
                     actor=actor)
        session.add(row)
        now = utcnow()
        claim.review_due_at = now + timedelta(hours=svc.policy.review_sla_hours)
        claim.merchant_response_due_at = now + timedelta(
            hours=svc.policy.merchant_response_hours)
        _set_status(session, claim, "appealed", actor=actor,
                    data={"appeal_id": row.id, "reason": row.reason})
        emit(svc, session, "claim.appealed", claim, {
            "appeal_id": row.id, "review_due_at": claim.review_due_at.isoformat(),
            "merchant_response_due_at": claim.merchant_response_due_at.isoformat()})
    return row


def escalate(svc: Service, claim_id: str, *, reason: str, actor: str) -> Claim:
    """Send a claim to (senior) review, whatever the policy said."""
    with svc.db.write() as session:
        claim = _claim_for_update(session, claim_id)
        if claim.status in ("approved", "rejected"):
            raise Conflict(f"claim {claim_id}: decided ({claim.status}); appeal instead",
                           field="claim_id", code="invalid_state")
        claim.escalated = True
        claim.route = "in_review"
        claim.review_due_at = claim.review_due_at or \
            utcnow() + timedelta(hours=svc.policy.review_sla_hours)
        # in review, the merchant gets its window to answer, as on a routed claim
        claim.merchant_response_due_at = claim.merchant_response_due_at or \
            utcnow() + timedelta(hours=svc.policy.merchant_response_hours)
        if claim.status == "in_review":
            append_event(session, actor=actor, action="escalated", claim_id=claim.id,
                         data={"reason": (reason or "")[:MAX_TEXT]})
        else:
            _set_status(session, claim, "in_review", actor=actor,
                        data={"escalated": True, "reason": (reason or "")[:MAX_TEXT]})
        emit(svc, session, "claim.escalated", claim, {"reason": (reason or "")[:MAX_TEXT]})
        return claim


def add_note(svc: Service, claim_id: str, *, text: Any, actor: str) -> dict[str, Any]:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("text: a note needs text", field="text")
    with svc.db.write() as session:
        claim = _claim_for_update(session, claim_id)
        event = append_event(session, actor=actor, action="note_added", claim_id=claim.id,
                             data={"text": text.strip()[:MAX_TEXT]})
        emit(svc, session, "claim.note_added", claim, {"seq": event.seq})
        return {"seq": event.seq, "at": event.at.isoformat(), "actor": actor,
                "text": event.data["text"]}


#: Files a merchant may attach to a response besides photos (sniffed, not trusted by name).
VIDEO_TYPES = {"video/mp4", "video/quicktime", "video/webm"}


def add_merchant_response(svc: Service, claim_id: str, *, merchant_id: str, text: Any,
                          files: Sequence[Upload], actor: str) -> MerchantResponse:
    """The merchant's answer: text plus photos and packing/shipping videos."""
    text = text.strip() if isinstance(text, str) else ""
    if not text and not files:
        raise InvalidInput("text: a response needs text or files", field="text")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"text: {len(text)} characters, the limit is {MAX_TEXT}",
                           field="text")
    photos, videos = [], []
    for i, upload in enumerate(files):
        kind = sniff_video(upload.data)
        if kind is None:
            photos.append(Upload(upload.data, upload.filename, f"files[{i}]"))
        elif len(upload.data) > 10 * svc.settings.max_bytes:
            raise InvalidInput(f"files[{i}]: video larger than the limit", field=f"files[{i}]")
        else:
            videos.append((upload, kind))
    checked = check_uploads(svc, photos, field="files", required=False) if photos else []
    with svc.db.read() as session:
        claim = session.get(Claim, claim_id)
        if claim is None or claim.merchant_id != merchant_id:
            raise NotFound(f"claim {claim_id!r}: no such claim", field="claim_id")
    blobs = [c.blob for c in checked]
    stored = [{"sha256": c.sha256, "filename": c.upload.filename[:300],
               "content_type": c.info.content_type, "kind": "photo"} for c in checked]
    for upload, kind in videos:
        sha = hashlib.sha256(upload.data).hexdigest()
        blobs.append((sha, upload.data))
        stored.append({"sha256": sha, "filename": upload.filename[:300], "content_type": kind,
                       "kind": "video"})
    svc.blobs.put_many(blobs)
    with svc.db.write() as session:
        claim = _claim_for_update(session, claim_id)
        if claim.status in ("approved", "rejected"):
            raise Conflict(f"claim {claim_id}: decided ({claim.status}); the response "
                           f"window is closed", field="claim_id", code="invalid_state")
        if claim.status == "auto_approved":
            # nobody reviews an auto-approved claim, so an answer would be read by no one
            raise Conflict(f"claim {claim_id}: auto-approved; appeal it to have a person "
                           f"review it, then answer", field="claim_id", code="invalid_state")
        response = MerchantResponse(id=new_id("rsp"), claim_id=claim_id,
                                    merchant_id=merchant_id, text=text, files=stored,
                                    actor=actor)
        session.add(response)
        session.flush()
        append_event(session, actor=actor, action="merchant_responded", claim_id=claim_id,
                     data={"response_id": response.id, "files": [f["sha256"] for f in stored],
                           "text": text[:500]})
        emit(svc, session, "claim.merchant_responded", claim, {"response_id": response.id})
        if videos:  # their keyframes become references (claims/keyframes.py)
            enqueue(session, "extract_keyframes", claim_id=claim_id,
                    payload={"response_id": response.id})
    return response
