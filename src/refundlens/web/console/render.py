"""Rendering and request plumbing of the console: the Jinja2 templates, the per-request
context (who is signed in, which language), CSRF checks, security headers, and HTML error
pages in place of the API's JSON errors."""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Callable, Coroutine
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import (Environment, FileSystemLoader, StrictUndefined, pass_context,
                    select_autoescape)

from ...claims.service import Service
from ...errors import InvalidInput, PermissionDenied, RefundLensError, RequestError
from ...reasons import REASONS
from ...store.tables import utcnow
from .i18n import LANGS, TEXT, format_duration, format_offset, format_time, translator
from .sessions import (COOKIE, COOKIE_PATH, LANG_COOKIE, SignedIn, csrf_matches,
                       resume_session, set_language)

__all__ = ["ConsoleRoute", "Ctx", "NotSignedIn", "STATIC", "check_csrf", "context",
           "render", "see_other", "signed_in"]

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")

#: Everything the pages load comes from this server: no CDN, no inline script; styles
#: only from the stylesheet (overlay geometry is SVG attributes, the slider is set from
#: script through the CSSOM, which CSP allows).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
                               "style-src 'self'; script-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class NotSignedIn(RequestError):
    code = "unauthorized"
    status = 401


class CsrfFailed(PermissionDenied):
    code = "csrf_failed"


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(("html",)), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    # times in the ``timezone`` setting, which render() puts in every page's context
    env.filters["when"] = pass_context(lambda page, value: format_time(value, page["zone"]))
    env.filters["offset"] = pass_context(
        lambda page, value: format_offset(value, page["zone"]))
    versions = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:10]
                for p in STATIC.iterdir() if p.is_file()}
    env.globals["static"] = lambda name: f"/console/static/{name}?v={versions.get(name, '0')}"
    env.globals["reason_codes"] = sorted(REASONS)
    env.globals["done_keys"] = {key for key in TEXT if key.startswith("done_")}
    return env


@dataclass
class Ctx:
    """One console request: the service, the session (if any) and the language."""

    request: Request
    svc: Service
    signed: SignedIn | None
    lang: str
    lang_changed: bool = False
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def t(self) -> Callable[..., str]:
        return translator(self.lang)

    @property
    def zone(self) -> tzinfo:
        """The zone times are shown in (the ``timezone`` setting)."""
        return self.svc.settings.zone

    @property
    def user(self) -> Any:
        assert self.signed is not None
        return self.signed.user

    def lang_url(self, lang: str) -> str:
        """This page in another language."""
        params = [(k, v) for k, v in self.request.query_params.multi_items() if k != "lang"]
        params.append(("lang", lang))
        return f"{self.request.url.path}?{urlencode(params)}"

    def sla(self, due: str | None, *, near_hours: float = 2.0) -> dict[str, str]:
        """A deadline's countdown text and class (``sla-overdue``, ``sla-near``, ``sla-ok``)."""
        near = f"{near_hours:g}"
        if not due:
            return {"text": self.t("sla_none"), "cls": "sla-none", "due": "", "near": near}
        left = (datetime.fromisoformat(due) - utcnow()).total_seconds()
        span = format_duration(left, self.lang)
        if left < 0:
            return {"text": self.t("sla_overdue", t=span), "cls": "sla-overdue", "due": due,
                    "near": near}
        cls = "sla-near" if left < near_hours * 3600 else "sla-ok"
        return {"text": self.t("sla_left", t=span), "cls": cls, "due": due, "near": near}


def context(request: Request) -> Ctx:
    """The request's context; signed in or not. ``?lang=zh|en`` switches the language and
    remembers it (in the session and a cookie)."""
    svc: Service = request.app.state.service
    signed = resume_session(svc, request.cookies.get(COOKIE))
    asked = request.query_params.get("lang")
    if asked in LANGS:
        lang = asked
    elif signed is not None:
        lang = signed.lang
    else:
        lang = request.cookies.get(LANG_COOKIE, "zh")
        lang = lang if lang in LANGS else "zh"
    ctx = Ctx(request, svc, signed, lang)
    if asked in LANGS and (request.cookies.get(LANG_COOKIE) != asked or
                           (signed is not None and signed.lang != asked)):
        ctx.lang_changed = True
        if signed is not None:
            set_language(svc, signed.session_id, asked)
    return ctx


def signed_in(request: Request) -> Ctx:
    """The context of a signed-in user (otherwise :class:`NotSignedIn`: to the sign-in)."""
    ctx = context(request)
    if ctx.signed is None:
        raise NotSignedIn("sign in first")
    return ctx


def reviewer(request: Request) -> Ctx:
    ctx = signed_in(request)
    if not ctx.user.reviews:
        raise PermissionDenied(f"role {ctx.user.role!r} may not review claims; reviewers and "
                               f"admins may")
    return ctx


def merchant(request: Request) -> Ctx:
    ctx = signed_in(request)
    if ctx.user.role != "merchant" or not ctx.user.merchant_id:
        raise PermissionDenied(f"role {ctx.user.role!r}: the merchant portal is for merchant "
                               f"users")
    return ctx


def check_csrf(ctx: Ctx, form_token: str | None = None) -> None:
    """The POST carries the session's CSRF token (form field or ``X-CSRF-Token``)."""
    given = form_token or ctx.request.headers.get("x-csrf-token")
    if ctx.signed is None or not csrf_matches(ctx.signed.csrf_token, given):
        raise CsrfFailed("CSRF token missing or wrong: reload the page and submit again")


def _finish(ctx: Ctx | None, response: Response) -> Response:
    if ctx is not None and ctx.lang_changed:
        response.set_cookie(LANG_COOKIE, ctx.lang, max_age=365 * 86400, path=COOKIE_PATH,
                            httponly=True, samesite="lax",
                            secure=ctx.request.url.scheme == "https")
    for name, value in (ctx.cookies if ctx else {}).items():
        response.set_cookie(name, value, path=COOKIE_PATH, httponly=True, samesite="lax",
                            secure=ctx.request.url.scheme == "https")  # type: ignore[union-attr]
    return response


def render(ctx: Ctx, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
    page = _environment().get_template(template).render(
        ctx=ctx, t=ctx.t, lang=ctx.lang, zone=ctx.zone,
        user=ctx.signed.user if ctx.signed else None,
        csrf=ctx.signed.csrf_token if ctx.signed else "", **values)
    response = HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)
    return _finish(ctx, response)  # type: ignore[return-value]


def see_other(ctx: Ctx | None, url: str) -> Response:
    """Redirect after a POST (or to the right page): 303, so the browser GETs ``url``."""
    return _finish(ctx, RedirectResponse(url, status_code=303))


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def error_page(request: Request, exc: Exception) -> Response:
    """An HTML page for a failed console request (JSON for fetch calls)."""
    status = getattr(exc, "status", 500)
    code = getattr(exc, "code", "internal_error")
    if isinstance(exc, NotSignedIn):
        if _wants_json(request):
            return JSONResponse({"error": {"code": code, "message": str(exc), "field": None}},
                                status_code=401)
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        else:  # a form sent after the session ended: back to the page it was sent from
            referer = urlsplit(request.headers.get("referer", ""))
            same_site = referer.netloc in ("", request.url.netloc)
            target = referer.path + (f"?{referer.query}" if referer.query else "") \
                if same_site and referer.path.startswith("/console/") else ""
        query = f"?{urlencode({'next': target})}" if target else ""
        return RedirectResponse(f"/console/login{query}", status_code=303)
    if _wants_json(request):
        return JSONResponse({"error": {"code": code, "message": str(exc),
                                       "field": getattr(exc, "field", None)}},
                            status_code=status)
    try:
        ctx = context(request)
    except Exception:  # noqa: BLE001 - the database itself may be what failed
        ctx = Ctx(request, request.app.state.service, None, "zh")
    t = ctx.t
    headline = {404: t("error_404"), 403: t("error_403")}.get(status, t("error_generic"))
    if isinstance(exc, CsrfFailed):
        headline = t("error_csrf")
    detail = str(exc) if status < 500 or isinstance(exc, RefundLensError) else ""
    return render(ctx, "error.html", status=status, headline=headline, detail=detail)


class ConsoleRoute(APIRoute):
    """Console routes answer errors with HTML pages (or a redirect to sign in), not the
    API's JSON errors."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()) if p not in
                                 ("body", "query", "path"))
                return error_page(request, InvalidInput(
                    f"{where or 'request'}: {first.get('msg', 'invalid')}", field=where or None))
            except RequestError as exc:
                return error_page(request, exc)
            except RefundLensError as exc:
                log.error("console request failed: %s", exc)
                exc.status = 500  # type: ignore[attr-defined]
                return error_page(request, exc)

        return handler
