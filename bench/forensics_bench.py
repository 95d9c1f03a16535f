"""False-positive and detection rates of the forensics and metadata detectors, and their speed.

    python bench/forensics_bench.py [--data /work/shared/data] [--splices 300] [--quick]

Genuine photos: every decodable image of at least 128 px on a side in ``camera_exif`` (JPEG
and HEIC), ``catalog_and_buyer`` and the OpenCV originals, each also re-saved as a phone or
messenger would (JPEG quality 75, 85, 95; halved; cropped by a few pixels so the 8×8 grid
moves), plus generated clean photos. The false-positive rate is the share of these with a
finding of each code.

Forgeries, generated (seeded, reproducible):
    * splices: a patch (12–30% of each side) from another photo — optionally JPEG-compressed
      at quality 50–90 first, pasted at a random or an 8-aligned position — or a smoothed
      region with a painted crack (an AI-style retouch); the result saved at quality 75, 85
      or 95. Found = a FORENSIC finding whose region overlaps the patch.
    * thumbnail edits: a genuine camera JPEG with an EXIF thumbnail, a patch pasted into the
      main image, the original EXIF (with its thumbnail) kept — what most editors do.

Prints markdown tables. Timing: each detector on a generated 12 MP JPEG (4000×3000), best
of 5 runs, single thread.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import textured_rgb  # noqa: E402
from refundlens import load_photo  # noqa: E402
from refundlens.detectors import DetectorContext  # noqa: E402
from refundlens.detectors.base import Skip  # noqa: E402
from refundlens.detectors.forensics import ForensicsDetector  # noqa: E402
from refundlens.detectors.metadata import MetadataDetector  # noqa: E402
from refundlens.errors import PhotoError  # noqa: E402
from refundlens.models import Region  # noqa: E402

FORENSIC = ("FORENSIC_ELA", "FORENSIC_NOISE", "FORENSIC_DOUBLE_JPEG")
METADATA = MetadataDetector.codes


def jpeg(array: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def genuine_files(data: Path) -> list[Path]:
    files = sorted(p for p in (data / "camera_exif").rglob("*") if p.is_file())
    files += sorted((data / "catalog_and_buyer").rglob("*.jpg"))
    files += [data / "opencv_samples" / n for n in ("ela_original.jpg", "box.png",
                                                    "box_in_scene.png")]
    return files


def load_genuine(data: Path) -> list[tuple[str, object]]:
    photos = []
    for path in genuine_files(data):
        try:
            photo = load_photo(path)
        except PhotoError:
            continue  # READMEs, the corrupt-sample set
        if min(photo.width, photo.height) >= 128:
            photos.append((str(path.relative_to(data)), photo))
    return photos


def variants(name: str, photo) -> list[tuple[str, object]]:
    pixels = photo.pixels
    h, w = pixels.shape[:2]
    out = [(name, photo)]
    for quality in (75, 85, 95):
        out.append((f"{name}@q{quality}", load_photo(jpeg(pixels, quality))))
    half = cv2.resize(pixels, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    out.append((f"{name}@half", load_photo(jpeg(half, 85))))
    out.append((f"{name}@crop", load_photo(jpeg(np.ascontiguousarray(pixels[5:, 3:]), 85))))
    return [(n, p) for n, p in out if min(p.width, p.height) >= 128]


def generated_clean() -> list[tuple[str, object]]:
    out = []
    for seed in range(8):
        size = (640, 480) if seed % 2 else (1600, 1200)
        array = textured_rgb(*size, seed=seed)
        for quality in (75, 85, 95):
            out.append((f"generated-{seed}@q{quality}", load_photo(jpeg(array, quality))))
        twice = jpeg(decoded(jpeg(array, 70)), 90)
        out.append((f"generated-{seed}@q70+q90", load_photo(twice)))
        out.append((f"generated-{seed}.png",
                    load_photo(cv2.imencode(".png", array[..., ::-1])[1].tobytes())))
    return out


def codes_of(detector, photo) -> list:
    try:
        return detector.run(photo, DetectorContext()).findings
    except Skip:
        return []


def overlaps(region: Region | None, truth: Region) -> bool:
    if region is None:
        return False
    ix = max(0, min(region.x + region.width, truth.x + truth.width) - max(region.x, truth.x))
    iy = max(0, min(region.y + region.height, truth.y + truth.height) - max(region.y, truth.y))
    inter = ix * iy
    return inter >= 0.3 * region.area or inter >= 0.3 * truth.area


def splice(rng: random.Random, host, donor) -> tuple[bytes, Region, dict]:
    pixels = host.pixels.copy()
    h, w = pixels.shape[:2]
    pw, ph = int(w * rng.uniform(0.12, 0.3)), int(h * rng.uniform(0.12, 0.3))
    x, y = rng.randrange(0, w - pw), rng.randrange(0, h - ph)
    aligned = rng.random() < 0.5
    if aligned:
        x, y = x // 8 * 8, y // 8 * 8
    kind = rng.choice(["donor", "donor", "retouch"])
    patch_quality = None
    if kind == "donor":
        source = donor.pixels
        dh, dw = source.shape[:2]
        cw = min(dw, max(pw, int(dw * rng.uniform(0.2, 0.6))))
        ch = min(dh, max(ph, int(dh * rng.uniform(0.2, 0.6))))
        cx, cy = rng.randrange(0, dw - cw + 1), rng.randrange(0, dh - ch + 1)
        patch = cv2.resize(source[cy:cy + ch, cx:cx + cw], (pw, ph), interpolation=cv2.INTER_AREA)
        patch_quality = rng.choice([50, 60, 70, 80, 90, None])
        if patch_quality is not None:
            patch = decoded(jpeg(np.ascontiguousarray(patch), patch_quality))
    else:
        patch = np.ascontiguousarray(cv2.GaussianBlur(pixels[y:y + ph, x:x + pw], (0, 0), 2.5))
        points = np.array([[rng.randrange(pw), rng.randrange(ph)] for _ in range(5)], np.int32)
        cv2.polylines(patch, [points], False, (30, 30, 30), max(2, pw // 60))
    pixels[y:y + ph, x:x + pw] = patch
    final = rng.choice([75, 85, 95])
    facts = {"kind": kind, "aligned": aligned, "patch_quality": patch_quality,
             "final_quality": final, "big": w * h >= 1_000_000}
    return jpeg(pixels, final), Region(x, y, pw, ph), facts


def app1_segments(data: bytes) -> bytes:
    """The APP1 (EXIF/XMP) segments of a JPEG, to carry them over to an edited copy."""
    out, i = b"", 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:  # start of scan: no more metadata segments
            break
        if marker == 0xE1:
            out += data[i:i + 2 + length]
        i += 2 + length
    return out


def table(title: str, header: list[str], rows: list[list]) -> str:
    lines = [f"\n### {title}\n", "| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f}% ({n}/{d})" if d else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "REFUNDLENS_SHARED_DATA", "/work/shared/data")))
    parser.add_argument("--splices", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="originals only, 60 splices")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    forensics, metadata = ForensicsDetector(), MetadataDetector()
    originals = load_genuine(args.data)
    genuine = []
    for name, photo in originals:
        genuine += [(name, photo)] if args.quick else variants(name, photo)
    genuine += generated_clean()

    counts: dict[str, int] = defaultdict(int)
    flagged: dict[str, list[str]] = defaultdict(list)
    originals_any = 0
    for name, photo in genuine:
        found = {f.code for f in codes_of(forensics, photo)} | \
            {f.code for f in codes_of(metadata, photo)}
        for code in found:
            counts[code] += 1
            flagged[code].append(name)
        if found & set(FORENSIC):
            counts["any FORENSIC"] += 1
            originals_any += "@" not in name and not name.startswith("generated")
    n_orig = sum(1 for name, _ in genuine if "@" not in name and not name.startswith("generated"))
    rows = [[code, pct(counts[code], len(genuine)), ", ".join(sorted(flagged[code])[:4])]
            for code in (*FORENSIC, "any FORENSIC", *METADATA)]
    print(table(f"False positives on {len(genuine)} genuine photos ({len(originals)} shared "
                f"originals and their re-saved variants, plus generated clean photos)",
                ["code", "genuine photos flagged", "examples"], rows))
    print(f"\nUnmodified shared originals with any FORENSIC finding: {pct(originals_any, n_orig)}")

    rng = random.Random(args.seed)
    hosts = [(n, p) for n, p in originals if min(p.width, p.height) >= 300]
    n_splices = 60 if args.quick else args.splices
    results = []
    for _ in range(n_splices):
        host_name, host = rng.choice(hosts)
        donor_name, donor = rng.choice(originals)
        while donor_name == host_name:
            donor_name, donor = rng.choice(originals)
        data, truth, facts = splice(rng, host, donor)
        findings = codes_of(forensics, load_photo(data))
        hit = {f.code for f in findings if overlaps(f.region, truth)}
        results.append((facts, hit, bool(findings)))
    groups = [("all", lambda f: True), ("photo ≥ 1 MP", lambda f: f["big"]),
              ("photo < 1 MP", lambda f: not f["big"]),
              ("patch from another photo", lambda f: f["kind"] == "donor"),
              ("smoothed retouch + crack", lambda f: f["kind"] == "retouch")]
    groups += [(f"patch JPEG q{q}", (lambda q: lambda f: f["kind"] == "donor"
                                     and f["patch_quality"] == q)(q)) for q in (50, 70, 90)]
    groups += [("patch never compressed", lambda f: f["kind"] == "donor"
                and f["patch_quality"] is None),
               ("8-aligned paste", lambda f: f["aligned"]),
               ("unaligned paste", lambda f: not f["aligned"])]
    groups += [(f"saved at q{q}", (lambda q: lambda f: f["final_quality"] == q)(q))
               for q in (75, 85, 95)]
    rows = []
    for label, keep in groups:
        chosen = [(hit, anything) for facts, hit, anything in results if keep(facts)]
        n = len(chosen)
        rows.append([label, n] + [pct(sum(code in hit for hit, _ in chosen), n)
                                  for code in FORENSIC]
                    + [pct(sum(bool(hit) for hit, _ in chosen), n),
                       pct(sum(a for _, a in chosen), n)])
    print(table(f"Detection on {n_splices} generated splices (found = region overlaps the patch)",
                ["splices", "n", "ELA", "noise", "ghost", "any, at the patch",
                 "any finding anywhere"], rows))

    thumbs = [(n, p) for n, p in originals if p.exif_thumbnail and min(p.width, p.height) >= 200]
    found = 0
    for name, photo in thumbs:
        pixels = photo.pixels.copy()
        h, w = pixels.shape[:2]
        box = (w // 3, h // 3, w // 4, h // 4)
        pixels[box[1]:box[1] + box[3], box[0]:box[0] + box[2]] = \
            cv2.GaussianBlur(pixels, (0, 0), 3)[box[1]:box[1] + box[3], box[0]:box[0] + box[2]] // 3
        edited = jpeg(pixels, 90)
        edited = edited[:2] + app1_segments(photo.data) + edited[2:]
        found += any(f.code == "METADATA_THUMBNAIL_MISMATCH"
                     for f in codes_of(metadata, load_photo(edited)))
    print(table("Thumbnail edits (patch darkened into a genuine camera JPEG, EXIF kept)",
                ["photos", "METADATA_THUMBNAIL_MISMATCH"],
                [[len(thumbs), pct(found, len(thumbs))]]))

    big = load_photo(jpeg(textured_rgb(4000, 3000, seed=1), 90), name="12mp.jpg")
    rows = []
    for detector in (forensics, metadata):
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            detector.run(big, DetectorContext())
            best = min(best, time.perf_counter() - start)
        rows.append([detector.name, f"{best * 1000:.0f} ms"])
    print(table("Time on a 12 MP JPEG (4000×3000, best of 5, one thread)",
                ["detector", "time"], rows))


if __name__ == "__main__":
    main()
