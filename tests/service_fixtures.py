"""Service fixtures (a pytest plugin loaded by conftest.py): a database per test on SQLite
and on a real PostgreSQL, a service over it, an API client, keys for every role, and a
synchronous job runner."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from refundlens.claims.access import create_key
from refundlens.claims.analyzer import InlineAnalysis
from refundlens.claims.service import Service, open_service
from refundlens.claims.workflow import on_job_failed
from refundlens.config import load_settings
from refundlens.jobs import Worker
from refundlens.store import Database
from refundlens.web import create_app
from refundlens.web.app import job_handlers


from pgserver import PostgresServer

TEMPLATE = "refundlens_template"


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The URL of a PostgreSQL server holding a migrated template database."""
    server = PostgresServer()
    base = server.start()
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE}"))
        conn.execute(text(f"CREATE DATABASE {TEMPLATE}"))
    template_url = base.rsplit("/", 1)[0] + f"/{TEMPLATE}"
    db = Database(template_url)
    db.upgrade()
    db.dispose()
    yield base
    admin.dispose()
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'refundlens.db'}"
        return
    base = request.getfixturevalue("postgres")
    name = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
    yield base.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Any:
    """The service's settings; ``@pytest.mark.settings(name=value, ...)`` changes some for
    one test (e.g. ``webhook_allow_private=True`` for a receiver on 127.0.0.1)."""
    marker = request.node.get_closest_marker("settings")
    return load_settings(environ={}, data_dir=tmp_path / "data", database_url=database_url,
                         analysis_workers=0, **(marker.kwargs if marker else {}))


@pytest.fixture
def svc(settings: Any) -> Iterator[Service]:
    service = open_service(settings, migrate=True)
    yield service
    service.close()


@pytest.fixture
def run_jobs(svc: Service) -> Callable[[], int]:
    """Run every ready job in this thread (analysis in-process); returns how many ran."""
    heavy, light = job_handlers(svc, InlineAnalysis(svc.settings, svc.reuse_index))
    worker = Worker(svc.db, {**heavy, **light},
                    on_failed=lambda ctx, error: on_job_failed(svc, ctx, error))
    return worker.run_until_idle


@pytest.fixture
def run_analysis_jobs(svc: Service) -> Callable[[], int]:
    """Run the ready analysis and keyframe jobs only (webhook deliveries and deadlines stay
    queued); returns how many ran."""
    heavy, _ = job_handlers(svc, InlineAnalysis(svc.settings, svc.reuse_index))
    return Worker(svc.db, heavy).run_until_idle


@pytest.fixture
def client(svc: Service, settings: Any) -> Iterator[TestClient]:
    app = create_app(settings, service=svc, workers=False)
    with TestClient(app) as test_client:
        yield test_client


class Keys:
    """Bearer headers per role; ``merchant(id)`` makes a key for that merchant."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.admin = self._make("admin")
        self.reviewer = self._make("reviewer")
        self.intake = self._make("intake")

    def _make(self, role: str, merchant_id: str | None = None) -> dict[str, str]:
        _, token = create_key(self.svc, role=role, merchant_id=merchant_id)
        return {"Authorization": f"Bearer {token}"}

    def merchant(self, merchant_id: str) -> dict[str, str]:
        return self._make("merchant", merchant_id)


@pytest.fixture
def keys(svc: Service) -> Keys:
    return Keys(svc)
