"""MetadataDetector: EXIF thumbnail vs image, capture time vs claim and delivery, screenshot
and screen-recapture signs; and no finding on genuine camera files."""

from __future__ import annotations

import io
import struct
from datetime import datetime, timedelta, timezone

import cv2
import numpy as np
import pytest
from PIL import ExifTags, Image

from conftest import DATA, encode, jpeg, paste_patch, photo, textured_rgb
from refundlens import load_photo
from refundlens.detectors import DetectorContext
from refundlens.detectors.forensics.grid import unorient
from refundlens.detectors.metadata import (
    SCREEN_SIZES,
    MetadataDetector,
    capture_time,
    recapture_peaks,
)

GENUINE = DATA / "metadata"
CST = timezone(timedelta(hours=8))


def run(p, context: DetectorContext | None = None):
    return MetadataDetector().run(p, context or DetectorContext())


def codes(output) -> list[str]:
    return sorted(f.code for f in output.findings)


def only(output, code: str):
    hits = [f for f in output.findings if f.code == code]
    assert len(hits) == 1, codes(output)
    return hits[0]


# --- EXIF with a thumbnail, built by hand (Pillow does not write IFD1) ---------------------


def exif_segment(*, thumbnail: bytes | None, orientation: int = 1) -> bytes:
    """An APP1 Exif segment: little-endian TIFF with IFD0 (Orientation) and IFD1 pointing at
    a JPEG thumbnail (CIPA DC-008 §4.5.4: JPEGInterchangeFormat / ...Length)."""
    ifd0 = 8
    ifd1 = ifd0 + 2 + 12 + 4
    data_at = ifd1 + 2 + 2 * 12 + 4
    tiff = b"II*\x00" + struct.pack("<I", ifd0)
    tiff += struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack("<I", ifd1 if thumbnail else 0)
    if thumbnail:
        tiff += struct.pack("<H", 2)
        tiff += struct.pack("<HHII", 0x0201, 4, 1, data_at)
        tiff += struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail))
        tiff += struct.pack("<I", 0) + thumbnail
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def with_thumbnail(stored: np.ndarray, *, thumb_source: np.ndarray | None = None,
                   orientation: int = 1, size: tuple[int, int] = (160, 120),
                   quality: int = 90) -> bytes:
    """A JPEG of ``stored`` (stored orientation) whose EXIF thumbnail is ``thumb_source``
    (default: ``stored`` itself, as a camera writes it) reduced to ``size``."""
    source = stored if thumb_source is None else thumb_source
    thumb = jpeg(cv2.resize(source, size, interpolation=cv2.INTER_AREA), 75)
    main = jpeg(stored, quality)
    return main[:2] + exif_segment(thumbnail=thumb, orientation=orientation) + main[2:]


def exif_jpeg(array: np.ndarray, *, ifd0: dict | None = None, exif_ifd: dict | None = None,
              fmt: str = "JPEG") -> bytes:
    exif = Image.Exif()
    for tag, value in (ifd0 or {}).items():
        exif[tag] = value
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    for tag, value in (exif_ifd or {}).items():
        sub[tag] = value
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, exif=exif, **({"quality": 90}
                                                                   if fmt == "JPEG" else {}))
    return buffer.getvalue()


# --- thumbnail ---------------------------------------------------------------------------


def test_thumbnail_of_the_same_image_matches():
    out = run(photo(with_thumbnail(textured_rgb(640, 480, seed=3))))
    assert "METADATA_THUMBNAIL_MISMATCH" not in codes(out)
    assert out.info["thumbnail_difference"] < 0.05


def test_pasted_patch_missing_from_thumbnail_is_flagged():
    original = textured_rgb(640, 480, seed=3)
    forged = paste_patch(original, (380, 160, 150, 120), color=(25, 20, 20))
    out = run(photo(with_thumbnail(forged, thumb_source=original)))
    finding = only(out, "METADATA_THUMBNAIL_MISMATCH")
    assert float(finding.details["difference"]) >= 0.12
    assert 0.5 <= finding.score <= 1.0
    r = finding.region
    assert r.x <= 400 and r.x + r.width >= 510 and r.y <= 180 and r.y + r.height >= 260, r
    assert finding.map is not None and finding.map.max() > 0.5
    assert "EXIF" in finding.message_en and "缩略图" in finding.message_zh


def test_recompression_alone_is_not_a_mismatch():
    image = textured_rgb(640, 480, seed=5)
    thumb = jpeg(cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA), 75)
    heavy = jpeg(load_photo(jpeg(image, 95)).pixels, 40)
    out = run(photo(heavy[:2] + exif_segment(thumbnail=thumb) + heavy[2:]))
    assert "METADATA_THUMBNAIL_MISMATCH" not in codes(out)
    assert out.info["thumbnail_difference"] < 0.06


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_thumbnail_is_compared_in_stored_orientation(orientation):
    upright = textured_rgb(480, 640, seed=7) if orientation in (6, 8) else \
        textured_rgb(640, 480, seed=7)
    stored = np.ascontiguousarray(unorient(upright, orientation))
    clean = photo(with_thumbnail(stored, orientation=orientation))
    assert clean.orientation == orientation and clean.pixels.shape == upright.shape
    assert "METADATA_THUMBNAIL_MISMATCH" not in codes(run(clean))

    forged_upright = paste_patch(upright, (60, 80, 120, 120), color=(240, 240, 30))
    forged = np.ascontiguousarray(unorient(forged_upright, orientation))
    finding = only(run(photo(with_thumbnail(forged, thumb_source=stored,
                                            orientation=orientation))),
                   "METADATA_THUMBNAIL_MISMATCH")
    r = finding.region  # in upright pixels, around the patch at (60, 80)
    assert r.x <= 80 and r.x + r.width >= 160 and r.y <= 100 and r.y + r.height >= 180, r


def test_letterboxed_thumbnail_of_a_3_2_photo_matches():
    image = textured_rgb(600, 400, seed=9)
    thumb = np.zeros((120, 160, 3), np.uint8)
    thumb[6:6 + 107] = cv2.resize(image, (160, 107), interpolation=cv2.INTER_AREA)
    main = jpeg(image, 90)
    data = main[:2] + exif_segment(thumbnail=jpeg(thumb, 80)) + main[2:]
    out = run(photo(data))
    assert "METADATA_THUMBNAIL_MISMATCH" not in codes(out)
    assert out.info["thumbnail_difference"] < 0.05


def test_crop_of_the_captured_frame_is_not_a_mismatch():
    frame = textured_rgb(800, 600, seed=11)
    crop = np.ascontiguousarray(frame[90:90 + 480, 120:120 + 640])  # same 4:3 aspect
    out = run(photo(with_thumbnail(crop, thumb_source=frame)))
    assert "METADATA_THUMBNAIL_MISMATCH" not in codes(out)
    assert out.info.get("thumbnail_cropped") is True


# --- capture time ------------------------------------------------------------------------


def timed(original: str, offset: str | None = None) -> bytes:
    fields = {0x9003: original}
    if offset:
        fields[0x9011] = offset
    return exif_jpeg(textured_rgb(64, 48), ifd0={0x010F: "Apple", 0x0110: "iPhone 13"},
                     exif_ifd=fields)


def test_capture_time_reads_offset():
    taken = capture_time(photo(timed("2026:11:20 10:00:00", "+08:00")))
    assert taken.iso == "2026-11-20T10:00:00+08:00" and taken.field == "EXIF DateTimeOriginal"


def _xmp_jpeg(body: str, *, attrs: str = "", prefix: str = "exif") -> bytes:
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
           f'02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:{prefix}="http://ns.'
           'adobe.com/exif/1.0/" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
           f'{attrs}>{body}</rdf:Description></rdf:RDF></x:xmpmeta>')
    return jpeg(textured_rgb(64, 48), xmp=xmp.encode())


@pytest.mark.parametrize("data, iso, field", [
    (_xmp_jpeg("<photoshop:DateCreated>2026-11-20T10:00:00+08:00</photoshop:DateCreated>"),
     "2026-11-20T10:00:00+08:00", "XMP photoshop:DateCreated"),
    (_xmp_jpeg("", attrs='ex:DateTimeOriginal="2026-11-20T02:00:00Z"', prefix="ex"),
     "2026-11-20T02:00:00+00:00", "XMP exif:DateTimeOriginal"),  # any prefix, by namespace
    (_xmp_jpeg("<exif:DateTimeOriginal>2026-11-20T10:00:00</exif:DateTimeOriginal><bad"),
     "2026-11-20T10:00:00", "XMP exif:DateTimeOriginal"),  # damaged XMP: read by pattern
])
def test_capture_time_from_xmp(data, iso, field):
    taken = capture_time(load_photo(data))
    assert (taken.iso, taken.field) == (iso, field)


def test_taken_after_the_claim():
    context = DetectorContext(claim_time=datetime(2026, 11, 20, 9, 0, tzinfo=CST))
    out = run(photo(timed("2026:11:22 18:30:00", "+08:00")), context)
    finding = only(out, "METADATA_CAPTURE_AFTER_CLAIM")
    assert finding.details["captured_at"] == "2026-11-22T18:30:00+08:00"
    assert finding.details["claim_time"] == "2026-11-20T09:00:00+08:00"
    assert finding.score == pytest.approx(1.0)  # more than a day past the tolerance
    assert "2026-11-22T18:30:00+08:00" in finding.message_en


def test_taken_before_delivery():
    context = DetectorContext(delivered_at=datetime(2026, 11, 18, 15, 0, tzinfo=CST),
                              claim_time=datetime(2026, 11, 20, 9, 0, tzinfo=CST))
    out = run(photo(timed("2026:11:18 11:00:00", "+08:00")), context)
    assert codes(out) == ["METADATA_CAPTURE_BEFORE_DELIVERY"]
    finding = out.findings[0]
    assert finding.details["delivered_at"] == "2026-11-18T15:00:00+08:00"
    assert 0.6 <= finding.score < 0.8  # 3 h past a 1 h tolerance


def test_inside_the_window_or_without_context_no_finding():
    p = photo(timed("2026:11:19 12:00:00", "+08:00"))
    window = DetectorContext(delivered_at=datetime(2026, 11, 18, 15, 0, tzinfo=CST),
                             claim_time=datetime(2026, 11, 20, 9, 0, tzinfo=CST))
    assert codes(run(p, window)) == []
    assert codes(run(p)) == []
    # 30 minutes after the claim: inside the one-hour clock tolerance.
    late = DetectorContext(claim_time=datetime(2026, 11, 19, 11, 30, tzinfo=CST))
    assert codes(run(p, late)) == []


def test_without_timezone_the_zone_slack_applies():
    claim = DetectorContext(claim_time=datetime(2026, 11, 20, 9, 0, tzinfo=CST))
    # Five hours after the claim if the camera was on China time, but in UTC+14 it would
    # be before it: the zone is unknown, so no finding.
    assert codes(run(photo(timed("2026:11:20 14:00:00")), claim)) == []
    # Three days after: after the claim in every zone.
    finding = only(run(photo(timed("2026:11:23 19:00:00")), claim),
                   "METADATA_CAPTURE_AFTER_CLAIM")
    assert finding.details["timezone_recorded"] is False
    assert finding.details["tolerance_hours"] == 15.0


def test_unset_camera_clock_is_ignored():
    context = DetectorContext(delivered_at=datetime(2026, 11, 18, 15, 0, tzinfo=CST))
    for value in ("2000:01:01 00:00:00", "1998:06:01 10:00:00", "0000:00:00 00:00:00"):
        out = run(photo(timed(value)), context)
        assert codes(out) == [], value


# --- screenshot --------------------------------------------------------------------------


def phone_screen(width: int = 1170, height: int = 2532) -> np.ndarray:
    """An app screen: white status bar with a clock at the left and battery at the right,
    then content."""
    screen = np.full((height, width, 3), 255, np.uint8)
    bar = int(height * 0.045)
    cv2.putText(screen, "9:41", (int(width * 0.08), int(bar * 0.7)), cv2.FONT_HERSHEY_SIMPLEX,
                bar / 40, (0, 0, 0), max(2, bar // 15))
    cv2.rectangle(screen, (int(width * 0.82), int(bar * 0.35)),
                  (int(width * 0.9), int(bar * 0.7)), (0, 0, 0), -1)
    for i in range(3):
        x = int(width * (0.7 + 0.03 * i))
        cv2.rectangle(screen, (x, int(bar * (0.6 - 0.1 * i))), (x + width // 80, int(bar * 0.7)),
                      (0, 0, 0), -1)
    screen[bar + 20:] = cv2.resize(textured_rgb(390, 800, seed=2), (width, height - bar - 20))
    return screen


def test_phone_screenshot_png_is_flagged():
    out = run(photo(encode(phone_screen(), "PNG", compress_level=1), "upload.png"))
    finding = only(out, "METADATA_SCREENSHOT")
    assert set(finding.details["signals"]) == {"screen_size", "status_bar", "png",
                                               "no_camera_exif"}
    assert finding.score == pytest.approx(0.85)
    assert "1170\u00d72532" in finding.details["evidence_en"]
    assert "状态栏" in finding.details["evidence_zh"]


def test_ios_usercomment_marker_alone_suffices():
    data = exif_jpeg(textured_rgb(300, 200), exif_ifd={0x9286: b"ASCII\x00\x00\x00Screenshot"})
    finding = only(run(photo(data)), "METADATA_SCREENSHOT")
    assert "marker" in finding.details["signals"]
    assert "Screenshot" in finding.details["evidence_en"]


def test_android_software_marker():
    data = exif_jpeg(textured_rgb(300, 200), ifd0={0x0131: "Android screenshot"})
    assert "METADATA_SCREENSHOT" in codes(run(photo(data)))


@pytest.mark.parametrize("ifd0, said", [
    ({0x010E: "截屏 2024-05-01".encode("utf-8")}, "截屏"),  # UTF-8 that Pillow reads as Latin-1
    ({0x9C9C: "Screenshot".encode("utf-16-le")}, "Screenshot"),  # Windows XPComment
])
def test_marker_in_utf8_and_xp_text_fields(ifd0, said):
    finding = only(run(photo(exif_jpeg(textured_rgb(300, 200), ifd0=ifd0))),
                   "METADATA_SCREENSHOT")
    assert said in finding.details["evidence_en"]


def test_marker_in_xmp_usercomment_attribute():
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
           '02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.'
           'com/exif/1.0/" exif:UserComment="Screenshot"/></rdf:RDF></x:xmpmeta>')
    data = jpeg(textured_rgb(300, 200), xmp=xmp.encode())
    finding = only(run(photo(data)), "METADATA_SCREENSHOT")
    assert "XMP exif:UserComment" in finding.details["evidence_en"]


def test_screen_size_camera_photo_is_not_a_screenshot():
    # Camera EXIF present: a photo that happens to be 1080×2400 is a photo.
    data = exif_jpeg(cv2.resize(textured_rgb(270, 600, seed=4), (1080, 2400)),
                     ifd0={0x010F: "Xiaomi", 0x0110: "Redmi Note"},
                     exif_ifd={0x829A: 0.01, 0x829D: 1.8})
    assert (1080, 2400) in SCREEN_SIZES
    assert "METADATA_SCREENSHOT" not in codes(run(photo(data)))


def test_plain_png_is_not_a_screenshot():
    out = run(photo(encode(textured_rgb(640, 480), "PNG"), "product.png"))
    assert codes(out) == []
    assert out.info["screenshot_signals"] == ["no_camera_exif", "png"]


# --- recapture ---------------------------------------------------------------------------


def screen_recapture(content: np.ndarray, *, pitch: float = 2.2, angle: float = 1.5) -> bytes:
    """``content`` shown on an RGB-stripe LCD (3×3 sub-pixels per pixel, black matrix
    row), photographed slightly rotated at ``pitch`` camera pixels per screen pixel."""
    h, w = content.shape[:2]
    mask = np.zeros((3, 3, 3), np.float32)
    for c in range(3):
        mask[:2, c, c] = 1.4
    panel = np.repeat(np.repeat(content.astype(np.float32), 3, 0), 3, 1) * np.tile(mask, (h, w, 1))
    turn = cv2.getRotationMatrix2D((panel.shape[1] / 2, panel.shape[0] / 2), angle, 1.0)
    panel = cv2.warpAffine(panel, turn, (panel.shape[1], panel.shape[0]))
    scale = pitch / 3
    shot = cv2.resize(panel, (int(panel.shape[1] * scale), int(panel.shape[0] * scale)),
                      interpolation=cv2.INTER_AREA)
    shot = cv2.GaussianBlur(shot, (0, 0), 0.5) + np.random.default_rng(0).normal(0, 2, shot.shape)
    return jpeg(np.clip(shot, 0, 255).astype(np.uint8), 90)


def test_photo_of_a_screen_is_flagged_weakly():
    out = run(photo(screen_recapture(textured_rgb(700, 500, seed=3))))
    finding = only(out, "METADATA_RECAPTURE")
    assert finding.details["peak"] >= 1.4
    assert 0.3 <= finding.score <= 0.6
    assert finding.strength == "weak"
    assert "moiré" in finding.details["evidence_en"] and "摩尔纹" in finding.details["evidence_zh"]


def test_clean_photo_has_no_moire_peak():
    p = photo(jpeg(textured_rgb(1200, 900, seed=6), 90))
    assert recapture_peaks(p)["peak"] < 1.2
    assert codes(run(p)) == []


# --- genuine camera files ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in GENUINE.iterdir()
                                        if p.suffix.lower() in (".jpg", ".heif")))
def test_genuine_camera_files_raise_nothing(name):
    p = load_photo(GENUINE / name)
    # Claim filed long after and delivered long before the capture: no time finding either.
    taken = capture_time(p)
    context = DetectorContext()
    if taken is not None:
        moment = taken.local.replace(tzinfo=timezone.utc)
        context = DetectorContext(delivered_at=moment - timedelta(days=1),
                                  claim_time=moment + timedelta(days=1))
    out = run(p, context)
    assert codes(out) == [], (name, out.info)


def test_genuine_thumbnail_is_compared():
    out = run(load_photo(GENUINE / "DSCN0010.jpg"))
    assert out.info["thumbnail_difference"] < 0.08
    assert out.info["captured_at"] == "2008-10-22T16:28:39"
    assert out.info["timezone_recorded"] is False
