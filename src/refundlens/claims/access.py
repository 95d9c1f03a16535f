"""Who may call: API keys with roles, and console users.

Roles: ``admin`` (everything), ``reviewer`` (read every claim, decide, request evidence,
escalate, note), ``merchant`` (its own products, orders and claims: read and respond),
``intake`` (create merchants' orders and claims, submit evidence and appeals on the buyer's
behalf; never decide). Keys are stored as hashes; rotating a key issues a new one and lets
the old one work for a grace period.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select

from ..errors import InvalidInput, NotFound, PermissionDenied
from ..security import generate_api_key, hash_password, hash_secret, parse_api_key, \
    verify_password
from ..store.tables import (ApiKey, Claim, ClaimPhoto, Merchant, MerchantResponse, Order,
                            Product, ReferencePhoto, ShippingEvidence, User, utcnow)
from .audit import append_event
from .service import Service

__all__ = ["ROLES", "Caller", "authenticate_key", "create_key", "create_user",
           "may_see_blob", "revoke_key", "rotate_key", "sign_in"]

ROLES = ("admin", "reviewer", "merchant", "intake")


@dataclass(frozen=True)
class Caller:
    """The authenticated party of a request."""

    role: str
    key_id: str
    merchant_id: str | None = None
    #: when the key stops working (a rotated key's grace end); caches must not outlive it
    expires_at: datetime | None = field(default=None, compare=False)
    #: the first key of this key's rotation chain (itself if never rotated)
    lineage: str = field(default="", compare=False)

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.key_id}"

    def require(self, *roles: str) -> None:
        if self.role not in roles:
            raise PermissionDenied(f"role {self.role!r} may not do this; allowed: "
                                   f"{', '.join(roles)}")

    @property
    def idempotency_scope(self) -> str:
        """Whose Idempotency-Keys this caller's are: the key's whole rotation chain, so a
        client retrying with the successor of a rotated key gets the same claim back."""
        return self.lineage or self.key_id

    @property
    def merchant_scope(self) -> str | None:
        """The merchant this caller is confined to (None: all merchants)."""
        return self.merchant_id if self.role == "merchant" else None


def _check_role(svc: Service, session: object, role: str, merchant_id: str | None) -> None:
    if role not in ROLES:
        raise InvalidInput(f"role: got {role!r}, expected one of {', '.join(ROLES)}",
                           field="role")
    if role == "merchant" and not merchant_id:
        raise InvalidInput("merchant: a merchant key or user needs --merchant ID",
                           field="merchant_id")
    if merchant_id and role != "merchant":
        raise InvalidInput(f"merchant: only merchant keys and users belong to a merchant, "
                           f"not {role}", field="merchant_id")
    if merchant_id and session.get(Merchant, merchant_id) is None:  # type: ignore[attr-defined]
        raise NotFound(f"merchant {merchant_id!r}: no such merchant", field="merchant_id")


def create_key(svc: Service, *, role: str, merchant_id: str | None = None, name: str = "",
               actor: str = "cli", replaces: str | None = None, lineage: str | None = None,
               expires_in: timedelta | None = None) -> tuple[ApiKey, str]:
    """A new key; returns the row and the token (shown once, never stored)."""
    parts = generate_api_key()
    with svc.db.write() as session:
        _check_role(svc, session, role, merchant_id)
        row = ApiKey(id=parts.key_id, role=role, merchant_id=merchant_id, name=name[:200],
                     secret_hash=hash_secret(parts.secret), replaces=replaces,
                     lineage=lineage,
                     expires_at=utcnow() + expires_in if expires_in else None)
        session.add(row)
        session.flush()
        append_event(session, actor=actor, action="api_key_created",
                     data={"key_id": row.id, "role": role, "merchant_id": merchant_id,
                           "replaces": replaces})
    return row, parts.token


def rotate_key(svc: Service, key_id: str, *, grace: timedelta = timedelta(hours=24),
               actor: str = "cli") -> tuple[ApiKey, str]:
    """Issue a successor with the same role; the old key expires after ``grace``."""
    with svc.db.write() as session:
        old = session.get(ApiKey, key_id)
        if old is None or old.revoked_at is not None:
            raise NotFound(f"API key {key_id!r}: no such active key", field="key_id")
        old.expires_at = min(filter(None, [old.expires_at, utcnow() + grace]))
        role, merchant_id, name, lineage = old.role, old.merchant_id, old.name, \
            old.lineage or old.id
        append_event(session, actor=actor, action="api_key_rotated",
                     data={"key_id": key_id, "expires_at": old.expires_at.isoformat()})
    return create_key(svc, role=role, merchant_id=merchant_id, name=name, actor=actor,
                      replaces=key_id, lineage=lineage)


def revoke_key(svc: Service, key_id: str, *, actor: str = "cli") -> None:
    with svc.db.write() as session:
        row = session.get(ApiKey, key_id)
        if row is None:
            raise NotFound(f"API key {key_id!r}: no such key", field="key_id")
        row.revoked_at = row.revoked_at or utcnow()
        append_event(session, actor=actor, action="api_key_revoked", data={"key_id": key_id})


_KEYS = ApiKey.__table__
_KEY_BY_ID = select(_KEYS.c.id, _KEYS.c.role, _KEYS.c.merchant_id, _KEYS.c.secret_hash,
                    _KEYS.c.revoked_at, _KEYS.c.expires_at, _KEYS.c.lineage
                    ).where(_KEYS.c.id == bindparam("key_id"))


def authenticate_key(svc: Service, token: str) -> Caller | None:
    """The caller a bearer token names, or None (unknown, wrong, revoked, expired)."""
    parts = parse_api_key(token)
    if parts is None:
        return None
    with svc.db.read_rows() as conn:
        row = conn.execute(_KEY_BY_ID, {"key_id": parts.key_id}).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    if not hmac.compare_digest(row.secret_hash, hash_secret(parts.secret)):
        return None
    return Caller(row.role, row.id, row.merchant_id, expires_at=row.expires_at,
                  lineage=row.lineage or row.id)


def create_user(svc: Service, *, username: str, password: str, role: str,
                merchant_id: str | None = None, actor: str = "cli") -> User:
    from .intake import new_id

    if not username or len(username) > 100 or not username.isprintable() or " " in username:
        raise InvalidInput(f"username: got {username!r}, expected 1–100 characters without "
                           f"spaces", field="username")
    if len(password) < 8:
        raise InvalidInput("password: at least 8 characters", field="password")
    with svc.db.write() as session:
        _check_role(svc, session, role, merchant_id)
        if role == "intake":
            raise InvalidInput("role: console users are admin, reviewer or merchant",
                               field="role")
        if session.execute(select(User).where(User.username == username)).scalar_one_or_none():
            raise InvalidInput(f"username: {username!r} is taken", field="username")
        user = User(id=new_id("usr"), username=username, password_hash=hash_password(password),
                    role=role, merchant_id=merchant_id)
        session.add(user)
        session.flush()
        append_event(session, actor=actor, action="user_created",
                     data={"user_id": user.id, "username": username, "role": role,
                           "merchant_id": merchant_id})
    return user


def sign_in(svc: Service, username: str, password: str) -> User | None:
    with svc.db.read() as session:
        user = session.execute(select(User).where(User.username == username)
                               ).scalar_one_or_none()
    if user is None or user.disabled:
        verify_password(password, _DUMMY_HASH)  # same time whether or not the user exists
        return None
    return user if verify_password(password, user.password_hash) else None


_DUMMY_HASH = "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def may_see_blob(svc: Service, who: Caller, sha: str) -> bool:
    """Whether ``who`` may fetch the blob ``sha``: a merchant sees the blobs of its own
    claims (photos, masks), products (listing photos), orders (shipping evidence, video
    keyframes) and responses only; every other role sees all."""
    if not who.merchant_scope:
        return True
    m = who.merchant_scope
    with svc.db.read() as session:
        claim_photo = session.execute(select(ClaimPhoto.id).join(
            Claim, Claim.id == ClaimPhoto.claim_id).where(
            or_(ClaimPhoto.sha256 == sha, ClaimPhoto.mask_sha256 == sha),
            Claim.merchant_id == m).limit(1)).first()
        if claim_photo:
            return True
        ref = session.execute(select(ReferencePhoto.id).join(
            Product, Product.id == ReferencePhoto.product_id).where(
            ReferencePhoto.sha256 == sha, Product.merchant_id == m).limit(1)).first()
        ship = session.execute(select(ShippingEvidence.id).join(
            Order, Order.id == ShippingEvidence.order_id).where(
            ShippingEvidence.sha256 == sha, Order.merchant_id == m).limit(1)).first()
        if ref or ship:
            return True
        return any(f.get("sha256") == sha for files in session.execute(
            select(MerchantResponse.files).where(MerchantResponse.merchant_id == m)).scalars()
            for f in files or [])
