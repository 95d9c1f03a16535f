"""Health, blobs, buyer history, API keys, webhooks and the audit chain."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from ...claims import access, views, webhooks
from ...claims.access import Caller
from ...claims.audit import verify_chain
from ...claims.service import Service
from ...errors import NotFound
from ...store.blobs import BlobNotFound
from ..deps import caller, service
from ..schemas import KeyCreate, WebhookCreate

router = APIRouter(tags=["admin"])


@router.get("/health")
def health(request: Request) -> Any:
    """200 when the service can reach its database; 503 otherwise."""
    svc: Service = request.app.state.service
    if not svc.db.ping():
        return JSONResponse({"status": "unavailable", "database": False}, status_code=503)
    return {"status": "ok", "database": True}


@router.get("/blobs/{sha256}", response_class=Response)
def get_blob(sha256: str, svc: Service = Depends(service),
             who: Caller = Depends(caller)) -> Response:
    """A stored photo, mask or file by its sha256."""
    if not access.may_see_blob(svc, who, sha256):
        raise NotFound(f"blob {sha256}: not found", field="sha256")
    try:
        data = svc.blobs.get(sha256)
    except BlobNotFound as exc:
        raise NotFound(str(exc), field="sha256") from None
    from ...imaging import CONTENT_TYPES, sniff_format

    fmt = sniff_format(data)
    return Response(data, media_type=CONTENT_TYPES.get(fmt or "", "application/octet-stream"),
                    headers={"Cache-Control": "private, max-age=31536000, immutable"})


@router.get("/buyers/{buyer}/history")
def buyer_history(buyer: str, limit: int = 100, offset: int = 0,
                  svc: Service = Depends(service),
                  who: Caller = Depends(caller)) -> dict[str, Any]:
    """A buyer's claims across merchants, newest first, their outcomes and reused photos.

    `buyer` is the buyer's pseudonym (`b_` and 32 lowercase hex digits, the `buyer` of a
    claim or order) or the platform's raw buyer id (e.g. `buyer-42`): a value of exactly
    the pseudonym's form is used as it is, anything else is pseudonymised first, as intake
    does. The raw id is not stored, and the response names the buyer only by pseudonym.

    `total`, `outcomes` (claims per status), `merchants` and `reused_photos` count every
    claim of the buyer. Only `claims` is limited: `limit` claims (1–500) from `offset`.
    """
    who.require("admin", "reviewer")
    return views.buyer_history_view(svc, buyer, limit=limit, offset=offset)


@router.post("/keys", status_code=201)
def create_key(body: KeyCreate, svc: Service = Depends(service),
               who: Caller = Depends(caller)) -> dict[str, Any]:
    """A new API key; the token is returned once and never stored."""
    who.require("admin")
    row, token = access.create_key(svc, role=body.role, merchant_id=body.merchant_id,
                                   name=body.name, actor=who.actor)
    return {"id": row.id, "role": row.role, "merchant_id": row.merchant_id, "key": token}


@router.post("/keys/{key_id}/rotate", status_code=201)
def rotate_key(key_id: str, svc: Service = Depends(service),
               who: Caller = Depends(caller)) -> dict[str, Any]:
    """A successor key; the old one keeps working for 24 hours."""
    who.require("admin")
    row, token = access.rotate_key(svc, key_id, actor=who.actor)
    return {"id": row.id, "role": row.role, "replaces": key_id, "key": token}


@router.delete("/keys/{key_id}", status_code=204, response_class=Response)
def revoke_key(key_id: str, svc: Service = Depends(service),
               who: Caller = Depends(caller)) -> Response:
    """Revoke a key; it stops working at once."""
    who.require("admin")
    access.revoke_key(svc, key_id, actor=who.actor)
    return Response(status_code=204)


@router.post("/webhooks", status_code=201)
def create_webhook(body: WebhookCreate, svc: Service = Depends(service),
                   who: Caller = Depends(caller)) -> dict[str, Any]:
    """Subscribe a URL to claim events; deliveries are signed with the returned secret."""
    who.require("admin", "merchant")
    merchant_id = who.merchant_scope or body.merchant_id
    secret = body.secret or secrets.token_urlsafe(32)
    row = webhooks.create_endpoint(svc, url=body.url, events=body.events, secret=secret,
                                   merchant_id=merchant_id)
    return {"id": row.id, "url": row.url, "events": row.events, "secret": secret}


@router.get("/audit/verify")
def audit_verify(svc: Service = Depends(service),
                 who: Caller = Depends(caller)) -> dict[str, Any]:
    """Walk the audit chain; the first edited, inserted or deleted event, if any."""
    who.require("admin")
    with svc.db.read() as session:
        return verify_chain(session).to_dict()
