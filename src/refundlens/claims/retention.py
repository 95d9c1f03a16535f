"""Retention: blobs that no row names are swept, on a schedule and from the CLI.

Uploads reach the blob store before the rows that name them are committed (a crash
in between must not leave a row without its photo), so a request that fails after storing,
or a process killed there, leaves a blob behind that nothing names. The sweep removes those
once they are older than a grace period; see :meth:`refundlens.store.blobs.BlobStore.sweep`
for why it is safe against requests storing the same bytes while it runs.

The service keeps one ``sweep_blobs`` job in the queue: each run sweeps and queues the next
one :data:`SWEEP_INTERVAL` later; ``refundlens blobs sweep`` runs one now.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from ..errors import InvalidInput
from ..jobs import JobContext, enqueue
from ..store.blobs import SweepReport
from ..store.tables import (ClaimPhoto, Job, MerchantResponse, ReferencePhoto,
                            ShippingEvidence, utcnow)
from .audit import append_event
from .service import Service

__all__ = ["DEFAULT_GRACE", "SWEEP_INTERVAL", "blobs_in_use", "handle_sweep_blobs",
           "schedule_sweep", "sweep_blobs"]

log = logging.getLogger(__name__)

#: A blob younger than this is never swept: far longer than any request takes.
DEFAULT_GRACE = timedelta(hours=24)
#: How often the service sweeps.
SWEEP_INTERVAL = timedelta(hours=6)

#: The columns that name blobs (merchant responses name theirs in a JSON list).
_BLOB_COLUMNS = (ClaimPhoto.sha256, ClaimPhoto.mask_sha256, ReferencePhoto.sha256,
                 ShippingEvidence.sha256)


def blobs_in_use(session: Any, shas: list[str], response_files: set[str]) -> set[str]:
    """Those of ``shas`` that a committed row names (``response_files``: every sha256 in
    merchant responses' file lists, read once per sweep)."""
    used = {sha for sha in shas if sha in response_files}
    for column in _BLOB_COLUMNS:
        used.update(session.execute(select(column).where(column.in_(shas))).scalars())
    return used


def _response_files(session: Any) -> set[str]:
    files: set[str] = set()
    for listed in session.execute(select(MerchantResponse.files)
                                  .execution_options(yield_per=1000)).scalars():
        files.update(f["sha256"] for f in listed or [] if isinstance(f, dict) and
                     f.get("sha256"))
    return files


def sweep_blobs(svc: Service, *, grace: timedelta = DEFAULT_GRACE,
                actor: str = "retention") -> SweepReport:
    """Remove the blobs no row names that nobody stored within ``grace``; audited."""
    if grace < timedelta(minutes=10):
        raise InvalidInput(f"grace: {grace} is shorter than a slow upload may take; "
                           f"expected at least 10 minutes", field="grace")
    with svc.db.read() as session:
        response_files = _response_files(session)

    def in_use(shas: list[str]) -> set[str]:
        with svc.db.read() as session:
            return blobs_in_use(session, shas, response_files)

    report = svc.blobs.sweep(in_use, grace_s=grace.total_seconds())
    if report.removed:
        log.info("blob sweep: removed %d unreferenced blobs (%d bytes)", report.removed,
                 report.removed_bytes)
        with svc.db.write() as session:
            append_event(session, actor=actor, action="blobs_swept",
                         data={**report.to_dict(), "grace_hours": grace.total_seconds() / 3600})
    return report


def schedule_sweep(svc: Service) -> None:
    """Queue the first ``sweep_blobs`` job unless one is already waiting or running."""
    with svc.db.write() as session:
        pending = session.execute(select(Job.id).where(
            Job.kind == "sweep_blobs", Job.status.in_(("queued", "running"))).limit(1)).first()
        if pending is None:
            enqueue(session, "sweep_blobs", run_after=utcnow() + timedelta(minutes=5))


def handle_sweep_blobs(svc: Service, ctx: JobContext) -> None:
    """The ``sweep_blobs`` job: sweep, then queue the next run with this one's completion."""
    sweep_blobs(svc)
    with svc.db.write() as session:
        enqueue(session, "sweep_blobs", run_after=utcnow() + SWEEP_INTERVAL)
        ctx.complete(session)
