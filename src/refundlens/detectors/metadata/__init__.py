"""What the file says about itself: EXIF thumbnail, capture time, screenshot and screen recapture.

What it detects:
    * ``METADATA_THUMBNAIL_MISMATCH``: the EXIF thumbnail (IFD1, written by the camera at
      capture) shows different content from the image. Editors that change pixels often
      keep the old thumbnail, so a crack painted onto the photo is missing from it. The
      thumbnail is turned by the EXIF orientation (cameras store it unrotated, like the
      main image), black letterbox bars are trimmed, the image is reduced to the
      thumbnail's size and both are compared after a per-channel tone fit (thumbnails come
      from a different pipeline: other sharpening, gamma, JPEG quality); an image cropped
      from the captured frame is located inside the thumbnail first (:mod:`.thumbnail`).
      Only a compact area that differs by far more than that pipeline does, or a
      thumbnail of another picture, counts.
    * ``METADATA_CAPTURE_AFTER_CLAIM`` / ``METADATA_CAPTURE_BEFORE_DELIVERY``: EXIF
      ``DateTimeOriginal`` (else ``DateTimeDigitized``; else XMP ``exif:DateTimeOriginal``
      / ``photoshop:DateCreated``) is after ``context.claim_time`` or before
      ``context.delivered_at``. With ``OffsetTimeOriginal`` (Exif 2.31) the instant is
      known up to ``clock_skew`` (default 1 h: phone clocks are network-set; the hour covers
      a DST slip). Without it the local time could be in any zone from UTC−12 to UTC+14,
      so the check allows ``zone_slack`` (14 h) on top. No context times, no finding.
    * ``METADATA_SCREENSHOT``: signs that the image is a screen capture, combined: an
      explicit marker (iOS writes EXIF/XMP ``UserComment`` "Screenshot"; Android and MIUI
      name it in ``Software``/descriptions; 截屏/截图 in Chinese builds), pixel dimensions
      of a common phone or tablet screen (:data:`SCREEN_SIZES`), a status bar (uniform top
      band with small high-contrast glyphs at both ends), PNG format, no camera EXIF, a
      screenshot-like file name. A marker alone suffices; otherwise the photo must lack
      camera EXIF and the signals must add up to :data:`SCREENSHOT_THRESHOLD`.
    * ``METADATA_RECAPTURE``: a photo of a screen. The sub-pixel grid of a display,
      sampled by the camera's sensor, aliases into moiré: a few strong isolated peaks in
      the spectrum of the photo's centre (low frequencies, where the scene lives, and the
      JPEG 8×8 grid frequencies left out), in luma and red–blue chroma (the sub-pixels are
      coloured) (:mod:`.screen`). Weak evidence, scored at most 0.6.

What it cannot do:
    Metadata is easy to strip or forge, and most upload pipelines strip it: a missing
    thumbnail or capture time says nothing. Thumbnails are only read from JPEG (where
    :func:`refundlens.load_photo` extracts IFD1); crops smaller than half the frame, and
    thumbnails that do not line up under any orientation, are not compared (recorded in
    ``info``); an edit of low contrast (under ~30 grey levels over ~3% of the picture) is
    below the threshold. Clocks of cameras (not phones) are often
    unset or wrong; times that look like factory defaults (before 2000, or 1 January
    00:00:00) are ignored. Screenshots cropped below the status bar, resized, and
    re-saved as JPEG leave only weak signals. Recapture of a high-resolution screen from
    far away, or downscaled afterwards, shows no moiré.

Known false positives:
    Thumbnails: software that rotates pixels but keeps the old thumbnail is tolerated
    (every orientation of the thumbnail is tried before a mismatch is reported).
    Capture time: a camera whose clock is wrong by more than the tolerance. Screenshot:
    a PNG product image saved at exactly a phone's screen size. Recapture: fine regular
    textures (woven fabric, mesh, grilles, halftone print) give spectral peaks too; the
    thresholds were set so that none of the genuine photos in the shared sample set
    (exif-samples cameras and phones, GroceryStore buyer photos) fires.

Measured (``bench/forensics_bench.py``): no METADATA finding on any of 1,276 genuine photos
(every shared exif-samples, GroceryStore and OpenCV original with re-saved variants, plus
generated clean photos); THUMBNAIL_MISMATCH on 27 of 34 genuine camera JPEGs with a patch
darkened in and the EXIF kept (the misses: low-contrast patches and thumbnails that do not
line up). Time: ~7 ms on a 12 MP JPEG (one core).

References:
    * CIPA DC-008-2023 (Exif 3.0): §4.6.4 (IFD1 thumbnail), Table 4 Orientation,
      §4.6.5 DateTimeOriginal, OffsetTimeOriginal (since Exif 2.31), UserComment.
    * Adobe XMP Specification Part 2: ``exif:DateTimeOriginal``, ``photoshop:DateCreated``.
    * J. Kee, H. Farid, "Digital image authentication from thumbnails", SPIE Electronic
      Imaging 2010 (thumbnail vs image consistency).
    * H. Cao, A. C. Kot, "Identification of recaptured photographs on LCD screens", ICASSP
      2010, §2 (moiré and texture in recaptured images); K. Patel et al., "Live face video vs.
      spoof face video: use of moiré patterns to detect replay video attacks", ICB 2015 §3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from ...models import Finding, Photo
from ...xmp import NS_EXIF, NS_PHOTOSHOP, parse_xmp
from ..base import Detector, DetectorContext, DetectorOutput
from .screen import (
    EVIDENCE,
    RECAPTURE_PEAK,
    SCREEN_SIZES,
    SCREENSHOT_THRESHOLD,
    WEIGHTS,
    recapture_peaks,
    screenshot_signals,
)
from .thumbnail import THUMB_DIFFERENCE, ThumbnailCheck, thumbnail_difference

__all__ = ["RECAPTURE_PEAK", "SCREENSHOT_THRESHOLD", "SCREEN_SIZES", "THUMB_DIFFERENCE",
           "CaptureTime", "MetadataDetector", "ThumbnailCheck", "capture_time",
           "recapture_peaks", "screenshot_signals", "thumbnail_difference"]

_TIME_PATTERN = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET_PATTERN = re.compile(r"^\s*([+\-])(\d{2}):?(\d{2})\s*$")
#: XMP capture times: (namespace, name, how the evidence names it).
_XMP_TIME_FIELDS = ((NS_EXIF, "DateTimeOriginal", "exif:DateTimeOriginal"),
                    (NS_PHOTOSHOP, "DateCreated", "photoshop:DateCreated"))
#: The same in a packet that does not parse, by its conventional prefixes.
_XMP_TIME = re.compile(r"(exif:DateTimeOriginal|photoshop:DateCreated)\s*(?:=\s*\"([^\"]+)\"|>"
                       r"\s*([^<\s]+)\s*<)")


@dataclass(frozen=True)
class CaptureTime:
    """When the photo was taken: ``local`` wall-clock time, ``offset`` from UTC if the file
    recorded it, and the field it came from."""

    local: datetime
    offset: timedelta | None
    field: str

    @property
    def iso(self) -> str:
        if self.offset is None:
            return self.local.isoformat()
        return self.local.replace(tzinfo=timezone(self.offset)).isoformat()

    def bounds(self, *, clock_skew: timedelta, zone_slack: timedelta) -> tuple[datetime, datetime]:
        """The earliest and latest UTC instant the photo can have been taken at."""
        if self.offset is not None:
            instant = self.local.replace(tzinfo=timezone(self.offset))
            return instant - clock_skew, instant + clock_skew
        as_utc = self.local.replace(tzinfo=timezone.utc)
        return as_utc - zone_slack - clock_skew, as_utc + zone_slack + clock_skew


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    match = _TIME_PATTERN.match(value.strip("\x00 "))
    if not match:
        return None
    try:
        return datetime(*(int(part) for part in match.groups()))
    except ValueError:  # "0000:00:00 00:00:00" and other impossible dates
        return None


def _parse_offset(value: Any) -> timedelta | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    match = _OFFSET_PATTERN.match(value.strip("\x00 ")) if isinstance(value, str) else None
    if not match:
        return None
    sign = -1 if match.group(1) == "-" else 1
    offset = timedelta(hours=int(match.group(2)), minutes=int(match.group(3))) * sign
    # Real zones run from UTC−12 to UTC+14.
    return offset if timedelta(hours=-12) <= offset <= timedelta(hours=14) else None


def _looks_unset(local: datetime) -> bool:
    """Factory-default clocks: before 2000 (Exif cameras) or exactly 1 January 00:00:00."""
    return local.year < 2000 or (local.month, local.day, local.hour, local.minute,
                                 local.second) == (1, 1, 0, 0, 0)


def capture_time(photo: Photo) -> CaptureTime | None:
    """The capture time recorded in the file (EXIF first, then XMP), or None."""
    exif = photo.exif
    for field, offset_field in (("DateTimeOriginal", "OffsetTimeOriginal"),
                                ("DateTimeDigitized", "OffsetTimeDigitized")):
        local = _parse_time(exif.get(field))
        if local is not None:
            offset = _parse_offset(exif.get(offset_field) or exif.get("OffsetTime"))
            return CaptureTime(local, offset, f"EXIF {field}")
    for packet in photo.xmp:
        for name, text in _xmp_times(packet):
            local = _parse_time(text.replace("T", " ", 1) if "T" in text else text)
            if local is None:
                continue
            zone = re.search(r"(Z|[+\-]\d{2}:?\d{2})$", text)
            offset = (timedelta(0) if zone and zone.group(1) == "Z"
                      else _parse_offset(zone.group(1)) if zone else None)
            return CaptureTime(local, offset, f"XMP {name}")
    return None


def _xmp_times(packet: str) -> list[tuple[str, str]]:
    """(field, value) of the capture times in one XMP packet, in document order."""
    parsed = parse_xmp(packet)
    if parsed.error is not None:
        return [(m.group(1), m.group(2) or m.group(3) or "")
                for m in _XMP_TIME.finditer(packet)]
    return [(label, prop.value.strip()) for prop in parsed.properties
            for ns, name, label in _XMP_TIME_FIELDS
            if (prop.ns, prop.name) == (ns, name) and isinstance(prop.value, str)]


class MetadataDetector(Detector):
    """EXIF thumbnail, capture time, screenshot and recapture checks (see the module)."""

    name = "metadata"
    version = "2"
    description = ("EXIF thumbnail vs image, capture time vs claim and delivery, screenshot "
                   "and screen-recapture signs")
    codes = ("METADATA_THUMBNAIL_MISMATCH", "METADATA_CAPTURE_AFTER_CLAIM",
             "METADATA_CAPTURE_BEFORE_DELIVERY", "METADATA_SCREENSHOT", "METADATA_RECAPTURE")

    def __init__(self, *, clock_skew: timedelta = timedelta(hours=1),
                 zone_slack: timedelta = timedelta(hours=14)) -> None:
        if clock_skew < timedelta(0) or zone_slack < timedelta(0):
            raise ValueError(f"clock_skew={clock_skew}, zone_slack={zone_slack}: expected "
                             f"non-negative durations")
        self.clock_skew = clock_skew
        self.zone_slack = zone_slack

    def run(self, photo: Photo, context: DetectorContext) -> DetectorOutput:
        info: dict[str, Any] = {}
        findings = [*self._times(photo, context, info), *self._thumbnail(photo, info),
                    *self._screenshot(photo, info), *self._recapture(photo, info)]
        return DetectorOutput(findings, info)

    def _times(self, photo: Photo, context: DetectorContext,
               info: dict[str, Any]) -> list[Finding]:
        taken = capture_time(photo)
        if taken is None:
            return []
        info["captured_at"] = taken.iso
        info["captured_at_field"] = taken.field
        info["timezone_recorded"] = taken.offset is not None
        if _looks_unset(taken.local):
            info["captured_at_ignored"] = "looks like an unset camera clock"
            return []
        earliest, latest = taken.bounds(clock_skew=self.clock_skew, zone_slack=self.zone_slack)
        tolerance = (latest - earliest) / 2
        details = {"captured_at": taken.iso, "source_field": taken.field,
                   "timezone_recorded": taken.offset is not None,
                   "tolerance_hours": round(tolerance.total_seconds() / 3600, 1)}
        findings = []
        if context.claim_time is not None and earliest > context.claim_time:
            findings.append(self.finding(
                "METADATA_CAPTURE_AFTER_CLAIM", score=_time_score(earliest - context.claim_time),
                claim_time=context.claim_time.isoformat(), **details))
        if context.delivered_at is not None and latest < context.delivered_at:
            findings.append(self.finding(
                "METADATA_CAPTURE_BEFORE_DELIVERY",
                score=_time_score(context.delivered_at - latest),
                delivered_at=context.delivered_at.isoformat(), **details))
        return findings

    def _thumbnail(self, photo: Photo, info: dict[str, Any]) -> list[Finding]:
        if not photo.exif_thumbnail:
            return []
        check = thumbnail_difference(photo)
        if check is None:
            info["thumbnail"] = ("present, not compared (undecodable, or no orientation or "
                                 "crop lines it up with the image)")
            return []
        info["thumbnail_difference"] = round(check.difference, 3)
        info["thumbnail_correlation"] = round(check.correlation, 3)
        if check.orientation != photo.orientation:
            info["thumbnail_orientation"] = check.orientation
        if check.cropped:
            info["thumbnail_cropped"] = True
        if not check.mismatch:
            return []
        # 0.5 at the threshold, 1.0 at twice it (≈ 60 grey levels over the area).
        score = min(1.0, 0.5 * check.difference / THUMB_DIFFERENCE)
        heat = np.clip(check.map / (2 * THUMB_DIFFERENCE * 255.0), 0, 1).astype(np.float32)
        return [self.finding("METADATA_THUMBNAIL_MISMATCH", score=score, region=check.region,
                             map=heat, difference=f"{check.difference:.2f}",
                             typical_difference=round(check.typical, 3),
                             correlation=round(check.correlation, 3),
                             cropped=check.cropped)]

    def _screenshot(self, photo: Photo, info: dict[str, Any]) -> list[Finding]:
        signals = screenshot_signals(photo)
        info["screenshot_signals"] = sorted(signals)
        total = sum(WEIGHTS[key] for key in signals)
        if "marker" not in signals and ("no_camera_exif" not in signals
                                        or total < SCREENSHOT_THRESHOLD):
            return []
        en, zh = [], []
        for key in ("marker", "screen_size", "status_bar", "file_name", "png",
                    "no_camera_exif"):
            if key in signals:
                en.append(EVIDENCE[key][0].format(**signals[key]))
                zh.append(EVIDENCE[key][1].format(**signals[key]))
        return [self.finding("METADATA_SCREENSHOT", score=min(1.0, total),
                             evidence_en="; ".join(en), evidence_zh="；".join(zh),
                             signals=sorted(signals))]

    def _recapture(self, photo: Photo, info: dict[str, Any]) -> list[Finding]:
        peaks = recapture_peaks(photo)
        info["moire_peak"] = peaks["peak"]
        if peaks["peak"] < RECAPTURE_PEAK:
            return []
        # Weak evidence by design: at most 0.6, reached at 1.5× the threshold.
        score = min(0.6, 0.3 + 0.3 * (peaks["peak"] - RECAPTURE_PEAK) / (0.5 * RECAPTURE_PEAK))
        ratio = 10 ** peaks["peak"]
        return [self.finding(
            "METADATA_RECAPTURE", score=score,
            evidence_en=f"moiré: periodic peaks in the {peaks['channel']} spectrum up to "
                        f"{ratio:.0f}\u00d7 their surroundings",
            evidence_zh=f"摩尔纹：{'亮度' if peaks['channel'] == 'luma' else '色度'}频谱中"
                        f"出现孤立周期峰，强度达周围的 {ratio:.0f} 倍",
            peak=peaks["peak"], peaks=peaks["peaks"], channel=peaks["channel"])]


def _time_score(excess: timedelta) -> float:
    """0.6 just past the tolerance, 1.0 from a day past it: a photo taken days away from
    the claim window is harder to explain by a wrong clock."""
    return min(1.0, 0.6 + 0.4 * excess.total_seconds() / 86400)
