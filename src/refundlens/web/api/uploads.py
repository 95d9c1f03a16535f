"""Multipart form reading with limits checked before the body is parsed."""

from __future__ import annotations

from collections import Counter

from fastapi import Request
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.types import Message

from ...claims.intake import Upload
from ...errors import InvalidInput, PayloadTooLarge, RequestError, UnsupportedMediaType

__all__ = ["read_form"]


_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
#: what Starlette (1.x) says of a multipart body it cannot parse
_MALFORMED = ("Invalid multipart data.", "Missing boundary in multipart.")


async def read_form(request: Request, *, max_files: int, field: str | None = None
                    ) -> tuple[dict[str, str], dict[str, list[Upload]]]:
    """The form's text fields and its files by field name.

    The body is bounded while it arrives (``max_files`` files of at most ``max_bytes``
    each, plus 1 MiB for the fields), whether or not it declares its length, so a chunked
    upload cannot fill the disk or memory. ``field`` names the file field in messages.

    A multipart body must end with its closing boundary: python-multipart (0.0.34) does
    not check that, and a body cut off mid-way would parse as the parts before the cut,
    silently dropping a photo or a field.

    Raises:
        PayloadTooLarge: the body is larger than ``max_files`` photos can be.
        UnsupportedMediaType: not a form (multipart, or url-encoded for text-only forms).
        InvalidInput: more files than ``max_files`` (+1, so the caller can say how many);
            a text field given more than once; a text value in the file field ``field``.
        RequestError: (400, ``bad_request``) a malformed or truncated multipart body.
    """
    settings = request.app.state.service.settings
    limit = settings.max_bytes * max_files + 1024 * 1024
    too_large = (f"request body larger than {limit} bytes: at most {max_files} "
                 f"file(s) of {settings.max_bytes} bytes each are accepted")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{too_large} (declared {int(declared)} bytes)")
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() not in _FORM_TYPES:
        raise UnsupportedMediaType(
            f"content-type: got {content_type.split(';')[0] or 'none'!r}, expected "
            f"multipart/form-data (fields and files)", field="content-type")
    boundary = parse_options_header(content_type)[1].get(b"boundary")
    # the closing delimiter, found across chunk seams; a body may open with it (no parts)
    closing = b"\r\n--" + boundary + b"--" if boundary else b""
    seam, closed, received = b"\r\n", False, 0

    async def bounded_receive() -> Message:
        nonlocal received, seam, closed
        message = await request.receive()
        body = message.get("body", b"")
        received += len(body)
        if received > limit:
            raise PayloadTooLarge(too_large)
        if closing and not closed and body:
            keep = len(closing) - 1
            closed = closing in seam + body[:keep] or closing in body
            seam = body[-keep:] if len(body) >= keep else (seam + body)[-keep:]
        return message

    bounded = Request(request.scope, bounded_receive)
    try:
        form = await bounded.form(max_files=max_files + 1, max_fields=100)
    except HTTPException as exc:
        if exc.status_code == 400 and "Too many files" in str(exc.detail):
            name = field or "files"
            raise InvalidInput(f"{name}: more than {max_files + 1} files, the limit is "
                               f"{max_files}", field=field) from None
        if exc.status_code == 400 and exc.detail in _MALFORMED:
            raise RequestError(f"request body: malformed multipart/form-data ({exc.detail}); "
                               f"expected parts separated by the boundary the content-type "
                               f"names", code="bad_request") from None
        raise
    try:
        if closing and not closed:
            raise RequestError(f"request body: multipart/form-data truncated: {received} "
                               f"bytes end before the closing boundary "
                               f"'--{boundary.decode('latin-1')}--'; send the whole body",
                               code="bad_request")
        return await _fields_and_files(form, field=field)
    finally:
        await form.close()


async def _fields_and_files(form: FormData, *, field: str | None
                            ) -> tuple[dict[str, str], dict[str, list[Upload]]]:
    texts = [(name, value) for name, value in form.multi_items()
             if not isinstance(value, UploadFile)]
    for name, times in Counter(name for name, _ in texts).items():
        if field and name == field:
            raise InvalidInput(f"{field}: got a text value, expected a file (a part with a "
                               f"filename, e.g. curl -F '{field}=@photo.jpg')", field=field)
        if times > 1:
            raise InvalidInput(f"{name}: given {times} times; send it once", field=name)
    files: dict[str, list[Upload]] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            files.setdefault(name, []).append(Upload(data, value.filename or "", name))
    return {name: str(value) for name, value in texts}, files


def single(files: dict[str, list[Upload]], name: str) -> Upload:
    uploads = files.get(name) or []
    if len(uploads) != 1:
        raise InvalidInput(f"{name}: expected exactly one file in the form field {name!r}, "
                           f"got {len(uploads)}", field=name)
    return uploads[0]


