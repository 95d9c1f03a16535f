"""The whole RefundLens exception tree.

Every error the library raises on purpose is a ``RefundLensError``; foreign errors
(Pillow, OpenCV, c2pa, sqlite) are re-raised as one of these ``from exc`` so callers
catch one family::

    RefundLensError
    ├── PhotoError                 a photo could not be accepted (carries ``source``)
    │   ├── EmptyPhotoError        zero bytes
    │   ├── UnsupportedFormatError not an image, or a format we do not accept
    │   ├── PhotoTooLargeError     over the byte or pixel limit (decompression bombs)
    │   └── CorruptPhotoError      truncated or undecodable data
    ├── DetectorError              a detector failed on one photo (recorded, never raised
    │                              out of ``analyze``)
    ├── ConfigError                a setting or option has a value we do not accept
    │   └── PolicyError            a claims policy file or value is not accepted (carries
    │                              ``source`` and ``problems``)
    ├── BatchInputError            a batch input line is malformed (id, photo, references)
    └── RequestError               a service request cannot be done (carries ``field``)
        ├── InvalidInput           a field has a value we do not accept         (HTTP 422)
        ├── NotFound               no such merchant, product, order, claim …    (HTTP 404)
        ├── Unauthorized           no API key, or not a valid one              (HTTP 401)
        ├── PermissionDenied       the caller's role or merchant may not do it  (HTTP 403)
        ├── Conflict               the claim's state does not allow it, or an
        │                          Idempotency-Key was reused for another request (HTTP 409)
        ├── PayloadTooLarge        a request body larger than its uploads may be (HTTP 413)
        ├── UnsupportedMediaType   a body that is not a form or JSON as expected (HTTP 415)
        └── RateLimited            too many requests from one key               (HTTP 429)

Messages name what failed, for which input, and what is accepted.
"""

from __future__ import annotations

__all__ = [
    "ACCEPTED_FORMATS_TEXT",
    "BatchInputError",
    "Conflict",
    "InvalidInput",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "RequestError",
    "Unauthorized",
    "UnsupportedMediaType",
    "ConfigError",
    "CorruptPhotoError",
    "DetectorError",
    "EmptyPhotoError",
    "PhotoError",
    "PhotoTooLargeError",
    "PolicyError",
    "RefundLensError",
    "UnsupportedFormatError",
]

ACCEPTED_FORMATS_TEXT = "JPEG, PNG, WebP, HEIC/HEIF, AVIF, TIFF, BMP, GIF"


class RefundLensError(Exception):
    """Base of every error RefundLens raises on purpose."""

    code = "error"


class PhotoError(RefundLensError):
    """A photo could not be accepted. ``source`` names it (path or upload name)."""

    code = "photo_error"

    def __init__(self, message: str, *, source: str = "") -> None:
        super().__init__(message)
        self.source = source


class EmptyPhotoError(PhotoError):
    code = "photo_empty"


class UnsupportedFormatError(PhotoError):
    code = "photo_unsupported_format"


class PhotoTooLargeError(PhotoError):
    code = "photo_too_large"


class CorruptPhotoError(PhotoError):
    code = "photo_corrupt"


class DetectorError(RefundLensError):
    code = "detector_error"


class ConfigError(RefundLensError):
    code = "config_error"


class PolicyError(ConfigError):
    """A claims policy is not accepted. ``source`` names the file ("" for a policy built in
    code); ``problems`` holds every problem found, one line each, so all are fixed at once."""

    code = "policy_error"

    def __init__(self, message: str, *, source: str = "", problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.source = source
        self.problems = tuple(problems) or (message,)


class BatchInputError(RefundLensError):
    code = "batch_input_error"


class RequestError(RefundLensError):
    """A service request cannot be done. ``field`` names the input at fault, if one is."""

    code = "request_error"
    status = 400

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        if code is not None:
            self.code = code


class InvalidInput(RequestError):
    code = "invalid_input"
    status = 422


class NotFound(RequestError):
    code = "not_found"
    status = 404


class Unauthorized(RequestError):
    code = "unauthorized"
    status = 401


class PermissionDenied(RequestError):
    code = "forbidden"
    status = 403


class Conflict(RequestError):
    code = "conflict"
    status = 409


class PayloadTooLarge(RequestError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(RequestError):
    code = "unsupported_media_type"
    status = 415


class RateLimited(RequestError):
    code = "rate_limited"
    status = 429
