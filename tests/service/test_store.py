"""The storage layer: migrations match the table classes on both databases, the schema
check refuses an old database, blobs are content-addressed and written atomically, and
times come back timezone-aware."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from refundlens.errors import ConfigError
from refundlens.store import BlobStore, Database
from refundlens.store.blobs import BlobNotFound
from refundlens.store.db import DatabaseError
from refundlens.store.tables import Base, Merchant


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
