"""Durability (issue 3 §3): a real ``refundlens serve`` process, killed with SIGKILL while it
analyses claims, loses nothing; restarted, it finishes every job exactly once in effect.
Stopped with SIGTERM mid-analysis it puts the job back (no failed attempt) and leaves no
analysis process behind; SIGKILLed alone, its analysis process dies with it, and so do its
API processes (``--api-processes N``).

Also the lease mechanics the recovery rests on: a live worker's heartbeat keeps a long job's
lease, a dead worker's lease runs out and another worker takes the job over, and a late
result from the dead lease cannot overwrite the new one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from conftest import jpeg, textured_rgb
from serving import Server
from refundlens.jobs import JobContext, LeaseLost, Worker, enqueue, lease_job
from refundlens.store import Database
from refundlens.store.tables import AuditEvent, Claim, ClaimPhoto, Job

REFUNDLENS = Path(sys.executable).with_name("refundlens")
CLAIMS = 6
LEASE_S = 3  # the restarted server takes the killed job over this long after the kill


# --- lease mechanics (in-process) ----------------------------------------------------------

@pytest.fixture
def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite:///{tmp_path / 'jobs.db'}")
    database.upgrade()
    yield database
    database.dispose()


def _queue(db: Database, kind: str = "slow") -> int:
    with db.write() as session:
        return enqueue(session, kind, payload={})


def _job(db: Database, job_id: int) -> Job:
    with db.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_the_heartbeat_keeps_a_long_jobs_lease(db):
    job_id = _queue(db)
    started, release = threading.Event(), threading.Event()

    def slow(ctx: JobContext) -> None:
        started.set()
        release.wait(10)

    worker = Worker(db, {"slow": slow}, lease_s=0.6, poll_s=0.05)
    worker.start()
    try:
        assert started.wait(5)
        time.sleep(1.5)  # well past the first lease: only renewals keep it
        assert lease_job(db, "other-worker", lease_s=0.6) is None
        job = _job(db, job_id)
        assert job.status == "running" and job.attempts == 1
    finally:
        release.set()
        worker.stop()
    job = _job(db, job_id)
    assert job.status == "done" and job.attempts == 1


def test_a_dead_workers_job_is_taken_over_and_its_late_result_dropped(db):
    job_id = _queue(db)
    dead = lease_job(db, "dead-host:1:abc/0", lease_s=0.3)  # leased, then never renewed
    assert dead is not None and dead.id == job_id
    assert lease_job(db, "other-worker", lease_s=0.3) is None  # still leased
    time.sleep(0.4)
    taken = lease_job(db, "other-worker", lease_s=30)
    assert taken is not None and taken.id == job_id and taken.attempts == 2
    with pytest.raises(LeaseLost), db.write() as session:
        dead.complete(session)  # the dead worker's late result: refused, rolled back
    with db.write() as session:
        taken.complete(session)
    job = _job(db, job_id)
    assert job.status == "done" and job.lease_owner == "other-worker"


# --- a real server, a real kill ------------------------------------------------------------

def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REFUNDLENS), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _engine(url: str) -> Engine:
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def _jobs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(Job.id, Job.status, Job.attempts, Job.claim_id, Job.kind,
                                   Job.last_error)).all()


def _finished(job: Any) -> bool:
    """Done — or waiting for its time: an evidence request's deadline (days ahead), the
    next blob sweep (hours ahead)."""
    return job.status == "done" or (job.kind in ("expire_evidence", "sweep_blobs")
                                    and job.status == "queued")


@pytest.mark.slow
def test_sigkill_mid_analysis_loses_nothing_and_every_job_finishes(tmp_path, database_url):
    data_dir = tmp_path / "data"
    env = {**os.environ, "REFUNDLENS_DATA_DIR": str(data_dir),
           "REFUNDLENS_DATABASE_URL": database_url, "REFUNDLENS_ANALYSIS_WORKERS": "1",
           "REFUNDLENS_JOB_LEASE_S": str(LEASE_S)}
    created = _cli(env, "keys", "create", "--role", "admin")
    assert created.returncode == 0, created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}
    server = Server(env, tmp_path / "serve.log")
    engine = _engine(database_url)
    try:
        server.start()
        http = httpx.Client(base_url=server.url, headers=headers, timeout=30)
        merchant = http.post("/api/v1/merchants", json={"name": "耐久测试店"}).json()["id"]
        product = http.post(f"/api/v1/merchants/{merchant}/products",
                            json={"sku": "CUP-1", "name": "Cup"}).json()["id"]
        reference = textured_rgb(1024, 768, seed=5)
        ref = http.post(f"/api/v1/products/{product}/references",
                        files={"file": ("listing.jpg", jpeg(reference, 92), "image/jpeg")})
        assert ref.status_code == 201, ref.text
        order = http.post("/api/v1/orders", json={
            "merchant_id": merchant, "buyer_id": "buyer-7", "amount": "300.00",
            "items": [{"sku": "CUP-1", "quantity": 1}],
            "shipped_at": "2026-11-01T10:00:00+08:00",
            "delivered_at": "2026-11-03T10:00:00+08:00"})
        assert order.status_code == 201, order.text
        claim_ids, photo_count = [], 0
        for i in range(CLAIMS):
            photos = [jpeg(textured_rgb(1024, 768, seed=100 + 3 * i + k), 88)
                      for k in range(2 + i % 2)]
            photo_count += len(photos)
            response = http.post("/api/v1/claims", data={
                "order_id": order.json()["id"], "type": "refund_only", "reason": "杯子裂了",
                "amount": "30.00"},
                files=[("photos", (f"p{k}.jpg", p, "image/jpeg")) for k, p in enumerate(photos)])
            assert response.status_code == 202, response.text
            claim_ids.append(response.json()["id"])

        # Kill while a job runs, ideally after one has finished (done jobs must stay done).
        def mid_analysis() -> bool:
            statuses = [j.status for j in _jobs(engine) if j.kind == "analyze_claim"]
            return "running" in statuses and "done" in statuses
        _wait_for("an analysis job running after one finished", mid_analysis, timeout=60)
        server.kill()
        killed = {j.id for j in _jobs(engine) if j.status == "running"}
        done_before = {j.id for j in _jobs(engine) if j.status == "done"}
        assert killed, "the kill came after every job had finished"

        # Straight from the database: every claim, every photo row, every blob.
        with engine.connect() as conn:
            claims = conn.execute(select(Claim.id, Claim.status)).all()
            photos = conn.execute(select(ClaimPhoto.claim_id, ClaimPhoto.sha256)).all()
        assert sorted(c.id for c in claims) == sorted(claim_ids)
        assert len(photos) == photo_count
        for photo in photos:
            blob = data_dir / "blobs" / photo.sha256[:2] / photo.sha256[2:4] / photo.sha256
            assert blob.is_file(), f"blob of a photo of {photo.claim_id} is missing"
        assert any(c.status == "analyzing" for c in claims)

        http.close()
        server.start()  # on a new port
        http = httpx.Client(base_url=server.url, headers=headers, timeout=30)

        def all_finished() -> bool:
            with engine.connect() as conn:
                open_claims = conn.execute(select(func.count()).select_from(Claim).where(
                    Claim.status.in_(("submitted", "analyzing")))).scalar_one()
            return open_claims == 0 and all(j.status in ("done", "failed") or _finished(j)
                                            for j in _jobs(engine))
        _wait_for("every claim analysed and every job finished after the restart",
                  all_finished, timeout=90)
        jobs = {j.id: j for j in _jobs(engine)}
        failed = [(j.id, j.kind, j.status, j.last_error) for j in jobs.values()
                  if not _finished(j)]
        assert not failed, failed
        for job_id in killed:
            assert jobs[job_id].attempts >= 2, "the killed job was not run again"
        for job_id in done_before:
            assert jobs[job_id].attempts == 1, "a finished job ran again after the restart"

        with engine.connect() as conn:
            events = conn.execute(select(AuditEvent.claim_id, AuditEvent.action,
                                         AuditEvent.data)).all()
            unanalysed = conn.execute(select(func.count()).select_from(ClaimPhoto).where(
                ClaimPhoto.analyzed_at.is_(None))).scalar_one()
        assert unanalysed == 0
        for claim_id in claim_ids:
            actions = [e.action for e in events if e.claim_id == claim_id]
            assert actions.count("claim_submitted") == 1
            # one analysis round per claim (no evidence was submitted): one result, kept
            # once, however many times the job ran
            assert actions.count("analysis_completed") == 1, (claim_id, actions)
            to_analyzing = [e for e in events if e.claim_id == claim_id and
                            e.action == "status_changed" and e.data.get("to") == "analyzing"]
            assert len(to_analyzing) == 1, (claim_id, actions)
            detail = http.get(f"/api/v1/claims/{claim_id}")
            assert detail.status_code == 200, detail.text
            body = detail.json()
            assert body["status"] in ("auto_approved", "evidence_requested", "in_review")
            assert body["route"] == body["status"] and body["risk"]["level"]
            assert [p["status"] for p in body["photos"]] == ["ok"] * len(body["photos"])
        http.close()
    finally:
        server.stop()
        engine.dispose()

    verify = _cli(env, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "intact" in verify.stdout


# --- stopping: no analysis process left behind ---------------------------------------------

def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _analysing_server(tmp_path: Path) -> tuple[Server, Engine, list[int]]:
    """A SQLite server that is analysing a claim, and the pids of its child processes (the
    analysis process and multiprocessing's resource tracker)."""
    data_dir = tmp_path / "data"
    env = {**os.environ, "REFUNDLENS_DATA_DIR": str(data_dir),
           "REFUNDLENS_ANALYSIS_WORKERS": "1", "REFUNDLENS_JOB_LEASE_S": str(LEASE_S)}
    env.pop("REFUNDLENS_DATABASE_URL", None)
    token = _cli(env, "keys", "create", "--role", "admin").stdout.strip().splitlines()[-1]
    server = Server(env, tmp_path / "serve.log")
    server.start()
    engine = _engine(f"sqlite:///{data_dir / 'refundlens.db'}")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as http:
        merchant = http.post("/api/v1/merchants", json={"name": "m"}).json()["id"]
        order = http.post("/api/v1/orders", json={
            "merchant_id": merchant, "buyer_id": "b", "amount": "10.00"}).json()["id"]
        for i in range(3):
            response = http.post("/api/v1/claims", data={
                "order_id": order, "type": "refund_only", "amount": "1.00"},
                files=[("photos", (f"p{k}.jpg", jpeg(textured_rgb(1600, 1200, seed=9 * i + k),
                                                      90), "image/jpeg")) for k in range(3)])
            assert response.status_code == 202, response.text
    assert server.proc is not None

    def analysing() -> bool:
        return any(j.status == "running" for j in _jobs(engine)) and \
            bool(_children(server.proc.pid))  # type: ignore[union-attr]
    _wait_for("an analysis job running in an analysis process", analysing, timeout=60)
    time.sleep(0.5)  # into the analysis itself
    return server, engine, _children(server.proc.pid)


@pytest.mark.slow
def test_sigterm_mid_analysis_puts_the_job_back_and_leaves_no_process(tmp_path):
    server, engine, children = _analysing_server(tmp_path)
    try:
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGTERM)  # as a service manager or Ctrl-C does
        server.proc.wait(30)
        _wait_for("the analysis processes to end", lambda: not any(map(_alive, children)),
                  timeout=10)
        jobs = _jobs(engine)
        assert not [j for j in jobs if j.status in ("running", "failed")], jobs
        assert all(j.last_error is None for j in jobs), jobs  # put back, not failed
    finally:
        server.stop()
        engine.dispose()


@pytest.mark.slow
def test_a_sigkilled_server_takes_its_analysis_process_with_it(tmp_path):
    server, engine, children = _analysing_server(tmp_path)
    try:
        assert server.proc is not None
        server.proc.kill()  # the server alone (the OOM killer, kill -9 PID), not its group
        server.proc.wait(10)
        _wait_for("the analysis processes to die with the server",
                  lambda: not any(map(_alive, children)), timeout=10)
    finally:
        server.stop()
        for pid in children:  # never leave them behind, even when the test fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        engine.dispose()


@pytest.mark.slow
def test_api_processes_share_the_port_and_die_with_the_server(tmp_path):
    """``serve --api-processes 2``: two processes answer on the port, the serving process's
    workers analyse what they accept, and a SIGKILL of the serving process alone ends
    them all (none keeps the port)."""
    data_dir = tmp_path / "data"
    env = {**os.environ, "REFUNDLENS_DATA_DIR": str(data_dir),
           "REFUNDLENS_ANALYSIS_WORKERS": "1"}
    env.pop("REFUNDLENS_DATABASE_URL", None)
    token = _cli(env, "keys", "create", "--role", "admin").stdout.strip().splitlines()[-1]
    server = Server(env, tmp_path / "serve.log", "--api-processes", "2")
    server.start()
    everyone: list[int] = []
    try:
        assert server.proc is not None
        api = [pid for pid in _children(server.proc.pid)
               if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(api) == 2, api
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                          timeout=30) as http:
            merchant = http.post("/api/v1/merchants", json={"name": "m"}).json()["id"]
            order = http.post("/api/v1/orders", json={
                "merchant_id": merchant, "buyer_id": "b", "amount": "10.00"}).json()["id"]
            ids = []
            for i in range(4):  # new connections: the kernel hands them to either process
                with httpx.Client(base_url=server.url, timeout=30,
                                  headers={"Authorization": f"Bearer {token}"}) as fresh:
                    response = fresh.post("/api/v1/claims", data={
                        "order_id": order, "type": "refund_only", "amount": "1.00"},
                        files=[("photos", ("p.jpg", jpeg(textured_rgb(320, 240, seed=i)),
                                           "image/jpeg"))])
                assert response.status_code == 202, response.text
                ids.append(response.json()["id"])

            def analysed() -> bool:
                return all(http.get(f"/api/v1/claims/{i}").json()["status"] not in
                           ("submitted", "analyzing") for i in ids)
            _wait_for("the serving process's workers to analyse every claim", analysed,
                      timeout=90)
        everyone = _children(server.proc.pid)
        server.proc.kill()  # the serving process alone
        server.proc.wait(10)
        _wait_for("the API and analysis processes to die with the server",
                  lambda: not any(map(_alive, everyone)), timeout=10)
        with socket.socket() as s:  # nobody holds the port any more
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    finally:
        server.stop()
        for pid in everyone:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
