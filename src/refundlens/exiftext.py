"""EXIF text values as Unicode: charset prefixes, the UTF-16 XP tags, and UTF-8 that Pillow
decoded as Latin-1.

Pillow returns EXIF ASCII fields (``ImageDescription``, ``Artist``, ``Software``...) as
``str`` decoded as Latin-1, although phones and AI services write UTF-8 there ("AI生成",
JSON labels); ``UserComment`` as bytes behind an 8-byte character-code prefix; the Windows
``XP*`` tags as bytes (or a tuple of byte values) in UTF-16LE. :func:`decode_text` turns
any of these into the text that was written.

References:
    * CIPA DC-008-2023 (Exif 3.0), §4.6.5 UserComment character-code prefixes; §4.6.2
      the UTF-8 type that Exif 3.0 added for the ASCII fields.
    * Microsoft, Windows Property System: ``XPTitle``/``XPComment``/``XPAuthor``/
      ``XPKeywords``/``XPSubject`` (tags 0x9C9B–0x9C9F), UCS-2 little-endian.
"""

from __future__ import annotations

from typing import Any

__all__ = ["decode_text", "decode_utf16", "repair_latin1"]


def decode_text(value: Any, *, utf16: bool = False) -> str | None:
    """An EXIF value as text, NULs removed and stripped; None when it holds no text.

    Args:
        value: as Pillow gives it: ``str``, ``bytes`` or a tuple of byte values.
        utf16: the value is a Windows ``XP*`` tag (UTF-16LE without a prefix).
    """
    if value is None:
        return None
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        value = bytes(v & 0xFF for v in value)
    if isinstance(value, str):
        text = repair_latin1(value)
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        if utf16:
            text = data.decode("utf-16-le", "replace")
        elif data[:8] == b"UNICODE\x00":
            text = decode_utf16(data[8:])
        elif data[:8] == b"JIS\x00\x00\x00\x00\x00":
            text = data[8:].decode("shift_jis", "replace")
        else:
            if data[:8] in (b"ASCII\x00\x00\x00", b"\x00" * 8):
                data = data[8:]
            text = data.decode("utf-8", "replace")
    else:
        return None
    text = text.replace("\x00", "").strip()
    return text or None


def decode_utf16(data: bytes) -> str:
    """UCS-2 in the TIFF byte order, which the value alone does not tell: a BOM decides,
    else the byte order whose decoding is more plausible text. ASCII counts twice a CJK
    character: ASCII read in the wrong byte order lands in the CJK block ("S" = 0x0053
    reads as 0x5300 匀), while a CJK character read wrongly is ASCII only when its low
    byte is 0."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", "replace")
    data = data[: len(data) // 2 * 2]

    def plausible(text: str) -> int:
        return sum(2 if " " <= ch <= "~" else 1 for ch in text
                   if " " <= ch <= "~" or "\u3000" <= ch <= "\u9fff"
                   or "\uff00" <= ch <= "\uffef")

    little = data.decode("utf-16-le", "replace")
    big = data.decode("utf-16-be", "replace")
    return little if plausible(little) >= plausible(big) else big


def repair_latin1(text: str) -> str:
    """``text`` re-read as UTF-8 when it is UTF-8 bytes that were decoded as Latin-1
    ("AIç\\x94\\x9fæ\\x88\\x90" -> "AI生成"); otherwise unchanged (plain ASCII, real
    Latin-1 text such as "Café" whose bytes are not valid UTF-8, text already decoded)."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text
