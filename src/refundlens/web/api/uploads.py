"""Multipart form reading with limits checked before the body is parsed."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile

from ...claims.intake import Upload
from ...errors import InvalidInput, RequestError

__all__ = ["read_form"]


class PayloadTooLarge(RequestError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(RequestError):
    code = "unsupported_media_type"
    status = 415


_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def read_form(request: Request, *, max_files: int) -> tuple[dict[str, str], dict[str, list[Upload]]]:
    """The form's text fields and its files by field name.

    Raises:
        PayloadTooLarge: the declared body is larger than ``max_files`` photos can be.
        UnsupportedMediaType: not a form (multipart, or url-encoded for text-only forms).
    """
    settings = request.app.state.service.settings
    limit = settings.max_bytes * max_files + 1024 * 1024
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {int(declared)} bytes is larger than "
                              f"{max_files} photos of at most {settings.max_bytes} bytes")
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() not in _FORM_TYPES:
        raise UnsupportedMediaType(
            f"content-type: got {content_type.split(';')[0] or 'none'!r}, expected "
            f"multipart/form-data (fields and files)", field="content-type")
    form = await request.form(max_files=max_files + 1, max_fields=100)
    fields: dict[str, str] = {}
    files: dict[str, list[Upload]] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            files.setdefault(name, []).append(Upload(data, value.filename or "", name))
        else:
            fields[name] = str(value)
    await form.close()
    return fields, files


def single(files: dict[str, list[Upload]], name: str) -> Upload:
    uploads = files.get(name) or []
    if len(uploads) != 1:
        raise InvalidInput(f"{name}: expected exactly one file in the form field {name!r}, "
                           f"got {len(uploads)}", field=name)
    return uploads[0]


