"""Speed benchmark: seconds per 12-megapixel camera JPEG, by detector, on one and two workers.

    .venv/bin/python bench/speed_bench.py [--runs 5] [--photos 16]

The photo is a real phone photo from ../shared/data/camera_exif (jolla.jpg, 3264×2448),
resized to 4000×3000 and saved at JPEG quality 92 (a typical 12 MP phone JPEG), checked
against one 800×600 listing photo and a reuse index. Prints markdown tables; the results
and the command go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def make_inputs(directory: Path) -> tuple[Path, Path]:
    from PIL import Image

    with Image.open(SHARED / "camera_exif" / "jpg" / "mobile" / "jolla.jpg") as im:
        exif = im.info.get("exif", b"")
        big = im.convert("RGB").resize((4000, 3000), Image.LANCZOS)
    photo = directory / "camera-12mp.jpg"
    big.save(photo, format="JPEG", quality=92, exif=exif)
    with Image.open(SHARED / "catalog_and_buyer" / "Bravo-Orange-Juice" / "catalog.jpg") as im:
        listing = im.convert("RGB").resize((800, 800), Image.LANCZOS)
    reference = directory / "listing.jpg"
    listing.save(reference, format="JPEG", quality=90)
    return photo, reference


def per_detector(photo_path: Path, reference_path: Path, runs: int, workdir: Path) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)  # one core, as a batch worker runs
    from refundlens import DetectorContext, Reference, create_detectors, load_photo
    from refundlens.analysis import run_detector
    from refundlens.index import ReuseIndex

    decode = []
    for _ in range(runs):
        start = time.perf_counter()
        photo = load_photo(photo_path)
        decode.append(time.perf_counter() - start)
    reference = Reference(load_photo(reference_path), id="listing.jpg")
    index = ReuseIndex.open(workdir / "index")
    context = DetectorContext(references=(reference,), reuse_index=index, photo_key="bench")
    detectors = create_detectors()
    for detector in detectors:  # warm-up: lazy model loads are not per-photo costs
        run_detector(detector, photo, context)
    timings = {}
    for detector in detectors:
        samples = []
        for _ in range(runs):
            result = run_detector(detector, photo, context)
            samples.append(result.elapsed_ms / 1000.0)
        timings[detector.name] = (statistics.median(samples), result.status)
    index.close()
    return {"decode": statistics.median(decode), "detectors": timings,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def throughput(photo_path: Path, reference_path: Path, photos: int, workers: int,
               workdir: Path) -> float:
    from refundlens import load_settings
    from refundlens.batch import run_batch

    lines = [json.dumps({"id": f"p{i}", "photo": str(photo_path),
                         "references": [str(reference_path)]}) for i in range(photos)]
    source = workdir / f"in-{workers}.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = workdir / f"out-{workers}.jsonl"
    start = time.perf_counter()
    run_batch(source, out, workers=workers, settings=load_settings(), progress=False)
    return (time.perf_counter() - start) / photos


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        photo, reference = make_inputs(workdir)
        if args.child:
            print(json.dumps(per_detector(photo, reference, args.runs, workdir)))
            return 0
        # per-detector timing in a fresh process so its peak memory is the pipeline's own
        proc = subprocess.run([sys.executable, __file__, "--runs", str(args.runs), "--child",
                               "1"], capture_output=True, text=True, check=True)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        total = sum(t for t, _ in result["detectors"].values())
        print(f"12 MP JPEG (4000×3000, q92), median of {args.runs} runs, one core\n")
        print("| step | seconds | status |\n|---|---|---|")
        print(f"| decode (load_photo) | {result['decode']:.3f} | |")
        for name, (seconds, status) in result["detectors"].items():
            print(f"| {name} | {seconds:.3f} | {status} |")
        print(f"| **all detectors** | **{total:.3f}** | |")
        print(f"| **decode + all detectors** | **{total + result['decode']:.3f}** | |")
        print(f"\npeak RSS of that process: {result['peak_rss_mb']:.0f} MB\n")
        one = throughput(photo, reference, args.photos, 1, workdir)
        two = throughput(photo, reference, args.photos, 2, workdir)
        print("| batch engine | seconds per photo (wall) | photos per second |\n|---|---|---|")
        print(f"| local, 1 worker | {one:.3f} | {1 / one:.2f} |")
        print(f"| local, 2 workers | {two:.3f} | {1 / two:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
