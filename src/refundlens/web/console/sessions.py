"""Console sessions, CSRF tokens and sign-in throttling.

A session is a random 256-bit token in an ``HttpOnly``, ``SameSite=Lax`` cookie (``Secure``
over HTTPS), scoped to ``/console``. The server keeps only its sha256 in
``console_sessions``, with the user, a per-session CSRF token, the language and an expiry:
idle sessions end after :data:`IDLE`, every session after :data:`ABSOLUTE`. Signing out
deletes the row.

CSRF: every state-changing request (POST) must carry the session's token, as the form field
``csrf_token`` or the header ``X-CSRF-Token`` (fetch). ``SameSite=Lax`` already keeps the
cookie off cross-site POSTs in current browsers; the token covers older ones and same-site
attackers. The sign-in form, which has no session yet, uses a double-submit cookie.

Throttling (:class:`LoginThrottle`): ``login_max_failures`` failed sign-ins for one
username within ``login_window_s`` lock that username for ``login_lockout_s``; an address
is locked after ``login_address_max_failures`` across usernames (settings, docs/settings.md).
The counts are rows of ``login_attempts``, so every ``serve`` process on the database and a
restart see the same ones. Each attempt is counted as a failure *before* its password is
checked, in one transaction that also checks the lock, and forgiven when it succeeds: a
burst of parallel guesses cannot all slip past the check while the first ones are still
being verified (scrypt takes tens of milliseconds). Whether the username exists changes
nothing on the failure path: the same rows are written, and ``sign_in`` checks a dummy hash
for unknown users. Rows whose window and lockout have both ended are pruned as sign-ins
come in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ...claims.service import Service
from ...config import Settings
from ...store.db import Database
from ...store.tables import ConsoleSession, LoginAttempt, User, utcnow

__all__ = ["ABSOLUTE", "COOKIE", "IDLE", "ConsoleUser", "LoginThrottle", "SignedIn",
           "csrf_matches", "end_session", "new_token", "resume_session", "set_language",
           "start_session"]

COOKIE = "refundlens_session"
LOGIN_CSRF_COOKIE = "refundlens_login_csrf"
LANG_COOKIE = "refundlens_lang"
COOKIE_PATH = "/console"

IDLE = timedelta(hours=8)
ABSOLUTE = timedelta(hours=24)
#: The expiry is pushed forward at most this often (one write per session per period,
#: not one per request).
TOUCH_EVERY = timedelta(minutes=5)
#: Expired ``login_attempts`` rows are pruned at most this often per process, at most
#: :data:`PRUNE_BATCH` at a time.
PRUNE_EVERY = timedelta(minutes=1)
PRUNE_BATCH = 1000


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(),
                                                                  given.encode())


@dataclass(frozen=True)
class ConsoleUser:
    id: str
    username: str
    role: str
    merchant_id: str | None

    @property
    def actor(self) -> str:
        """How the audit trail names this person."""
        return f"user:{self.username}"

    @property
    def reviews(self) -> bool:
        return self.role in ("admin", "reviewer")


@dataclass(frozen=True)
class SignedIn:
    """A live session: who, its CSRF token, language and expiry."""

    user: ConsoleUser
    session_id: str
    csrf_token: str
    lang: str
    expires_at: datetime


def _user(row: User) -> ConsoleUser:
    return ConsoleUser(row.id, row.username, row.role, row.merchant_id)


def start_session(svc: Service, user: User, *, lang: str, ip: str = "",
                  user_agent: str = "") -> tuple[str, SignedIn]:
    """A new session for ``user``; returns the cookie token (never stored) and the session.
    Expired sessions of every user are removed on the way."""
    token = new_token()
    now = utcnow()
    row = ConsoleSession(id=_digest(token), user_id=user.id, csrf_token=new_token(),
                         lang=lang, ip=ip[:64], user_agent=user_agent[:300], created_at=now,
                         last_seen_at=now, expires_at=now + min(IDLE, ABSOLUTE))
    with svc.db.write() as session:
        session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
        session.add(row)
    return token, SignedIn(_user(user), row.id, row.csrf_token, lang, row.expires_at)


def resume_session(svc: Service, token: str | None) -> SignedIn | None:
    """The live session a cookie names, or None (unknown, expired, user disabled)."""
    if not token or len(token) > 200:
        return None
    key = _digest(token)
    now = utcnow()
    with svc.db.read() as session:
        found = session.execute(select(ConsoleSession, User).join(
            User, User.id == ConsoleSession.user_id).where(ConsoleSession.id == key)).first()
    if found is None:
        return None
    row, user = found
    if row.expires_at <= now or user.disabled:
        with svc.db.write() as session:
            session.execute(delete(ConsoleSession).where(ConsoleSession.id == key))
        return None
    expires = row.expires_at
    if now - row.last_seen_at >= TOUCH_EVERY:
        expires = min(row.created_at + ABSOLUTE, now + IDLE)
        with svc.db.write() as session:
            session.execute(update(ConsoleSession).where(ConsoleSession.id == key)
                            .values(last_seen_at=now, expires_at=expires))
    return SignedIn(_user(user), row.id, row.csrf_token, row.lang, expires)


def set_language(svc: Service, session_id: str, lang: str) -> None:
    with svc.db.write() as session:
        session.execute(update(ConsoleSession).where(ConsoleSession.id == session_id)
                        .values(lang=lang))


def end_session(svc: Service, session_id: str) -> None:
    with svc.db.write() as session:
        session.execute(delete(ConsoleSession).where(ConsoleSession.id == session_id))


class LoginThrottle:
    """Failed sign-ins per username and per address in ``login_attempts``, with a lockout
    (module docstring). One per app; every instance on the same database shares the counts.

    Use: ``wait = throttle.attempt(username, address)``; refuse when ``wait > 0``; otherwise
    check the password and call :meth:`succeeded` if it was right (a wrong one was already
    counted).
    """

    def __init__(self, db: Database, *, max_failures: int, address_max_failures: int,
                 window: timedelta, lockout: timedelta,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.max_failures = max_failures
        self.address_max_failures = address_max_failures
        self.window = window
        self.lockout = lockout
        self.clock = clock
        self._pruned_at: datetime | None = None
        self._prune_lock = threading.Lock()

    @classmethod
    def from_settings(cls, db: Database, settings: Settings, **options: Any) -> "LoginThrottle":
        return cls(db, max_failures=settings.login_max_failures,
                   address_max_failures=settings.login_address_max_failures,
                   window=timedelta(seconds=settings.login_window_s),
                   lockout=timedelta(seconds=settings.login_lockout_s), **options)

    def _keys(self, username: str, address: str) -> tuple[str, str]:
        """The address's and the username's row keys, in the order every transaction
        locks them (no deadlock). Names are hashed: a password typed into the username
        field is not stored in clear."""
        return ("addr:" + hashlib.sha256(address.encode()).hexdigest(),
                "user:" + hashlib.sha256(username.strip().lower().encode()).hexdigest())

    def _limit(self, key: str) -> int:
        return self.max_failures if key.startswith("user:") else self.address_max_failures

    def attempt(self, username: str, address: str) -> float:
        """Seconds until ``username`` from ``address`` may try again, or 0: then this
        attempt has been counted as a failure (call :meth:`succeeded` if it was not)."""
        now = self.clock()
        self._prune(now)
        keys = self._keys(username, address)
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        upsert = dialect.insert(LoginAttempt).values([
            {"key": key, "failures": 0, "window_started_at": now,
             "expires_at": now + self.window} for key in keys])
        # DO UPDATE (a no-op) rather than DO NOTHING: it locks an existing row in the same
        # statement, so a concurrent prune cannot delete it between insert and select.
        upsert = upsert.on_conflict_do_update(index_elements=["key"],
                                              set_={"failures": LoginAttempt.failures})
        with self.db.write() as session:
            session.execute(upsert)
            rows = session.execute(select(LoginAttempt).where(LoginAttempt.key.in_(keys))
                                   .order_by(LoginAttempt.key).with_for_update()
                                   ).scalars().all()
            locked = [row.locked_until - now for row in rows
                      if row.locked_until is not None and row.locked_until > now]
            if locked:
                return max(locked).total_seconds()  # refused: nothing counted
            for row in rows:
                if row.locked_until is not None or row.window_started_at + self.window <= now:
                    row.failures, row.window_started_at, row.locked_until = 0, now, None
                row.failures += 1
                if row.failures >= self._limit(row.key):
                    row.locked_until = now + self.lockout
                row.expires_at = max(row.window_started_at + self.window,
                                     row.locked_until or now)
        return 0.0

    def succeeded(self, username: str, address: str) -> None:
        """The attempt was right: the username's count is cleared, the address's attempt
        forgiven (and its lock lifted if that attempt was the one that set it)."""
        addr_key, user_key = self._keys(username, address)
        with self.db.write() as session:
            row = session.execute(select(LoginAttempt).where(LoginAttempt.key == addr_key)
                                  .with_for_update()).scalar_one_or_none()
            if row is not None and row.failures > 0:
                row.failures -= 1
                if row.failures < self._limit(addr_key):
                    row.locked_until = None
            session.execute(delete(LoginAttempt).where(LoginAttempt.key == user_key))

    def _prune(self, now: datetime) -> None:
        """Delete rows whose window and lockout have ended (at most every PRUNE_EVERY);
        its own transaction, skipping rows another sign-in holds."""
        with self._prune_lock:
            if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
                return
            self._pruned_at = now
        expired = (select(LoginAttempt.key).where(LoginAttempt.expires_at < now)
                   .limit(PRUNE_BATCH).with_for_update(skip_locked=True))
        with self.db.write() as session:
            session.execute(delete(LoginAttempt).where(LoginAttempt.key.in_(expired)))
