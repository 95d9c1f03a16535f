"""Request dependencies: the service, the authenticated caller, intake rate limits."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from fastapi import Request

from ..claims.access import Caller, authenticate_key
from ..claims.service import Service
from ..errors import RateLimited, Unauthorized

__all__ = ["RateLimiter", "caller", "service"]


def service(request: Request) -> Service:
    return request.app.state.service


def caller(request: Request) -> Caller:
    """The caller named by ``Authorization: Bearer KEY`` (401 without a valid key)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' (create one "
                           "with `refundlens keys create`)")
    cache = request.app.state.key_cache
    found = cache.get(token)
    if found is None:
        found = authenticate_key(request.app.state.service, token.strip())
        if found is None:
            raise Unauthorized("invalid API key: unknown, revoked or expired")
        cache.put(token, found)
    return found


class KeyCache:
    """Authenticated keys for a few seconds, so a burst of requests from one client does
    not read the key row each time. A key revoked or rotated through this app is forgotten
    at once (:meth:`forget`), one revoked elsewhere (the CLI) stops working within
    ``ttl_s``, and no entry outlives its key's ``expires_at``."""

    def __init__(self, ttl_s: float = 5.0, size: int = 1024) -> None:
        self.ttl_s, self.size = ttl_s, size
        self._items: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> Caller | None:
        with self._lock:
            item = self._items.get(token)
            if item is None or item[0] < time.monotonic():
                return None
            return item[1]

    def put(self, token: str, value: Caller) -> None:
        ttl = self.ttl_s
        if value.expires_at is not None:
            left = (value.expires_at - datetime.now(timezone.utc)).total_seconds()
            ttl = min(ttl, left)
        if ttl <= 0:
            return
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[token] = (time.monotonic() + ttl, value)

    def forget(self, key_id: str) -> None:
        """Drop every cached token of ``key_id`` (after it was revoked or rotated)."""
        with self._lock:
            for token in [t for t, (_, c) in self._items.items() if c.key_id == key_id]:
                del self._items[token]


class RateLimiter:
    """A token bucket per key: ``rate`` per second, bursts of ``2 × rate``."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        capacity = 2.0 * self.rate
        with self._lock:
            tokens, last = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise RateLimited(f"intake rate limit: at most {self.rate} claims a second "
                                  f"per key (bursts of {int(capacity)}); retry shortly")
            self._buckets[key] = (tokens - 1.0, now)
