"""The ``analyze_claim`` job: analyse a claim's new photos against the order's references.

The pixels are analysed in a separate process (:class:`AnalysisPool`, spawned, one OpenCV
thread each) so the API process keeps answering while photos are analysed; the job thread
only reads rows, hands the pool file paths, and writes the results. References are the
listing photos of the order's products (by SKU; every product of the merchant when no SKU
matches) and the order's shipping photos. Every analysed photo goes into the deployment's
reuse index under its photo id, with the claim, merchant and buyer as metadata.

The job is idempotent: photos that already have an analysis are not analysed again, and
the results, the claim's route and the job's completion commit together.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, select

from ..config import Settings
from ..errors import RefundLensError
from ..jobs import JobContext
from ..processes import die_with_parent
from ..store.blobs import BlobNotFound
from ..store.tables import (Claim, ClaimPhoto, EvidenceRequest, Order, PhotoCode, Product,
                            ReferencePhoto, ShippingEvidence, utcnow)
from .audit import append_event
from .reuse import reuse_meta
from .service import Service

if TYPE_CHECKING:
    from ..index import ReuseIndex

__all__ = ["AnalysisPool", "PhotoTask", "analyze_task", "handle_analyze_claim"]

log = logging.getLogger(__name__)

#: Niceness of the analysing processes: the API answers in milliseconds and analysis takes
#: seconds, so when they compete for cores the API goes first (bench/intake_bench.py, one
#: analysis process on two cores, A/B runs: 29–34 → 37–46 claims/s, p99 0.41–0.67 →
#: 0.37–0.43 s); on idle cores analysis runs at full speed all the same.
ANALYSIS_NICENESS = 10

#: At most this many reference photos per claim (the merchant's whole catalogue when no
#: SKU matched could be thousands; the newest listing photos come first).
MAX_REFERENCES = 24


@dataclass(frozen=True)
class PhotoTask:
    """Everything the analysing process needs, as plain picklable values."""

    photo_id: str
    path: str
    filename: str
    references: tuple[tuple[str, str, str, str], ...]  # (id, kind, path, filename)
    context: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    read_code: bool = False


# --- in the analysing process --------------------------------------------------------------

_STATE: dict[str, Any] = {}


def _init(settings: Settings, index: ReuseIndex, parent_pid: int | None = None) -> None:
    import cv2

    # The service owns this process's life: Ctrl-C in a terminal or a service manager's
    # SIGTERM to the whole group reaches the service too, which puts the job back and ends
    # this process (AnalysisPool.close) — dying here first would record a failed attempt.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if parent_pid is not None:
        die_with_parent(parent_pid)
    if hasattr(os, "nice"):
        os.nice(ANALYSIS_NICENESS)
    cv2.setNumThreads(1)
    logging.getLogger("refundlens").setLevel(logging.ERROR)
    _load_state(settings, index)


def _load_state(settings: Settings, index: ReuseIndex) -> None:
    """Build this process's detectors and keep the reuse index (in an analysis process,
    unpickled: it connects to the service's database itself), once per settings."""
    from ..detectors import create_detectors

    _STATE["settings"] = settings
    _STATE["detectors"] = create_detectors(settings=settings)
    _STATE["index"] = index


def analyze_task(task: PhotoTask) -> dict[str, Any]:
    """Analyse one photo; never raises for a bad photo (its error is the result)."""
    from ..analysis import analyze
    from ..detectors import DetectorContext, Reference
    from ..imaging import load_photo

    settings: Settings = _STATE["settings"]
    limits = {"max_bytes": settings.max_bytes, "max_pixels": settings.max_pixels}
    try:
        photo = load_photo(task.path, name=task.filename, **limits)
    except RefundLensError as exc:
        return {"photo_id": task.photo_id, "status": "error",
                "error": {"code": exc.code, "message": str(exc)}}
    references = []
    for ref_id, kind, path, filename in task.references:
        try:
            references.append(Reference(load_photo(path, name=filename, **limits),
                                        kind=kind, id=ref_id))
        except RefundLensError as exc:  # a bad reference is noted, the others still count
            log.warning("reference %s (%s) cannot be loaded: %s", ref_id, filename, exc)
    context = DetectorContext.from_mapping(task.context, references=tuple(references),
                                           reuse_index=_STATE["index"],
                                           photo_key=task.photo_id)
    analysis = analyze(photo, detectors=_STATE["detectors"], context=context)
    result: dict[str, Any] = {"photo_id": task.photo_id, "status": "ok",
                              "analysis": analysis.to_dict(), "mask_png": _mask_png(analysis),
                              "hashes": None, "matched_reference": None, "text": None}
    reuse = analysis.result("reuse")
    if reuse is not None:
        result["hashes"] = dict(reuse.info).get("hashes")
    for finding in analysis.findings:
        if finding.code in ("REFERENCE_ALTERED", "REFERENCE_DERIVED"):
            details = dict(finding.details)
            result["matched_reference"] = {"id": details.get("reference_id"),
                                           "kind": details.get("reference_kind"),
                                           "sha256": details.get("reference_sha256")}
            break
    if task.read_code:
        from ..detectors.visible_label import read_text

        result["text"] = [line.text for line in read_text(photo)]
    return result


def _mask_png(analysis: Any) -> bytes | None:
    from PIL import Image

    mask = analysis.mask()
    if not np.any(mask):
        return None
    buffer = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


class AnalysisPool:
    """Processes that analyse photos (spawned: forked children inherit OpenCV's thread
    pool locks and can deadlock). A crashed child breaks the pool; it is rebuilt.
    :meth:`close` ends the processes, mid-analysis or not, and the pool for good."""

    def __init__(self, settings: Settings, index: ReuseIndex, *, processes: int = 1) -> None:
        self.settings = settings
        self.index = index
        self.processes = max(1, processes)
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    def _executor(self) -> ProcessPoolExecutor:
        if self._closed:
            raise RuntimeError("the analysis pool is closed (the service is stopping)")
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init, initargs=(self.settings, self.index, os.getpid()))
        return self._pool

    def map(self, tasks: list[PhotoTask]) -> list[dict[str, Any]]:
        try:
            futures: list[Future[dict[str, Any]]] = [self._executor().submit(analyze_task, t)
                                                     for t in tasks]
            return [f.result() for f in futures]
        except BrokenProcessPool:
            self._discard()
            raise

    def close(self) -> None:
        self._closed = True
        self._discard()

    def _discard(self) -> None:
        """Shut the executor down and end its processes. ``shutdown`` alone leaves a child
        that is mid-analysis running, and after this process exits it waits forever on a
        queue whose write end it holds itself (found as orphans after SIGTERM); a cut-short
        analysis is re-run by the job's next attempt."""
        if self._pool is None:
            return
        # ProcessPoolExecutor has no public way to end its processes before Python 3.14
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.kill()  # it ignores SIGTERM (see _init)
        for process in processes:
            process.join(5)
        self._pool = None


class InlineAnalysis:
    """The same analysis in the calling process (tests, ``run_until_idle`` tools)."""

    def __init__(self, settings: Settings, index: ReuseIndex) -> None:
        self.settings = settings
        self.index = index

    def map(self, tasks: list[PhotoTask]) -> list[dict[str, Any]]:
        if _STATE.get("settings") is not self.settings or _STATE.get("index") is not self.index:
            _load_state(self.settings, self.index)
        return [analyze_task(t) for t in tasks]

    def close(self) -> None:
        pass


# --- in the job thread ---------------------------------------------------------------------

def _references(session: Any, svc: Service, order: Order) -> tuple[tuple[str, str, str, str], ...]:
    skus = [item.get("sku") for item in order.items or [] if isinstance(item, dict)]
    products = session.execute(select(Product.id).where(
        Product.merchant_id == order.merchant_id, Product.sku.in_(skus))).scalars().all() \
        if skus else []
    query = select(ReferencePhoto).join(Product, Product.id == ReferencePhoto.product_id)
    if products:
        query = query.where(ReferencePhoto.product_id.in_(products))
    else:
        query = query.where(Product.merchant_id == order.merchant_id)
    listing = session.execute(query.order_by(ReferencePhoto.created_at.desc())
                              .limit(MAX_REFERENCES)).scalars().all()
    shipping = session.execute(select(ShippingEvidence).where(
        ShippingEvidence.order_id == order.id, ShippingEvidence.kind.in_(("photo", "keyframe")))
        .limit(MAX_REFERENCES)).scalars().all()
    refs = [(r.id, "listing", str(svc.blobs.path(r.sha256)), r.filename) for r in listing]
    refs += [(s.id, "shipping", str(svc.blobs.path(s.sha256)), s.filename) for s in shipping]
    return tuple(refs)


def build_tasks(svc: Service, claim_id: str, *, photo_ids: list[str] | None = None
                ) -> tuple[list[PhotoTask], dict[str, str]]:
    """Tasks for the claim's photos that have no analysis yet (or the ``photo_ids`` to
    analyse again), and the open evidence codes by request id."""
    with svc.db.read() as session:
        claim = session.get(Claim, claim_id)
        if claim is None:
            return [], {}
        order = session.get(Order, claim.order_id)
        assert order is not None
        refs = _references(session, svc, order)
        wanted = ClaimPhoto.id.in_(photo_ids) if photo_ids else ClaimPhoto.analysis.is_(None)
        photos = session.execute(select(ClaimPhoto).where(
            ClaimPhoto.claim_id == claim_id, wanted)
            .order_by(ClaimPhoto.position)).scalars().all()
        codes = {r.id: r.code for r in session.execute(select(EvidenceRequest).where(
            EvidenceRequest.claim_id == claim_id)).scalars()}
        context = {"claim_time": claim.created_at.isoformat(),
                   "shipped_at": order.shipped_at.isoformat() if order.shipped_at else None,
                   "delivered_at": order.delivered_at.isoformat() if order.delivered_at else None}
        tasks = []
        for photo in photos:
            if not svc.blobs.exists(photo.sha256):
                # our store lost it, not the buyer's photo at fault: fail the job (retried,
                # then the claim goes to a person) rather than record a bad photo for good
                raise BlobNotFound(f"claim {claim_id}, photo {photo.id} ({photo.filename!r}): "
                                   f"blob {photo.sha256} is not in the store at "
                                   f"{svc.blobs.root}")
            ctx = {k: v for k, v in context.items() if v}
            code = codes.get(photo.evidence_request_id or "")
            if code:
                ctx["evidence_code"] = code
            if photo.role == "evidence":  # a fresh photo is taken after the request
                ctx["claim_time"] = photo.created_at.isoformat()
            tasks.append(PhotoTask(
                photo_id=photo.id, path=str(svc.blobs.path(photo.sha256)),
                filename=photo.filename, references=refs, context=ctx,
                meta=reuse_meta(claim),
                read_code=bool(code)))
    return tasks, codes


def store_results(svc: Service, session: Any, claim: Claim,
                  results: list[dict[str, Any]]) -> None:
    """Write each photo's result into its row (masks into the blob store first)."""
    for result in results:
        photo = session.get(ClaimPhoto, result["photo_id"])
        if photo is None or photo.claim_id != claim.id:
            continue
        if result["status"] == "error":
            photo.analysis = {"status": "error", "error": result["error"], "findings": [],
                              "risk": None}
            photo.risk_score, photo.risk_level = None, None
        else:
            analysis = result["analysis"]
            analysis["status"] = "ok"
            if result.get("text") is not None:
                analysis["text_read"] = result["text"]
            photo.analysis = analysis
            photo.risk_score = analysis["risk"]["score"]
            photo.risk_level = analysis["risk"]["level"]
            photo.mask_sha256 = svc.blobs.put(result["mask_png"]) \
                if result.get("mask_png") else None
            photo.matched_reference = result.get("matched_reference")
        # the codes the queue filters by, indexed (store/tables.py, PhotoCode)
        session.execute(delete(PhotoCode).where(PhotoCode.photo_id == photo.id))
        session.add_all(PhotoCode(photo_id=photo.id, claim_id=claim.id, code=code)
                        for code in sorted({f["code"] for f in photo.analysis["findings"]}))
        photo.analyzed_at = utcnow()


def add_to_reuse_index(svc: Service, tasks: list[PhotoTask],
                       results: list[dict[str, Any]]) -> None:
    """Index the analysed photos in the database, where every worker on every host looks.
    Replaced by photo id: a retried job adds the same rows again harmlessly."""
    from ..index import PhotoHashes

    meta = {t.photo_id: t.meta for t in tasks}
    rows = [(r["photo_id"], PhotoHashes.from_dict(r["hashes"]), meta.get(r["photo_id"]))
            for r in results if r.get("hashes")]
    if rows:
        svc.reuse_index.add_many(rows)


def handle_analyze_claim(svc: Service, engine: Any, ctx: JobContext) -> None:
    """The job: analyse, store, route — the last two in one transaction with the job.

    A payload ``reanalyze`` (photo ids; new references arrived, e.g. video keyframes)
    analyses those photos again and updates the claim's risk without routing it again."""
    from .workflow import mark_analyzing, route_after_analysis

    claim_id = ctx.claim_id
    assert claim_id is not None
    redo = ctx.payload.get("reanalyze") or None
    if not redo:
        mark_analyzing(svc, claim_id, actor=f"worker:{ctx.owner}")
    tasks, _ = build_tasks(svc, claim_id, photo_ids=redo)
    results = engine.map(tasks) if tasks else []
    add_to_reuse_index(svc, tasks, results)
    with svc.db.write() as session:
        claim = session.get(Claim, claim_id)
        if claim is None:
            ctx.complete(session)
            return
        store_results(svc, session, claim, results)
        session.flush()
        append_event(session, actor="analysis", action="analysis_completed", claim_id=claim_id,
                     data={"photos": [{"photo_id": r["photo_id"], "status": r["status"],
                                       "score": (r.get("analysis") or {}).get("risk", {})
                                       .get("score")} for r in results]})
        route_after_analysis(svc, session, claim, role=ctx.payload.get("role", "claim"),
                             states=() if redo else ("analyzing",))
        ctx.complete(session)


def default_engine(svc: Service, *, inline: bool = False) -> Any:
    if inline:
        return InlineAnalysis(svc.settings, svc.reuse_index)
    return AnalysisPool(svc.settings, svc.reuse_index,
                        processes=max(1, svc.settings.analysis_workers))
