"""The review console and merchant portal, served at ``/console`` by ``refundlens serve``.

Server-rendered pages (Jinja2 templates in ``templates/``), one stylesheet and one small
script in ``static/`` — no build step, nothing fetched from elsewhere — in Chinese (the
default) and English (``?lang=en`` or the switch in the header; every string is in
:mod:`.i18n`). Users sign in with the accounts ``refundlens users create`` makes; sessions
and CSRF protection are in :mod:`.sessions`.

Modules: ``auth`` (sign-in, sign-out), ``review`` (queue, claim page, reviewer actions),
``merchant`` (the merchant portal: claims, answers with photos and videos, product
photos), ``files`` (the claim page by role, stored files, the PDF report), ``claimview``
(the claim page's view model), ``render`` (templates, request context, HTML errors).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from . import auth, files, merchant, review
from .render import STATIC

__all__ = ["install_console", "router"]

router = APIRouter()
for _module in (auth, review, merchant, files):
    router.include_router(_module.router)


def install_console(app: FastAPI) -> None:
    """Mount the console's pages and static files on ``app``."""
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
