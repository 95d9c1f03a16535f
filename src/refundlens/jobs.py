"""Durable jobs: rows in the database, leased by workers, retried with backoff.

A job is ``queued`` until a worker leases it (``running``, with an owner and a lease
expiry), then ``done`` — or back to ``queued`` with a delay after a failure, and ``failed``
for good after ``max_attempts``. While a handler runs, its worker's heartbeat thread
renews the lease every third of its length, so a lease can be short (``REFUNDLENS_JOB_LEASE_S``,
30 s by default) however long the job takes. A worker that dies (SIGKILL, power cut) simply
stops renewing: when the lease expires any worker takes the job again. Handlers therefore run
*at least once* and must be idempotent; they make their result and the job's completion
one transaction with :meth:`JobContext.complete`, which also checks the lease is still
theirs, so a late duplicate cannot overwrite a newer result.

The in-process :class:`Worker` runs handler threads inside ``refundlens serve``; the same
class runs in a separate ``refundlens worker`` process. A write transaction that queues jobs
wakes the in-process workers that run those kinds once it commits (:class:`CommitWaker`);
workers elsewhere find them at their next poll (every half second).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from .store.db import Database
from .store.tables import Job, utcnow

__all__ = ["CommitWaker", "JobContext", "LeaseLost", "Worker", "enqueue", "lease_job",
           "retry_delay"]

log = logging.getLogger(__name__)

#: The lease length when none is given (``Settings.job_lease_s`` in the service).
DEFAULT_LEASE_S = 30.0


class LeaseLost(Exception):
    """The job's lease expired and another worker took it; this run's result is dropped."""


_INSERT_JOB = insert(Job.__table__)


def enqueue(session: Session, kind: str, *, claim_id: str | None = None,
            payload: Mapping[str, Any] | None = None, run_after: datetime | None = None,
            max_attempts: int = 5) -> int:
    """Add a job in ``session``'s transaction and return its id: it exists exactly when
    the change that asked for it is committed. (A Core insert on the session's
    connection: every claim queues one.)"""
    result = session.connection().execute(_INSERT_JOB, {
        "kind": kind, "claim_id": claim_id, "payload": dict(payload or {}),
        "run_after": run_after or utcnow(), "max_attempts": max_attempts})
    session.info.setdefault(_ENQUEUED, set()).add(kind)
    return int(result.inserted_primary_key[0])


#: ``session.info`` key: the kinds of the jobs a write transaction queued
_ENQUEUED = "refundlens.enqueued"


class CommitWaker:
    """Calls ``wake(kinds)`` after each write transaction of ``db`` that queued jobs, with
    their kinds, so in-process workers look at once (and only those that run such jobs);
    :meth:`close` stops it. Nothing has to remember to wake anyone."""

    def __init__(self, db: Database, wake: Callable[[set[str]], None]) -> None:
        self._db, self._wake = db, wake
        db.after_commit(self._committed)

    def _committed(self, session: Session) -> None:
        kinds = session.info.get(_ENQUEUED)  # every waker sees them (one session, one commit)
        if kinds:
            self._wake(kinds)

    def close(self) -> None:
        self._db.remove_after_commit(self._committed)


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: 2, 4, 8 … seconds, at most 5 minutes."""
    return timedelta(seconds=min(300, 2 ** max(1, attempts)))


@dataclass
class JobContext:
    """What a handler gets: the job's fields and a way to finish it atomically."""

    db: Database
    id: int
    kind: str
    claim_id: str | None
    payload: dict[str, Any]
    attempts: int
    owner: str
    lease_s: float = DEFAULT_LEASE_S
    completed: bool = False
    #: set when the lease found the job's attempts used up by workers that died running it:
    #: the job is failed already and must not run (the worker reports the failure)
    abandoned: str | None = None

    def complete(self, session: Session) -> None:
        """Mark the job done inside ``session``'s transaction (the handler's result).

        Raises:
            LeaseLost: the lease is no longer this worker's; the transaction must roll back.
        """
        done = session.execute(
            update(Job).where(Job.id == self.id, Job.lease_owner == self.owner,
                              Job.status == "running")
            .values(status="done", finished_at=utcnow(), lease_expires_at=None,
                    last_error=None))
        if done.rowcount != 1:
            raise LeaseLost(f"job {self.id}: lease lost to another worker")
        self.completed = True

    def renew(self, lease_s: float | None = None) -> None:
        """Extend the lease now (the worker's heartbeat does this on its own)."""
        seconds = self.lease_s if lease_s is None else lease_s
        with self.db.write() as session:
            renewed = session.execute(
                update(Job).where(Job.id == self.id, Job.lease_owner == self.owner,
                                  Job.status == "running")
                .values(lease_expires_at=utcnow() + timedelta(seconds=seconds)))
            if renewed.rowcount != 1:
                raise LeaseLost(f"job {self.id}: lease lost to another worker")


_JOBS = Job.__table__


def lease_job(db: Database, owner: str, *, kinds: tuple[str, ...] | None = None,
              lease_s: float = DEFAULT_LEASE_S) -> JobContext | None:
    """Lease a ready job of ``kinds`` (any kind when None): one whose lease expired (its
    worker died) first, else the queued job due longest ago.

    The candidates are looked for in a read transaction, by index, so an idle worker's
    poll neither takes SQLite's write lock nor reads jobs of kinds it does not run (the
    light worker polls twice a second beside a backlog of analysis jobs that intake can
    grow by thousands a minute). Each candidate is then leased in a write transaction
    that checks it is still ready; one another worker took meanwhile is passed over.
    """
    for _ in range(5):  # every candidate taken by other workers meanwhile: look again
        now = utcnow()
        with db.read_rows() as conn:
            candidates = _candidates(conn, kinds, now)
        if not candidates:
            return None
        for job_id in candidates:
            ctx = _take(db, job_id, owner, lease_s)
            if ctx is not None:
                return ctx
    return None


#: Candidates looked up per kind: enough that workers leasing at the same moment, each
#: passing over the jobs the others took, still find one.
_PER_KIND = 8


def _candidates(conn: Connection, kinds: tuple[str, ...] | None, now: datetime) -> list[int]:
    """Ready job ids, best first: expired leases, then the due jobs of every kind, longest
    due first (each kind's by one ``ix_jobs_kind_ready`` range read)."""
    expired = select(_JOBS.c.id).where(_JOBS.c.status == "running",
                                       _JOBS.c.lease_expires_at < now)
    if kinds:
        expired = expired.where(_JOBS.c.kind.in_(kinds))
    ids = list(conn.execute(expired.order_by(_JOBS.c.id).limit(_PER_KIND)).scalars())
    due = []
    for kind in kinds or (None,):
        query = select(_JOBS.c.id, _JOBS.c.run_after).where(_JOBS.c.status == "queued",
                                                            _JOBS.c.run_after <= now)
        if kind is not None:
            query = query.where(_JOBS.c.kind == kind)
        due += conn.execute(query.order_by(_JOBS.c.run_after, _JOBS.c.id)
                            .limit(_PER_KIND)).all()
    return ids + [row.id for row in sorted(due, key=lambda r: (r.run_after, r.id))]


def _take(db: Database, job_id: int, owner: str, lease_s: float) -> JobContext | None:
    """Lease job ``job_id`` if it is still ready."""
    now = utcnow()
    with db.write() as session:
        ready = or_(Job.status == "queued",
                    (Job.status == "running") & (Job.lease_expires_at < now))
        job = session.execute(select(Job).where(Job.id == job_id, ready, Job.run_after <= now)
                              .with_for_update(skip_locked=True)).scalar_one_or_none()
        if job is None:
            return None
        if job.status == "running":
            if job.attempts >= job.max_attempts:
                # every worker that ran it died or hung (a photo that crashes or exhausts
                # its process?): running it again would only take the next one down
                error = (f"job {job.id} ({job.kind}): its lease expired on each of its "
                         f"{job.attempts} attempts (the worker running it died or hung); "
                         f"given up")
                log.error("%s", error)
                job.status, job.finished_at, job.last_error = "failed", now, error
                job.lease_owner, job.lease_expires_at = None, None
                return JobContext(db, job.id, job.kind, job.claim_id, dict(job.payload),
                                  job.attempts, owner, lease_s, abandoned=error)
            log.warning("job %s (%s): lease of %s expired; taking it over", job.id, job.kind,
                        job.lease_owner)
        job.status, job.lease_owner = "running", owner
        job.lease_expires_at = now + timedelta(seconds=lease_s)
        job.attempts += 1
        return JobContext(db, job.id, job.kind, job.claim_id, dict(job.payload), job.attempts,
                          owner, lease_s)


def _release(db: Database, ctx: JobContext) -> None:
    """Put a job this worker is giving up (it is shutting down) back in the queue, where
    it was (it was due when leased): not a failure of the job."""
    with db.write() as session:
        session.execute(
            update(Job).where(Job.id == ctx.id, Job.lease_owner == ctx.owner,
                              Job.status == "running")
            .values(status="queued", lease_owner=None, lease_expires_at=None))


def _fail(db: Database, ctx: JobContext, error: str) -> None:
    with db.write() as session:
        job = session.get(Job, ctx.id)
        if job is None or job.lease_owner != ctx.owner or job.status != "running":
            return
        job.last_error = error[-4000:]
        job.lease_owner, job.lease_expires_at = None, None
        if job.attempts >= job.max_attempts:
            job.status, job.finished_at = "failed", utcnow()
        else:
            job.status, job.run_after = "queued", utcnow() + retry_delay(job.attempts)


Handler = Callable[[JobContext], None]


class Worker:
    """Threads that lease jobs and run their handlers until :meth:`stop`, and a heartbeat
    thread that renews the leases of the jobs they are running.

    Args:
        handlers: job kind → handler. A handler should call ``ctx.complete(session)`` in
            the transaction that stores its result; if it returns without doing so, the
            job is completed on its own.
        on_failed: called with the context when a job has failed for good (e.g. to route
            the claim to a person), in its own transaction.
        lease_s: how long a lease lasts; renewed every ``lease_s / 3`` while the job runs.
    """

    def __init__(self, db: Database, handlers: Mapping[str, Handler], *, threads: int = 1,
                 poll_s: float = 0.5, lease_s: float = DEFAULT_LEASE_S,
                 on_failed: Callable[[JobContext, str], None] | None = None,
                 name: str | None = None) -> None:
        self.db = db
        self.handlers = dict(handlers)
        self.threads = threads
        self.poll_s = poll_s
        self.lease_s = lease_s
        self.on_failed = on_failed
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, str] = {}  # job id → lease owner, for the heartbeat
        self._running_lock = threading.Lock()

    def start(self) -> None:
        for i in range(self.threads):
            thread = threading.Thread(target=self._loop, args=(f"{self.name}/{i}",),
                                      name=f"refundlens-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        heartbeat = threading.Thread(target=self._heartbeat, name="refundlens-worker-heartbeat",
                                     daemon=True)
        heartbeat.start()
        self._threads.append(heartbeat)

    @property
    def kinds(self) -> frozenset[str]:
        """The job kinds this worker runs."""
        return frozenset(self.handlers)

    def wake(self) -> None:
        """New work was committed: look now rather than at the next poll."""
        self._wake.set()

    def request_stop(self) -> None:
        """Lease no more jobs; a job that fails from now on is put back, not failed (its
        handler was most likely cut short by the shutdown itself)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self.request_stop()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def run_until_idle(self, *, max_jobs: int = 10_000) -> int:
        """Run jobs in this thread until none is ready; returns how many ran (tests, CLI)."""
        ran = 0
        while ran < max_jobs:
            ctx = lease_job(self.db, f"{self.name}/sync", kinds=tuple(self.handlers),
                            lease_s=self.lease_s)
            if ctx is None:
                return ran
            self._run(ctx)
            ran += 1
        return ran

    def _loop(self, owner: str) -> None:
        while not self._stop.is_set():
            try:
                ctx = lease_job(self.db, owner, kinds=tuple(self.handlers),
                                lease_s=self.lease_s)
            except Exception:  # noqa: BLE001 - the database may be restarting; keep polling
                log.exception("worker %s: leasing failed", owner)
                ctx = None
            if ctx is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self._run(ctx)

    def _heartbeat(self) -> None:
        """Renew the leases of the running jobs every third of a lease, in one write."""
        while not self._stop.wait(self.lease_s / 3):
            with self._running_lock:
                running = dict(self._running)
            if not running:
                continue
            try:
                with self.db.write() as session:
                    session.execute(
                        update(Job).where(Job.id.in_(running), Job.status == "running",
                                          Job.lease_owner.in_(set(running.values())))
                        .values(lease_expires_at=utcnow() + timedelta(seconds=self.lease_s)))
            except Exception:  # noqa: BLE001 - retried at the next beat; the lease has slack
                log.exception("worker %s: renewing leases failed", self.name)

    def _run(self, ctx: JobContext) -> None:
        if ctx.abandoned is not None:
            if self.on_failed is not None:
                try:
                    self.on_failed(ctx, ctx.abandoned)
                except Exception:  # noqa: BLE001 - the job is failed; its follow-up logged
                    log.exception("job %s: reporting its failure failed", ctx.id)
            return
        with self._running_lock:
            self._running[ctx.id] = ctx.owner
        try:
            self._run_handler(ctx)
        finally:
            with self._running_lock:
                self._running.pop(ctx.id, None)

    def _run_handler(self, ctx: JobContext) -> None:
        handler = self.handlers[ctx.kind]
        try:
            handler(ctx)
            if not ctx.completed:
                with self.db.write() as session:
                    ctx.complete(session)
        except LeaseLost as exc:
            log.warning("%s", exc)
        except Exception as exc:  # noqa: BLE001 - a failing job is recorded and retried
            if self._stop.is_set():
                log.info("job %s (%s) interrupted by the shutdown (%s); put back", ctx.id,
                         ctx.kind, exc)
                try:
                    _release(self.db, ctx)
                except Exception:  # noqa: BLE001 - the lease will expire and the job rerun
                    log.exception("job %s: putting it back failed", ctx.id)
                return
            error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
            log.warning("job %s (%s) attempt %s failed: %s", ctx.id, ctx.kind, ctx.attempts,
                        exc)
            try:
                _fail(self.db, ctx, error)
                if ctx.attempts >= self._max_attempts(ctx) and self.on_failed is not None:
                    self.on_failed(ctx, error)
            except Exception:  # noqa: BLE001 - the lease will expire and the job rerun
                log.exception("job %s: recording the failure failed", ctx.id)

    def _max_attempts(self, ctx: JobContext) -> int:
        with self.db.read() as session:
            job = session.get(Job, ctx.id)
            return job.max_attempts if job is not None else 0
