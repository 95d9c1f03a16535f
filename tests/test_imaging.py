"""load_photo: formats, orientation, limits and the errors for bad input."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, encode, jpeg, textured_rgb
from refundlens import (
    CorruptPhotoError,
    EmptyPhotoError,
    PhotoTooLargeError,
    UnsupportedFormatError,
    load_photo,
)
from refundlens.imaging import sniff_format

ARRAY = textured_rgb(64, 48, seed=3)


@pytest.mark.parametrize("fmt, expected", [
    ("JPEG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WEBP"), ("TIFF", "TIFF"), ("BMP", "BMP"),
    ("GIF", "GIF"), ("AVIF", "AVIF"),
])
def test_every_accepted_format_loads(fmt, expected):
    photo = load_photo(encode(ARRAY, fmt), name=f"x.{fmt.lower()}")
    assert photo.format == expected
    assert photo.pixels.shape == (48, 64, 3) and photo.pixels.dtype == np.uint8
    if fmt in ("PNG", "BMP", "TIFF"):  # lossless formats give the pixels back exactly
        assert np.array_equal(photo.pixels, ARRAY)


def test_heif_from_a_real_file_and_generated():
    real = load_photo(DATA / "imaging" / "samplefilehub.heif")
    assert real.format == "HEIF" and real.width == 640 and real.height == 426
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(textured_rgb(128, 96))).save(buffer, quality=90)
    generated = load_photo(buffer.getvalue(), name="gen.heic")
    assert generated.format == "HEIF" and (generated.width, generated.height) == (128, 96)


def test_real_avif():
    photo = load_photo(DATA / "imaging" / "sample1.avif")
    assert photo.format == "AVIF" and photo.width > 100


def test_original_bytes_and_sha256_are_kept(tmp_path):
    data = jpeg(ARRAY, 80)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    photo = load_photo(path)
    import hashlib

    assert photo.data == data
    assert photo.sha256 == hashlib.sha256(data).hexdigest()
    assert photo.source == str(path)


def test_exif_orientation_is_applied():
    upright = load_photo(DATA / "imaging" / "landscape_1.jpg")
    rotated = load_photo(DATA / "imaging" / "landscape_6.jpg")
    assert rotated.orientation == 6
    assert (rotated.width, rotated.height) == (upright.width, upright.height)
    a, b = upright.gray.astype(int), rotated.gray.astype(int)
    same = np.abs(a - b).mean()
    # the two files are separate encodes of one scene: compare against the wrong turns
    for wrong in (a[::-1], a[:, ::-1], a[::-1, ::-1]):
        assert same < 0.4 * np.abs(wrong - b).mean()


def test_gif_first_frame_and_frame_count():
    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (10, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    photo = load_photo(buffer.getvalue(), name="anim.gif")
    assert photo.frames == 2
    assert photo.pixels.mean() < 50


def test_alpha_is_split_and_composited_over_white():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 3] = 0
    rgba[:5, :, :3] = 0
    rgba[:5, :, 3] = 255
    photo = load_photo(encode(rgba, "PNG"), name="alpha.png")
    assert photo.alpha is not None and photo.alpha.shape == (10, 10)
    assert photo.pixels[0, 0].tolist() == [0, 0, 0]
    assert photo.pixels[9, 9].tolist() == [255, 255, 255]


def test_grayscale_and_16_bit():
    gray = load_photo(encode(ARRAY[..., 0], "PNG"), name="g.png")
    assert gray.pixels.shape == (48, 64, 3)
    deep = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(deep).save(buffer, format="PNG")
    photo = load_photo(buffer.getvalue(), name="deep.png")
    assert photo.pixels[-1, -1, 0] == 255 and photo.pixels[0, 0, 0] == 0


def test_one_pixel_image():
    photo = load_photo(encode(np.zeros((1, 1, 3), np.uint8), "PNG"), name="dot.png")
    assert (photo.width, photo.height) == (1, 1)


def test_wrong_extension_is_judged_by_content(tmp_path):
    path = tmp_path / "really-a-png.jpg"
    path.write_bytes(encode(ARRAY, "PNG"))
    assert load_photo(path).format == "PNG"


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(EmptyPhotoError, match=r"empty\.jpg.*empty.*accepted: JPEG"):
        load_photo(path)


@pytest.mark.parametrize("content, looks_like", [
    (b"hello, this is a text file\n" * 10, "text"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
    (b"PK\x03\x04" + bytes(100), "ZIP"),
    (bytes(range(256)) * 4, "binary"),
])
def test_not_an_image(tmp_path, content, looks_like):
    path = tmp_path / "IMG_2.jpg"
    path.write_bytes(content)
    with pytest.raises(UnsupportedFormatError) as info:
        load_photo(path)
    message = str(info.value)
    assert "IMG_2.jpg" in message and looks_like in message
    assert "accepted: JPEG, PNG, WebP, HEIC/HEIF, AVIF, TIFF, BMP, GIF" in message
    assert info.value.source == str(path)


def test_unsupported_image_format_tga(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(ARRAY).save(buffer, format="TGA")
    with pytest.raises(UnsupportedFormatError, match="accepted"):
        load_photo(buffer.getvalue(), name="IMG_2.tga")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_file(fmt):
    data = encode(textured_rgb(256, 256), fmt, **({"quality": 90} if fmt != "PNG" else {}))
    with pytest.raises(CorruptPhotoError, match=r"cut\.\w+.*(truncated|damaged)"):
        load_photo(data[: len(data) // 2], name=f"cut.{fmt.lower()}")


def test_truncated_file_is_refused_after_weasyprint_is_imported():
    """WeasyPrint flips Pillow's global LOAD_TRUNCATED_IMAGES on import; the PDF report
    puts it back, so a truncated upload is still refused in a process that made a PDF."""
    from refundlens.reports.pdf import _weasyprint

    _weasyprint()
    data = encode(textured_rgb(256, 256), "JPEG", quality=90)
    with pytest.raises(CorruptPhotoError, match="truncated|damaged"):
        load_photo(data[: len(data) // 2], name="cut.jpg")


def test_missing_file(tmp_path):
    with pytest.raises(CorruptPhotoError, match="not found"):
        load_photo(tmp_path / "nope.jpg")


def test_byte_limit(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg(ARRAY))
    with pytest.raises(PhotoTooLargeError, match=r"big\.jpg.*limit"):
        load_photo(path, max_bytes=100)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` × ``height`` but carries almost no data (a bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_decompression_bomb_refused_before_decoding():
    with pytest.raises(PhotoTooLargeError, match=r"bomb\.png.*10000 megapixels.*over the limit"):
        load_photo(_png_header_only(100_000, 100_000), name="bomb.png")


def test_pixel_limit_is_configurable():
    with pytest.raises(PhotoTooLargeError, match="megapixels"):
        load_photo(jpeg(ARRAY), name="small.jpg", max_pixels=1000)


def test_sniff_format_recognises_heif_and_avif_brands():
    assert sniff_format(b"\x00\x00\x00\x18ftypheic" + bytes(20)) == "HEIF"
    assert sniff_format(b"\x00\x00\x00\x18ftypavif" + bytes(20)) == "AVIF"
    assert sniff_format(b"\x00\x00\x00\x18ftypisom" + bytes(20)) is None


def test_photo_pickles_without_cached_gray():
    import pickle

    photo = load_photo(jpeg(ARRAY), name="p.jpg")
    _ = photo.gray
    clone = pickle.loads(pickle.dumps(photo))
    assert clone.sha256 == photo.sha256 and np.array_equal(clone.pixels, photo.pixels)
    assert np.array_equal(clone.gray, photo.gray)
