"""Webhooks: claim events delivered to subscribers, signed, retried with backoff.

:func:`emit` runs inside the transaction that changed the claim: it writes one delivery row
per subscribed endpoint and a ``deliver_webhook`` job for each, so an event is delivered
exactly when its change is committed (at least once: a receiver dedupes on the
``X-RefundLens-Delivery`` id). :func:`deliver` POSTs the JSON body with
``X-RefundLens-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``; a 2xx
answer is delivered, anything else is retried by the job queue (2, 4, 8 … s, at most 5
minutes, 8 attempts), after which the delivery is marked failed.

Merchant-scoped endpoints receive only their own claims' events.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from sqlalchemy import or_, select

from ..errors import InvalidInput, NotFound
from ..jobs import JobContext, enqueue, retry_delay
from ..security import sign_webhook
from ..store.tables import Claim, WebhookDelivery, WebhookEndpoint, utcnow
from .service import Service

__all__ = ["EVENTS", "create_endpoint", "deliver", "emit", "handle_deliver_webhook"]

log = logging.getLogger(__name__)

#: Every event a subscriber can ask for.
EVENTS = (
    "claim.submitted", "claim.routed", "claim.evidence_requested", "claim.evidence_submitted",
    "claim.merchant_responded", "claim.decided", "claim.appealed", "claim.escalated",
    "claim.note_added",
)
MAX_ATTEMPTS = 8
TIMEOUT_S = 10.0


def create_endpoint(svc: Service, *, url: Any, events: Any = None, secret: str,
                    merchant_id: str | None = None) -> WebhookEndpoint:
    from .intake import new_id

    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidInput(f"url: got {url!r}, expected an http:// or https:// URL",
                           field="url")
    events = list(events or [])
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise InvalidInput(f"events: unknown {', '.join(map(str, unknown))}; accepted: "
                           f"{', '.join(EVENTS)}", field="events")
    with svc.db.write() as session:
        endpoint = WebhookEndpoint(id=new_id("whk"), url=url[:2000], events=events,
                                   secret=svc.cipher.seal(secret, context="webhook"),
                                   merchant_id=merchant_id)
        session.add(endpoint)
    return endpoint


def emit(svc: Service, session: Any, event: str, claim: Claim,
         data: dict[str, Any] | None = None) -> int:
    """Queue ``event`` about ``claim`` for every subscribed endpoint; returns how many."""
    from .intake import new_id

    assert event in EVENTS, event
    endpoints = session.execute(select(WebhookEndpoint).where(
        WebhookEndpoint.active.is_(True),
        or_(WebhookEndpoint.merchant_id.is_(None),
            WebhookEndpoint.merchant_id == claim.merchant_id))).scalars().all()
    count = 0
    for endpoint in endpoints:
        if endpoint.events and event not in endpoint.events:
            continue
        delivery_id = new_id("dlv")
        body = {"id": delivery_id, "event": event, "created_at": utcnow().isoformat(),
                "claim": {"id": claim.id, "status": claim.status, "route": claim.route,
                          "merchant_id": claim.merchant_id, "order_id": claim.order_id,
                          "risk": {"score": claim.risk_score, "level": claim.risk_level}},
                "data": _for(endpoint, data or {})}
        if svc.settings.public_url:
            body["claim"]["url"] = f"{svc.settings.public_url.rstrip('/')}/api/v1/claims/{claim.id}"
        session.add(WebhookDelivery(id=delivery_id, endpoint_id=endpoint.id, event=event,
                                    claim_id=claim.id,
                                    body=json.dumps(body, ensure_ascii=False, default=str)))
        session.flush()
        enqueue(session, "deliver_webhook", claim_id=claim.id,
                payload={"delivery_id": delivery_id}, max_attempts=MAX_ATTEMPTS)
        count += 1
    return count


def _for(endpoint: WebhookEndpoint, data: dict[str, Any]) -> dict[str, Any]:
    """A merchant's endpoint is not told the buyer's one-time evidence code."""
    if endpoint.merchant_id and "code" in data:
        return {k: v for k, v in data.items() if k != "code"}
    return data


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a delivery: urllib would re-send a POST as a GET
    without the body and report the target's 200."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def deliver(url: str, secret: str, delivery_id: str, event: str, body: bytes) -> int:
    """POST once; returns the HTTP status. Raises on a network error."""
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "RefundLens-Webhook/1",
        "X-RefundLens-Event": event,
        "X-RefundLens-Delivery": delivery_id,
        "X-RefundLens-Signature": sign_webhook(secret, body),
    })
    try:
        with _OPENER.open(request, timeout=TIMEOUT_S) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def handle_deliver_webhook(svc: Service, ctx: JobContext) -> None:
    delivery_id = ctx.payload["delivery_id"]
    with svc.db.read() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            raise NotFound(f"webhook delivery {delivery_id}: gone")
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        assert endpoint is not None
        url, secret = endpoint.url, svc.cipher.open(endpoint.secret, context="webhook")
        event, body = delivery.event, delivery.body.encode()
    try:
        status, error = deliver(url, secret, delivery_id, event, body), None
    except (OSError, ValueError) as exc:
        status, error = None, f"{type(exc).__name__}: {exc}"
    ok = status is not None and 200 <= status < 300
    last = ctx.attempts >= MAX_ATTEMPTS
    with svc.db.write() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        delivery.attempts = ctx.attempts
        delivery.response_status = status
        if ok:
            delivery.status, delivery.delivered_at, delivery.last_error = "delivered", utcnow(), None
            ctx.complete(session)
            return
        delivery.last_error = error or f"HTTP {status}"
        if last:
            delivery.status = "failed"
        else:  # when the job queue will try again (jobs._fail backs off the same way)
            delivery.next_attempt_at = utcnow() + retry_delay(ctx.attempts)
    raise RuntimeError(f"webhook {delivery_id} to {url}: {error or f'HTTP {status}'}")
