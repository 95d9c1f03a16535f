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

Throttling (:class:`LoginThrottle`): :data:`MAX_FAILURES` failed sign-ins for one username
within :data:`FAILURE_WINDOW` lock that username for :data:`LOCKOUT`; an address gets five
times as many across usernames. It lives in the process (a deployment running several
``serve`` processes multiplies the allowance by their number); password hashes are scrypt,
so each guess is slow anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import delete, select, update

from ...claims.service import Service
from ...store.tables import ConsoleSession, User, utcnow

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

MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)


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
    """Failed sign-ins per username and per address, with a lockout (module docstring)."""

    def __init__(self, *, max_failures: int = MAX_FAILURES,
                 window: timedelta = FAILURE_WINDOW, lockout: timedelta = LOCKOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window.total_seconds()
        self.lockout_s = lockout.total_seconds()
        self.clock = clock
        self._failures: dict[str, list[float]] = {}
        self._locked: dict[str, float] = {}
        self._lock = threading.Lock()

    def _keys(self, username: str, ip: str) -> list[tuple[str, int]]:
        return [("u:" + username.strip().lower(), self.max_failures),
                ("ip:" + ip, 5 * self.max_failures)]

    def locked_for(self, username: str, ip: str) -> float:
        """Seconds until sign-in is allowed again (0: allowed now)."""
        now = self.clock()
        with self._lock:
            waits = [self._locked.get(k, 0.0) - now for k, _ in self._keys(username, ip)]
        return max(0.0, *waits)

    def failed(self, username: str, ip: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) > 100_000:  # bounded memory under a spray of usernames
                self._failures.clear()
            for key, limit in self._keys(username, ip):
                recent = [t for t in self._failures.get(key, []) if now - t < self.window_s]
                recent.append(now)
                self._failures[key] = recent
                if len(recent) >= limit:
                    self._locked[key] = now + self.lockout_s
                    self._failures[key] = []

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop("u:" + username.strip().lower(), None)
