"""The storage layer: migrations match the table classes on both databases, a database at
an older revision upgrades, the schema check refuses an old database, blobs are
content-addressed and written atomically, and times come back timezone-aware."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from refundlens.errors import ConfigError
from refundlens.store import BlobStore, Database
from refundlens.store.blobs import BlobNotFound
from refundlens.store.db import DatabaseError
from refundlens.store.tables import Base, LoginAttempt, Merchant, User
from refundlens.web.console.sessions import LoginThrottle


def test_migrations_create_exactly_the_declared_schema(svc):
    with svc.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    assert diff == []
    assert svc.db.current_revision() == svc.db.head_revision()


def test_an_unmigrated_database_is_refused_with_the_command_to_run(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    with pytest.raises(DatabaseError, match="refundlens db upgrade"):
        db.check()
    db.upgrade()
    db.check()
    db.dispose()


@pytest.mark.parametrize("url, accepted", [("mysql://x/y", "unsupported backend"),
                                           ("not a url", "not a URL")])
def test_a_bad_database_url_names_what_is_accepted(url, accepted):
    with pytest.raises(ConfigError, match=accepted):
        Database(url)


def test_times_round_trip_as_aware_utc(svc):
    at = datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    with svc.db.write() as session:
        session.add(Merchant(id="mer_t", name="m", created_at=at))
    with svc.db.read() as session:
        got = session.get(Merchant, "mer_t").created_at
    assert got == at and got.tzinfo is not None and got.utcoffset() == timedelta(0)


def test_naive_times_are_refused(svc):
    with pytest.raises(Exception, match="naive datetime"):
        with svc.db.write() as session:
            session.add(Merchant(id="mer_n", name="m", created_at=datetime(2026, 1, 1)))


def test_blobs_are_content_addressed_and_idempotent(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    sha = store.put(b"photo bytes")
    assert store.put(b"photo bytes") == sha
    assert store.get(sha) == b"photo bytes"
    assert store.path(sha).relative_to(tmp_path / "blobs").parts[:2] == (sha[:2], sha[2:4])
    assert not list((tmp_path / "blobs").rglob(".tmp-*"))
    with pytest.raises(BlobNotFound, match="not in the store"):
        store.get("0" * 64)
    with pytest.raises(BlobNotFound, match="not a sha256"):
        store.get("../../etc/passwd")
    assert not store.exists("../x")


def test_a_database_at_0002_upgrades_to_the_login_attempts_table(database_url, tmp_path):
    """Migration 0003 on a database created at 0002 (an empty one: the fixture's copy is
    already at head), keeping its rows; the lockout then works on it."""
    admin = None
    if database_url.startswith("postgresql"):
        name = "m_" + database_url.rsplit("/", 1)[1]
        admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        database_url = database_url.rsplit("/", 1)[0] + f"/{name}"
    else:
        database_url = f"sqlite:///{tmp_path / 'at-0002.db'}"
    db = Database(database_url)
    try:
        db.upgrade("0002")
        assert db.current_revision() == "0002" and "login_attempts" not in db.table_names()
        with db.write() as session:
            session.add(User(id="usr_old", username="old", password_hash="x", role="reviewer"))
        db.upgrade()
        db.check()
        assert "login_attempts" in db.table_names()
        with db.read() as session:
            assert session.get(User, "usr_old").username == "old"
        throttle = LoginThrottle(db, max_failures=1, address_max_failures=5,
                                 window=timedelta(minutes=15), lockout=timedelta(minutes=15))
        assert throttle.attempt("old", "192.0.2.1") == 0
        assert throttle.attempt("old", "192.0.2.1") > 0
        with db.read() as session:
            assert session.query(LoginAttempt).count() == 2
    finally:
        db.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            admin.dispose()
