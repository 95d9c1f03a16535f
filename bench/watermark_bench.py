"""Open SD watermark benchmark: detection, false positives and time of the ``watermark`` detector.

    .venv/bin/python bench/watermark_bench.py            # every table, 2-4 minutes
    .venv/bin/python bench/watermark_bench.py --quick    # originals only, no timing

Positives: every file in ../shared/data/sd_outputs from the scripts that embed the 136-bit
``StableDiffusionV1`` mark (Extile1, bento170502, yimouwu), as committed, rescaled x0.75
(Pillow LANCZOS, what photo apps use to shrink) and x1.5 (Pillow BICUBIC, to enlarge),
each rescale saved as PNG and loaded as a claim photo would be. ``vazkir_00001.png`` comes
from a script that embeds nothing: its rows are false positives. A JPEG (quality 95) row
shows what the scheme does not survive. The shared data holds no SD v2 or SDXL output, so
those payloads are embedded with the module's own encoder into 8 real camera photos (the GPS
set) resized to SD v2 / SDXL sizes, then rescaled the same way. False positives are also
counted on every photo in ../shared/data/camera_exif and catalog_and_buyer, and on 40
generated textured photos (tests/conftest.py) at SD-like and camera sizes.

Time is ``WatermarkDetector.run`` (after ``load_photo``) with the process pinned to one core
and OpenCV on one thread (the deployment's one-core-per-worker setting), on 12 MP JPEGs and
on a 512 x 512 and a 1024 x 1024 PNG; the median of several runs is reported.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "tests"))

from conftest import textured_rgb  # noqa: E402 - the tests' own generator

from refundlens.detectors.base import DetectorContext, Skip  # noqa: E402
from refundlens.detectors.watermark import (  # noqa: E402
    SCHEMES,
    WatermarkDetector,
    embed_watermark,
)
from refundlens.errors import PhotoError  # noqa: E402
from refundlens.imaging import load_photo  # noqa: E402

WATERMARKING_SOURCES = ("Extile1_", "bento170502_", "yimouwu_")


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def rescale(rgb: np.ndarray, factor: float) -> np.ndarray:
    image = Image.fromarray(rgb)
    size = (round(image.width * factor), round(image.height * factor))
    return np.asarray(image.resize(size, Image.LANCZOS if factor < 1 else Image.BICUBIC))


VARIANTS = {
    "as committed": None,
    "x0.75 (LANCZOS, PNG)": lambda rgb: png(rescale(rgb, 0.75)),
    "x1.5 (BICUBIC, PNG)": lambda rgb: png(rescale(rgb, 1.5)),
    "JPEG q95": lambda rgb: jpeg(rgb, 95),
}


def detect(detector: WatermarkDetector, data: bytes, name: str) -> tuple[bool, dict]:
    photo = load_photo(data, name=name)
    output = detector.run(photo, DetectorContext())
    return bool(output.findings), dict(output.info)


def sd_rows(detector: WatermarkDetector, quick: bool) -> list[tuple[str, str, int, int]]:
    rows = []
    files = sorted((SHARED / "sd_outputs").glob("*.png"))
    for label, chosen in (("watermarking scripts", [f for f in files if f.name.startswith(
            WATERMARKING_SOURCES)]), ("vazkir (no watermark)", [f for f in files if not
                                      f.name.startswith(WATERMARKING_SOURCES)])):
        for variant, make in VARIANTS.items():
            if quick and make is not None:
                continue
            hits = 0
            for path in chosen:
                data = path.read_bytes()
                if make is not None:
                    data = make(np.asarray(load_photo(data, name=path.name).pixels))
                found, info = detect(detector, data, path.name)
                hits += found
                if "--verbose" in sys.argv:
                    sd1 = info["schemes"]["sd1"]
                    print(f"  {path.name} {variant}: {found} sd1 {sd1['matched']}/"
                          f"{sd1['bits']} at {sd1['size']}, p_corr {sd1['p_corrected']}")
            rows.append((label, variant, hits, len(chosen)))
    return rows


def encoder_rows(detector: WatermarkDetector) -> list[tuple[str, str, int, int]]:
    """Our encoder's SD v2 / SDXL marks on real camera photos (no real SD v2 / SDXL outputs
    are in the shared data): each photo resized to a generation size, marked, then
    rescaled like the SD files above."""
    photos = []
    for path in sorted((SHARED / "camera_exif" / "jpg" / "gps").glob("*.jpg"))[:8]:
        photos.append(np.asarray(load_photo(path.read_bytes(), name=path.name).pixels))
    rows = []
    for name, size in (("sd2", (768, 768)), ("sdxl", (1024, 1024)), ("sdxl", (1152, 896)),
                       ("sdxl-rgb", (896, 1152))):
        scheme = next(s for s in SCHEMES if s.name == name)
        for variant, factor in (("as made", None), ("x0.75 (LANCZOS, PNG)", 0.75),
                                ("x1.5 (BICUBIC, PNG)", 1.5)):
            hits = 0
            for rgb in photos:
                base = np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS))
                mark = embed_watermark(base, scheme.bits, float_pixels=scheme.offset < 1,
                                       channel_order=scheme.channel_order)
                data = png(mark if factor is None else rescale(mark, factor))
                found, _ = detect(detector, data, f"{name}.png")
                hits += found
            rows.append((f"{name} {size[0]}x{size[1]}", variant, hits, len(photos)))
    return rows


def genuine_rows(detector: WatermarkDetector) -> list[tuple[str, int, int, int, int]]:
    rows = []
    for label, folder in (("camera_exif", SHARED / "camera_exif"),
                          ("catalog_and_buyer", SHARED / "catalog_and_buyer")):
        flagged = errors = skipped = total = 0
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in (
                    ".jpg", ".jpeg", ".heic", ".heif", ".png"):
                continue
            total += 1
            try:
                found, info = detect(detector, path.read_bytes(), path.name)
            except PhotoError:
                errors += 1  # the corrupt EXIF samples: the claim gets an error result
                continue
            except Skip:
                skipped += 1  # under 256 px after every undone rescale (catalog photos)
                continue
            if found:
                flagged += 1
                print(f"  FALSE POSITIVE {path}: {info['schemes']}")
        rows.append((label, total, errors, skipped, flagged))
    generated = 0
    sizes = [(512, 512), (768, 512), (1024, 1024), (640, 480), (1200, 900)]
    for seed in range(40):
        w, h = sizes[seed % len(sizes)]
        data = png(textured_rgb(w, h, seed=seed))
        found, _ = detect(detector, data, f"generated-{seed}.png")
        generated += found
    rows.append(("generated textured (PNG, 5 sizes)", 40, 0, 0, generated))
    return rows


def timing_rows(detector: WatermarkDetector) -> list[tuple[str, float]]:
    cases = [
        ("12 MP JPEG 4000x3000", jpeg(textured_rgb(4000, 3000, seed=1), 90)),
        ("12 MP JPEG 3000x4000", jpeg(textured_rgb(3000, 4000, seed=2), 90)),
        ("1024x1024 PNG", png(textured_rgb(1024, 1024, seed=3))),
        ("512x512 PNG", png(textured_rgb(512, 512, seed=4))),
    ]
    rows = []
    for label, data in cases:
        photo = load_photo(data, name=label)
        detector.run(photo, DetectorContext())  # warm caches
        times = []
        for _ in range(7):
            start = time.process_time()
            detector.run(photo, DetectorContext())
            times.append((time.process_time() - start) * 1000)
        rows.append((label, statistics.median(times)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="originals only, no timing")
    parser.add_argument("--verbose", action="store_true", help="one line per SD file")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    detector = WatermarkDetector()

    print("| SD outputs | variant | detected | rate |")
    print("|---|---|---|---|")
    for label, variant, hits, n in sd_rows(detector, args.quick):
        print(f"| {label} | {variant} | {hits}/{n} | {hits / n:.0%} |")
    if not args.quick:
        print()
        print("| encoder-made marks on camera photos | variant | detected | rate |")
        print("|---|---|---|---|")
        for label, variant, hits, n in encoder_rows(detector):
            print(f"| {label} | {variant} | {hits}/{n} | {hits / n:.0%} |")
    print()
    print("| genuine / clean photos | photos | load errors | skipped (too small) | flagged |")
    print("|---|---|---|---|---|")
    for label, total, errors, skipped, flagged in genuine_rows(detector):
        print(f"| {label} | {total} | {errors} | {skipped} | {flagged} |")
    if not args.quick:
        print()
        print("| time (one core, median of 7) | ms |")
        print("|---|---|")
        for label, ms in timing_rows(detector):
            print(f"| {label} | {ms:.1f} |")


if __name__ == "__main__":
    main()
