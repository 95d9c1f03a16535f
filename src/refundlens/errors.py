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
    └── BatchInputError            a batch input line is malformed (id, photo, references)

Messages name what failed, for which input, and what is accepted.
"""

from __future__ import annotations

__all__ = [
    "ACCEPTED_FORMATS_TEXT",
    "BatchInputError",
    "ConfigError",
    "CorruptPhotoError",
    "DetectorError",
    "EmptyPhotoError",
    "PhotoError",
    "PhotoTooLargeError",
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


class BatchInputError(RefundLensError):
    code = "batch_input_error"
