"""Webhooks: claim events delivered to subscribers, signed, retried with backoff.

:func:`emit` runs inside the transaction that changed the claim: it writes one delivery row
per subscribed endpoint and a ``deliver_webhook`` job for each, so an event is delivered
exactly when its change is committed (at least once: a receiver dedupes on the
``X-RefundLens-Delivery`` id). :func:`deliver` POSTs the JSON body with
``X-RefundLens-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``; a 2xx
answer is delivered, anything else is retried by the job queue (2, 4, 8 … s, at most 5
minutes, 8 attempts), after which the delivery is marked failed.

Merchant-scoped endpoints receive only their own claims' events.

Receivers are on the public internet: a webhook URL is a request the service makes on a
caller's behalf, so an endpoint may not aim it at the service's own network (server-side
request forgery: the loopback interface, private ranges, the cloud metadata service at
169.254.169.254). :func:`check_receiver` refuses a URL whose host is, or resolves to, any
address that is not public, at registration and again at every delivery — where the name
is resolved once, every answer checked, and the connection made to a checked address
(the ``Host`` header and TLS SNI keep the name), so a DNS answer that changes in between
(DNS rebinding) cannot slip through. Deliveries go straight to the receiver: no proxy, no
redirects. ``REFUNDLENS_WEBHOOK_ALLOW_PRIVATE`` admits private and loopback receivers for
on-premises deployments; link-local, multicast, reserved and unspecified addresses are
refused whatever it says.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from sqlalchemy import bindparam, insert, or_, select

from ..errors import InvalidInput, NotFound
from ..jobs import JobContext, enqueue, retry_delay
from ..security import sign_webhook
from ..store.tables import Claim, WebhookDelivery, WebhookEndpoint, utcnow
from .service import Service

__all__ = ["EVENTS", "check_receiver", "create_endpoint", "deliver", "emit",
           "handle_deliver_webhook"]

log = logging.getLogger(__name__)

#: Every event a subscriber can ask for.
EVENTS = (
    "claim.submitted", "claim.routed", "claim.evidence_requested", "claim.evidence_submitted",
    "claim.merchant_responded", "claim.decided", "claim.appealed", "claim.escalated",
    "claim.note_added",
)
MAX_ATTEMPTS = 8
TIMEOUT_S = 10.0

#: ``socket.getaddrinfo``'s shape; tests pass a fake to play DNS answers.
Resolver = Callable[..., list[tuple[Any, ...]]]


def create_endpoint(svc: Service, *, url: Any, events: Any = None, secret: str,
                    merchant_id: str | None = None,
                    resolve: Resolver = socket.getaddrinfo) -> WebhookEndpoint:
    """Subscribe ``url``; refuses (:class:`InvalidInput` on ``url``) a URL that is not
    http(s) or whose host is or resolves to an address receivers may not be at."""
    from .intake import new_id

    allow_private = svc.settings.webhook_allow_private
    receiver = _parse_url(url, allow_private=allow_private)
    try:
        check_receiver(receiver.host, receiver.port, allow_private=allow_private,
                       resolve=resolve)
    except OSError as exc:  # not resolvable now: nothing to check it against
        raise InvalidInput(f"url: host {receiver.host!r} does not resolve ({exc}); "
                           f"{_accepted(allow_private)}", field="url") from exc
    events = list(events or [])
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise InvalidInput(f"events: unknown {', '.join(map(str, unknown))}; accepted: "
                           f"{', '.join(EVENTS)}", field="events")
    with svc.db.write() as session:
        endpoint = WebhookEndpoint(id=new_id("whk"), url=url, events=events,
                                   secret=svc.cipher.seal(secret, context="webhook"),
                                   merchant_id=merchant_id)
        session.add(endpoint)
    return endpoint


_ENDPOINTS = WebhookEndpoint.__table__
#: The endpoints subscribed to a merchant's claims (read on every claim event: built once).
_SUBSCRIBED = select(_ENDPOINTS.c.id, _ENDPOINTS.c.events, _ENDPOINTS.c.merchant_id).where(
    _ENDPOINTS.c.active.is_(True),
    or_(_ENDPOINTS.c.merchant_id.is_(None), _ENDPOINTS.c.merchant_id == bindparam("merchant")))
_INSERT_DELIVERY = insert(WebhookDelivery.__table__)


def emit(svc: Service, session: Any, event: str, claim: Claim,
         data: dict[str, Any] | None = None) -> int:
    """Queue ``event`` about ``claim`` for every subscribed endpoint; returns how many."""
    from .intake import new_id

    assert event in EVENTS, event
    conn = session.connection()
    count = 0
    for endpoint in conn.execute(_SUBSCRIBED, {"merchant": claim.merchant_id}).all():
        if endpoint.events and event not in endpoint.events:
            continue
        delivery_id = new_id("dlv")
        body = {"id": delivery_id, "event": event, "created_at": utcnow().isoformat(),
                "claim": {"id": claim.id, "status": claim.status, "route": claim.route,
                          "merchant_id": claim.merchant_id, "order_id": claim.order_id,
                          "risk": {"score": claim.risk_score, "level": claim.risk_level}},
                "data": _for(endpoint.merchant_id, data or {})}
        if svc.settings.public_url:
            body["claim"]["url"] = f"{svc.settings.public_url.rstrip('/')}/api/v1/claims/{claim.id}"
        conn.execute(_INSERT_DELIVERY, {
            "id": delivery_id, "endpoint_id": endpoint.id, "event": event,
            "claim_id": claim.id, "body": json.dumps(body, ensure_ascii=False, default=str)})
        enqueue(session, "deliver_webhook", claim_id=claim.id,
                payload={"delivery_id": delivery_id}, max_attempts=MAX_ATTEMPTS)
        count += 1
    return count


def _for(endpoint_merchant: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """A merchant's endpoint is not told the buyer's one-time evidence code."""
    if endpoint_merchant and "code" in data:
        return {k: v for k, v in data.items() if k != "code"}
    return data


# --- where a receiver may be ---------------------------------------------------------------

@dataclass(frozen=True)
class _Receiver:
    scheme: str
    host: str  # as in the URL: a name, or an IP address without brackets
    port: int
    target: str  # path and query, what the request line carries


def _accepted(allow_private: bool) -> str:
    if allow_private:
        return ("accepted: an http:// or https:// URL whose host is at public, private or "
                "loopback addresses (never link-local such as 169.254.169.254, multicast, "
                "reserved or unspecified ones)")
    return ("accepted: an http:// or https:// URL whose host is at public addresses only "
            "(receivers on a private network need REFUNDLENS_WEBHOOK_ALLOW_PRIVATE=1)")


def _parse_url(url: Any, *, allow_private: bool) -> _Receiver:
    def refuse(why: str) -> InvalidInput:
        return InvalidInput(f"url: {why}; {_accepted(allow_private)}", field="url")

    if not isinstance(url, str) or not url:
        raise refuse(f"got {url!r}")
    if len(url) > 2000:
        raise refuse(f"{len(url)} characters, the limit is 2000")
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise refuse(f"got {url!r}, which has spaces, control or non-ASCII characters "
                     f"(percent-encode the path; write the host in punycode)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise refuse(f"got {url!r}, not a URL ({exc})") from exc
    if parts.scheme not in ("http", "https"):
        raise refuse(f"got {url!r}, " + (f"scheme {parts.scheme!r}" if parts.scheme
                                          else "which has no scheme"))
    if not parts.hostname:
        raise refuse(f"got {url!r}, which names no host")
    if parts.username is not None or parts.password is not None:
        raise refuse("got a URL with credentials before the host; receivers authenticate "
                     "deliveries by their X-RefundLens-Signature")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Receiver(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https"
                                                            else 80), target)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _address_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str, bool]:
    """What ``ip`` is ("a loopback address" …), and whether
    ``REFUNDLENS_WEBHOOK_ALLOW_PRIVATE`` may admit it (``("public", True)`` for a public
    address). An IPv6 address carrying an IPv4 one
    (IPv4-mapped, 6to4, NAT64) is judged by the IPv4 address it reaches."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if inner is not None:
            kind, private_ok = _address_kind(inner)
            return kind if kind == "public" else f"{kind} (IPv4 {inner} inside)", private_ok
    # the order matters: ::1 is also "reserved", 169.254.169.254 also "private"
    if ip.is_unspecified:
        return "an unspecified address", False
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services answer)", False
    if ip.is_multicast:
        return "a multicast address", False
    if ip.is_loopback:
        return "a loopback address", True
    if ip.is_reserved:
        return "a reserved address", False
    if ip.is_private or getattr(ip, "is_site_local", False):
        return "a private address", True
    if not ip.is_global:  # e.g. 100.64.0.0/10, carrier-grade NAT and cloud-internal services
        return "a shared address, not globally routable", True
    return "public", True


def check_receiver(host: str, port: int, *, allow_private: bool,
                   resolve: Resolver = socket.getaddrinfo) -> list[tuple[int, Any]]:
    """Resolve ``host`` once and check every address it gives; returns them as
    ``(family, sockaddr)`` for :func:`socket.socket.connect`, in the resolver's order.

    Raises:
        InvalidInput: (field ``url``) one of the addresses is not one receivers may be at:
            not public, or, with ``allow_private``, link-local, multicast, reserved or
            unspecified. A host with a public and a private address is refused too.
        OSError: the name does not resolve (``socket.gaierror``).
    """
    addresses = []
    for family, _, _, _, sockaddr in resolve(host, port, type=socket.SOCK_STREAM):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        kind, private_ok = _address_kind(ip)
        if kind != "public" and not (allow_private and private_ok):
            said = f"host {host}" if host == str(ip) else f"host {host!r} resolves to {ip}"
            raise InvalidInput(f"url: {said}, {kind}; {_accepted(allow_private)}",
                               field="url")
        addresses.append((family, sockaddr))
    if not addresses:
        raise socket.gaierror(f"no IPv4 or IPv6 address for {host!r}")
    return addresses


# --- delivery ------------------------------------------------------------------------------

def _connect(addresses: list[tuple[int, Any]], timeout: float) -> socket.socket:
    """A TCP connection to the first of the checked ``addresses`` that answers."""
    error: OSError | None = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    assert error is not None  # check_receiver returns at least one address
    raise error


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to addresses checked beforehand, never to whatever the name resolves to when
    connecting; the ``Host`` header still names the URL's host."""

    def __init__(self, receiver: _Receiver, addresses: list[tuple[int, Any]]) -> None:
        super().__init__(receiver.host, receiver.port, timeout=TIMEOUT_S)
        self._addresses = addresses

    def connect(self) -> None:
        self.sock = _connect(self._addresses, TIMEOUT_S)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to checked addresses; the certificate is verified for, and SNI sent with,
    the URL's host name."""

    def __init__(self, receiver: _Receiver, addresses: list[tuple[int, Any]]) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(receiver.host, receiver.port, timeout=TIMEOUT_S, context=self._tls)
        self._addresses = addresses

    def connect(self) -> None:
        sock = _connect(self._addresses, TIMEOUT_S)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def deliver(url: str, secret: str, delivery_id: str, event: str, body: bytes, *,
            allow_private: bool = False, resolve: Resolver = socket.getaddrinfo) -> int:
    """POST once to a checked address of ``url``'s host; returns the HTTP status (a
    redirect is an answer, not followed: following would re-send a POST as a GET, or to
    another host).

    Raises:
        InvalidInput: the URL or an address its host resolves to is refused (see
            :func:`check_receiver`); nothing was sent.
        OSError: the name did not resolve, or the connection failed.
    """
    receiver = _parse_url(url, allow_private=allow_private)
    addresses = check_receiver(receiver.host, receiver.port, allow_private=allow_private,
                               resolve=resolve)
    pinned = _PinnedHTTPS if receiver.scheme == "https" else _PinnedHTTP
    connection = pinned(receiver, addresses)
    try:
        connection.request("POST", receiver.target, body=body, headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "RefundLens-Webhook/1",
            "X-RefundLens-Event": event,
            "X-RefundLens-Delivery": delivery_id,
            "X-RefundLens-Signature": sign_webhook(secret, body),
        })
        return int(connection.getresponse().status)
    except http.client.HTTPException as exc:  # a garbled answer: retried like a network error
        raise OSError(f"bad HTTP answer: {type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()


def handle_deliver_webhook(svc: Service, ctx: JobContext, *,
                           resolve: Resolver = socket.getaddrinfo) -> None:
    delivery_id = ctx.payload["delivery_id"]
    with svc.db.read() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            raise NotFound(f"webhook delivery {delivery_id}: gone")
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        assert endpoint is not None
        url, secret = endpoint.url, svc.cipher.open(endpoint.secret, context="webhook")
        event, body = delivery.event, delivery.body.encode()
    refused = None
    try:
        status, error = deliver(url, secret, delivery_id, event, body, resolve=resolve,
                                allow_private=svc.settings.webhook_allow_private), None
    except InvalidInput as exc:  # the receiver's address is refused: trying again won't help
        status, error, refused = None, f"refused, not sent: {exc}", exc
    except (OSError, ValueError) as exc:
        status, error = None, f"{type(exc).__name__}: {exc}"
    ok = status is not None and 200 <= status < 300
    last = ctx.attempts >= MAX_ATTEMPTS or refused is not None
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
        if refused is not None:
            ctx.complete(session)  # the job is done: its delivery failed for good
    if refused is not None:
        log.warning("webhook %s to %s not sent: %s", delivery_id, url, refused)
        return
    raise RuntimeError(f"webhook {delivery_id} to {url}: {error or f'HTTP {status}'}")
