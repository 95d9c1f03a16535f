"""Webhooks (issue 3 §2) against a real local HTTP receiver, on both databases: events
arrive signed (HMAC, verified with :func:`refundlens.security.verify_webhook`) with their
event and delivery headers; a failing receiver gets the delivery retried with backoff until
it answers 2xx or the attempts run out; merchant-scoped endpoints see only their merchant's
events; an endpoint can ask for some events only.

Receivers must be on public addresses (server-side request forgery): a URL whose host is or
resolves to a loopback, private, link-local, multicast, reserved or unspecified address is
refused at registration, and again at delivery against the address actually connected to —
a fake resolver (``resolve=``) plays a DNS answer that changes in between. Tests delivering
to a receiver on 127.0.0.1 say so with ``@LOCAL`` (``REFUNDLENS_WEBHOOK_ALLOW_PRIVATE``)."""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import select, update

from conftest import jpeg, textured_rgb
from refundlens.claims.webhooks import (EVENTS, MAX_ATTEMPTS, create_endpoint,
                                        handle_deliver_webhook)
from refundlens.config import load_settings
from refundlens.errors import InvalidInput
from refundlens.jobs import Worker
from refundlens.security import verify_webhook
from refundlens.store.tables import Job, WebhookDelivery, WebhookEndpoint

#: The test's receivers listen on 127.0.0.1: admit loopback receivers for this test.
LOCAL = pytest.mark.settings(webhook_allow_private=True)


class Receiver:
    """A local HTTP server recording every POST; it answers the statuses in ``statuses``
    in turn (the last one from then on)."""

    def __init__(self, statuses: tuple[int, ...] = (200,), *,
                 tls: ssl.SSLContext | None = None) -> None:
        self.statuses = list(statuses)
        self.requests: list[dict[str, Any]] = []
        self.server_names: list[str | None] = []  # TLS SNI, as the client sent it
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
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/hooks/refundlens"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [r["body"]["event"] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(*statuses: int, tls: ssl.SSLContext | None = None) -> Receiver:
        made.append(Receiver(statuses or (200,), tls=tls))
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


@LOCAL
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


@LOCAL
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


@LOCAL
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


@LOCAL
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


@LOCAL
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


@LOCAL
def test_an_endpoint_gets_only_the_events_it_asked_for(client, keys, svc, receivers, deliver):
    receiver = receivers()
    subscribe(client, keys.admin, receiver.url, events=["claim.note_added"])
    _, order_id = merchant_with_order(client, keys, "杯子店", seed=1)
    claim_id = file_claim(client, keys, order_id)
    note(client, keys, claim_id, "一条备注")
    deliver()
    assert receiver.events() == ["claim.note_added"]


@LOCAL  # the events case names a local URL, so the events are what is refused
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


# --- where receivers may be (server-side request forgery) ---------------------------------

PUBLIC = "93.184.215.14"  # a public address (is_global); nothing here ever connects to it


class FakeDNS:
    """``socket.getaddrinfo`` for names in ``answers`` (``hooks_example_com`` stands for
    ``hooks.example.com``): each name's answers are given in turn (the last one from then
    on), so a test plays a DNS answer that changes; an answer may hold several addresses
    ("a,b"). Every other host goes to the real resolver. ``asked`` counts lookups per name."""

    def __init__(self, **answers: list[str]) -> None:
        self.answers = {name.replace("_", "."): list(ips) for name, ips in answers.items()}
        self.asked: dict[str, int] = {}

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple]:
        if host not in self.answers:
            return socket.getaddrinfo(host, port, *args, **kwargs)
        self.asked[host] = self.asked.get(host, 0) + 1
        answers = self.answers[host]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0)) if ":" in ip
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
                for ip in answer.split(",")]


def deliver_with(svc: Any, resolve: FakeDNS) -> Callable[[], int]:
    worker = Worker(svc.db, {"deliver_webhook":
                             lambda ctx: handle_deliver_webhook(svc, ctx, resolve=resolve)})
    return worker.run_until_idle


def endpoint_count(svc: Any) -> int:
    with svc.db.read() as session:
        return len(session.execute(select(WebhookEndpoint)).scalars().all())


#: (URL, what the error says): each is refused at registration by default.
REFUSED = [
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://localhost/hook", "resolves to 127.0.0.1, a loopback address"),
    ("http://2130706433/hook", "loopback"),  # 127.0.0.1 written as one number
    ("http://0x7f.1/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://172.16.0.9/hook", "private"),
    ("http://192.168.1.20/hook", "private"),
    ("http://[fc00::5]/hook", "private"),
    ("http://100.100.100.200/latest/meta-data", "shared"),  # Alibaba Cloud metadata
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://[::ffff:127.0.0.1]/hook", "a loopback address (IPv4 127.0.0.1 inside)"),
    ("http://[::ffff:169.254.169.254]/hook", "link-local"),
    ("http://[2002:a00:1::]/hook", "a private address (IPv4 10.0.0.1 inside)"),  # 6to4
    ("http://[64:ff9b::7f00:1]/hook", "loopback address (IPv4 127.0.0.1 inside)"),  # NAT64
    ("http://0.0.0.0:8000/hook", "unspecified"),
    ("http://[::]/hook", "unspecified"),
    ("http://224.0.0.251/hook", "multicast"),
    ("http://[ff02::1]/hook", "multicast"),
    ("http://240.0.0.1/hook", "reserved"),
    ("ftp://example.com/hook", "scheme 'ftp'"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("gopher://127.0.0.1:6379/_INFO", "scheme 'gopher'"),
    ("http:///hook", "names no host"),
    ("hooks.example.com/in", "has no scheme"),
    (f"http://user:pw@{PUBLIC}/hook", "credentials"),
    ("http://no-such-host.invalid/hook", "does not resolve"),
    (f"http://{PUBLIC}:99999/hook", "not a URL"),
    (f"http://{PUBLIC}/hook path", "spaces"),
]


def test_a_receiver_not_on_a_public_address_is_refused_at_registration(client, keys, svc):
    wrong = []
    for url, says in REFUSED:
        response = client.post("/api/v1/webhooks", json={"url": url}, headers=keys.admin)
        error = response.json().get("error", {})
        if not (response.status_code == 422 and error.get("field") == "url"
                and says in error.get("message", "")
                and "accepted: an http:// or https:// URL" in error["message"]
                and "REFUNDLENS_WEBHOOK_ALLOW_PRIVATE" in error["message"]):
            wrong.append((url, response.status_code, error))
    assert wrong == []
    assert endpoint_count(svc) == 0
    # a merchant key is held to the same rule
    merchant_id, _ = merchant_with_order(client, keys, "杯子店", seed=1)
    refused = client.post("/api/v1/webhooks", json={"url": "http://10.0.0.8/h"},
                          headers=keys.merchant(merchant_id))
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "url"
    # a public address is accepted (nothing is sent until an event)
    assert subscribe(client, keys.admin, f"http://{PUBLIC}/hook")["url"] == \
        f"http://{PUBLIC}/hook"
    assert endpoint_count(svc) == 1


def test_a_name_with_a_private_address_among_public_ones_is_refused(svc):
    dns = FakeDNS(mixed_example_com=[f"{PUBLIC},2606:4700::1111,10.0.0.7"],
                  hooks_example_com=[f"{PUBLIC},2606:4700::1111"])
    with pytest.raises(InvalidInput, match="'mixed.example.com' resolves to 10.0.0.7, a "
                                           "private address"):
        create_endpoint(svc, url="https://mixed.example.com/h", secret="s", resolve=dns)
    row = create_endpoint(svc, url="https://hooks.example.com/h", secret="s", resolve=dns)
    assert row.url == "https://hooks.example.com/h" and endpoint_count(svc) == 1


@LOCAL
def test_allowing_private_receivers_still_refuses_link_local_multicast_reserved_unspecified(
        client, keys, svc):
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]/hook",
                "http://10.1.2.3/hook", "http://192.168.1.20/hook", "http://[fc00::5]/hook",
                "http://100.100.100.200/hook"):
        assert subscribe(client, keys.admin, url)["url"] == url
    for url, says in [("http://169.254.169.254/latest/meta-data/", "link-local"),
                      ("http://[fe80::1]/hook", "link-local"),
                      ("http://[::ffff:169.254.169.254]/hook", "link-local"),
                      ("http://224.0.0.251/hook", "multicast"),
                      ("http://240.0.0.1/hook", "reserved"),
                      ("http://0.0.0.0:8000/hook", "unspecified")]:
        response = client.post("/api/v1/webhooks", json={"url": url}, headers=keys.admin)
        assert response.status_code == 422, (url, response.text)
        message = response.json()["error"]["message"]
        assert says in message and "never link-local" in message, message
    assert endpoint_count(svc) == 7


def test_the_setting_reads_from_the_environment():
    assert load_settings(environ={}).webhook_allow_private is False
    assert load_settings(environ={"REFUNDLENS_WEBHOOK_ALLOW_PRIVATE": "1"}
                         ).webhook_allow_private is True


def test_a_name_that_turns_private_after_registration_is_refused_at_delivery(
        client, keys, svc, receivers):
    """DNS rebinding: public at registration, 127.0.0.1 (a live receiver) at delivery."""
    receiver = receivers()
    dns = FakeDNS(hooks_example_com=[PUBLIC, "127.0.0.1"])
    create_endpoint(svc, url=f"http://hooks.example.com:{receiver.port}/hook", secret="s",
                    resolve=dns)
    _, order_id = merchant_with_order(client, keys, "杯子店", seed=1)
    file_claim(client, keys, order_id)
    deliver = deliver_with(svc, dns)
    assert deliver() == 1

    assert receiver.requests == []  # nothing was sent
    [row] = deliveries(svc)
    assert (row.status, row.attempts, row.response_status) == ("failed", 1, None)
    assert row.last_error.startswith("refused, not sent: url: host 'hooks.example.com' "
                                     "resolves to 127.0.0.1, a loopback address")
    with svc.db.read() as session:  # not retried: the job is finished, the delivery failed
        job = session.execute(select(Job).where(Job.kind == "deliver_webhook")).scalar_one()
        assert (job.status, job.attempts) == ("done", 1)
    make_due(svc)
    assert deliver() == 0 and receiver.requests == []


@LOCAL
def test_a_receiver_registered_when_private_was_allowed_is_refused_once_it_is_not(
        client, keys, svc, receivers):
    receiver = receivers()
    subscribe(client, keys.admin, receiver.url)
    _, order_id = merchant_with_order(client, keys, "杯子店", seed=1)
    file_claim(client, keys, order_id)
    strict = dataclasses.replace(svc, settings=svc.settings.with_(webhook_allow_private=False))
    Worker(svc.db, {"deliver_webhook": lambda ctx: handle_deliver_webhook(strict, ctx)}
           ).run_until_idle()
    assert receiver.requests == []
    [row] = deliveries(svc)
    assert row.status == "failed" and "127.0.0.1, a loopback address" in row.last_error


@LOCAL
def test_delivery_connects_to_the_address_it_checked_with_the_host_name_kept(
        client, keys, svc, receivers):
    """One lookup per attempt: the address checked is the address connected to (a second
    lookup here would answer an address nobody listens on), and the request still names
    the URL's host."""
    receiver = receivers()
    dns = FakeDNS(hooks_example_com=["127.0.0.1", "127.0.0.1", "192.0.2.1"])
    create_endpoint(svc, url=f"http://hooks.example.com:{receiver.port}/in?src=rl",
                    secret="s", resolve=dns)
    _, order_id = merchant_with_order(client, keys, "杯子店", seed=1)
    file_claim(client, keys, order_id)
    assert deliver_with(svc, dns)() == 1
    assert dns.asked == {"hooks.example.com": 2}  # registration, then one for the delivery
    [request] = receiver.requests
    assert request["headers"]["Host"] == f"hooks.example.com:{receiver.port}"
    assert request["path"] == "/in?src=rl"
    assert [r.status for r in deliveries(svc)] == ["delivered"]


def _tls_for(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for ``name`` from a throwaway CA, and the CA's
    PEM file for the client to trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def cert(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool) -> Any:
        now = datetime.now(timezone.utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5))
                   .not_valid_after(now + timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                                  critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), \
        ec.generate_private_key(ec.SECP256R1())
    ca_pem = cert("Test CA", ca_key, "Test CA", ca_key, ca=True).public_bytes(
        serialization.Encoding.PEM)
    leaf = cert(name, leaf_key, "Test CA", ca_key, ca=False)
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    return server, tmp_path / "ca.pem"


@LOCAL
def test_https_delivery_to_a_checked_address_verifies_the_certificate_for_the_host_name(
        client, keys, svc, receivers, tmp_path, monkeypatch):
    tls, ca = _tls_for(tmp_path, "hooks.example.com")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the client trusts the test CA only
    receiver = receivers(tls=tls)
    dns = FakeDNS(hooks_example_com=["127.0.0.1"], other_example_com=["127.0.0.1"])
    create_endpoint(svc, url=f"https://hooks.example.com:{receiver.port}/hook", secret="s",
                    resolve=dns, events=["claim.submitted"])
    # the same server under a name its certificate does not carry
    create_endpoint(svc, url=f"https://other.example.com:{receiver.port}/hook", secret="s",
                    resolve=dns, events=["claim.submitted"])
    _, order_id = merchant_with_order(client, keys, "杯子店", seed=1)
    file_claim(client, keys, order_id)
    assert deliver_with(svc, dns)() == 2

    assert receiver.server_names == ["hooks.example.com", "other.example.com"]  # SNI
    [request] = receiver.requests
    assert request["headers"]["Host"] == f"hooks.example.com:{receiver.port}"
    outcome = sorted((r.status, r.last_error or "") for r in deliveries(svc))
    assert outcome[0] == ("delivered", "")
    assert outcome[1][0] == "pending" and "CERTIFICATE_VERIFY_FAILED" in outcome[1][1]


@LOCAL
def test_a_redirect_is_an_answer_not_followed(client, keys, svc, receivers, deliver):
    receiver, elsewhere = receivers(302), receivers()
    subscribe(client, keys.admin, receiver.url, events=["claim.submitted"])
    _, order_id = merchant_with_order(client, keys, "杯子店", seed=1)
    file_claim(client, keys, order_id)
    assert deliver() == 1
    assert len(receiver.requests) == 1 and elsewhere.requests == []
    [row] = deliveries(svc)
    assert (row.status, row.response_status, row.last_error) == ("pending", 302, "HTTP 302")
