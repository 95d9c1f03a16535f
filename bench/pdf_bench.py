"""Evidence PDF benchmark: seconds to render one claim's report, demo-size photos against
12-megapixel phone photos.

    .venv/bin/python bench/pdf_bench.py [--runs 7] [--lang zh]

Two claims of the same shape, as tests/reports/test_pdf.py builds them: a photo derived
from the merchant's listing photo with a crack painted on (matched, with its mask), a
second analysed photo, an evidence photo not analysed yet, the listing photo again as a
merchant response attachment, a decision and a timeline. "demo" uses the demo samples
(348–792 px); "12 MP" uses real phone photos from ../shared/data/camera_exif (jolla.jpg
and HMD_Nokia_8.3_5G.jpg) resized to 4000×3000 at JPEG quality 92 with their EXIF, the
listing photo being a 12 MP photo too (the worst case: every figure decodes a phone photo).
Analyses are run once, before timing. Each report is rendered once to warm up (WeasyPrint
import, fonts), then ``--runs`` times; prints a markdown table of median and fastest wall
time, median CPU time of the process (steadier than wall time on a busy machine), PDF size
and embedded images. The results and the command go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "reports")]

from conftest import painted_crack  # noqa: E402 - the tests' own forgery
from test_pdf import Blobs, photo_entry  # noqa: E402 - the report tests' claim photos


def _claim(claim_id: str, blobs: Blobs, photos: list[dict], reference_sha: str) -> dict:
    """A rejected claim around ``photos``; the listing photo again as the merchant's file."""
    digest = hashlib.sha256(claim_id.encode()).hexdigest()
    return {
        "id": claim_id, "status": "rejected", "route": "in_review", "type": "refund_only",
        "reason": "瓶身破裂漏液", "amount": "129.00", "currency": "CNY",
        "created_at": "2026-11-20T10:00:00+08:00", "updated_at": "2026-11-21T09:30:00+08:00",
        "order": {"id": "ord_1", "merchant_id": "m_1", "merchant_name": "鲜榨果汁旗舰店",
                  "buyer": "b_3f9a0c17", "amount": "129.00",
                  "items": [{"sku": "OJ-1L", "name": "橙汁 1L", "quantity": 2}]},
        "risk": photos[0]["analysis"]["risk"], "photos": photos,
        "merchant_responses": [{"id": "mr_1", "text": "发货时商品完好，附打包照片。",
                                "created_at": "2026-11-20T18:00:00+08:00",
                                "files": [{"sha256": reference_sha, "filename": "packing.jpg",
                                           "content_type": "image/jpeg"}]}],
        "decisions": [{"id": "dec_1", "outcome": "rejected", "actor": "reviewer:li",
                       "reason": "照片由商家商品图修改而来",
                       "created_at": "2026-11-21T09:30:00+08:00", "audit_hash": digest}],
        "timeline": [{"at": "2026-11-20T10:00:00+08:00", "actor": "key:intake",
                      "action": "claim_submitted", "data": {"photos": len(photos)}}],
        "audit": {"head_hash": digest, "decision_hash": digest},
    }


def demo_claim() -> tuple[dict, Blobs]:
    from refundlens import Reference, load_photo
    from refundlens.demo import SAMPLES

    blobs = Blobs()
    listing = (SAMPLES / "listing-orange-juice.jpg").read_bytes()
    ref_sha = blobs.put(listing)
    reference = (Reference(load_photo(listing, name="listing.jpg"), "listing", "listing.jpg"),
                 ref_sha)
    photos = [photo_entry(blobs, "claim-002-cracked.jpg", reference=reference),
              photo_entry(blobs, "claim-003-ai-labelled.jpg", reference=reference),
              photo_entry(blobs, "claim-009-camera.jpg", role="evidence", analysed=False)]
    return _claim("clm_demo", blobs, photos, ref_sha), blobs


def phone_claim() -> tuple[dict, Blobs]:
    import numpy as np
    from PIL import Image

    from refundlens import Reference, load_photo

    def phone(path: Path, edit: Any = None) -> bytes:
        with Image.open(path) as im:
            exif = im.info.get("exif", b"")
            pixels = np.asarray(im.convert("RGB").resize((4000, 3000), Image.LANCZOS))
        buffer = io.BytesIO()
        Image.fromarray(edit(pixels) if edit else pixels).save(buffer, format="JPEG",
                                                               quality=92, exif=exif)
        return buffer.getvalue()

    blobs = Blobs()
    jolla = SHARED / "camera_exif" / "jpg" / "mobile" / "jolla.jpg"
    nokia = SHARED / "camera_exif" / "jpg" / "mobile" / "HMD_Nokia_8.3_5G.jpg"
    listing = phone(jolla)
    ref_sha = blobs.put(listing)
    reference = (Reference(load_photo(listing, name="listing.jpg"), "listing", "listing.jpg"),
                 ref_sha)
    photos = [photo_entry(blobs, "IMG_0001.jpg", data=phone(jolla, painted_crack),
                          reference=reference),
              photo_entry(blobs, "IMG_0002.jpg", data=phone(nokia), reference=reference),
              photo_entry(blobs, "IMG_0003.jpg", role="evidence", analysed=False,
                          data=phone(jolla, lambda p: np.ascontiguousarray(p[::-1])))]
    return _claim("clm_12mp", blobs, photos, ref_sha), blobs


def images_in(pdf: bytes) -> str:
    """Embedded images as ``count × WxH`` (poppler's pdfimages), or '?' without it."""
    import shutil
    import subprocess
    import tempfile

    tool = shutil.which("pdfimages")
    if tool is None:
        return "?"
    with tempfile.NamedTemporaryFile(suffix=".pdf") as handle:
        handle.write(pdf)
        handle.flush()
        lines = subprocess.run([tool, "-list", handle.name], capture_output=True, text=True,
                               check=True).stdout.splitlines()[2:]
    sizes = sorted({f"{line.split()[3]}×{line.split()[4]}" for line in lines})
    return f"{len(lines)}: {', '.join(sizes)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--lang", choices=("zh", "en"), default="zh")
    args = parser.parse_args(argv)

    import refundlens
    from refundlens.reports.pdf import render_claim_pdf

    print(f"refundlens from {Path(refundlens.__file__).parent}", file=sys.stderr)
    print("| claim | photos | median s | fastest s | median CPU s | PDF | embedded images |")
    print("|---|---|---|---|---|---|---|")
    for label, build in (("demo", demo_claim), ("12 MP", phone_claim)):
        detail, blobs = build()
        sizes = ", ".join(f"{p['width']}×{p['height']}" for p in detail["photos"])
        pdf = render_claim_pdf(detail, load_blob=blobs.__getitem__, lang=args.lang)
        times, cpu = [], []
        for _ in range(args.runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            render_claim_pdf(detail, load_blob=blobs.__getitem__, lang=args.lang)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        print(f"| {label} | {sizes} | {statistics.median(times):.2f} | {min(times):.2f} "
              f"| {statistics.median(cpu):.2f} | {len(pdf) / 1024:.0f} KB "
              f"| {images_in(pdf)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
