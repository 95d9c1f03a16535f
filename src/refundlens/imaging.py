"""Photo intake: the only place that decodes image files.

:func:`load_photo` sniffs the format from the bytes (never the file name), refuses what is
empty, too large, not an image or truncated with a :class:`~refundlens.errors.PhotoError`
that names the file and what is accepted, checks the declared pixel count before any pixel
is allocated (decompression bombs), applies EXIF orientation and reads the metadata that
detectors need (EXIF, XMP packets, text chunks, the EXIF thumbnail, JPEG quantization
tables) once.

:func:`load_preview` decodes a photo for display only (report figures): the same checks
and orientation, reduced in scale while decoding, without the metadata.

:func:`decode_embedded` decodes small images found inside a file (EXIF thumbnails) under
the same limits.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import (
    ACCEPTED_FORMATS_TEXT,
    CorruptPhotoError,
    EmptyPhotoError,
    PhotoTooLargeError,
    UnsupportedFormatError,
)
from .models import Photo
from .xmp import find_packets

__all__ = ["CONTENT_TYPES", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "PhotoInfo", "Preview",
           "decode_embedded", "load_photo", "load_preview", "probe_photo", "sniff_format",
           "sniff_video"]

#: 50 MiB: three times the largest phone JPEG/HEIC we have seen (a 200 MP JPEG is ~25 MB).
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
#: 100 megapixels: above every phone main camera in common use (12–50 MP binned output,
#: 108 MP full), and small enough that an RGB copy (300 MB) stays inside the memory target.
DEFAULT_MAX_PIXELS = 100_000_000

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


def _register_heif() -> None:
    """pillow-heif registers its opener with Pillow; done once, on first load."""
    global _HEIF_READY
    if not _HEIF_READY:
        import pillow_heif

        pillow_heif.register_heif_opener()
        _HEIF_READY = True


_HEIF_READY = False


def sniff_format(data: bytes) -> str | None:
    """The image format by magic bytes (``"JPEG"``, ``"PNG"``, ...), or None."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM") and len(head) >= 14:
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brands = {head[8:12]} | {data[i:i + 4] for i in range(16, min(len(data), 64), 4)}
        if brands & _AVIF_BRANDS:
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIF"
    return None


def sniff_video(data: bytes) -> str | None:
    """The media type of a video by its content (MP4, QuickTime, WebM), or None — also for
    HEIC/AVIF photos, which are ISO-BMFF (``ftyp``) files like MP4."""
    if len(data) >= 12 and data[4:8] == b"ftyp":
        if sniff_format(data) is not None:
            return None
        return "video/quicktime" if data[8:10] == b"qt" else "video/mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm"
    return None


def _describe_content(data: bytes) -> str:
    """A short guess at what a non-image file is, for the error message."""
    head = data[:16]
    known = [
        (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive"),
        (b"\x1f\x8b", "a gzip archive"), (b"Rar!", "a RAR archive"),
        (b"\x00\x00\x00\x18ftypmp4", "an MP4 video"), (b"8BPS", "a Photoshop PSD"),
        (b"\x00\x00\x01\x00", "a Windows icon"), (b"\x00\x00\x02\x00", "a Windows cursor"),
    ]
    for magic, what in known:
        if head.startswith(magic):
            return what
    if head[4:8] == b"ftyp":
        return f"an ISO media file of brand {head[8:12].decode('latin-1')!r}"
    if head[:4] == b"RIFF":
        return f"a RIFF file of type {head[8:12].decode('latin-1')!r}"
    sample = data[:512]
    try:
        sample.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unrecognised binary data"


def _size_text(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def load_photo(
    source: str | os.PathLike[str] | bytes,
    *,
    name: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Photo:
    """Load and validate a photo from a path or from bytes.

    Args:
        source: a file path, or the file's bytes.
        name: how errors and results name the photo; defaults to the path.
        max_bytes: refuse larger files before reading them.
        max_pixels: refuse images whose declared width × height is larger, before decoding.

    Raises:
        EmptyPhotoError, UnsupportedFormatError, PhotoTooLargeError, CorruptPhotoError:
            each names the photo, its size and what is accepted.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "<bytes>"
    else:
        path = Path(source)
        label = name or str(path)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise CorruptPhotoError(f"photo {label!r}: file not found", source=label) from None
        except OSError as exc:
            raise CorruptPhotoError(f"photo {label!r}: cannot read: {exc.strerror}",
                                    source=label) from exc
        if path.is_dir():
            raise UnsupportedFormatError(f"photo {label!r}: is a directory, not an image file; "
                                         f"accepted: {ACCEPTED_FORMATS_TEXT}", source=label)
        if size > max_bytes:
            raise PhotoTooLargeError(
                f"photo {label!r} ({_size_text(size)}): larger than the limit of "
                f"{_size_text(max_bytes)}", source=label)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CorruptPhotoError(f"photo {label!r}: cannot read: {exc.strerror}",
                                    source=label) from exc
    return _decode(data, label, max_bytes=max_bytes, max_pixels=max_pixels)


@dataclass(frozen=True)
class PhotoInfo:
    """What the header says: enough to accept or refuse an upload without decoding it."""

    format: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


#: Media type per sniffed format.
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
                 "HEIF": "image/heif", "AVIF": "image/avif", "TIFF": "image/tiff",
                 "BMP": "image/bmp", "GIF": "image/gif"}


def probe_photo(data: bytes, *, name: str = "<bytes>", max_bytes: int = DEFAULT_MAX_BYTES,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> PhotoInfo:
    """Check an upload's bytes, format and declared size from its header, without decoding
    the pixels (fast enough for intake: about a millisecond). A photo that passes can still
    turn out truncated when :func:`load_photo` decodes it.

    Raises:
        the same errors as :func:`load_photo`, with the same messages.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im, fmt = _open_header(data, name, max_bytes=max_bytes, max_pixels=max_pixels)
        width, height = im.size
        im.close()
    return PhotoInfo(fmt, width, height)


def _open_header(data: bytes, label: str, *, max_bytes: int,
                 max_pixels: int) -> tuple[Image.Image, str]:
    """Open ``data`` lazily (header only) after every check that needs no pixels."""
    size = _size_text(len(data))
    if not data:
        raise EmptyPhotoError(f"photo {label!r}: the file is empty (0 bytes); accepted: "
                              f"{ACCEPTED_FORMATS_TEXT}", source=label)
    if len(data) > max_bytes:
        raise PhotoTooLargeError(f"photo {label!r} ({size}): larger than the limit of "
                                 f"{_size_text(max_bytes)}", source=label)
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedFormatError(
            f"photo {label!r} ({size}): not an image in an accepted format (the content looks "
            f"like {_describe_content(data)}); accepted: {ACCEPTED_FORMATS_TEXT}", source=label)
    if fmt in ("HEIF", "AVIF"):
        _register_heif()

    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        # Pillow's own guard (2 × MAX_IMAGE_PIXELS) can fire before our check
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        amount = f"{int(declared.group(1)) / 1e6:.0f} megapixels" if declared else \
            "too many pixels"
        raise PhotoTooLargeError(
            f"photo {label!r} ({size}): declares {amount}, over the limit of "
            f"{max_pixels / 1e6:.0f} megapixels", source=label) from exc
    except UnidentifiedImageError as exc:
        raise CorruptPhotoError(
            f"photo {label!r} ({size}): looks like {fmt} but its header cannot be read; "
            f"the file is damaged or truncated", source=label) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise CorruptPhotoError(f"photo {label!r} ({size}): damaged {fmt} data: {exc}",
                                source=label) from exc

    width, height = im.size
    if width <= 0 or height <= 0:
        raise CorruptPhotoError(f"photo {label!r} ({size}): declares an empty image "
                                f"({width}x{height})", source=label)
    if width * height > max_pixels:
        raise PhotoTooLargeError(
            f"photo {label!r} ({size}): declares {width}x{height} = "
            f"{width * height / 1e6:.1f} megapixels, over the limit of "
            f"{max_pixels / 1e6:.0f} megapixels", source=label)
    return im, fmt


def _decode(data: bytes, label: str, *, max_bytes: int, max_pixels: int) -> Photo:
    size = _size_text(len(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im, fmt = _open_header(data, label, max_bytes=max_bytes, max_pixels=max_pixels)
        _load_pixels(im, label, fmt, size)

        exif, orientation, thumbnail = _read_exif(im, data, fmt)
        text = _read_text(im)
        xmp = _read_xmp(im, data)
        quantization = _read_quantization(im)
        frames = int(getattr(im, "n_frames", 1) or 1)
        mode = im.mode
        try:
            oriented = ImageOps.exif_transpose(im) if orientation != 1 else im
        except (OSError, ValueError, SyntaxError) as exc:
            raise CorruptPhotoError(f"photo {label!r} ({size}): cannot apply orientation: "
                                    f"{exc}", source=label) from exc
        pixels, alpha = _to_rgb(oriented)

    return Photo(
        source=label,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        pixels=pixels,
        alpha=alpha,
        mode=mode,
        orientation=orientation,
        exif=exif,
        xmp=xmp,
        text=text,
        exif_thumbnail=thumbnail,
        jpeg_quantization=quantization,
        frames=frames,
    )


def _load_pixels(im: Image.Image, label: str, fmt: str, size: str) -> None:
    """Decode ``im``'s pixels, damage and exhaustion raised as ours."""
    try:
        im.seek(0)
        im.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise CorruptPhotoError(
            f"photo {label!r} ({size}): the {fmt} data is truncated or damaged ({exc})",
            source=label) from exc
    except MemoryError as exc:
        raise PhotoTooLargeError(f"photo {label!r} ({size}): too large to decode",
                                 source=label) from exc


@dataclass(frozen=True)
class Preview:
    """A photo decoded for display: ``pixels`` (RGB uint8) reduced in scale, and the full
    photo's ``width`` and ``height`` as :func:`load_photo` orients it (the coordinate space
    of finding regions)."""

    pixels: np.ndarray
    width: int
    height: int


def load_preview(data: bytes, *, side: int, name: str = "<bytes>",
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Preview:
    """Decode a photo for display only, much faster than :func:`load_photo` for large ones:
    the same checks and the same orientation, but no metadata, and the pixels reduced while
    decoding so that the longer side is at least ``side`` (or the photo's own, if smaller)
    and under twice ``side``; the caller resizes to the exact size it shows.

    JPEGs are decoded at a reduced DCT scale (1/2, 1/4 or 1/8: a 12 MP photo for a
    1200 px figure decodes a quarter of the pixels, in about a quarter of the time); other
    formats are decoded whole, then box-reduced by a whole factor before any conversion.

    Raises:
        the same errors as :func:`load_photo`, with the same messages.
    """
    if side < 1:
        raise ValueError(f"side: got {side}, expected a positive number of pixels")
    label = name
    size = _size_text(len(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im, fmt = _open_header(data, label, max_bytes=max_bytes, max_pixels=max_pixels)
        width, height = im.size
        factor = side / max(width, height)
        if factor < 1.0 and fmt == "JPEG":
            im.draft(None, (max(1, round(width * factor)), max(1, round(height * factor))))
        _load_pixels(im, label, fmt, size)
        _, orientation, _ = _read_exif(im, data, fmt)
        try:
            # before any reduction: exif_transpose reads the orientation from ``im``
            oriented = ImageOps.exif_transpose(im) if orientation != 1 else im
        except (OSError, ValueError, SyntaxError) as exc:
            raise CorruptPhotoError(f"photo {label!r} ({size}): cannot apply orientation: "
                                    f"{exc}", source=label) from exc
        reduce_by = max(oriented.size) // side
        if reduce_by >= 2 and oriented.mode in ("L", "RGB"):
            oriented = oriented.reduce(reduce_by)
        pixels, _ = _to_rgb(oriented)
    if orientation in (5, 6, 7, 8):  # a quarter turn: the photo's width is its height
        width, height = height, width
    return Preview(pixels, width, height)


def _to_rgb(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB uint8 pixels, with alpha split off (and composited over white)."""
    alpha = None
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)), None
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
        gray = np.clip((arr - lo) / max(hi - lo, 1e-9) * 255.0, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)), None
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"))
        alpha = np.ascontiguousarray(rgba[..., 3])
        a = alpha[..., None].astype(np.float32) / 255.0
        rgb = rgba[..., :3].astype(np.float32) * a + 255.0 * (1.0 - a)
        return np.ascontiguousarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8)), alpha
    rgb = im if im.mode == "RGB" else im.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)), None


_EXIF_NAMES = {**ExifTags.TAGS}
_GPS_NAMES = {**ExifTags.GPSTAGS}


def _read_exif(im: Image.Image, data: bytes, fmt: str) -> tuple[dict[str, Any], int, bytes | None]:
    try:
        exif = im.getexif()
    except (OSError, ValueError, SyntaxError, TypeError, KeyError):
        return {}, 1, None
    out: dict[str, Any] = {}
    try:
        for tag, value in exif.items():
            out[_EXIF_NAMES.get(tag, f"Tag{tag:#06x}")] = value
        for tag, value in exif.get_ifd(ExifTags.IFD.Exif).items():
            out[_EXIF_NAMES.get(tag, f"Tag{tag:#06x}")] = value
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        if gps:
            out["GPSInfo"] = {_GPS_NAMES.get(t, f"Tag{t:#06x}"): v for t, v in gps.items()}
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, struct.error):
        pass  # a damaged sub-IFD loses that IFD only; the image is still usable
    orientation = out.get("Orientation", 1)
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1
    thumbnail = _read_thumbnail(exif, data) if fmt == "JPEG" else None
    return out, orientation, thumbnail


def _read_thumbnail(exif: Image.Exif, data: bytes) -> bytes | None:
    """The JPEG thumbnail in EXIF IFD1 (offsets are relative to the TIFF header)."""
    try:
        ifd1 = exif.get_ifd(ExifTags.IFD.IFD1)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, struct.error):
        return None
    offset, length = ifd1.get(0x0201), ifd1.get(0x0202)
    if not isinstance(offset, int) or not isinstance(length, int) or length <= 0:
        return None
    marker = data.find(b"Exif\x00\x00")
    if marker < 0:
        return None
    tiff_start = marker + 6
    thumb = data[tiff_start + offset: tiff_start + offset + length]
    return thumb if thumb.startswith(b"\xff\xd8") else None


def _read_text(im: Image.Image) -> dict[str, str]:
    text: dict[str, str] = {}
    chunks = getattr(im, "text", None)
    if isinstance(chunks, dict):
        for key, value in chunks.items():
            text[str(key)] = str(value)
    for key in ("comment", "parameters", "prompt", "workflow", "Description", "Software",
                "AIGC"):
        value = im.info.get(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and key not in text:
            text[key] = value
    return text


def _read_xmp(im: Image.Image, data: bytes) -> tuple[str, ...]:
    """Every XMP packet: those Pillow's parsers surface (JPEG APP1, PNG iTXt, WebP, TIFF
    tag 700) and those :func:`refundlens.xmp.find_packets` finds in the raw bytes."""
    surfaced: list[str] = []
    value = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if value:
        surfaced.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else
                        str(value))
    tag_v2 = getattr(im, "tag_v2", None)
    if tag_v2 is not None and 700 in tag_v2:
        raw = tag_v2[700]
        surfaced.append(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
    return find_packets(data, surfaced=surfaced)


def _read_quantization(im: Image.Image) -> dict[int, tuple[int, ...]] | None:
    tables = getattr(im, "quantization", None)
    if not tables:
        return None
    return {int(k): tuple(int(v) for v in table) for k, table in tables.items()}


def decode_embedded(data: bytes, *, max_pixels: int = 4_000_000) -> np.ndarray | None:
    """Decode a small embedded image (an EXIF thumbnail) to RGB, or None if it is damaged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
            if im.size[0] * im.size[1] > max_pixels:
                return None
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
            return None
