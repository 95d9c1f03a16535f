"""The claim page (one URL, shown to each role its way), stored files and the PDF report,
through the console session rather than an API key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from ...claims import views
from ...claims.access import Caller
from ...errors import InvalidInput, NotFound
from ...imaging import CONTENT_TYPES, sniff_format
from ...store.blobs import BlobNotFound
from ...claims.access import may_see_blob
from .merchant import merchant_page
from .render import ConsoleRoute, signed_in
from .review import _index, review_page

__all__ = ["router"]

router = APIRouter(route_class=ConsoleRoute)

@router.get("/console/claims/{claim_id}", include_in_schema=False)
def claim_page(request: Request, claim_id: str, i: str = "", q: str = "",
               done: str = "") -> Response:
    """Reviewers and admins get the review page; a merchant its own claim's page (404 for
    another merchant's claim)."""
    ctx = signed_in(request)
    if ctx.user.reviews:
        from .review import QueueFilters

        return review_page(ctx, claim_id, index=_index(i),
                           query=QueueFilters.from_query(q).query(), done=done)
    return merchant_page(ctx, claim_id, done=done)


def _media_type(head: bytes) -> str:
    fmt = sniff_format(head)
    if fmt:
        return CONTENT_TYPES.get(fmt, "application/octet-stream")
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:10] == b"qt" else "video/mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm"
    return "application/octet-stream"


@router.get("/console/blobs/{sha256}", include_in_schema=False)
def blob(request: Request, sha256: str) -> Response:
    """A stored photo, mask, video or keyframe (a merchant: only its own)."""
    ctx = signed_in(request)
    who = Caller(ctx.user.role, ctx.user.actor, ctx.user.merchant_id)
    try:
        path = ctx.svc.blobs.path(sha256)
    except BlobNotFound:
        raise NotFound(f"blob {sha256!r}: not found", field="sha256") from None
    if not path.is_file() or not may_see_blob(ctx.svc, who, sha256):
        raise NotFound(f"blob {sha256}: not found", field="sha256")
    with open(path, "rb") as handle:
        head = handle.read(64)
    media_type = _media_type(head)
    headers = {"Cache-Control": "private, max-age=31536000, immutable",
               "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "default-src 'none'; sandbox"}
    if media_type == "application/octet-stream":
        headers["Content-Disposition"] = f'attachment; filename="{sha256[:16]}.bin"'
    return FileResponse(path, media_type=media_type, headers=headers)


@router.get("/console/claims/{claim_id}/report.pdf", include_in_schema=False)
def report(request: Request, claim_id: str, language: str = "") -> Response:
    """The evidence report (refundlens.reports.pdf), in the page's language unless
    ``language`` says otherwise (not ``lang``: that would switch the console's language)."""
    from ...reports.pdf import render_claim_pdf

    ctx = signed_in(request)
    lang = language or ctx.lang
    if lang not in ("zh", "en"):
        raise InvalidInput(f"language: got {lang!r}, expected zh or en", field="language")
    detail = views.claim_detail(ctx.svc, claim_id, merchant_scope=ctx.user.merchant_id
                                if ctx.user.role == "merchant" else None)
    pdf = render_claim_pdf(detail, load_blob=ctx.svc.blobs.get, lang=lang, zone=ctx.zone)
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="refundlens-{claim_id}-{lang}.pdf"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
