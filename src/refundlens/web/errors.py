"""One JSON error shape for every failure the API answers::

    {"error": {"code": "invalid_input", "message": "amount: got 'x', expected …",
               "field": "amount"}}

``code`` is stable (clients branch on it), ``message`` is for people, ``field`` names the
input at fault when one is.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ConfigError, PhotoError, RefundLensError, RequestError

__all__ = ["error_response", "install_error_handlers", "validation_message"]

log = logging.getLogger(__name__)

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "invalid_input", 429: "rate_limited"}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "field": field}},
                        status_code=status, headers=headers)


#: loc parts pydantic adds for the member of a union or a validator ("str", "int",
#: "dict[str,any]", "literal['approved','rejected']", "function-after[...]"): not fields
_UNION_TAG = re.compile(r"^(str|int|float|bool|bytes|decimal|none|list|dict|set|tuple|"
                        r"date|datetime|time|url|uuid)$|[\[(]")
_SOURCES = ("body", "query", "path", "header", "cookie")


def _field_of(loc: Sequence[Any]) -> str | None:
    """``("body", "items", 0, "dict[str,any]", "sku")`` → ``"items[0].sku"``."""
    parts = list(loc[1:] if loc and loc[0] in _SOURCES else loc)
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _UNION_TAG.search(str(part)):
            text += f".{part}" if text else str(part)
    return text or None


def validation_message(errors: Sequence[dict[str, Any]]) -> tuple[str | None, str]:
    """The field at fault and one message for FastAPI's request validation errors: the
    first error's field, with every alternative pydantic tried for it (a union reports
    one error per member)."""
    if not errors:
        return None, "request: not accepted"
    first = errors[0]
    if first.get("type") == "json_invalid":
        where = first.get("loc", ("body", "?"))[-1]
        error = (first.get("ctx") or {}).get("error", "not JSON")
        return None, f"request body: not valid JSON ({error} at character {where})"
    field = _field_of(first.get("loc", ()))
    name = field or "request body"
    kind = first.get("type")
    if kind == "missing":
        return field, f"{name}: missing; this field is required"
    if kind == "extra_forbidden":
        return field, f"{name}: unknown field; it is not accepted here"
    expected: list[str] = []
    for error in errors:
        if _field_of(error.get("loc", ())) != field:
            continue
        msg = str(error.get("msg", "not accepted"))
        msg = msg[len("Input should be "):] if msg.startswith("Input should be ") else msg
        if msg not in expected:
            expected.append(msg)
    got = repr(first.get("input"))
    got = got if len(got) <= 80 else got[:77] + "..."
    return field, f"{name}: got {got}, expected {' or '.join(expected)}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status == 429 else None
        if exc.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return error_response(exc.status, exc.code, str(exc), exc.field, headers)

    @app.exception_handler(PhotoError)
    async def _photo_error(_: Request, exc: PhotoError) -> JSONResponse:
        return error_response(422, exc.code, str(exc), "file")

    @app.exception_handler(ConfigError)
    async def _config_error(_: Request, exc: ConfigError) -> JSONResponse:
        return error_response(422, exc.code, str(exc))

    @app.exception_handler(RefundLensError)
    async def _ours(_: Request, exc: RefundLensError) -> JSONResponse:
        log.error("request failed: %s", exc)
        return error_response(500, exc.code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = validation_message(exc.errors())
        return error_response(422, "invalid_input", message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
            message = f"{request.method} {request.url.path}: {message.lower()}; see /docs"
        return error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "error"),
                              message, None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal_error",
                              "internal error; the request changed nothing that was not "
                              "committed — retry with the same Idempotency-Key")
