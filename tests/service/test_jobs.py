"""The job queue's leasing and waking, on SQLite and PostgreSQL: which job a worker leases,
that an idle poll takes no write lock and reads no other kind's backlog, that two workers
never lease one job, and that a commit which queued jobs wakes the workers that run them
(and only those)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, Iterator

import pytest
from sqlalchemy import event, insert, select, update

from refundlens.jobs import CommitWaker, Worker, _release, enqueue, lease_job
from refundlens.store import Database
from refundlens.store.tables import Job, utcnow


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()


def _queue(db: Database, kind: str, **kwargs: Any) -> int:
    with db.write() as session:
        return enqueue(session, kind, payload={}, **kwargs)


def _backlog(db: Database, kind: str, count: int) -> None:
    """``count`` queued jobs of ``kind`` in one statement."""
    now = utcnow()
    with db.write() as session:
        session.execute(insert(Job), [{"kind": kind, "payload": {}, "run_after": now}
                                      for _ in range(count)])


def _write_transactions(db: Database) -> list[int]:
    """A counter of the write transactions ``db`` begins from now on (one list element
    each); the reads' engine is another one on SQLite, and the same one on PostgreSQL,
    where a transaction that writes nothing is told apart by what it executes."""
    begun: list[int] = []
    if db.is_sqlite:
        event.listen(db.engine, "begin", lambda conn: begun.append(1))
    else:
        event.listen(db.engine, "before_cursor_execute",
                     lambda conn, cursor, statement, *rest: begun.append(1)
                     if "FOR UPDATE" in statement or statement.startswith("UPDATE") else None)
    return begun


def test_a_worker_leases_the_job_due_longest_ago_of_its_kinds(db):
    late = _queue(db, "b")
    early = _queue(db, "a", run_after=utcnow() - timedelta(minutes=5))
    _queue(db, "c", run_after=utcnow() - timedelta(hours=1))  # due, but not its kind
    _queue(db, "a", run_after=utcnow() + timedelta(hours=1))  # its kind, not due
    first = lease_job(db, "w", kinds=("a", "b"))
    second = lease_job(db, "w", kinds=("a", "b"))
    assert (first.id, first.kind, second.id, second.kind) == (early, "a", late, "b")
    assert first.attempts == 1
    assert lease_job(db, "w", kinds=("a", "b")) is None


def test_an_expired_lease_is_taken_before_queued_jobs(db):
    _queue(db, "a", run_after=utcnow() - timedelta(hours=1))
    stuck = _queue(db, "a")
    with db.write() as session:
        session.execute(update(Job).where(Job.id == stuck).values(
            status="running", lease_owner="dead", attempts=1,
            lease_expires_at=utcnow() - timedelta(seconds=1)))
    taken = lease_job(db, "w", kinds=("a",))
    assert (taken.id, taken.owner, taken.attempts) == (stuck, "w", 2)


def test_an_idle_poll_beside_another_kinds_backlog_takes_no_write_lock(db):
    _backlog(db, "analyze_claim", 3000)
    begun = _write_transactions(db)
    assert lease_job(db, "light", kinds=("deliver_webhook", "expire_evidence")) is None
    assert begun == []
    assert lease_job(db, "heavy", kinds=("analyze_claim",)) is not None
    assert begun, "a lease is a write"


def test_a_kinds_oldest_due_job_is_found_by_index_not_by_reading_the_queue(db):
    """The lookup ``lease_job`` makes per kind reads ``ix_jobs_kind_ready`` in order and
    stops at the first row: no scan of the queue and no sort."""
    if not db.is_sqlite:
        pytest.skip("SQLite's plan is checked; PostgreSQL plans by statistics")
    jobs = Job.__table__
    query = select(jobs.c.id, jobs.c.run_after).where(
        jobs.c.status == "queued", jobs.c.run_after <= utcnow(),
        jobs.c.kind == "deliver_webhook").order_by(jobs.c.run_after, jobs.c.id).limit(1)
    sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as conn:
        plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    assert plan == ["SEARCH jobs USING COVERING INDEX ix_jobs_kind_ready "
                    "(kind=? AND status=? AND run_after<?)"], plan


def _queued(db: Database) -> int:
    with db.read() as session:
        return len(session.execute(select(Job.id).where(Job.status == "queued")).all())


def test_concurrent_workers_never_lease_one_job_twice_nor_come_back_empty(db):
    """Workers leasing at the same moment each get a different job, and none is told there
    is nothing while the queue still holds jobs (it would sleep a poll with work waiting)."""
    _backlog(db, "a", 120)
    barrier = threading.Barrier(4)

    def drain(i: int) -> tuple[list[int], int]:
        barrier.wait()
        taken = []
        while (ctx := lease_job(db, f"w{i}", kinds=("a",))) is not None:
            taken.append(ctx.id)
        return taken, _queued(db)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(drain, range(4)))
    leased = [job for taken, _ in results for job in taken]
    assert len(leased) == len(set(leased)) == 120
    assert [left for _, left in results] == [0, 0, 0, 0]


def test_a_released_job_keeps_its_place_in_the_queue(db):
    first = _queue(db, "a", run_after=utcnow() - timedelta(minutes=1))
    _queue(db, "a")
    ctx = lease_job(db, "w", kinds=("a",))
    assert ctx.id == first
    _release(db, ctx)  # its worker shut down mid-job
    assert lease_job(db, "w2", kinds=("a",)).id == first


def test_a_job_whose_every_worker_died_is_failed_not_run_again(db):
    """A job whose lease expired on each attempt (the photo kills or hangs whoever runs
    it) is failed when its attempts are used up, and reported, instead of taking down
    worker after worker for ever."""
    poison = _queue(db, "a", max_attempts=2)
    for attempt in (1, 2):
        ctx = lease_job(db, f"doomed-{attempt}", kinds=("a",), lease_s=30)
        assert (ctx.id, ctx.attempts, ctx.abandoned) == (poison, attempt, None)
        with db.write() as session:  # the worker dies: its lease runs out
            session.execute(update(Job).where(Job.id == poison).values(
                lease_expires_at=utcnow() - timedelta(seconds=1)))
    ran, failed = [], []
    worker = Worker(db, {"a": lambda ctx: ran.append(ctx.id)},
                    on_failed=lambda ctx, error: failed.append((ctx.id, error)))
    assert worker.run_until_idle() == 1
    assert ran == [] and [job for job, _ in failed] == [poison]
    assert "lease expired on each of its 2 attempts" in failed[0][1]
    with db.read() as session:
        job = session.get(Job, poison)
        assert (job.status, job.attempts, job.lease_owner) == ("failed", 2, None)
        assert job.last_error == failed[0][1]


def test_a_commit_that_queued_jobs_wakes_only_the_workers_that_run_them(db):
    woken: list[set[str]] = []
    waker = CommitWaker(db, woken.append)
    try:
        with db.write() as session:
            enqueue(session, "analyze_claim", payload={})
            enqueue(session, "deliver_webhook", payload={})
        assert woken == [{"analyze_claim", "deliver_webhook"}]
        with pytest.raises(RuntimeError), db.write() as session:
            enqueue(session, "analyze_claim", payload={})
            raise RuntimeError("rolled back")
        with db.write() as session:
            session.execute(select(Job.id)).all()  # a write that queues nothing
        assert woken == [{"analyze_claim", "deliver_webhook"}]
    finally:
        waker.close()
    _queue(db, "analyze_claim")
    assert len(woken) == 1, "closed: no more wakes"


def test_every_waker_on_a_database_is_woken(db):
    first: list[set[str]] = []
    second: list[set[str]] = []
    wakers = [CommitWaker(db, first.append), CommitWaker(db, second.append)]
    try:
        _queue(db, "a")
    finally:
        for waker in wakers:
            waker.close()
    assert first == second == [{"a"}]


def test_workers_are_woken_by_the_commit_not_by_their_poll(db):
    ran = threading.Event()
    light = Worker(db, {"deliver_webhook": lambda ctx: ran.set()}, poll_s=60)
    heavy = Worker(db, {"analyze_claim": lambda ctx: None}, poll_s=60)
    woken: list[str] = []

    def wake(kinds: set[str]) -> None:
        for name, worker in (("light", light), ("heavy", heavy)):
            if worker.kinds & kinds:
                woken.append(name)
                worker.wake()

    waker = CommitWaker(db, wake)
    light.start()
    heavy.start()
    try:
        time.sleep(0.5)  # past the workers' first poll, which finds nothing
        _queue(db, "deliver_webhook")
        assert ran.wait(10), "the light worker ran the job long before its 60 s poll"
        assert woken == ["light"]
    finally:
        waker.close()
        light.stop()
        heavy.stop()
