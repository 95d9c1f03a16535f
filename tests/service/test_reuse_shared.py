"""The service's reuse index lives in the database, on both databases: a photo analysed on
one host is found when a second claim reuses it on another host; a deployment upgraded from
the per-host file index gets its index back from the photos' stored analyses (the job that
migration 0005 queues, or ``refundlens reuse backfill``); ``refundlens reuse import`` copies
an old file index, and the service names one it finds at start-up."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from alembic import command
from conftest import jpeg, photo, textured_rgb
from sqlalchemy import select

from refundlens.claims import reuse
from refundlens.claims.analyzer import AnalysisPool, InlineAnalysis
from refundlens.claims.service import LEGACY_REUSE_INDEX, Service, open_service
from refundlens.cli import main
from refundlens.config import load_settings
from refundlens.index import ReuseIndex
from refundlens.jobs import Worker
from refundlens.store.tables import ClaimPhoto, Job, ReusePhoto
from refundlens.web import create_app
from refundlens.web.app import job_handlers
from service.test_api_flow import file_claim, setup_catalog


def worker_for(svc: Service, engine: Any = None) -> Callable[[], int]:
    """One host's job runner (analysis in this process unless another ``engine``)."""
    heavy, light = job_handlers(svc, engine or InlineAnalysis(svc.settings, svc.reuse_index))
    return Worker(svc.db, {**heavy, **light}).run_until_idle


def reuse_finding(client: Any, keys: Any, claim_id: str) -> dict[str, Any] | None:
    detail = client.get(f"/api/v1/claims/{claim_id}", headers=keys.reviewer).json()
    return next((f for f in detail["photos"][0]["findings"] if f["code"] == "REUSED_PHOTO"),
                None)


@pytest.fixture
def host_b(settings: Any, svc: Service, tmp_path: Path) -> Any:
    """A second host: its own data directory (keys copied, as a deployment shares them),
    its own service and connections, the same database."""
    data_dir = tmp_path / "host-b"
    shutil.copytree(Path(settings.data_dir) / "keys", data_dir / "keys")
    other = open_service(load_settings(environ={}, data_dir=data_dir,
                                       database_url=settings.database_url,
                                       analysis_workers=0))
    from fastapi.testclient import TestClient

    with TestClient(create_app(other.settings, service=other, workers=False)) as client:
        yield other, client
    other.close()


def test_a_photo_analysed_on_one_host_is_found_reused_on_another(client, keys, run_jobs,
                                                                 host_b, settings):
    svc_b, client_b = host_b
    photo_bytes = jpeg(textured_rgb(640, 480, seed=21), 90)
    first = setup_catalog(client, keys, jpeg(textured_rgb(640, 480, seed=4), 92))
    one = file_claim(client, keys, first["order_id"], [photo_bytes]).json()
    assert run_jobs() >= 1  # host A analyses and indexes claim one
    assert reuse_finding(client, keys, one["id"]) is None

    second = setup_catalog(client_b, keys, jpeg(textured_rgb(640, 480, seed=5), 92))
    two = file_claim(client_b, keys, second["order_id"], [jpeg(
        textured_rgb(640, 480, seed=21), 70)]).json()
    # Host B analyses claim two in a spawned analysis process, as `refundlens worker`
    # does: the index reaches it pickled as the database URL and connects from there.
    pool = AnalysisPool(svc_b.settings, svc_b.reuse_index)
    try:
        assert worker_for(svc_b, pool)() >= 1
    finally:
        pool.close()
    finding = reuse_finding(client_b, keys, two["id"])
    assert finding is not None, "host B did not see host A's photo"
    assert finding["details"]["other_meta"]["claim_id"] == one["id"]
    assert finding["details"]["relation"] == "near_copy"
    # Nothing was written to a host's own file index.
    for data_dir in (Path(settings.data_dir), Path(svc_b.settings.data_dir)):
        assert not (data_dir / LEGACY_REUSE_INDEX).exists()
        assert not (data_dir / "reuse").exists()


def test_an_upgraded_deployment_backfills_its_index_from_stored_analyses(
        client, keys, svc, run_jobs, monkeypatch):
    """A database analysed before migration 0005 (here: taken back to 0004, which drops
    the table) is upgraded: the migration queues the backfill job, which indexes every
    analysed photo from its stored analysis, in batches, with the same metadata as a live
    analysis; a new claim then finds the old photo."""
    photo_bytes = jpeg(textured_rgb(640, 480, seed=31), 90)
    ids = setup_catalog(client, keys, jpeg(textured_rgb(640, 480, seed=6), 92))
    old = [file_claim(client, keys, ids["order_id"], [photo_bytes]).json()]
    old.append(file_claim(client, keys, ids["order_id"], [jpeg(textured_rgb(
        640, 480, seed=32), 90), jpeg(textured_rgb(640, 480, seed=33), 90)]).json())
    run_jobs()
    with svc.db.read() as session:
        live = {r.key: r.meta for r in session.scalars(select(ReusePhoto))}
    assert len(live) == 3

    config = svc.db._alembic_config()
    command.downgrade(config, "0004")
    assert "reuse_photos" not in svc.db.table_names()
    svc.db.upgrade()
    with svc.db.read() as session:
        queued = session.scalars(select(Job).where(Job.kind == "backfill_reuse_index")).all()
        assert [(j.status, j.payload) for j in queued] == [("queued", {})]
        assert session.scalar(select(ReusePhoto.id).limit(1)) is None
    svc.reuse_index.close()  # this process's tables were of the dropped table

    monkeypatch.setattr(reuse, "BACKFILL_BATCH", 2)
    assert run_jobs() == 2  # three photos, two per run: the first run queued the second
    with svc.db.read() as session:
        rows = session.scalars(select(ReusePhoto)).all()
        analysed = {p.id: p.analyzed_at for p in session.scalars(select(ClaimPhoto))}
    assert {r.key: r.meta for r in rows} == live
    # stamped with the photo's analysis time (to the second), not the backfill's
    assert all(r.added_at == analysed[r.key].replace(microsecond=0) for r in rows)

    new = file_claim(client, keys, ids["order_id"], [jpeg(textured_rgb(640, 480, seed=31),
                                                          75)]).json()
    run_jobs()
    finding = reuse_finding(client, keys, new["id"])
    assert finding is not None and finding["details"]["other_meta"]["claim_id"] == old[0]["id"]

    # The foreground command finds nothing left to add.
    report = reuse.backfill_reuse_index(svc, limit=0)
    assert (report.examined, report.indexed, report.without_hashes) == (4, 0, 0)


def test_the_old_file_index_is_named_at_start_up_and_imported_by_the_cli(
        svc, settings, monkeypatch, capsys, caplog):
    legacy = Path(settings.data_dir) / LEGACY_REUSE_INDEX
    pixels = textured_rgb(320, 240, seed=41)
    with ReuseIndex.open(legacy) as file_index:
        file_index.add("pho_old", photo(jpeg(pixels, 90)),
                       meta={"claim_id": "clm_old", "merchant_id": "mer_x", "buyer": "b"})
        file_index.add("pho_older", photo(jpeg(textured_rgb(320, 240, seed=42), 90)))
    with caplog.at_level(logging.WARNING, logger="refundlens.claims.service"):
        open_service(settings).close()
    assert f"{legacy} is no longer read" in caplog.text
    assert "refundlens reuse import" in caplog.text

    monkeypatch.setenv("REFUNDLENS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("REFUNDLENS_DATABASE_URL", settings.database_url)
    assert main(["reuse", "import"]) == 0
    out = capsys.readouterr().out
    assert "2 photos, 2 added, 0 already indexed; 2 photos in the index" in out
    assert main(["reuse", "import", str(legacy)]) == 0
    assert "2 photos, 0 added, 2 already indexed" in capsys.readouterr().out
    [match] = svc.reuse_index.query(photo(jpeg(pixels, 60)))
    assert match.key == "pho_old" and match.meta["claim_id"] == "clm_old"

    assert main(["reuse", "backfill"]) == 0
    assert "0 analysed photos, 0 added" in capsys.readouterr().out
    assert main(["reuse", "import", str(legacy.parent / "nothing-here")]) == 2
    assert "no reuse.sqlite3 there" in capsys.readouterr().err
