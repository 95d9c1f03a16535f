"""Screens: signs that an image is a screenshot, or a photo taken of a screen.

Screenshot signals (combined by weight, :data:`SCREENSHOT_THRESHOLD`): an OS marker in the
metadata, a phone or tablet screen resolution (:data:`SCREEN_SIZES`), a status bar, PNG,
no camera EXIF, a screenshot-like file name. Recapture: isolated peaks (moiré) in the
spectrum of the photo's centre, in luma and red–blue chroma.

References:
    CIPA DC-008-2023 (Exif 3.0), §4.6.5 UserComment (character-code prefix). H. Cao,
    A. C. Kot, "Identification of recaptured photographs on LCD screens", ICASSP 2010, §2;
    K. Patel et al., "Live face video vs. spoof face video: use of moiré patterns to detect
    replay video attacks", ICB 2015, §3.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import PurePath
from typing import Any

import cv2
import numpy as np

from ...exiftext import decode_text
from ...models import Photo
from ...xmp import NS_EXIF, parse_xmp

__all__ = ["EVIDENCE", "RECAPTURE_PEAK", "SCREENSHOT_THRESHOLD", "SCREEN_SIZES", "WEIGHTS",
           "recapture_peaks", "screenshot_signals"]

#: Native screen resolutions (portrait width × height, physical pixels) of common phones
#: and tablets: a screenshot has exactly these dimensions (either way round). From the
#: vendors' published specifications; not exhaustive.
SCREEN_SIZES: dict[tuple[int, int], str] = {
    # Apple iPhone
    (640, 1136): "iPhone 5/SE (1st gen)",
    (750, 1334): "iPhone 6/7/8/SE",
    (1242, 2208): "iPhone 6–8 Plus",
    (1125, 2436): "iPhone X/XS/11 Pro",
    (828, 1792): "iPhone XR/11",
    (1242, 2688): "iPhone XS Max/11 Pro Max",
    (1080, 2340): "iPhone 12/13 mini, many Android phones",
    (1170, 2532): "iPhone 12/13/14",
    (1284, 2778): "iPhone 12/13 Pro Max, 14 Plus",
    (1179, 2556): "iPhone 14 Pro/15/16",
    (1290, 2796): "iPhone 14 Pro Max/15 Plus/15 Pro Max/16 Plus",
    (1206, 2622): "iPhone 16 Pro",
    (1320, 2868): "iPhone 16 Pro Max",
    # Apple iPad
    (1536, 2048): "iPad (3rd gen on)/iPad mini/Air",
    (1620, 2160): "iPad 10.2-inch",
    (1640, 2360): "iPad (10th gen)/Air",
    (1668, 2224): "iPad Pro 10.5-inch",
    (1668, 2388): "iPad Pro 11-inch",
    (2048, 2732): "iPad Pro 12.9-inch",
    (1488, 2266): "iPad mini (6th gen)",
    # Android phones (HD+, FHD+, QHD+ panels of Samsung, Xiaomi, Huawei, OPPO, vivo, Pixel)
    (720, 1280): "Android HD",
    (720, 1520): "Android HD+ (19:9)",
    (720, 1600): "Android HD+ (20:9)",
    (1080, 1920): "Android FHD",
    (1080, 2160): "Android FHD+ (18:9)",
    (1080, 2220): "Samsung Galaxy S8/S9 (FHD+)",
    (1080, 2280): "Android FHD+ (19:9)",
    (1080, 2310): "Android FHD+",
    (1080, 2376): "Android FHD+",
    (1080, 2400): "Android FHD+ (20:9)",
    (1080, 2408): "Android FHD+",
    (1080, 2412): "Android FHD+",
    (1200, 2640): "Android 1.5K",
    (1220, 2712): "Android 1.5K",
    (1260, 2800): "Android 1.5K (20:9)",
    (1440, 2560): "Android QHD",
    (1440, 2960): "Samsung Galaxy S8/S9 (WQHD+)",
    (1440, 3040): "Samsung Galaxy S10 (WQHD+)",
    (1440, 3088): "Samsung Galaxy Note 20 Ultra/S22 Ultra",
    (1440, 3120): "Android QHD+ (19.5:9)",
    (1440, 3200): "Android QHD+ (20:9)",
}

#: Screenshot signals and their weights. A marker written by the OS is near-proof; a
#: screen-sized frame or a status bar is strong; PNG and missing camera EXIF are common
#: for any re-saved image and only tip the balance.
WEIGHTS = {"marker": 0.6, "screen_size": 0.35, "status_bar": 0.3, "file_name": 0.25,
            "png": 0.1, "no_camera_exif": 0.1}
#: Sum of signal weights for a finding: two strong signals, or one strong and the two
#: weak ones (e.g. a 1170×2532 PNG without camera EXIF: 0.35 + 0.1 + 0.1).
SCREENSHOT_THRESHOLD = 0.5

_MARKER = re.compile(r"screen ?shot|screen ?capture|screencap|截屏|截图|截圖|屏幕快照|螢幕截圖|"
                     r"bildschirmfoto|capture d.écran", re.I)
_FILE_NAME = re.compile(r"^(screenshot|screen ?shot|scrnli|截屏|截图|屏幕快照|"
                        r"snipaste|微信截图|qq截图)", re.I)
#: EXIF fields only a camera writes (CIPA DC-008 exposure and device tags).
_CAMERA_TAGS = ("Make", "Model", "ExposureTime", "FNumber", "ISOSpeedRatings",
                "PhotographicSensitivity", "FocalLength", "LensModel")
_TEXT_TAGS = ("UserComment", "Software", "ImageDescription", "XPComment", "XPTitle",
              "Artist", "HostComputer")

EVIDENCE = {
    "marker": ("metadata {field} says \u201c{value}\u201d", "元数据 {field} 标注\u201c{value}\u201d"),
    "screen_size": ("{width}\u00d7{height} is the screen resolution of {device}",
                    "{width}\u00d7{height} 是 {device} 的屏幕分辨率"),
    "status_bar": ("a phone status bar across the top", "顶部有手机状态栏"),
    "file_name": ("file name \u201c{value}\u201d", "文件名\u201c{value}\u201d"),
    "png": ("PNG file", "PNG 格式"),
    "no_camera_exif": ("no camera EXIF", "无相机 EXIF 信息"),
}


def _xmp_user_comments(packet: str) -> list[str]:
    """The ``exif:UserComment`` texts of one XMP packet (by pattern if it does not parse)."""
    parsed = parse_xmp(packet)
    if parsed.error is not None:
        match = re.search(r"<exif:UserComment>.*?<rdf:li[^>]*>([^<]*)</rdf:li>", packet, re.S)
        return [match.group(1)] if match else []
    return parsed.values(NS_EXIF, "UserComment")


def _status_bar(pixels: np.ndarray) -> bool:
    """A phone status bar: the top 2–6% of a portrait frame is one flat colour with small
    high-contrast glyphs (clock, signal, battery) at both its left and right ends."""
    h, w = pixels.shape[:2]
    if h < 1.5 * w or w < 300:
        return False
    band_h = max(8, int(0.045 * h))
    scale = 360 / w
    band = cv2.resize(pixels[:band_h], (360, max(4, int(band_h * scale))),
                      interpolation=cv2.INTER_AREA).astype(np.int16)
    background = np.median(band.reshape(-1, 3), axis=0)
    distance = np.abs(band - background).max(axis=2)
    flat = float((distance <= 12).mean())
    glyphs = distance >= 60
    share = float(glyphs.mean())
    thirds = np.array_split(glyphs, 3, axis=1)
    # ≥ 80% background and 0.5–20% glyphs: measured on rendered iOS/Android status bars;
    # both ends must carry glyphs (clock on one side, battery on the other).
    return (flat >= 0.80 and 0.005 <= share <= 0.20
            and thirds[0].mean() >= 0.003 and thirds[2].mean() >= 0.003)


def screenshot_signals(photo: Photo) -> dict[str, dict[str, Any]]:
    """Every screenshot signal present, keyed by signal, with the facts behind it."""
    signals: dict[str, dict[str, Any]] = {}
    exif = photo.exif
    for field in _TEXT_TAGS:
        value = decode_text(exif.get(field), utf16=field.startswith("XP"))
        if value and _MARKER.search(value):
            signals["marker"] = {"field": f"EXIF {field}", "value": value[:60]}
            break
    if "marker" not in signals:
        for key, value in list(photo.text.items()):
            if _MARKER.search(str(value)[:2000]) or _MARKER.search(str(key)):
                signals["marker"] = {"field": f"text chunk {key}", "value": str(value)[:60]}
                break
    if "marker" not in signals:
        for comment in (c for packet in photo.xmp for c in _xmp_user_comments(packet)):
            if _MARKER.search(comment):
                signals["marker"] = {"field": "XMP exif:UserComment", "value": comment[:60]}
                break
    w, h = photo.width, photo.height
    device = SCREEN_SIZES.get((min(w, h), max(w, h)))
    if device:
        signals["screen_size"] = {"width": w, "height": h, "device": device}
    if not any(exif.get(tag) for tag in _CAMERA_TAGS):
        signals["no_camera_exif"] = {}
    if photo.format == "PNG":
        signals["png"] = {}
    name = PurePath(photo.source.replace("\\", "/")).name
    if _FILE_NAME.search(name):
        signals["file_name"] = {"value": name[:60]}
    if "no_camera_exif" in signals and _status_bar(photo.pixels):
        signals["status_bar"] = {}
    return signals


def recapture_peaks(photo: Photo, *, size: int = 512) -> dict[str, Any]:
    """Strength of isolated spectral peaks (moiré) in the centre of the photo.

    Returns ``peak`` (the strongest peak over its neighbourhood, in log10 units: 1.0 = ten
    times the surrounding spectrum), ``peaks`` (how many local maxima reach half of it)
    and the ``channel`` (luma or red–blue chroma) where it is strongest.
    """
    h, w = photo.height, photo.width
    n = min(size, h, w)
    n -= n % 64
    if n < 128:
        return {"peak": 0.0, "peaks": 0, "channel": "none"}
    y0, x0 = (h - n) // 2, (w - n) // 2
    crop = photo.pixels[y0:y0 + n, x0:x0 + n]
    window, excluded = _spectrum_geometry(n)
    best: dict[str, Any] = {"peak": 0.0, "peaks": 0, "channel": "none"}
    planes = (("luma", cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)),
              ("chroma", crop[..., 0].astype(np.float32) - crop[..., 2]))
    for channel, plane in planes:
        detail = (plane - float(plane.mean())) * window
        spectrum = np.log10(np.abs(np.fft.rfft2(detail)) + 1e-3).astype(np.float32)
        # A peak is measured against the log spectrum around it (17×17 bins), so the
        # natural 1/f fall-off and the photo's overall detail cancel out.
        prominence = spectrum - cv2.blur(spectrum, (17, 17))
        prominence[excluded] = 0.0
        peak = float(prominence.max())
        if peak > best["peak"]:
            local_max = prominence >= cv2.dilate(prominence, np.ones((5, 5), np.uint8))
            count = int(((prominence >= max(peak * 0.5, 0.5)) & local_max).sum())
            best = {"peak": round(peak, 3), "peaks": count, "channel": channel}
    return best


@lru_cache(maxsize=4)
def _spectrum_geometry(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The 2-D Hann window for an n×n crop and the rfft2 bins left out of the peak search:
    the axes and low frequencies (scene content and window leakage, below 1/16 cycle per
    pixel), the Nyquist column, and every multiple of n/8 on either axis, where JPEG's
    8×8 block grid puts its own periodic energy."""
    window = np.outer(np.hanning(n), np.hanning(n)).astype(np.float32)
    u = np.abs(np.fft.fftfreq(n) * n)[:, None]
    v = np.arange(n // 2 + 1)[None, :]
    block = n // 8
    excluded = ((u <= 2) | (v <= 2) | (np.hypot(u, v) < n / 16) | (v >= n // 2 - 1)
                | (np.minimum(u % block, block - u % block) <= 1)
                | (np.minimum(v % block, block - v % block) <= 1))
    window.setflags(write=False)
    excluded.setflags(write=False)
    return window, excluded


#: log10 prominence of the strongest moiré peak for a finding: 1.4 (25× the surrounding
#: spectrum). Genuine photos in the shared sample peak below 1.2 (woven and printed
#: textures highest); simulated LCD recaptures reach 1.6–2.5.
RECAPTURE_PEAK = 1.4
