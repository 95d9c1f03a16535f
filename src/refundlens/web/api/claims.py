"""Claims: intake, detail, the review queue, evidence, merchant answers, decisions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ...claims import intake, views, workflow
from ...claims.access import Caller
from ...claims.service import Service
from ...errors import InvalidInput, NotFound
from ..deps import caller, service
from ..schemas import (AppealCreate, ClaimAccepted, DecisionCreate, EscalateCreate,
                       EvidenceRequestCreate, NoteCreate)
from .uploads import read_form

router = APIRouter(tags=["claims"])

_PHOTOS_FORM = {"requestBody": {"content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["order_id", "type", "amount", "photos"],
    "properties": {
        "order_id": {"type": "string"},
        "type": {"type": "string", "enum": list(intake.CLAIM_TYPES)},
        "reason": {"type": "string"},
        "amount": {"type": "string", "example": "129.00"},
        "photos": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


#: the text fields of a claim form (a misspelt one is refused, not silently dropped)
_CLAIM_FIELDS = ("order_id", "type", "reason", "amount")


def _visible(svc: Service, who: Caller, claim_id: str) -> None:
    """404 unless the caller may see the claim (a merchant sees only its own)."""
    owner = intake.merchant_of(svc, "claim", claim_id)
    if owner is None or (who.merchant_scope and owner != who.merchant_scope):
        raise NotFound(f"claim {claim_id!r}: no such claim", field="claim_id")


@router.post("/claims", status_code=202, response_model=ClaimAccepted,
             openapi_extra=_PHOTOS_FORM,
             responses={200: {"description": "An Idempotency-Key retry: the claim the first "
                                             "attempt created."}})
async def create_claim(request: Request, who: Caller = Depends(caller)) -> Any:
    """File a claim with its photos. It is stored before this answers; analysis follows.

    Send an ``Idempotency-Key`` header to make retries safe: the same key and request
    return the same claim (200), the same key with a different request is a 409.
    """
    who.require("admin", "intake")
    request.app.state.rate_limiter.check(who.key_id)
    svc: Service = request.app.state.service
    fields, files = await read_form(request, max_files=svc.settings.max_photos_per_claim,
                                    field="photos")
    unknown = sorted(set(files) - {"photos"})
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unexpected file field; photos go in 'photos'",
                           field=unknown[0])
    unknown = sorted(set(fields) - set(_CLAIM_FIELDS))
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unknown form field; accepted: "
                           f"{', '.join(_CLAIM_FIELDS)} and files in 'photos'",
                           field=unknown[0])
    claim, created = await run_in_threadpool(
        intake.create_claim, svc, order_id=fields.get("order_id"), type=fields.get("type"),
        reason=fields.get("reason"), amount=fields.get("amount"),
        photos=files.get("photos", []), actor=who.actor, api_key_id=who.idempotency_scope,
        idempotency_key=request.headers.get("idempotency-key"))
    return JSONResponse({"id": claim.id, "status": claim.status},
                        status_code=202 if created else 200,
                        headers={"Location": f"/api/v1/claims/{claim.id}"})


@router.get("/claims")
def list_claims(svc: Service = Depends(service), who: Caller = Depends(caller),
                status: str | None = None, merchant_id: str | None = None,
                risk_level: str | None = None, code: str | None = None,
                min_age_hours: float | None = None, sort: str = "created",
                limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Claims, newest first by default; filters by status (comma-separated), merchant,
    risk level, reason code and age."""
    if who.merchant_scope:
        merchant_id = who.merchant_scope
    statuses = tuple(s for s in (status or "").split(",") if s) or None
    return views.list_claims(svc, statuses=statuses, merchant_id=merchant_id,
                             risk_level=risk_level, code=code, min_age_hours=min_age_hours,
                             sort=sort, limit=limit, offset=offset)


@router.get("/queue")
def review_queue(svc: Service = Depends(service), who: Caller = Depends(caller),
                 merchant_id: str | None = None, risk_level: str | None = None,
                 code: str | None = None, min_age_hours: float | None = None,
                 limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Claims waiting for a person, by deadline then risk."""
    who.require("admin", "reviewer")
    return views.list_claims(svc, statuses=views.QUEUE_STATUSES, merchant_id=merchant_id,
                             risk_level=risk_level, code=code, min_age_hours=min_age_hours,
                             sort="deadline", limit=limit, offset=offset)


@router.get("/claims/{claim_id}")
def get_claim(claim_id: str, svc: Service = Depends(service),
              who: Caller = Depends(caller)) -> dict[str, Any]:
    """Status and full detail: analyses, findings, risk, route, deadlines, timeline."""
    return views.claim_detail(svc, claim_id, merchant_scope=who.merchant_scope)


@router.get("/claims/{claim_id}/report.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
def claim_report(claim_id: str, lang: str = "zh", svc: Service = Depends(service),
                 who: Caller = Depends(caller)) -> Response:
    """The evidence report as PDF (``lang`` zh or en)."""
    from ...errors import InvalidInput
    from ...reports.pdf import render_claim_pdf

    if lang not in ("zh", "en"):
        raise InvalidInput(f"lang: got {lang!r}, expected zh or en", field="lang")
    detail = views.claim_detail(svc, claim_id, merchant_scope=who.merchant_scope)
    pdf = render_claim_pdf(detail, load_blob=svc.blobs.get, lang=lang, zone=svc.settings.zone)
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="refundlens-{claim_id}-{lang}.pdf"'})


@router.post("/claims/{claim_id}/evidence", status_code=202,
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["photos"], "properties": {"photos": {
                     "type": "array", "items": {"type": "string", "format": "binary"}}}}}}}})
async def submit_evidence(claim_id: str, request: Request,
                          who: Caller = Depends(caller)) -> dict[str, Any]:
    """The buyer's new photos for the open evidence request (with the code on paper)."""
    who.require("admin", "intake")
    request.app.state.rate_limiter.check(who.key_id)
    svc: Service = request.app.state.service
    _, files = await read_form(request, max_files=svc.settings.max_photos_per_claim,
                               field="photos")
    req = await run_in_threadpool(workflow.submit_evidence, svc, claim_id,
                                  files.get("photos", []), actor=who.actor)
    return {"evidence_request_id": req.id, "status": "analyzing"}


@router.post("/claims/{claim_id}/evidence-requests", status_code=201)
def request_evidence(claim_id: str, body: EvidenceRequestCreate,
                     svc: Service = Depends(service),
                     who: Caller = Depends(caller)) -> dict[str, Any]:
    """A reviewer asks the buyer for more evidence."""
    who.require("admin", "reviewer")
    req = workflow.request_evidence(svc, claim_id, actor=who.actor, note=body.note)
    return {"id": req.id, "code": req.code, "due_at": req.due_at.isoformat()}


@router.post("/claims/{claim_id}/responses", status_code=201,
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "properties": {
                     "text": {"type": "string"},
                     "files": {"type": "array", "items": {"type": "string",
                                                          "format": "binary"}}}}}}}})
async def merchant_response(claim_id: str, request: Request,
                            who: Caller = Depends(caller)) -> dict[str, Any]:
    """The merchant's answer: text, photos, packing or shipping videos."""
    who.require("merchant", "admin")
    svc: Service = request.app.state.service
    _visible(svc, who, claim_id)
    fields, files = await read_form(request, max_files=svc.settings.max_photos_per_claim,
                                    field="files")
    merchant_id = who.merchant_id or intake.merchant_of(svc, "claim", claim_id)
    row = await run_in_threadpool(workflow.add_merchant_response, svc, claim_id,
                                  merchant_id=merchant_id, text=fields.get("text"),
                                  files=files.get("files", []), actor=who.actor)
    return {"id": row.id}


@router.post("/claims/{claim_id}/decision", status_code=201)
def decide(claim_id: str, body: DecisionCreate, svc: Service = Depends(service),
           who: Caller = Depends(caller)) -> dict[str, Any]:
    """A person's decision: approved, or rejected with a reason."""
    who.require("admin", "reviewer")
    row = workflow.decide(svc, claim_id, outcome=body.outcome, reason=body.reason,
                          actor=who.actor)
    return {"id": row.id, "outcome": row.outcome, "audit_hash": row.audit_hash}


@router.post("/claims/{claim_id}/appeals", status_code=201)
def appeal(claim_id: str, body: AppealCreate, request: Request,
           svc: Service = Depends(service), who: Caller = Depends(caller)) -> dict[str, Any]:
    """Reopen a decided claim (filed for the buyer by the platform, or by a merchant); the
    merchant gets a fresh response window."""
    who.require("admin", "intake", "merchant")
    request.app.state.rate_limiter.check(who.key_id)
    _visible(svc, who, claim_id)
    row = workflow.appeal(svc, claim_id, reason=body.reason, actor=who.actor)
    return {"id": row.id, "status": "appealed"}


@router.post("/claims/{claim_id}/escalate")
def escalate(claim_id: str, body: EscalateCreate, svc: Service = Depends(service),
             who: Caller = Depends(caller)) -> dict[str, Any]:
    who.require("admin", "reviewer")
    claim = workflow.escalate(svc, claim_id, reason=body.reason, actor=who.actor)
    return {"id": claim.id, "status": claim.status}


@router.post("/claims/{claim_id}/notes", status_code=201)
def add_note(claim_id: str, body: NoteCreate, svc: Service = Depends(service),
             who: Caller = Depends(caller)) -> dict[str, Any]:
    who.require("admin", "reviewer")
    return workflow.add_note(svc, claim_id, text=body.text, actor=who.actor)
