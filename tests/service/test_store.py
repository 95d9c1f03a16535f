"""The storage layer: migrations match the table classes on both databases, a database at
an older revision upgrades, the schema check refuses an old database, blobs are
content-addressed and written atomically, and times come back timezone-aware."""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, create_engine, select, text
from sqlalchemy.schema import CreateIndex

from refundlens.errors import ConfigError
from refundlens.store import BlobStore, Database
from refundlens.store.blobs import BlobNotFound
from refundlens.store.db import DatabaseError
from refundlens.store.tables import (Base, Claim, ClaimPhoto, LoginAttempt, Merchant, Order,
                                     PhotoCode, User)
from refundlens.web.console.sessions import LoginThrottle


def test_migrations_create_exactly_the_declared_schema(svc):
    with svc.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    assert diff == []
    assert svc.db.current_revision() == svc.db.head_revision()


def test_indexes_on_expressions_match_on_sqlite_too(svc):
    """compare_metadata skips indexes on expressions on SQLite, which it cannot reflect
    (on PostgreSQL it compares them): compare their SQL."""
    if not svc.db.is_sqlite:
        pytest.skip("PostgreSQL's are compared by compare_metadata")
    declared = {ix.name: str(CreateIndex(ix).compile(dialect=svc.db.engine.dialect))
                for table in Base.metadata.tables.values() for ix in table.indexes
                if any(not isinstance(e, Column) for e in ix.expressions)}
    with svc.db.engine.connect() as conn:
        migrated = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE "
                                             "type = 'index' AND sql IS NOT NULL").all())
    assert declared and {name: re.sub(r"[()\s]", "", sql) for name, sql in declared.items()} \
        == {name: re.sub(r"[()\s]", "", migrated.get(name) or "") for name in declared}


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


@contextlib.contextmanager
def _scratch_database(database_url: str, tmp_path: Path, name: str) -> Iterator[Database]:
    """An empty database of the same kind as ``database_url`` (a new PostgreSQL database
    on the same server, or a new SQLite file), dropped afterwards."""
    admin = None
    if database_url.startswith("postgresql"):
        name = f"{name}_{database_url.rsplit('/', 1)[1]}"
        admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        url = database_url.rsplit("/", 1)[0] + f"/{name}"
    else:
        url = f"sqlite:///{tmp_path / name}.db"
    db = Database(url)
    try:
        yield db
    finally:
        db.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            admin.dispose()


def test_a_database_at_0002_upgrades_to_the_login_attempts_table(database_url, tmp_path):
    """Migration 0003 on a database created at 0002 (an empty one: the fixture's copy is
    already at head), keeping its rows; the lockout then works on it."""
    with _scratch_database(database_url, tmp_path, "at0002") as db:
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


def test_a_database_at_0003_upgrades_with_each_rotated_keys_lineage(database_url, tmp_path):
    """Migration 0004 adds api_keys.lineage and fills it for keys rotated before it: the
    first key of each rotation chain, so their clients' Idempotency-Keys still match."""
    with _scratch_database(database_url, tmp_path, "at0003") as db:
        db.upgrade("0003")
        with db.write() as session:  # the 0003 table has no lineage column: plain SQL
            for key_id, replaces in [("k_a", None), ("k_b", "k_a"), ("k_c", "k_b"),
                                     ("k_solo", None)]:
                session.execute(text(
                    "INSERT INTO api_keys (id, role, secret_hash, name, created_at, replaces) "
                    "VALUES (:id, 'intake', 'x', '', CURRENT_TIMESTAMP, :replaces)"),
                    {"id": key_id, "replaces": replaces})
        db.upgrade()
        db.check()
        with db.read() as session:
            lineage = dict(session.execute(text("SELECT id, lineage FROM api_keys")).all())
        assert lineage == {"k_a": None, "k_b": "k_a", "k_c": "k_a", "k_solo": None}


def test_a_database_at_0005_upgrades_with_its_photos_codes_and_the_queue_index(
        database_url, tmp_path):
    """Migration 0006 fills photo_codes (what the queue's filter by code reads) from the
    analyses already stored, once per code, and adds the queue's partial index."""
    findings = {"p0": ["REFERENCE_DERIVED", "REFERENCE_ALTERED", "REFERENCE_ALTERED"],
                "p1": ["REUSED_PHOTO"], "p2": [], "p3": None}
    with _scratch_database(database_url, tmp_path, "at0005") as db:
        db.upgrade("0005")
        with db.write() as session:
            session.add(Merchant(id="m1", name="店"))
            session.add(Order(id="o1", merchant_id="m1", buyer="b", amount_cents=100))
            session.flush()
            for i, (photo, codes) in enumerate(findings.items()):
                session.add(Claim(id=f"c{i}", order_id="o1", merchant_id="m1", buyer="b",
                                  type="refund_only", amount_cents=100, status="in_review"))
                session.flush()
                session.add(ClaimPhoto(
                    id=photo, claim_id=f"c{i}", position=0, sha256="0" * 64,
                    filename="a.jpg", content_type="image/jpeg", width=1, height=1,
                    analysis=None if codes is None else
                    {"status": "ok", "findings": [{"code": c} for c in codes]}))
        db.upgrade()
        db.check()
        with db.read() as session:
            rows = sorted(session.execute(select(PhotoCode.photo_id, PhotoCode.code,
                                                 PhotoCode.claim_id)).all())
            indexes = session.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'index'" if db.is_sqlite else
                "SELECT indexname FROM pg_indexes WHERE tablename = 'claims'")).scalars().all()
    assert rows == [("p0", "REFERENCE_ALTERED", "c0"), ("p0", "REFERENCE_DERIVED", "c0"),
                    ("p1", "REUSED_PHOTO", "c1")]
    assert "ix_claims_waiting" in indexes
