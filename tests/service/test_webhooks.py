"""Webhooks (issue 3 §2) against a real local HTTP receiver, on both databases: events
arrive signed (HMAC, verified with :func:`refundlens.security.verify_webhook`) with their
event and delivery headers; a failing receiver gets the delivery retried with backoff until
it answers 2xx or the attempts run out; merchant-scoped endpoints see only their merchant's
events; an endpoint can ask for some events only."""

from __future__ import annotations

import json
import socket
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import select, update

from conftest import jpeg, textured_rgb
from refundlens.claims.webhooks import EVENTS, MAX_ATTEMPTS, handle_deliver_webhook
from refundlens.jobs import Worker
from refundlens.security import verify_webhook
from refundlens.store.tables import Job, WebhookDelivery


class Receiver:
    """A local HTTP server recording every POST; it answers the statuses in ``statuses``
    in turn (the last one from then on)."""

    def __init__(self, statuses: tuple[int, ...] = (200,)) -> None:
        self.statuses = list(statuses)
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                # headers: the case-insensitive message (urllib sends "X-refundlens-event")
                receiver.requests.append({"path": self.path, "headers": self.headers,
                                          "raw": raw, "body": json.loads(raw)})
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 \
                    else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/refundlens"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [r["body"]["event"] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(*statuses: int) -> Receiver:
        made.append(Receiver(statuses or (200,)))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def deliver(svc: Any) -> Callable[[], int]:
    """Run the webhook deliveries that are due (and nothing else: no analysis)."""
    worker = Worker(svc.db, {"deliver_webhook": lambda ctx: handle_deliver_webhook(svc, ctx)})
    return worker.run_until_idle


def make_due(svc: Any) -> None:
    """Make every queued delivery retry due now (the backoff is seconds to minutes)."""
    with svc.db.write() as session:
        session.execute(update(Job).where(Job.kind == "deliver_webhook",
                                          Job.status == "queued")
                        .values(run_after=datetime.now(timezone.utc) - timedelta(seconds=1)))


def subscribe(client: Any, headers: dict[str, str], url: str, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/webhooks", json={"url": url, **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def merchant_with_order(client: Any, keys: Any, name: str, *, seed: int) -> tuple[str, str]:
    merchant = client.post("/api/v1/merchants", json={"name": name}, headers=keys.admin)
    assert merchant.status_code == 201, merchant.text
    merchant_id = merchant.json()["id"]
    product = client.post(f"/api/v1/merchants/{merchant_id}/products",
                          json={"sku": "SKU-1", "name": "Mug"}, headers=keys.admin)
    client.post(f"/api/v1/products/{product.json()['id']}/references",
                files={"file": ("listing.jpg", jpeg(textured_rgb(320, 240, seed=seed)),
                                "image/jpeg")}, headers=keys.admin)
    order = client.post("/api/v1/orders", json={
        "merchant_id": merchant_id, "buyer_id": f"buyer-{seed}", "amount": "59.00",
        "items": [{"sku": "SKU-1"}], "delivered_at": "2026-11-01T10:00:00+08:00"},
        headers=keys.intake)
    assert order.status_code == 201, order.text
    return merchant_id, order.json()["id"]


def file_claim(client: Any, keys: Any, order_id: str, *, seed: int = 9) -> str:
    response = client.post("/api/v1/claims", data={
        "order_id": order_id, "type": "refund_only", "reason": "杯子有裂纹", "amount": "59.00"},
        files=[("photos", ("p.jpg", jpeg(textured_rgb(320, 240, seed=seed)), "image/jpeg"))],
        headers=keys.intake)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def note(client: Any, keys: Any, claim_id: str, text: str) -> None:
    response = client.post(f"/api/v1/claims/{claim_id}/notes", json={"text": text},
                            headers=keys.reviewer)
    assert response.status_code == 201, response.text


def deliveries(svc: Any) -> list[WebhookDelivery]:
    with svc.db.read() as session:
        return list(session.execute(select(WebhookDelivery)
                                    .order_by(WebhookDelivery.created_at)).scalars())


def test_events_arrive_signed_with_event_and_delivery_headers(client, keys, svc, receivers,
                                                              deliver):
    receiver = receivers()
    hook = subscribe(client, keys.admin, receiver.url)
    assert hook["secret"] and hook["events"] == [] and hook["id"].startswith("whk_")
    _, order_id = merchant_with_order(client, keys, "杯子店", seed=1)
    claim_id = file_claim(client, keys, order_id)
    note(client, keys, claim_id, "请商家提供发货视频")
    assert receiver.requests == []  # nothing is sent before the job runs
    assert deliver() == 2

    assert receiver.events() == ["claim.submitted", "claim.note_added"]
    for request in receiver.requests:
        headers, body = request["headers"], request["body"]
        assert request["path"] == "/hooks/refundlens"
        assert headers["Content-Type"].startswith("application/json")
        assert verify_webhook(hook["secret"], request["raw"], headers["X-RefundLens-Signature"])
        assert not verify_webhook("another secret", request["raw"],
                                  headers["X-RefundLens-Signature"])
        assert not verify_webhook(hook["secret"], request["raw"] + b" ",
                                  headers["X-RefundLens-Signature"])
        assert headers["X-RefundLens-Event"] == body["event"]
        assert headers["X-RefundLens-Delivery"] == body["id"]
        assert body["claim"]["id"] == claim_id
    assert receiver.requests[1]["body"]["data"]["seq"] > 0
    assert len({r["headers"]["X-RefundLens-Delivery"] for r in receiver.requests}) == 2
    rows = deliveries(svc)
    assert [(r.event, r.status, r.attempts, r.response_status) for r in rows] == [
        ("claim.submitted", "delivered", 1, 200), ("claim.note_added", "delivered", 1, 200)]
    assert deliver() == 0  # delivered once, not again


def test_a_failing_receiver_gets_the_delivery_retried(client, keys, svc, receivers, deliver):
    receiver = receivers(500, 200)
    hook = subscribe(client, keys.admin, receiver.url, events=["claim.submitted"])
    _, order_id = merchant_with_order(client, keys, "杯子店", seed=1)
    file_claim(client, keys, order_id)

    assert deliver() == 1
    [row] = deliveries(svc)
    assert (row.status, row.attempts, row.response_status) == ("pending", 1, 500)
    assert row.last_error == "HTTP 500"
    assert row.next_attempt_at > datetime.now(timezone.utc)
    assert deliver() == 0  # the retry waits for its backoff
    make_due(svc)
    assert deliver() == 1

    [row] = deliveries(svc)
    assert (row.status, row.attempts, row.response_status) == ("delivered", 2, 200)
    assert row.last_error is None and row.delivered_at is not None
    first, second = receiver.requests
    assert first["raw"] == second["raw"]  # the same event, the same delivery id
    assert first["headers"]["X-RefundLens-Delivery"] == second["headers"]["X-RefundLens-Delivery"]
    for request in receiver.requests:
        assert verify_webhook(hook["secret"], request["raw"],
                              request["headers"]["X-RefundLens-Signature"])
    with svc.db.read() as session:
        job = session.execute(select(Job).where(Job.kind == "deliver_webhook")).scalar_one()
        assert (job.status, job.attempts) == ("done", 2)


def test_after_the_last_attempt_the_delivery_is_failed(client, keys, svc, receivers, deliver):
    receiver = receivers(503)
    subscribe(client, keys.admin, receiver.url, events=["claim.submitted"])
    _, order_id = merchant_with_order(client, keys, "杯子店", seed=1)
    file_claim(client, keys, order_id)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert deliver() == 1, attempt
        [row] = deliveries(svc)
        assert row.attempts == attempt
        assert row.status == ("failed" if attempt == MAX_ATTEMPTS else "pending")
        make_due(svc)
    assert deliver() == 0
    assert len(receiver.requests) == MAX_ATTEMPTS
    [row] = deliveries(svc)
    assert (row.status, row.response_status, row.last_error) == ("failed", 503, "HTTP 503")
    with svc.db.read() as session:
        job = session.execute(select(Job).where(Job.kind == "deliver_webhook")).scalar_one()
        assert (job.status, job.attempts) == ("failed", MAX_ATTEMPTS)


def test_an_unreachable_receiver_is_retried_with_the_error_recorded(client, keys, svc,
                                                                      deliver):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subscribe(client, keys.admin, f"http://127.0.0.1:{port}/gone", events=["claim.submitted"])
    _, order_id = merchant_with_order(client, keys, "杯子店", seed=1)
    file_claim(client, keys, order_id)
    assert deliver() == 1
    [row] = deliveries(svc)
    assert row.status == "pending" and row.attempts == 1 and row.response_status is None
    assert "Connection refused" in (row.last_error or "") or "URLError" in (row.last_error or "")


def test_a_merchant_endpoint_receives_only_its_merchants_events(client, keys, svc, receivers,
                                                                 deliver):
    merchant_a, order_a = merchant_with_order(client, keys, "A 店", seed=1)
    merchant_b, order_b = merchant_with_order(client, keys, "B 店", seed=2)
    for_a, for_b, platform = receivers(), receivers(), receivers()
    # a merchant key subscribes for itself, whatever merchant_id it names
    subscribe(client, keys.merchant(merchant_a), for_a.url, merchant_id=merchant_b)
    subscribe(client, keys.merchant(merchant_b), for_b.url)
    subscribe(client, keys.admin, platform.url)

    claim_a = file_claim(client, keys, order_a, seed=9)
    claim_b = file_claim(client, keys, order_b, seed=10)
    note(client, keys, claim_a, "A 的备注")
    note(client, keys, claim_b, "B 的备注")
    deliver()

    def seen(receiver: Receiver) -> list[tuple[str, str]]:
        return [(r["body"]["claim"]["id"], r["body"]["event"]) for r in receiver.requests]

    assert seen(for_a) == [(claim_a, "claim.submitted"), (claim_a, "claim.note_added")]
    assert seen(for_b) == [(claim_b, "claim.submitted"), (claim_b, "claim.note_added")]
    assert {c for c, _ in seen(platform)} == {claim_a, claim_b} and len(seen(platform)) == 4
    assert all(r["body"]["claim"]["merchant_id"] == merchant_a for r in for_a.requests)


def test_an_endpoint_gets_only_the_events_it_asked_for(client, keys, svc, receivers, deliver):
    receiver = receivers()
    subscribe(client, keys.admin, receiver.url, events=["claim.note_added"])
    _, order_id = merchant_with_order(client, keys, "杯子店", seed=1)
    claim_id = file_claim(client, keys, order_id)
    note(client, keys, claim_id, "一条备注")
    deliver()
    assert receiver.events() == ["claim.note_added"]


@pytest.mark.parametrize("body, field, says", [
    ({"url": "ftp://example.com/hook"}, "url", "http"),
    ({"url": "http://127.0.0.1/hook", "events": ["claim.exploded"]}, "events",
     "claim.exploded"),
])
def test_a_bad_subscription_names_the_field(client, keys, body, field, says):
    response = client.post("/api/v1/webhooks", json=body, headers=keys.admin)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and says in error["message"]
    if field == "events":
        assert all(event in error["message"] for event in EVENTS)


def test_intake_and_reviewer_keys_cannot_subscribe(client, keys):
    for who in (keys.intake, keys.reviewer):
        response = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1/h"},
                               headers=who)
        assert response.status_code == 403, response.text
