"""The merchant portal: the store's own claims (what was found, why, the deadline to
answer), the answer form (text, photos, packing/shipping videos), appeals and the product
reference photos. Every query is scoped to the signed-in user's merchant; another
merchant's claim or product answers 404, exactly like one that does not exist.

Appeals: the API lets a merchant appeal its own decided claims (``POST
/api/v1/claims/{id}/appeals`` admits admin, intake and merchant keys), and the portal
offers the same to the merchant's users — on the claims a refund was granted on
(``approved``, ``auto_approved``), the decisions a merchant would contest. An appealed
claim goes back to review; while it is appealed the merchant may answer again (the appeal
opens a fresh response window).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import func, select

from ...claims import intake, views, workflow
from ...claims.intake import Upload
from ...claims.keyframes import probe_video_bytes
from ...errors import Conflict, InvalidInput, NotFound, RequestError
from ...imaging import sniff_video
from ...store.tables import Job, Product, ReferencePhoto, utcnow
from ..api.uploads import read_form, single
from .claimview import blob_url, claim_view, shipping_evidence
from .render import ConsoleRoute, Ctx, check_csrf, merchant, render, see_other

__all__ = ["router"]

router = APIRouter(route_class=ConsoleRoute)

PAGE_SIZE = 50
PRODUCTS_PAGE = 20
OPEN_STATUSES = ("submitted", "analyzing", "evidence_requested", "in_review", "appealed")


@router.get("/console/merchant", include_in_schema=False)
def claims(request: Request, show: str = "open", page: int = 1) -> Response:
    ctx = merchant(request)
    if show not in ("open", "all"):
        raise InvalidInput(f"show: got {show!r}, expected open or all", field="show")
    page = max(1, page)
    result = views.list_claims(ctx.svc, merchant_id=ctx.user.merchant_id,
                               statuses=OPEN_STATUSES if show == "open" else None,
                               sort="deadline" if show == "open" else "created",
                               limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    pages = max(1, -(-result["total"] // PAGE_SIZE))
    rows = [{**c, "sla": ctx.sla(c["merchant_response_due_at"], near_hours=4),
             "link": f"/console/claims/{c['id']}"} for c in result["claims"]]

    def page_link(n: int) -> str:
        return "/console/merchant?" + urlencode({"show": show, "page": n})

    return render(ctx, "merchant_claims.html", rows=rows, show=show, total=result["total"],
                  counts=result["counts"], page=page, pages=pages,
                  prev_link=page_link(page - 1) if page > 1 else "",
                  next_link=page_link(page + 1) if page < pages else "")


def _keyframes_pending(ctx: Ctx, claim_id: str) -> bool:
    with ctx.svc.db.read() as session:
        return bool(session.execute(select(func.count()).select_from(Job).where(
            Job.claim_id == claim_id, Job.kind.in_(("extract_keyframes", "analyze_claim")),
            Job.status.in_(("queued", "running")))).scalar_one())


#: Decided claims a merchant may appeal from the portal: those a refund was granted on.
APPEALABLE = ("approved", "auto_approved")


def merchant_page(ctx: Ctx, claim_id: str, *, done: str = "", error: str = "",
                  status: int = 200, text: str = "", appeal_reason: str = "") -> Response:
    detail = views.claim_detail(ctx.svc, claim_id, merchant_scope=ctx.user.merchant_id)
    due = detail["deadlines"]["merchant_response_due_at"]
    # an appeal opens a fresh response window: while it lasts, say until when
    answer_until = due if detail["status"] == "appealed" and due and \
        datetime.fromisoformat(due) > utcnow() else ""
    return render(ctx, "claim_merchant.html", status=status, claim=detail,
                  view=claim_view(detail, ctx.lang),
                  shipping=shipping_evidence(ctx.svc, detail["order_id"]),
                  merchant_sla=ctx.sla(due, near_hours=4), answer_until=answer_until,
                  can_answer=detail["status"] not in workflow.DECIDED,
                  can_appeal=detail["status"] in APPEALABLE, appeal_reason=appeal_reason,
                  pending=_keyframes_pending(ctx, claim_id), done=done, error=error,
                  text=text, max_files=ctx.svc.settings.max_photos_per_claim)


def _uploads(files: dict[str, list[Upload]], name: str) -> list[Upload]:
    """The form's files, without the empty part a browser sends when none was chosen."""
    return [u for u in files.get(name, []) if u.data or u.filename]


def _check_videos(uploads: list[Upload]) -> None:
    """Refuse an undecodable video now, while the merchant is still on the form."""
    for i, upload in enumerate(uploads):
        if sniff_video(upload.data) is not None:
            try:
                probe_video_bytes(upload.data, name=upload.filename or f"files[{i}]")
            except InvalidInput as exc:
                raise InvalidInput(f"files[{i}]: {exc}", field=f"files[{i}]",
                                   code=exc.code) from exc


@router.post("/console/claims/{claim_id}/responses", include_in_schema=False)
async def respond(request: Request, claim_id: str) -> Response:
    ctx = await run_in_threadpool(merchant, request)
    svc = ctx.svc
    fields, files = await read_form(request, max_files=svc.settings.max_photos_per_claim)
    check_csrf(ctx, fields.get("csrf_token"))
    text = fields.get("text", "")
    uploads = _uploads(files, "files")

    def answer() -> None:
        _check_videos(uploads)
        workflow.add_merchant_response(svc, claim_id, merchant_id=ctx.user.merchant_id,
                                       text=text, files=uploads, actor=ctx.user.actor)

    try:
        await run_in_threadpool(answer)
    except RequestError as exc:
        if exc.status == 404:
            raise
        error, status = str(exc), exc.status
    else:
        return see_other(ctx, f"/console/claims/{claim_id}?done=response")
    return await run_in_threadpool(lambda: merchant_page(ctx, claim_id, error=error,
                                                         status=status, text=text))


@router.post("/console/claims/{claim_id}/appeals", include_in_schema=False)
def appeal(request: Request, claim_id: str, reason: str = Form(""),
           csrf_token: str = Form("")) -> Response:
    """The merchant appeals a refund granted on its claim (see the module docstring)."""
    ctx = merchant(request)
    check_csrf(ctx, csrf_token)
    detail = views.claim_detail(ctx.svc, claim_id, merchant_scope=ctx.user.merchant_id)
    try:
        if detail["status"] not in APPEALABLE:
            raise Conflict(f"claim {claim_id}: status {detail['status']}; a merchant appeals "
                           f"a granted refund ({', '.join(APPEALABLE)})", field="claim_id",
                           code="invalid_state")
        workflow.appeal(ctx.svc, claim_id, reason=reason, actor=ctx.user.actor)
    except RequestError as exc:
        if exc.status == 404:
            raise
        return merchant_page(ctx, claim_id, error=str(exc), status=exc.status,
                             appeal_reason=reason)
    return see_other(ctx, f"/console/claims/{claim_id}?done=appeal")


# --- products and reference photos -----------------------------------------------------------

def _products(ctx: Ctx, page: int) -> tuple[list[dict[str, Any]], int]:
    m = ctx.user.merchant_id
    with ctx.svc.db.read() as session:
        total = session.execute(select(func.count()).select_from(Product).where(
            Product.merchant_id == m)).scalar_one()
        products = session.execute(select(Product).where(Product.merchant_id == m)
                                   .order_by(Product.created_at.desc(), Product.id)
                                   .limit(PRODUCTS_PAGE).offset((page - 1) * PRODUCTS_PAGE)
                                   ).scalars().all()
        ids = [p.id for p in products]
        refs: dict[str, list[ReferencePhoto]] = {i: [] for i in ids}
        if ids:
            for ref in session.execute(select(ReferencePhoto).where(
                    ReferencePhoto.product_id.in_(ids)).order_by(
                    ReferencePhoto.created_at.desc())).scalars():
                refs[ref.product_id].append(ref)
    return [{"id": p.id, "sku": p.sku, "name": p.name, "count": len(refs[p.id]),
             "photos": [{"url": blob_url(r.sha256), "filename": r.filename,
                         "size": f"{r.width}×{r.height}"} for r in refs[p.id][:12]]}
            for p in products], total


def products_page(ctx: Ctx, *, page: int = 1, done: str = "", error: str = "",
                  status: int = 200, form: dict[str, str] | None = None) -> Response:
    items, total = _products(ctx, page)
    pages = max(1, -(-total // PRODUCTS_PAGE))
    return render(ctx, "products.html", status=status, products=items, total=total,
                  page=page, pages=pages,
                  prev_link=f"/console/products?page={page - 1}" if page > 1 else "",
                  next_link=f"/console/products?page={page + 1}" if page < pages else "",
                  done=done, error=error, form=form or {})


@router.get("/console/products", include_in_schema=False)
def products(request: Request, page: int = 1, done: str = "") -> Response:
    return products_page(merchant(request), page=max(1, page), done=done)


@router.post("/console/products", include_in_schema=False)
def create_product(request: Request, sku: str = Form(""), name: str = Form(""),
                   csrf_token: str = Form("")) -> Response:
    ctx = merchant(request)
    check_csrf(ctx, csrf_token)
    try:
        intake.create_product(ctx.svc, ctx.user.merchant_id, sku=sku, name=name,
                              actor=ctx.user.actor)
    except RequestError as exc:
        return products_page(ctx, error=str(exc), status=exc.status,
                             form={"sku": sku, "name": name})
    return see_other(ctx, "/console/products?done=product")


@router.post("/console/products/{product_id}/references", include_in_schema=False)
async def add_reference(request: Request, product_id: str) -> Response:
    ctx = await run_in_threadpool(merchant, request)
    fields, files = await read_form(request, max_files=1)
    check_csrf(ctx, fields.get("csrf_token"))

    def upload() -> None:
        chosen = _uploads(files, "file")
        intake.add_reference(ctx.svc, product_id, single({"file": chosen}, "file"),
                             actor=ctx.user.actor, merchant_scope=ctx.user.merchant_id)

    try:
        await run_in_threadpool(upload)
    except NotFound:
        raise
    except RequestError as exc:
        error, status = str(exc), exc.status
    else:
        return see_other(ctx, "/console/products?done=reference")
    return await run_in_threadpool(lambda: products_page(ctx, error=error, status=status))
