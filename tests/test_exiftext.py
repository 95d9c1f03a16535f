"""Core EXIF text decoding: charset prefixes, the UTF-16 XP tags, and the repair of UTF-8
that Pillow decoded as Latin-1 (also through a real file and load_photo)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import jpeg
from PIL import Image

from refundlens import load_photo
from refundlens.exiftext import decode_text, decode_utf16, repair_latin1


@pytest.mark.parametrize("raw, fixed", [
    ("AI生成".encode("utf-8").decode("latin-1"), "AI生成"),
    ('{"AIGC":{"Label":"1"}}', '{"AIGC":{"Label":"1"}}'),  # ASCII: unchanged
    ("Café", "Café"),  # real Latin-1 whose bytes are not UTF-8: unchanged
    ("已解码", "已解码"),  # already text beyond Latin-1: unchanged
])
def test_repair_latin1(raw, fixed):
    assert repair_latin1(raw) == fixed


@pytest.mark.parametrize("value, utf16, text", [
    (b"ASCII\x00\x00\x00Screenshot\x00", False, "Screenshot"),
    (b"\x00" * 8 + "截屏".encode("utf-8"), False, "截屏"),
    (b"UNICODE\x00" + "截屏 AI".encode("utf-16-le"), False, "截屏 AI"),
    (b"UNICODE\x00" + "截屏 AI".encode("utf-16-be"), False, "截屏 AI"),
    (b"JIS\x00\x00\x00\x00\x00" + "スクショ".encode("shift_jis"), False, "スクショ"),
    ("AI生成".encode("utf-16-le") + b"\x00\x00", True, "AI生成"),
    (tuple("AI生成".encode("utf-16-le")), True, "AI生成"),  # XP tags as byte values
    ("  AIç\x94\x9fæ\x88\x90\x00 ", False, "AI生成"),
])
def test_decode_text(value, utf16, text):
    assert decode_text(value, utf16=utf16) == text


@pytest.mark.parametrize("value", [None, "", "\x00\x00 ", b"ASCII\x00\x00\x00", 3.5, (1.0,)])
def test_decode_text_without_text_is_none(value):
    assert decode_text(value) is None


def test_decode_utf16_prefers_a_bom_then_the_plausible_byte_order():
    assert decode_utf16(b"\xfe\xff" + "截图".encode("utf-16-be")) == "截图"
    assert decode_utf16("Screenshot".encode("utf-16-be")) == "Screenshot"
    assert decode_utf16("Screenshot".encode("utf-16-le") + b"\x00") == "Screenshot"


def test_utf8_image_description_read_through_pillow_is_repaired():
    exif = Image.Exif()
    exif[0x010E] = "AI生成 截屏".encode("utf-8")  # written as UTF-8 bytes
    photo = load_photo(jpeg(np.full((16, 16, 3), 90, np.uint8), exif=exif.tobytes()))
    assert decode_text(photo.exif["ImageDescription"]) == "AI生成 截屏"
