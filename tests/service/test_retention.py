"""The blob sweep: blobs no row names go after a grace period; every blob a row names stays,
including one a request stores again while the sweep runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import jpeg, textured_rgb
from refundlens.claims.retention import SWEEP_INTERVAL, schedule_sweep, sweep_blobs
from refundlens.errors import InvalidInput
from refundlens.store.blobs import BlobStore
from refundlens.store.tables import AuditEvent, Job, utcnow
from test_api_flow import file_claim, setup_catalog

VIDEO = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(2000)


def _age(path: Path, days: float = 2) -> None:
    then = time.time() - days * 86400
    os.utime(path, (then, then))


def _age_all(store: BlobStore) -> list[str]:
    names = []
    for path in store.root.rglob("*"):
        if path.is_file():
            _age(path)
            names.append(path.name)
    return names


def test_unreferenced_old_blobs_go_and_every_referenced_kind_stays(client, keys, svc,
                                                                   run_jobs):
    reference = textured_rgb(480, 360, seed=3)
    ids = setup_catalog(client, keys, jpeg(reference, 92))
    shipping = client.post(f"/api/v1/orders/{ids['order_id']}/shipping-evidence",
                           files={"file": ("pack.jpg", jpeg(textured_rgb(320, 240, seed=8)),
                                           "image/jpeg")}, headers=keys.admin)
    assert shipping.status_code == 201, shipping.text
    claim = file_claim(client, keys, ids["order_id"], [jpeg(textured_rgb(480, 360, seed=4))])
    claim_id = claim.json()["id"]
    response = client.post(f"/api/v1/claims/{claim_id}/responses", data={"text": "video"},
                           files=[("files", ("pack.mp4", VIDEO, "video/mp4"))],
                           headers=keys.merchant(ids["merchant_id"]))
    assert response.status_code == 201, response.text
    run_jobs()
    orphan = svc.blobs.put(b"left by a request that failed after storing it")
    young_orphan = svc.blobs.put(b"stored a minute ago by a request still in flight")
    stray_tmp = svc.blobs.path(orphan).with_name(".tmp-killed-writer")
    stray_tmp.write_bytes(b"half")

    referenced = set(_age_all(svc.blobs)) - {orphan, young_orphan, stray_tmp.name}
    os.utime(svc.blobs.path(young_orphan))
    assert len(referenced) >= 4  # reference, shipping photo, claim photo, video (+ masks)

    report = sweep_blobs(svc)
    assert report.removed == 1 and report.kept_in_use == len(referenced)
    assert not svc.blobs.exists(orphan) and not stray_tmp.exists()
    assert svc.blobs.exists(young_orphan)
    assert all(svc.blobs.exists(sha) for sha in referenced)
    detail = client.get(f"/api/v1/claims/{claim_id}", headers=keys.reviewer).json()
    for url in [p["url"] for p in detail["photos"]] + \
            [f["url"] for f in detail["merchant_responses"][0]["files"]]:
        assert client.get(url, headers=keys.reviewer).status_code == 200, url
    with svc.db.read() as session:
        event = session.execute(select(AuditEvent).where(
            AuditEvent.action == "blobs_swept")).scalar_one()
    assert event.data["removed"] == 1 and event.data["grace_hours"] == 24


def test_a_blob_stored_again_while_the_sweep_looks_is_kept(svc):
    """The race the design guards against: the sweep has found an old blob no row names;
    before it deletes it, a request stores the same bytes and commits a row naming it."""
    data = b"the same photo, uploaded again"
    sha = svc.blobs.put(data)
    _age(svc.blobs.path(sha))

    def in_use(shas: list[str]) -> set[str]:
        assert shas == [sha]
        svc.blobs.put(data, sha256=sha)  # the request's put: the blob is there, refreshed
        return set()  # its row is committed only after the sweep looked

    report = svc.blobs.sweep(in_use, grace_s=86400)
    assert report.removed == 0
    assert svc.blobs.get(sha) == data
    assert not list(svc.blobs.root.rglob(".sweep-*"))


def test_a_put_after_the_sweep_set_a_blob_aside_writes_a_new_copy(svc, monkeypatch):
    from refundlens.store import blobs as blobs_module

    data = b"photo stored while the sweep holds it aside"
    sha = svc.blobs.put(data)
    _age(svc.blobs.path(sha))
    real_rename = os.rename

    def rename_then_put(src: Any, dst: Any) -> None:
        real_rename(src, dst)
        if Path(dst).name.startswith(".sweep-"):
            svc.blobs.put(data, sha256=sha)  # finds nothing under the name: writes anew

    monkeypatch.setattr(blobs_module.os, "rename", rename_then_put)
    report = svc.blobs.sweep(lambda shas: set(), grace_s=86400)
    assert report.removed == 1  # the old copy; the new one is in place
    assert svc.blobs.get(sha) == data


def test_the_grace_period_has_a_floor(svc):
    with pytest.raises(InvalidInput, match="at least 10 minutes"):
        sweep_blobs(svc, grace=timedelta(minutes=1))


def test_the_service_keeps_one_sweep_job_that_requeues_itself(svc, run_jobs):
    schedule_sweep(svc)
    schedule_sweep(svc)  # a second server starting: still one
    with svc.db.write() as session:
        jobs = session.execute(select(Job).where(Job.kind == "sweep_blobs")).scalars().all()
        assert len(jobs) == 1 and jobs[0].status == "queued"
        jobs[0].run_after = utcnow()
    orphan = svc.blobs.put(b"orphan")
    _age(svc.blobs.path(orphan))
    assert run_jobs() == 1
    assert not svc.blobs.exists(orphan)
    with svc.db.read() as session:
        jobs = session.execute(select(Job).where(Job.kind == "sweep_blobs")
                               .order_by(Job.id)).scalars().all()
    assert [j.status for j in jobs] == ["done", "queued"]
    wait = jobs[1].run_after - utcnow()
    assert SWEEP_INTERVAL - timedelta(minutes=1) < wait <= SWEEP_INTERVAL


def test_the_cli_sweeps(svc, settings):
    orphan = svc.blobs.put(b"orphan for the cli")
    _age(svc.blobs.path(orphan))
    env = {**os.environ, "REFUNDLENS_DATA_DIR": str(settings.data_dir),
           "REFUNDLENS_DATABASE_URL": settings.database_url or ""}
    refundlens = Path(sys.executable).with_name("refundlens")
    done = subprocess.run([str(refundlens), "blobs", "sweep", "--grace-hours", "12"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 removed" in done.stdout
    assert not svc.blobs.exists(orphan)
    refused = subprocess.run([str(refundlens), "blobs", "sweep", "--grace-hours", "0.01"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "at least 10 minutes" in refused.stderr
