"""Sign-in, sign-out and the console's front door (``/console`` sends each role home)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from ...claims.access import sign_in
from ...claims.audit import append_event
from .render import ConsoleRoute, check_csrf, context, render, see_other, signed_in
from .sessions import (COOKIE, COOKIE_PATH, LOGIN_CSRF_COOKIE, LoginThrottle, csrf_matches,
                       end_session, new_token, start_session)

__all__ = ["home_for", "router"]

router = APIRouter(route_class=ConsoleRoute)


def home_for(role: str) -> str:
    return "/console/merchant" if role == "merchant" else "/console/queue"


def _safe_next(target: str | None) -> str | None:
    """Only a path inside the console (no scheme, no host, no ``//``) is followed."""
    if target and target.startswith("/console") and not target.startswith("//") \
            and "\\" not in target and "://" not in target:
        return target
    return None


def _throttle(request: Request) -> LoginThrottle:
    """The app's throttle; its counts live in the database, shared by every process."""
    state = request.app.state
    if not hasattr(state, "console_login_throttle"):
        svc = state.service
        state.console_login_throttle = LoginThrottle.from_settings(svc.db, svc.settings)
    throttle: LoginThrottle = state.console_login_throttle
    return throttle


@router.get("/console", include_in_schema=False)
@router.get("/console/", include_in_schema=False)
def front_door(request: Request) -> Response:
    ctx = context(request)
    if ctx.signed is None:
        return see_other(ctx, "/console/login")
    return see_other(ctx, home_for(ctx.user.role))


@router.get("/console/login", include_in_schema=False)
def login_form(request: Request, next: str = "", ended: str = "") -> Response:
    ctx = context(request)
    if ctx.signed is not None:
        return see_other(ctx, _safe_next(next) or home_for(ctx.user.role))
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_token()
    ctx.cookies[LOGIN_CSRF_COOKIE] = token
    message = ctx.t("session_ended") if ended else ""
    return render(ctx, "login.html", login_csrf=token, next=_safe_next(next) or "",
                  error="", message=message, username="")


@router.post("/console/login", include_in_schema=False)
def login(request: Request, username: str = Form(""), password: str = Form(""),
          csrf_token: str = Form(""), next: str = Form("")) -> Response:
    ctx = context(request)
    cookie_token = request.cookies.get(LOGIN_CSRF_COOKIE)
    token = cookie_token or new_token()
    ctx.cookies[LOGIN_CSRF_COOKIE] = token

    def again(error: str, status: int) -> Response:
        return render(ctx, "login.html", status=status, login_csrf=token,
                      next=_safe_next(next) or "", error=error, message="",
                      username=username[:100])

    if not csrf_matches(cookie_token, csrf_token):
        return again(ctx.t("login_expired_form"), 403)
    ip = request.client.host if request.client else ""
    throttle = _throttle(request)
    wait = throttle.attempt(username, ip)  # counts this attempt as a failure until it succeeds
    if wait > 0:
        return again(ctx.t("login_locked", minutes=max(1, round(wait / 60))), 429)
    user = sign_in(ctx.svc, username.strip(), password) if username.strip() else None
    if user is None or user.role not in ("admin", "reviewer", "merchant"):
        return again(ctx.t("login_failed"), 401)
    throttle.succeeded(username, ip)
    session_token, signed = start_session(ctx.svc, user, lang=ctx.lang, ip=ip,
                                          user_agent=request.headers.get("user-agent", ""))
    with ctx.svc.db.write() as session:
        append_event(session, actor=signed.user.actor, action="console_signed_in",
                     data={"role": user.role, "ip": ip})
    ctx.cookies.pop(LOGIN_CSRF_COOKIE, None)
    response = see_other(ctx, _safe_next(next) or home_for(user.role))
    # a browser-session cookie: the server's expiry (sessions.IDLE, ABSOLUTE) is the limit
    response.set_cookie(COOKIE, session_token, path=COOKIE_PATH, httponly=True,
                        samesite="lax", secure=request.url.scheme == "https")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/console/logout", include_in_schema=False)
def logout(request: Request, csrf_token: str = Form("")) -> Response:
    ctx = signed_in(request)
    check_csrf(ctx, csrf_token)
    assert ctx.signed is not None
    end_session(ctx.svc, ctx.signed.session_id)
    with ctx.svc.db.write() as session:
        append_event(session, actor=ctx.user.actor, action="console_signed_out", data={})
    response = see_other(ctx, "/console/login?" + urlencode({"ended": "1"}))
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response
