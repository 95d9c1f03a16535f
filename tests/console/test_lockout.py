"""Console sign-in lockout kept in the database, on both databases: two app instances (as
two ``serve`` processes) and a restart share the counts; a success clears the username's
count; windows and lockouts end on time; an address is locked across usernames; parallel
guesses cannot slip past the limit; expired rows are pruned; and whether a username exists
shows neither in the rows written nor in the time taken."""

from __future__ import annotations

import statistics
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from refundlens.claims.access import create_user
from refundlens.store import Database
from refundlens.store.tables import LoginAttempt
from refundlens.web import create_app
from refundlens.web.console.sessions import PRUNE_EVERY, LoginThrottle
from console_support import PASSWORD, sign_in

WRONG = "wrong password"


class Clock:
    """A settable clock for the throttle."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def users(svc) -> None:
    create_user(svc, username="rev", password=PASSWORD, role="reviewer")
    create_user(svc, username="rev2", password=PASSWORD, role="reviewer")


@pytest.fixture
def apps(settings, svc, users) -> Iterator[Any]:
    """A factory of apps that each open their own service (engines, throttle) on the one
    database, as separate processes do; all are closed at the end."""
    opened: list[TestClient] = []

    def start(**changes: Any) -> TestClient:
        client = TestClient(create_app(settings.with_(**changes), workers=False,
                                       migrate=False))
        client.__enter__()
        opened.append(client)
        return client

    yield start
    for client in opened:
        client.__exit__(None, None, None)


def _throttle(settings: Any, db: Database, clock: Clock, **changes: Any) -> LoginThrottle:
    return LoginThrottle.from_settings(db, settings.with_(**changes), clock=clock)


def _rows(db: Database) -> list[LoginAttempt]:
    with db.read() as session:
        return list(session.execute(select(LoginAttempt).order_by(LoginAttempt.key))
                    .scalars())


def test_two_app_instances_and_a_restart_share_the_lockout(apps):
    first, second = apps(), apps()
    for client in (first, second, first, second, first):  # 5 failures, spread over both
        assert sign_in(client, "rev", WRONG).status_code == 401
    for client in (first, second):
        locked = sign_in(client, "rev")  # even the right password, on either instance
        assert locked.status_code == 429 and "分钟后重试" in locked.text
    assert sign_in(second, "rev2").status_code == 303  # another user is not locked
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    restarted = apps()
    assert sign_in(restarted, "rev").status_code == 429


def test_a_successful_sign_in_clears_the_usernames_count(apps, svc):
    first, second = apps(), apps()
    for _ in range(4):
        assert sign_in(first, "rev", WRONG).status_code == 401
    assert sign_in(second, "rev").status_code == 303
    second.cookies.clear()  # signed out
    for _ in range(4):  # a fresh allowance: four more failures do not lock
        assert sign_in(first, "rev", WRONG).status_code == 401
    assert sign_in(second, "rev").status_code == 303
    (address,) = _rows(svc.db)  # the username's row is gone; the address's forgave both
    assert address.key.startswith("addr:") and address.failures == 8


def test_the_limits_are_settings(apps):
    strict = apps(login_max_failures=2)
    for _ in range(2):
        assert sign_in(strict, "rev", WRONG).status_code == 401
    assert sign_in(strict, "rev").status_code == 429


def test_a_lockout_ends_and_a_window_restarts_the_count(settings, svc):
    clock = Clock()
    throttle = _throttle(settings, svc.db, clock)
    for _ in range(5):
        assert throttle.attempt("rev", "10.0.0.1") == 0
    assert throttle.attempt("REV ", "10.0.0.2") == pytest.approx(900)  # one name, any case
    clock.advance(seconds=600)
    assert throttle.attempt("rev", "10.0.0.1") == pytest.approx(300)
    clock.advance(seconds=300)
    assert throttle.attempt("rev", "10.0.0.1") == 0  # the lockout is over; counted afresh
    for _ in range(3):
        assert throttle.attempt("rev", "10.0.0.1") == 0
    clock.advance(seconds=900)  # the window ended with 4 failures: the count starts again
    for _ in range(4):
        assert throttle.attempt("rev", "10.0.0.1") == 0
    assert throttle.attempt("rev", "10.0.0.1") == 0  # the 5th in this window locks
    assert throttle.attempt("rev", "10.0.0.1") > 0


def test_an_address_is_locked_across_usernames(settings, svc):
    throttle = _throttle(settings, svc.db, Clock())
    for i in range(25):
        assert throttle.attempt(f"user{i}", "203.0.113.7") == 0
    assert throttle.attempt("someone-else", "203.0.113.7") == pytest.approx(900)
    assert throttle.attempt("someone-else", "203.0.113.8") == 0


def test_a_right_password_on_the_attempt_that_reached_the_address_limit_unlocks_it(
        settings, svc):
    throttle = _throttle(settings, svc.db, Clock(), login_address_max_failures=3)
    for name in ("a", "b", "rev"):
        assert throttle.attempt(name, "198.51.100.1") == 0
    throttle.succeeded("rev", "198.51.100.1")  # the third was right: two failures remain
    assert throttle.attempt("c", "198.51.100.1") == 0  # the third failure locks again
    assert throttle.attempt("d", "198.51.100.1") > 0


def test_parallel_guesses_from_two_instances_cannot_pass_the_limit(settings, svc):
    clock = Clock()
    other_db = Database(settings.database_url)
    throttles = [_throttle(settings, svc.db, clock), _throttle(settings, other_db, clock)]
    results: list[float] = []
    start = threading.Barrier(16)

    def guess(i: int) -> None:
        start.wait()
        wait = throttles[i % 2].attempt("rev", f"192.0.2.{i}")
        results.append(wait)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        other_db.dispose()
    assert sorted(results).count(0) == 5 and len(results) == 16


def test_expired_rows_are_pruned_as_sign_ins_come_in(settings, svc):
    clock = Clock()
    throttle = _throttle(settings, svc.db, clock)
    for i in range(30):
        throttle.attempt(f"user{i}", f"192.0.2.{i}")
    assert len(_rows(svc.db)) == 60
    clock.advance(seconds=899)
    throttle.attempt("late", "192.0.2.200")
    assert len(_rows(svc.db)) == 62  # nothing has expired yet
    clock.advance(seconds=2)
    throttle.attempt("later", "192.0.2.201")  # within PRUNE_EVERY of the last prune: kept
    assert len(_rows(svc.db)) == 64
    clock.advance(seconds=PRUNE_EVERY.total_seconds())
    throttle.attempt("last", "192.0.2.202")
    assert {row.key for row in _rows(svc.db)} == set(throttle._keys("late", "192.0.2.200")) | \
        set(throttle._keys("later", "192.0.2.201")) | set(throttle._keys("last", "192.0.2.202"))


def test_a_locked_row_lives_until_its_lockout_ends(settings, svc):
    clock = Clock()
    throttle = _throttle(settings, svc.db, clock, login_lockout_s=3600)
    for _ in range(5):
        throttle.attempt("rev", "192.0.2.1")
    clock.advance(seconds=1800)  # past the window, inside the lockout
    assert throttle.attempt("other", "192.0.2.9") == 0  # prunes
    assert throttle.attempt("rev", "192.0.2.1") == pytest.approx(1800)


def test_unknown_and_known_usernames_write_the_same_rows(apps, svc):
    client = apps()
    assert sign_in(client, "rev", WRONG).status_code == 401
    assert sign_in(client, "nobody", WRONG).status_code == 401
    rows = _rows(svc.db)
    assert sorted((row.key[:5], row.failures) for row in rows) == \
        [("addr:", 2), ("user:", 1), ("user:", 1)]
    assert not any("rev" in row.key or "nobody" in row.key for row in rows)  # hashed
    with svc.db.read() as session:
        assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 3


def test_a_wrong_password_takes_as_long_for_an_unknown_username(apps):
    client = apps(login_max_failures=1000, login_address_max_failures=1000)
    timings: dict[str, list[float]] = {"rev": [], "nobody": []}
    for _ in range(6):
        for name in timings:  # interleaved, so load on the machine hits both alike
            started = time.perf_counter()
            assert sign_in(client, name, WRONG).status_code == 401
            timings[name].append(time.perf_counter() - started)
    known, unknown = (statistics.median(timings[n]) for n in ("rev", "nobody"))
    # both check one scrypt hash (~50 ms) and write the same rows; a missing user
    # answering without a hash check would be several times faster
    assert 0.6 < unknown / known < 1.6, timings


@pytest.mark.slow
@pytest.mark.parametrize("trusted, separate", [("127.0.0.1", True), ("192.0.2.99", False)],
                         ids=["proxy-trusted", "proxy-not-trusted"])
def test_behind_a_trusted_proxy_the_lockout_keys_on_the_forwarded_address(tmp_path, trusted,
                                                                          separate):
    """A real ``refundlens serve`` behind a proxy on 127.0.0.1: with the proxy trusted
    (REFUNDLENS_FORWARDED_ALLOW_IPS), failures from one client lock that client's address,
    not the proxy's, so another client still signs in; with it not trusted, every client
    is the proxy and the second one is locked out too."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    from console_support import csrf_of
    from serving import Server  # a real `refundlens serve` in its own process group

    env = {**os.environ, "REFUNDLENS_DATA_DIR": str(tmp_path / "data"),
           "REFUNDLENS_ANALYSIS_WORKERS": "0", "REFUNDLENS_LOGIN_ADDRESS_MAX_FAILURES": "2",
           "REFUNDLENS_FORWARDED_ALLOW_IPS": trusted}
    env.pop("REFUNDLENS_DATABASE_URL", None)
    refundlens = str(Path(sys.executable).with_name("refundlens"))
    subprocess.run([refundlens, "users", "create", "--role", "reviewer", "--username", "rev",
                    "--password", PASSWORD], env=env, check=True, capture_output=True)
    server = Server(env, tmp_path / "serve.log")
    server.start()
    try:
        def attempt(client_ip: str, username: str, password: str) -> int:
            with httpx.Client(base_url=server.url, timeout=30,
                              headers={"X-Forwarded-For": client_ip}) as http:
                form = http.get("/console/login")
                return http.post("/console/login", data={
                    "username": username, "password": password,
                    "csrf_token": csrf_of(form.text)}).status_code

        assert attempt("203.0.113.1", "nobody-1", "guess") == 401
        assert attempt("203.0.113.1", "nobody-2", "guess") == 401
        assert attempt("203.0.113.1", "rev", PASSWORD) == 429  # that address is locked
        assert attempt("198.51.100.2", "rev", PASSWORD) == (303 if separate else 429)
    finally:
        server.stop()
