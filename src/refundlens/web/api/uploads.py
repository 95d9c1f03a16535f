"""Multipart form reading with limits checked before the body is parsed."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import Message

from ...claims.intake import Upload
from ...errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

__all__ = ["read_form"]


_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def read_form(request: Request, *, max_files: int, field: str | None = None
                    ) -> tuple[dict[str, str], dict[str, list[Upload]]]:
    """The form's text fields and its files by field name.

    The body is bounded while it arrives (``max_files`` files of at most ``max_bytes``
    each, plus 1 MiB for the fields), whether or not it declares its length, so a chunked
    upload cannot fill the disk or memory. ``field`` names the file field in messages.

    Raises:
        PayloadTooLarge: the body is larger than ``max_files`` photos can be.
        UnsupportedMediaType: not a form (multipart, or url-encoded for text-only forms).
        InvalidInput: more files than ``max_files`` (+1, so the caller can say how many).
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
    received = 0

    async def bounded_receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise PayloadTooLarge(too_large)
        return message

    bounded = Request(request.scope, bounded_receive)
    try:
        form = await bounded.form(max_files=max_files + 1, max_fields=100)
    except HTTPException as exc:
        if exc.status_code == 400 and "Too many files" in str(exc.detail):
            name = field or "files"
            raise InvalidInput(f"{name}: more than {max_files + 1} files, the limit is "
                               f"{max_files}", field=field) from None
        raise
    fields: dict[str, str] = {}
    files: dict[str, list[Upload]] = {}
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                files.setdefault(name, []).append(Upload(data, value.filename or "", name))
            else:
                fields[name] = str(value)
    finally:
        await form.close()
    return fields, files


def single(files: dict[str, list[Upload]], name: str) -> Upload:
    uploads = files.get(name) or []
    if len(uploads) != 1:
        raise InvalidInput(f"{name}: expected exactly one file in the form field {name!r}, "
                           f"got {len(uploads)}", field=name)
    return uploads[0]


