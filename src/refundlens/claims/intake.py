"""Intake: merchants, products and their reference photos, orders, and claims.

Every function validates all of its input before it writes anything, stores uploads in
the blob store before the rows that name them, and commits rows, audit events and the
analysis job in one transaction: a request either leaves a whole claim behind or no row
(a blob stored for a request that then failed is removed by the blob sweep, see
:mod:`refundlens.claims.retention`, never on the request path).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Sequence

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, InvalidInput, NotFound, PhotoError
from ..imaging import PhotoInfo, probe_photo
from ..jobs import enqueue
from ..store.tables import (Claim, ClaimPhoto, IdempotencyRecord, Merchant, Order, Product,
                            ReferencePhoto, ShippingEvidence, utcnow)
from .audit import append_event
from .service import Service
from .webhooks import emit

__all__ = [
    "CLAIM_TYPES", "Upload", "add_reference", "add_shipping_evidence", "buyer_pseudonym",
    "check_uploads", "create_claim", "create_merchant", "create_order", "create_product",
    "new_id", "parse_amount", "parse_time",
]

CLAIM_TYPES = ("refund_only", "return_refund")
_SKU = re.compile(r"^[\w.\-/:#]{1,100}$", re.UNICODE)


_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(prefix: str) -> str:
    """``prefix_`` + 20 random base-32 characters (100 bits): unguessable, URL-safe."""
    bits = int.from_bytes(secrets.token_bytes(13), "big") >> 4  # 100 random bits
    chars = []
    for _ in range(20):
        bits, digit = divmod(bits, 32)
        chars.append(_ID_ALPHABET[digit])
    return prefix + "_" + "".join(chars)


@dataclass(frozen=True)
class Upload:
    """One uploaded file as received: its bytes, the client's file name and the form field."""

    data: bytes
    filename: str
    field: str = "file"


@dataclass(frozen=True)
class CheckedUpload:
    upload: Upload
    info: PhotoInfo
    sha256: str

    @property
    def blob(self) -> tuple[str, bytes]:
        """``(sha256, bytes)`` for :meth:`BlobStore.put_many`."""
        return self.sha256, self.upload.data


# --- parsing -----------------------------------------------------------------------------

def parse_amount(value: Any, *, field: str = "amount") -> int:
    """Cents from ``"129.00"``, ``129`` or ``129.5``: positive, at most two decimals."""
    if isinstance(value, bool) or value is None or value == "":
        raise InvalidInput(f"{field}: missing; expected an amount such as \"129.00\"",
                           field=field)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput(f"{field}: got {value!r}, expected an amount such as \"129.00\"",
                           field=field) from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidInput(f"{field}: got {value!r}, expected an amount above 0", field=field)
    if amount != amount.quantize(Decimal("0.01")):
        raise InvalidInput(f"{field}: got {value!r}, expected at most two decimals",
                           field=field)
    cents = int(amount * 100)
    if cents > 10**13:
        raise InvalidInput(f"{field}: got {value!r}, larger than any order", field=field)
    return cents


def format_amount(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


def parse_time(value: Any, *, field: str) -> datetime | None:
    """ISO 8601; a time without a zone is read as UTC. None and "" mean unknown."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: got {value!r}, expected an ISO 8601 time such as "
                           f"\"2026-11-20T10:00:00+08:00\"", field=field)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{field}: got {value!r}, expected an ISO 8601 time such as "
                           f"\"2026-11-20T10:00:00+08:00\"", field=field) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _text(value: Any, *, field: str, max_len: int, required: bool = True) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput(f"{field}: missing; expected text of 1–{max_len} characters",
                               field=field)
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: got {type(value).__name__}, expected text", field=field)
    value = value.strip()
    if len(value) > max_len:
        raise InvalidInput(f"{field}: {len(value)} characters, the limit is {max_len}",
                           field=field)
    return value


# --- uploads -----------------------------------------------------------------------------

def check_uploads(svc: Service, uploads: Sequence[Upload], *, field: str,
                  max_count: int | None = None, required: bool = True) -> list[CheckedUpload]:
    """Validate every upload (count, bytes, format, declared pixels) before any is stored."""
    limit = max_count or svc.settings.max_photos_per_claim
    if required and not uploads:
        raise InvalidInput(f"{field}: no photo uploaded; expected 1–{limit} image files",
                           field=field)
    if len(uploads) > limit:
        raise InvalidInput(f"{field}: {len(uploads)} files, the limit is {limit}", field=field)
    checked = []
    for i, upload in enumerate(uploads):
        name = upload.filename or f"{field}[{i}]"
        try:
            info = probe_photo(upload.data, name=name, max_bytes=svc.settings.max_bytes,
                               max_pixels=svc.settings.max_pixels)
        except PhotoError as exc:
            raise InvalidInput(f"{field}[{i}]: {exc}", field=f"{field}[{i}]",
                               code=exc.code) from exc
        checked.append(CheckedUpload(upload, info, hashlib.sha256(upload.data).hexdigest()))
    return checked


# --- merchants, products, orders -----------------------------------------------------------

def create_merchant(svc: Service, *, name: Any, actor: str) -> Merchant:
    name = _text(name, field="name", max_len=200)
    with svc.db.write() as session:
        merchant = Merchant(id=new_id("mer"), name=name)
        session.add(merchant)
        session.flush()
        append_event(session, actor=actor, action="merchant_created",
                     data={"merchant_id": merchant.id, "name": name})
    return merchant


def _sku(value: Any, *, field: str) -> str:
    """A product's SKU, as a product and an order item name it: 1–100 characters."""
    sku = _text(value, field=field, max_len=100)
    if not _SKU.match(sku):
        raise InvalidInput(f"{field}: got {sku!r}, expected letters, digits and . - _ / : # "
                           f"(no spaces)", field=field)
    return sku


def create_product(svc: Service, merchant_id: str, *, sku: Any, name: Any,
                   actor: str) -> Product:
    sku = _sku(sku, field="sku")
    name = _text(name, field="name", max_len=300)
    with svc.db.write() as session:
        if session.get(Merchant, merchant_id) is None:
            raise NotFound(f"merchant {merchant_id!r}: no such merchant", field="merchant_id")
        taken = session.execute(select(Product.id).where(
            Product.merchant_id == merchant_id, Product.sku == sku)).scalar_one_or_none()
        if taken:
            raise Conflict(f"sku: merchant {merchant_id} already has product {taken} with "
                           f"SKU {sku!r}", field="sku", code="duplicate_sku")
        product = Product(id=new_id("prd"), merchant_id=merchant_id, sku=sku, name=name)
        session.add(product)
        session.flush()
        append_event(session, actor=actor, action="product_created",
                     data={"product_id": product.id, "merchant_id": merchant_id, "sku": sku})
    return product


def add_reference(svc: Service, product_id: str, upload: Upload, *, actor: str,
                  merchant_scope: str | None = None) -> ReferencePhoto:
    """Add a listing photo to a product (``merchant_scope``: the caller's own merchant)."""
    (checked,) = check_uploads(svc, [upload], field=upload.field, max_count=1)
    with svc.db.read() as session:
        product = session.get(Product, product_id)
        if product is None or (merchant_scope and product.merchant_id != merchant_scope):
            raise NotFound(f"product {product_id!r}: no such product", field="product_id")
    svc.blobs.put_many([checked.blob])
    with svc.db.write() as session:
        ref = ReferencePhoto(id=new_id("ref"), product_id=product_id, sha256=checked.sha256,
                             filename=upload.filename[:300] or "reference",
                             content_type=checked.info.content_type,
                             width=checked.info.width, height=checked.info.height)
        session.add(ref)
        session.flush()
        append_event(session, actor=actor, action="reference_added",
                     data={"product_id": product_id, "reference_id": ref.id,
                           "sha256": checked.sha256})
    return ref


def _items(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InvalidInput("items: not JSON; expected a list of {\"sku\", \"quantity\"}",
                               field="items") from None
    if not isinstance(value, list):
        raise InvalidInput(f"items: got {type(value).__name__}, expected a list of "
                           f"{{\"sku\", \"name\", \"quantity\", \"price\"}}", field="items")
    items = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"sku": item}
        if not isinstance(item, dict) or not isinstance(item.get("sku"), str):
            raise InvalidInput(f"items[{i}]: expected an object with a \"sku\" string",
                               field=f"items[{i}].sku")
        quantity = item.get("quantity", 1)
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            raise InvalidInput(f"items[{i}].quantity: got {quantity!r}, expected a whole "
                               f"number ≥ 1", field=f"items[{i}].quantity")
        clean = {"sku": _sku(item["sku"], field=f"items[{i}].sku"), "quantity": quantity}
        if item.get("name") is not None:
            clean["name"] = _text(item["name"], field=f"items[{i}].name", max_len=300)
        if item.get("price") is not None:
            clean["price"] = format_amount(parse_amount(item["price"],
                                                        field=f"items[{i}].price"))
        items.append(clean)
    return items


def _pii(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("buyer: expected an object with \"name\", \"phone\", \"address\"",
                           field="buyer")
    unknown = sorted(set(value) - {"name", "phone", "address"})
    if unknown:
        raise InvalidInput(f"buyer: unknown field(s) {', '.join(unknown)}; accepted: name, "
                           f"phone, address", field=f"buyer.{unknown[0]}")
    return {k: _text(v, field=f"buyer.{k}", max_len=500, required=False)
            for k, v in value.items()}


def buyer_pseudonym(svc: Service, buyer_id: Any, *, field: str = "buyer_id") -> str:
    """The pseudonym intake stores for the platform's buyer id ``buyer_id`` (trimmed, at
    most 200 characters); the raw id itself is never stored."""
    return svc.pseudonymize(_text(buyer_id, field=field, max_len=200))


def create_order(svc: Service, *, merchant_id: Any, buyer_id: Any, amount: Any,
                 items: Any = None, shipped_at: Any = None, delivered_at: Any = None,
                 currency: Any = "CNY", buyer: Any = None, actor: str,
                 merchant_scope: str | None = None) -> Order:
    merchant_id = _text(merchant_id, field="merchant_id", max_len=40)
    pseudonym = buyer_pseudonym(svc, buyer_id)
    cents = parse_amount(amount)
    order_items = _items(items)
    shipped = parse_time(shipped_at, field="shipped_at")
    delivered = parse_time(delivered_at, field="delivered_at")
    if shipped and delivered and delivered < shipped:
        raise InvalidInput(f"delivered_at: {delivered.isoformat()} is before shipped_at "
                           f"{shipped.isoformat()}", field="delivered_at")
    currency = _text(currency or "CNY", field="currency", max_len=20).upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise InvalidInput(f"currency: got {currency!r}, expected an ISO 4217 code such as "
                           f"CNY", field="currency")
    pii = _pii(buyer)
    if merchant_scope and merchant_id != merchant_scope:
        raise NotFound(f"merchant {merchant_id!r}: no such merchant", field="merchant_id")
    with svc.db.write() as session:
        if session.get(Merchant, merchant_id) is None:
            raise NotFound(f"merchant {merchant_id!r}: no such merchant", field="merchant_id")
        order = Order(id=new_id("ord"), merchant_id=merchant_id, buyer=pseudonym,
                      amount_cents=cents, currency=currency, items=order_items,
                      shipped_at=shipped, delivered_at=delivered)
        if pii:
            order.buyer_pii = svc.cipher.seal(json.dumps(pii, ensure_ascii=False),
                                              context=order.id)
        session.add(order)
        session.flush()
        append_event(session, actor=actor, action="order_created",
                     data={"order_id": order.id, "merchant_id": merchant_id,
                           "buyer": pseudonym, "amount": format_amount(cents)})
    return order


def add_shipping_evidence(svc: Service, order_id: str, upload: Upload, *, actor: str,
                          merchant_scope: str | None = None) -> ShippingEvidence:
    (checked,) = check_uploads(svc, [upload], field=upload.field, max_count=1)
    with svc.db.read() as session:
        order = session.get(Order, order_id)
        if order is None or (merchant_scope and order.merchant_id != merchant_scope):
            raise NotFound(f"order {order_id!r}: no such order", field="order_id")
    svc.blobs.put_many([checked.blob])
    with svc.db.write() as session:
        row = ShippingEvidence(id=new_id("shp"), order_id=order_id, sha256=checked.sha256,
                               filename=upload.filename[:300] or "shipping",
                               content_type=checked.info.content_type, kind="photo",
                               width=checked.info.width, height=checked.info.height)
        session.add(row)
        session.flush()
        append_event(session, actor=actor, action="shipping_evidence_added",
                     data={"order_id": order_id, "evidence_id": row.id,
                           "sha256": checked.sha256})
    return row


# --- claims ------------------------------------------------------------------------------

def _request_hash(order_id: str, type_: str, reason: str, cents: int,
                  checked: Sequence[CheckedUpload]) -> str:
    body = json.dumps([order_id, type_, reason, cents, [c.sha256 for c in checked]])
    return hashlib.sha256(body.encode()).hexdigest()


# Intake is the service's busiest write: its rows go in as Core statements built once (a
# statement memoizes its cache key), not through the ORM's unit of work, which cost about
# as much CPU as everything else in the request together.
_ORDER_FOR_CLAIM = select(Order.merchant_id, Order.buyer, Order.currency, Order.amount_cents
                          ).where(Order.id == bindparam("order_id"))
_INSERT_CLAIM = insert(Claim.__table__)
_INSERT_PHOTO = insert(ClaimPhoto.__table__)
_INSERT_IDEMPOTENCY = insert(IdempotencyRecord.__table__)


def create_claim(svc: Service, *, order_id: Any, type: Any, reason: Any, amount: Any,
                 photos: Sequence[Upload], actor: str, api_key_id: str | None = None,
                 idempotency_key: str | None = None) -> tuple[Claim, bool]:
    """Accept a claim: returns ``(claim, created)``; ``created`` is False when an
    ``Idempotency-Key`` retry found the claim its first attempt made. A new claim is
    returned as the row written (not attached to a session).

    Raises:
        InvalidInput: a field or photo is not accepted (nothing is stored).
        NotFound: no such order.
        Conflict: the Idempotency-Key was used before for a different request.
    """
    order_id = _text(order_id, field="order_id", max_len=40)
    type_ = _text(type, field="type", max_len=20)
    if type_ not in CLAIM_TYPES:
        raise InvalidInput(f"type: got {type_!r}, expected one of {', '.join(CLAIM_TYPES)}",
                           field="type")
    reason = _text(reason, field="reason", max_len=2000, required=False)
    cents = parse_amount(amount)
    if idempotency_key is not None:
        idempotency_key = idempotency_key.strip()
        if not 1 <= len(idempotency_key) <= 200:
            raise InvalidInput("Idempotency-Key: expected 1–200 characters",
                               field="Idempotency-Key")
    checked = check_uploads(svc, photos, field="photos")
    request_hash = _request_hash(order_id, type_, reason, cents, checked)
    scope = api_key_id or actor

    if idempotency_key:
        existing = _replay(svc, scope, idempotency_key, request_hash)
        if existing is not None:
            return existing, False
    with svc.db.read_rows() as conn:
        # an order's merchant, buyer and currency never change once it is created
        order = conn.execute(_ORDER_FOR_CLAIM, {"order_id": order_id}).one_or_none()
    if order is None:
        raise NotFound(f"order_id: no such order {order_id!r}", field="order_id")
    if cents > order.amount_cents:
        raise InvalidInput(f"amount: {format_amount(cents)} is more than the order's "
                           f"{format_amount(order.amount_cents)}", field="amount")
    row = {"id": new_id("clm"), "order_id": order_id, "merchant_id": order.merchant_id,
           "buyer": order.buyer, "type": type_, "reason": reason, "amount_cents": cents,
           "currency": order.currency, "status": "submitted"}
    try:
        svc.blobs.put_many([c.blob for c in checked])
        with svc.db.write() as session:
            conn = session.connection()
            # the time is read holding the write lock, so claims' and audit events' times
            # follow the order in which they commit
            now = utcnow()
            row["created_at"] = row["updated_at"] = now
            claim = Claim(**row)
            conn.execute(_INSERT_CLAIM, row)
            conn.execute(_INSERT_PHOTO, [
                {"id": new_id("pho"), "claim_id": claim.id, "position": i, "role": "claim",
                 "sha256": item.sha256, "filename": item.upload.filename[:300] or f"photo-{i}",
                 "content_type": item.info.content_type, "width": item.info.width,
                 "height": item.info.height, "created_at": now}
                for i, item in enumerate(checked)])
            if idempotency_key:
                conn.execute(_INSERT_IDEMPOTENCY, {
                    "api_key_id": scope, "key": idempotency_key,
                    "request_hash": request_hash, "claim_id": claim.id, "created_at": now})
            append_event(session, actor=actor, action="claim_submitted", claim_id=claim.id,
                         data={"order_id": order_id, "type": type_,
                               "amount": format_amount(cents),
                               "photos": [c.sha256 for c in checked]}, at=now)
            enqueue(session, "analyze_claim", claim_id=claim.id, payload={"role": "claim"},
                    run_after=now)
            emit(svc, session, "claim.submitted", claim, {"photos": len(checked)})
    except IntegrityError:
        # a concurrent retry with the same Idempotency-Key committed first
        if idempotency_key:
            existing = _replay(svc, scope, idempotency_key, request_hash)
            if existing is not None:
                return existing, False
        raise
    return claim, True


def _replay(svc: Service, scope: str, key: str, request_hash: str) -> Claim | None:
    with svc.db.read() as session:
        record = session.get(IdempotencyRecord, (scope, key))
        if record is None:
            return None
        if record.request_hash != request_hash:
            raise Conflict(f"Idempotency-Key {key!r} was already used for a different claim "
                           f"request ({record.claim_id}); use a new key for a new claim",
                           field="Idempotency-Key", code="idempotency_key_reused")
        return session.get(Claim, record.claim_id)


def merchant_of(svc: Service, entity: str, entity_id: str) -> str | None:
    """The merchant that owns a product, order or claim (for scope checks)."""
    table: Mapping[str, Any] = {"product": Product, "order": Order, "claim": Claim}
    with svc.db.read() as session:
        row = session.get(table[entity], entity_id)
        return None if row is None else row.merchant_id
