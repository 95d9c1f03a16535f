"""The service's reuse index: what each analysed photo is stored with, and filling the index
from what the database already holds.

Every analysed claim photo goes into the index in the database (``reuse_photos``, through
:attr:`Service.reuse_index <refundlens.claims.service.Service.reuse_index>`) under its
photo id, with :func:`reuse_meta` — so a worker on any host finds a photo first seen on
another.

Upgrading from the per-host file index (``<data_dir>/reuse-index``, before migration
0005): each photo's hashes are also in its stored analysis (the reuse detector's info), and
claims are never deleted, so the database alone rebuilds the whole index — every host's
photos, not only the ones this host saw. Migration 0005 queues a ``backfill_reuse_index``
job when there are analysed photos; each run indexes :data:`BACKFILL_BATCH` photos and
queues the next (the light worker's other jobs run in between), the way GitLab's batched
background migrations work. ``refundlens reuse backfill`` runs the same batches in the
foreground. Photos already in the index are kept (a live analysis is at least as new), so
running both, or either twice, is harmless. ``refundlens reuse import DIR`` copies a file
index as it is (an old host's, or a ``refundlens batch`` index of archived photos).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select

from ..index import PhotoHashes, ReuseIndex
from ..jobs import JobContext, enqueue
from ..store.tables import Claim, ClaimPhoto, utcnow
from .service import Service

__all__ = ["BACKFILL_BATCH", "BackfillReport", "backfill_reuse_index",
           "handle_backfill_reuse_index", "import_file_index", "reuse_meta"]

log = logging.getLogger(__name__)

#: Photos per backfill run: ~500 stored analyses (a few MB of JSON) read in well under a
#: second, so webhook deliveries and deadlines queued behind a run wait little.
BACKFILL_BATCH = 500


def reuse_meta(claim: Claim) -> dict[str, Any]:
    """What a photo is indexed with, shown with a match: its claim, merchant and buyer."""
    return {"claim_id": claim.id, "merchant_id": claim.merchant_id, "buyer": claim.buyer}


@dataclass
class BackfillReport:
    """One or more backfill batches: analysed photos looked at, photos added to the index,
    and those that could not be (``without_hashes``: the analysis failed or the reuse
    detector did not run; ``other_version``: hashed by another hash version)."""

    examined: int = 0
    indexed: int = 0
    without_hashes: int = 0
    other_version: int = 0
    batches: int = 0
    #: the photo id to continue after; None when every photo was examined
    resume_after: str | None = None

    @property
    def already_indexed(self) -> int:
        return self.examined - self.indexed - self.without_hashes - self.other_version

    def to_dict(self) -> dict[str, Any]:
        return {"examined": self.examined, "indexed": self.indexed,
                "already_indexed": self.already_indexed, "without_hashes": self.without_hashes,
                "other_version": self.other_version}


def backfill_reuse_index(svc: Service, *, after: str = "", limit: int = BACKFILL_BATCH,
                         progress: Callable[[BackfillReport], None] | None = None
                         ) -> BackfillReport:
    """Index analysed claim photos (ids after ``after``, in id order) from their stored
    analyses, keeping photos already indexed; at most ``limit`` photos (0: all of them, in
    batches of :data:`BACKFILL_BATCH`, calling ``progress`` after each)."""
    report = BackfillReport(resume_after=after)
    while report.resume_after is not None:
        size = min(limit - report.examined, BACKFILL_BATCH) if limit else BACKFILL_BATCH
        _backfill_batch(svc, report, size)
        if progress is not None:
            progress(report)
        if limit and report.examined >= limit:
            break
    return report


def _backfill_batch(svc: Service, report: BackfillReport, size: int) -> None:
    with svc.db.read() as session:
        rows = session.execute(
            select(ClaimPhoto.id, ClaimPhoto.analysis, ClaimPhoto.analyzed_at, Claim)
            .join(Claim, Claim.id == ClaimPhoto.claim_id)
            .where(ClaimPhoto.id > (report.resume_after or ""),
                   ClaimPhoto.analysis.is_not(None))
            .order_by(ClaimPhoto.id).limit(size)).all()
    items = []
    for photo_id, analysis, analyzed_at, claim in rows:
        values = _stored_hashes(analysis)
        if values is None:
            report.without_hashes += 1
            continue
        try:
            hashes = PhotoHashes.from_dict(values)
        except ValueError:  # another hash version: only a new analysis can index it
            report.other_version += 1
            continue
        items.append((photo_id, hashes, reuse_meta(claim), analyzed_at or utcnow()))
    report.examined += len(rows)
    report.batches += 1
    report.indexed += svc.reuse_index.add_many(items, replace=False)
    report.resume_after = rows[-1][0] if len(rows) == size else None


def _stored_hashes(analysis: Any) -> dict[str, Any] | None:
    """The reuse detector's hashes in a stored analysis (``Analysis.to_dict()``)."""
    if not isinstance(analysis, dict):
        return None
    for result in analysis.get("detectors") or ():
        if isinstance(result, dict) and result.get("detector") == "reuse":
            hashes = (result.get("info") or {}).get("hashes")
            return hashes if isinstance(hashes, dict) else None
    return None


def handle_backfill_reuse_index(svc: Service, ctx: JobContext) -> None:
    """The ``backfill_reuse_index`` job (queued by migration 0005): one batch, then the
    next batch's job with this one's completion."""
    after = ctx.payload.get("after", "")
    report = backfill_reuse_index(svc, after=after, limit=BACKFILL_BATCH)
    with svc.db.write() as session:
        if report.resume_after is not None:
            enqueue(session, "backfill_reuse_index", payload={"after": report.resume_after})
        ctx.complete(session)
    if report.resume_after is None:
        log.info("reuse index backfill finished (last batch after %r: %s)", after,
                 report.to_dict())


def import_file_index(svc: Service, path: str | Path) -> tuple[int, int]:
    """Copy the file index in directory ``path`` into the service's index, keeping photos
    already there. Returns (photos in the file, photos added).

    Raises:
        ConfigError: ``path`` holds no reuse index, or one of another hash version.
    """
    with ReuseIndex.open(path, create=False) as source:
        return len(source), svc.reuse_index.merge(source, replace=False)
