"""The claims database schema: SQLAlchemy 2 declarative tables, one class per row kind.

These are storage rows, not API shapes: the web layer has its own Create/Public schemas.
Times are stored as UTC (naive on SQLite, ``timestamptz`` on PostgreSQL) and always read
back timezone-aware. Money is stored in integer cents. The Alembic migrations in
``store/migrations`` are the deployed schema; ``tests/store`` checks that they and these
classes agree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, ColumnElement, DateTime, ForeignKey, Index,
                        Integer, LargeBinary, SmallInteger, String, Text, TypeDecorator,
                        UniqueConstraint, bindparam)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiKey", "Appeal", "AuditEvent", "AuditHead", "Base", "CLAIM_STATUSES", "Claim", "ClaimPhoto",
    "ConsoleSession",
    "Decision",
    "EvidenceRequest", "IdempotencyRecord", "Job", "LoginAttempt", "Merchant", "MerchantResponse",
    "Order", "PhotoCode", "Product", "QUEUE_INDEX", "QUEUE_MERCHANT_INDEX", "ReferencePhoto",
    "ReusePhoto", "ShippingEvidence", "User", "WAITING_STATUSES", "WebhookDelivery",
    "WebhookEndpoint", "is_waiting", "queue_order", "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware times")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


# --- parties and goods -------------------------------------------------------------------

class Merchant(Base):
    __tablename__ = "merchants"
    #: the console's merchant choices, by name (the first 500 read in order, not sorted)
    __table_args__ = (Index("ix_merchants_name", "name", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("merchant_id", "sku", name="uq_products_merchant_sku"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    sku: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReferencePhoto(Base):
    """A merchant's listing photo of a product."""

    __tablename__ = "reference_photos"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(100))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    #: keyed hash of the platform's buyer id (see refundlens.security.Pseudonymizer)
    buyer: Mapped[str] = mapped_column(String(80), index=True)
    #: name, phone, address: AES-GCM ciphertext, never stored in clear
    buyer_pii: Mapped[str | None] = mapped_column(Text, default=None)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    items: Mapped[list[Any]] = mapped_column(default=list)
    shipped_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ShippingEvidence(Base):
    """A photo (or a video keyframe) the merchant took when packing or shipping the order."""

    __tablename__ = "shipping_evidence"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20), default="photo")  # photo | video | keyframe
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- claims ------------------------------------------------------------------------------

class Claim(Base):
    __tablename__ = "claims"
    __table_args__ = (
        # the review queue: waiting claims by deadline, then risk
        Index("ix_claims_queue", "status", "review_due_at", "risk_score"),
        Index("ix_claims_merchant_status", "merchant_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    buyer: Mapped[str] = mapped_column(String(80), index=True)
    type: Mapped[str] = mapped_column(String(20))  # refund_only | return_refund
    reason: Mapped[str] = mapped_column(Text, default="")
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    #: submitted → analyzing → auto_approved | evidence_requested | in_review → approved |
    #: rejected → appealed → approved | rejected (DESIGN.md, "Claim states")
    status: Mapped[str] = mapped_column(String(30), default="submitted")
    route: Mapped[str | None] = mapped_column(String(30), default=None)
    route_reasons: Mapped[list[Any]] = mapped_column(default=list)
    risk_score: Mapped[int | None] = mapped_column(Integer, default=None)
    risk_level: Mapped[str | None] = mapped_column(String(10), default=None)
    recommendation: Mapped[str | None] = mapped_column(String(30), default=None)
    risk: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    evidence_rounds: Mapped[int] = mapped_column(Integer, default=0)
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    review_due_at: Mapped[datetime | None] = mapped_column(default=None)
    merchant_response_due_at: Mapped[datetime | None] = mapped_column(default=None)
    evidence_due_at: Mapped[datetime | None] = mapped_column(default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


#: Every status a claim can be in, in the order of its life (DESIGN.md, "Claim states").
CLAIM_STATUSES = ("submitted", "analyzing", "auto_approved", "evidence_requested", "in_review",
                  "approved", "rejected", "appealed")
#: Claims waiting for a person: the review queue.
WAITING_STATUSES = ("in_review", "appealed")
#: The queue's indexes (below): all of it, and by merchant.
QUEUE_INDEX, QUEUE_MERCHANT_INDEX = "ix_claims_waiting", "ix_claims_waiting_merchant"


def is_waiting() -> ColumnElement[bool]:
    """``status IN ('in_review', 'appealed')``, the statuses written into the SQL as in the
    queue indexes' WHERE: SQLite uses a partial index only for a query that says its WHERE
    term as it is written (a bound parameter does not match)."""
    return Claim.status.in_(bindparam("waiting_statuses", list(WAITING_STATUSES),
                                      expanding=True, literal_execute=True))


def queue_order() -> tuple[ColumnElement[Any], ...]:
    """The queue's order: deadline, then risk highest first, NULLs last, then id. NULLs
    are placed by ``IS NULL`` keys, not ``NULLS LAST`` (PostgreSQL sorts NULL high, SQLite
    low, and SQLite indexes cannot say otherwise), so the same index serves both."""
    return (Claim.review_due_at.is_(None), Claim.review_due_at, Claim.risk_score.is_(None),
            Claim.risk_score.desc(), Claim.id)


def _queue_index(name: str, *leading: Any) -> Index:
    """The queue read in its order, over waiting claims only (partial), with the columns
    it filters on: a page reads about offset + limit entries and a filtered count reads
    only the index (the filter by code reads photo_codes)."""
    return Index(name, *leading, *queue_order(), Claim.status, Claim.risk_level,
                 Claim.created_at, sqlite_where=Claim.status.in_(WAITING_STATUSES),
                 postgresql_where=Claim.status.in_(WAITING_STATUSES))


_queue_index(QUEUE_INDEX)
_queue_index(QUEUE_MERCHANT_INDEX, Claim.merchant_id)


class ClaimPhoto(Base):
    """A photo attached to a claim: the buyer's claim photos and evidence submissions."""

    __tablename__ = "claim_photos"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    claim_id: Mapped[str] = mapped_column(ForeignKey("claims.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(20), default="claim")  # claim | evidence
    evidence_request_id: Mapped[str | None] = mapped_column(
        ForeignKey("evidence_requests.id"), default=None)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(100))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    #: Analysis.to_dict() (maps are stored as the mask blob, not inline)
    analysis: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    risk_score: Mapped[int | None] = mapped_column(Integer, default=None)
    risk_level: Mapped[str | None] = mapped_column(String(10), default=None)
    mask_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    matched_reference: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    analyzed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PhotoCode(Base):
    """One reason code among a claim photo's findings, written with its analysis
    (``claims/analyzer.py``): the queue's filter by code reads ``ix_photo_codes_code``
    instead of searching every stored analysis."""

    __tablename__ = "photo_codes"
    __table_args__ = (Index("ix_photo_codes_code", "code", "claim_id"),)

    photo_id: Mapped[str] = mapped_column(ForeignKey("claim_photos.id"), primary_key=True)
    code: Mapped[str] = mapped_column(String(60), primary_key=True)
    claim_id: Mapped[str] = mapped_column(ForeignKey("claims.id"))


class EvidenceRequest(Base):
    __tablename__ = "evidence_requests"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    claim_id: Mapped[str] = mapped_column(ForeignKey("claims.id"), index=True)
    code: Mapped[str] = mapped_column(String(20))
    #: open → submitted → checked | expired | cancelled
    status: Mapped[str] = mapped_column(String(20), default="open")
    requested_by: Mapped[str] = mapped_column(String(80), default="policy")
    due_at: Mapped[datetime] = mapped_column()
    code_found: Mapped[bool | None] = mapped_column(Boolean, default=None)
    submitted_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MerchantResponse(Base):
    __tablename__ = "merchant_responses"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    claim_id: Mapped[str] = mapped_column(ForeignKey("claims.id"), index=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    text: Mapped[str] = mapped_column(Text, default="")
    #: [{"sha256", "filename", "content_type", "kind": photo|video, "analysis"?}]
    files: Mapped[list[Any]] = mapped_column(default=list)
    actor: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    claim_id: Mapped[str] = mapped_column(ForeignKey("claims.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(20))  # approved | rejected
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(80))
    #: "person" for reviewers; "policy" for an auto-approval (a machine never rejects)
    kind: Mapped[str] = mapped_column(String(20), default="person")
    audit_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Appeal(Base):
    __tablename__ = "appeals"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    claim_id: Mapped[str] = mapped_column(ForeignKey("claims.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | decided
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyRecord(Base):
    """One ``Idempotency-Key`` per API key: the claim it created and the request's hash."""

    __tablename__ = "idempotency_keys"

    api_key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    claim_id: Mapped[str] = mapped_column(ForeignKey("claims.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- reuse index -------------------------------------------------------------------------

class ReusePhoto(Base):
    """A photo in the service's reuse index (:mod:`refundlens.index.dbstore`): its hashes,
    for finding the same photo in other claims from any worker on any host.

    The same shape as the reuse index's own SQLite file (:mod:`refundlens.index.filestore`):
    one 64-bit hash per variant (``full``, ``mirrored``, three centred crops) stored as a
    signed BIGINT with the same bits, the five 32-byte verification hashes joined in
    ``fine``, both NULL for a photo too flat to hash (matched by ``sha256`` only). ``id``
    only grows — a replaced key is deleted and inserted again — so readers top up their
    in-memory search with ``id > last seen`` (``sqlite_autoincrement``: SQLite would
    otherwise hand a deleted newest row's id to the next insert). ``hash_version`` marks
    rows hashed by another version of :mod:`refundlens.index.hashing`: only their sha256 is
    matched until they are indexed again.
    """

    __tablename__ = "reuse_photos"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    #: the claim photo's id (any key for photos imported from a file index)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    hash_version: Mapped[int] = mapped_column(SmallInteger)
    h_full: Mapped[int | None] = mapped_column(BigInteger, default=None)
    h_mirrored: Mapped[int | None] = mapped_column(BigInteger, default=None)
    h_crop92: Mapped[int | None] = mapped_column(BigInteger, default=None)
    h_crop84: Mapped[int | None] = mapped_column(BigInteger, default=None)
    h_crop76: Mapped[int | None] = mapped_column(BigInteger, default=None)
    fine: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: e.g. {"claim_id", "merchant_id", "buyer"}: returned with a match
    meta: Mapped[dict[str, Any] | None] = mapped_column(default=None)


# --- jobs --------------------------------------------------------------------------------

class Job(Base):
    """A durable unit of work: queued → running (leased) → done | failed."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_ready", "status", "run_after"),
        # a worker leases the oldest ready job of its kinds (jobs.lease_job)
        Index("ix_jobs_kind_ready", "kind", "status", "run_after", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    claim_id: Mapped[str | None] = mapped_column(String(40), index=True, default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    lease_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


# --- access ------------------------------------------------------------------------------

class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))  # admin | reviewer | merchant | intake
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), default=None)
    secret_hash: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    #: the key this one replaced on rotation (the old one stays valid until its grace ends)
    replaces: Mapped[str | None] = mapped_column(String(40), default=None)
    #: the first key of this key's rotation chain (None: this key is the first); one
    #: client's Idempotency-Keys belong to the whole chain
    lineage: Mapped[str | None] = mapped_column(String(40), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)


class User(Base):
    """A console user (reviewer, merchant, admin); passwords are scrypt hashes."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), default=None)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsoleSession(Base):
    """A signed-in console user. The cookie carries a random token; this row is keyed by
    its sha256, so a copy of the table signs nobody in. Holds the session's CSRF token."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256(cookie token)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    lang: Mapped[str] = mapped_column(String(5), default="zh")
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LoginAttempt(Base):
    """Failed console sign-ins counted for one username or one client address, shared by
    every process on the database (``web/console/sessions.py``, :class:`LoginThrottle`).

    ``key`` is ``user:`` or ``addr:`` and the sha256 of the normalized name, so a password
    typed into the username field is not kept in clear. A row is pruned once
    ``expires_at`` (end of its counting window or of its lockout, whichever is later) has
    passed.
    """

    __tablename__ = "login_attempts"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = mapped_column()
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime] = mapped_column(index=True)


# --- audit and webhooks ------------------------------------------------------------------

class AuditEvent(Base):
    """Append-only, hash-chained: ``hash = sha256(prev_hash ‖ canonical(event))``."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column()
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(60))
    claim_id: Mapped[str | None] = mapped_column(String(40), index=True, default=None)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the chain's last ``seq`` and ``hash``. Appenders lock it (``FOR UPDATE`` on
    PostgreSQL; SQLite's write lock does the same), so the chain never forks."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    #: encrypted with the PII key; used to sign deliveries (HMAC-SHA256)
    secret: Mapped[str] = mapped_column(Text)
    events: Mapped[list[Any]] = mapped_column(default=list)  # [] = every event
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    event: Mapped[str] = mapped_column(String(60))
    claim_id: Mapped[str | None] = mapped_column(String(40), default=None)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    response_status: Mapped[int | None] = mapped_column(Integer, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
