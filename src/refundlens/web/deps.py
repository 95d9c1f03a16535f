"""Request dependencies: the service, the authenticated caller, intake rate limits."""

from __future__ import annotations

import threading
import time

from fastapi import Request

from ..claims.access import Caller, authenticate_key
from ..claims.service import Service
from ..errors import RateLimited, Unauthorized

__all__ = ["RateLimiter", "caller", "service"]


def service(request: Request) -> Service:
    return request.app.state.service


def caller(request: Request) -> Caller:
    """The caller named by ``Authorization: Bearer KEY`` (401 without a valid key).

    The key's row is read on every request, so a key revoked, rotated past its grace or
    expired is refused on the next request — by every API process, whoever revoked it
    (this app, another ``serve`` process, ``refundlens keys revoke``). It is one
    primary-key read, plus one per earlier key of a rotated key's chain (measured with the
    TestClient: about 0.4 ms a request on SQLite, 1 ms on PostgreSQL over a local socket);
    a cache in front of it would need that same read (of the key, or of a "keys changed"
    counter) to learn of a revocation made elsewhere.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' (create one "
                           "with `refundlens keys create`)")
    found = authenticate_key(request.app.state.service, token.strip())
    if found is None:
        raise Unauthorized("invalid API key: unknown, revoked or expired")
    return found


class RateLimiter:
    """A token bucket per key: ``rate`` per second, bursts of ``2 × rate``. A claim, an
    evidence submission and an appeal each take a token from the caller's key.

    With ``processes`` API processes sharing the port, each holds ``1/processes`` of the
    bucket (the kernel spreads connections evenly enough for a limit meant to stop floods).
    """

    def __init__(self, rate: int, *, processes: int = 1) -> None:
        self.rate = rate
        self._share = rate / max(1, processes)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        capacity = max(1.0, 2.0 * self._share)
        with self._lock:
            tokens, last = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * self._share)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise RateLimited(f"intake rate limit: at most {self.rate} claims a second "
                                  f"per key, evidence submissions and appeals counted as "
                                  f"claims (bursts of {2 * self.rate}); retry shortly")
            self._buckets[key] = (tokens - 1.0, now)
