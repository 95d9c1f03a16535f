"""Build the bundled demo claims in src/refundlens/demo/samples/ from ../shared/data.

Run once by a developer (``python examples/build_demo_samples.py``); its output is committed
so ``make demo`` needs nothing but the repository. Every forged sample is made here, in the
open, from a real third-party photo listed in samples/SOURCES.md.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "src" / "refundlens" / "demo" / "samples"
FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"

TC260_XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:TC260="http://www.tc260.org.cn/ns/AIGC/1.0/"
 TC260:AIGC='{"Label":"1","ContentProducer":"001191110108MA01KP2T5U00000","ProduceID":"demo-20251102-7f3a","ReservedCode1":"","ContentPropagator":"","PropagateID":"","ReservedCode2":""}'/>
</rdf:RDF></x:xmpmeta>"""


def save_jpeg(image: Image.Image, path: Path, quality: int = 88, **kw) -> None:
    image.convert("RGB").save(path, format="JPEG", quality=quality, **kw)


def crack(image: Image.Image, seed: int) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Paint a dark branching crack, as a damage-adding editing app would."""
    rng = np.random.default_rng(seed)
    out = image.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    x, y = w * 0.42, h * 0.30
    points = [(x, y)]
    for _ in range(14):
        x += rng.uniform(-0.03, 0.03) * w
        y += rng.uniform(0.015, 0.03) * h
        points.append((x, y))
    draw.line(points, fill=(35, 28, 24), width=max(3, w // 160), joint="curve")
    branch = [points[6]]
    bx, by = points[6]
    for _ in range(5):
        bx += rng.uniform(0.01, 0.03) * w
        by += rng.uniform(-0.005, 0.02) * h
        branch.append((bx, by))
    draw.line(branch, fill=(40, 32, 28), width=max(2, w // 260))
    xs = [p[0] for p in points + branch]
    ys = [p[1] for p in points + branch]
    box = (int(min(xs)) - 4, int(min(ys)) - 4, int(max(xs) - min(xs)) + 8, int(max(ys) - min(ys)) + 8)
    return out, box


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    product = SHARED / "catalog_and_buyer" / "Bravo-Orange-Juice"
    claims = []

    for old in OUT.glob("*"):
        if old.name != "SOURCES.md":
            old.unlink()
    shutil.copy(product / "catalog.jpg", OUT / "listing-orange-juice.jpg")
    shutil.copy(product / "buyer_1.jpg", OUT / "claim-001-buyer-photo.jpg")
    claims.append({"id": "claim-001", "photo": "claim-001-buyer-photo.jpg",
                   "references": ["listing-orange-juice.jpg"],
                   "context": {"claim_time": "2026-11-20T10:00:00+08:00",
                               "delivered_at": "2026-11-18T15:00:00+08:00"},
                   "story": "genuine buyer photo of the product that was sold"})

    listing = Image.open(product / "catalog.jpg").convert("RGB")
    big = listing.resize((listing.width * 4, listing.height * 4), Image.LANCZOS)
    forged, _ = crack(big, seed=7)
    save_jpeg(forged, OUT / "claim-002-cracked.jpg", quality=86)
    claims.append({"id": "claim-002", "photo": "claim-002-cracked.jpg",
                   "references": ["listing-orange-juice.jpg"],
                   "story": "the merchant's listing photo, enlarged, with a crack painted on"})

    cream = SHARED / "catalog_and_buyer" / "Arla-Sour-Cream"
    photo = Image.open(cream / "buyer_2.jpg").convert("RGB")
    photo.save(OUT / "claim-003-ai-labelled.jpg", format="JPEG", quality=90,
               xmp=TC260_XMP.encode("utf-8"))
    claims.append({"id": "claim-003", "photo": "claim-003-ai-labelled.jpg",
                   "story": "a photo carrying the GB 45438-2025 implicit AI label (XMP)"})

    milk = SHARED / "catalog_and_buyer" / "Arla-Sour-Milk"
    photo = Image.open(milk / "buyer_3.jpg").convert("RGB")
    photo = photo.resize((photo.width * 2, photo.height * 2), Image.LANCZOS)
    draw = ImageDraw.Draw(photo)
    font = ImageFont.truetype(FONT, size=max(14, photo.height // 22))
    text = "AI生成"
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = photo.width - (right - left) - photo.width // 40
    y = photo.height - (bottom - top) - photo.height // 40 - top
    draw.text((x + 1, y + 1), text, font=font, fill=(0, 0, 0))
    draw.text((x, y), text, font=font, fill=(255, 255, 255))
    save_jpeg(photo, OUT / "claim-004-visible-mark.jpg", quality=90)
    claims.append({"id": "claim-004", "photo": "claim-004-visible-mark.jpg",
                   "story": "a photo with a visible 'AI生成' corner mark"})

    shutil.copy(SHARED / "c2pa" / "C.jpg", OUT / "claim-005-c2pa.jpg")
    claims.append({"id": "claim-005", "photo": "claim-005-c2pa.jpg",
                   "story": "a file whose C2PA Content Credentials declare AI generation"})

    shutil.copy(SHARED / "sd_outputs" / "Extile1_txt2img_00063.png", OUT / "claim-006-sd.png")
    claims.append({"id": "claim-006", "photo": "claim-006-sd.png",
                   "story": "a Stable Diffusion output carrying the open DWT-DCT watermark"})

    again = Image.open(product / "buyer_1.jpg").convert("RGB")
    again = again.resize((int(again.width * 1.5), int(again.height * 1.5)), Image.BICUBIC)
    save_jpeg(again, OUT / "claim-007-reused.jpg", quality=80)
    claims.append({"id": "claim-007", "photo": "claim-007-reused.jpg",
                   "references": ["listing-orange-juice.jpg"],
                   "story": "claim-001's photo again, resized and recompressed, in another claim"})

    data = (OUT / "claim-001-buyer-photo.jpg").read_bytes()
    (OUT / "claim-008-truncated.jpg").write_bytes(data[: len(data) // 2])
    claims.append({"id": "claim-008", "photo": "claim-008-truncated.jpg",
                   "story": "a damaged upload: the batch reports it and goes on"})

    shutil.copy(SHARED / "camera_exif" / "jpg" / "gps" / "DSCN0010.jpg", OUT / "claim-009-camera.jpg")
    claims.append({"id": "claim-009", "photo": "claim-009-camera.jpg",
                   "story": "a genuine camera photo with its original EXIF"})

    (OUT / "claims.json").write_text(json.dumps(claims, ensure_ascii=False, indent=2) + "\n",
                                     encoding="utf-8")
    print(f"wrote {len(claims)} demo claims to {OUT}")


if __name__ == "__main__":
    main()
