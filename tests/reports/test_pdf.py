"""The claim PDF report: rendered from a claim detail built on real analyses of the demo
photos, then read back with poppler (pdftotext for the text, Chinese included; pdffonts for
the embedded CJK font; pdftoppm for page images)."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from refundlens import DetectorContext, Reference, analyze, load_photo
from refundlens.demo import SAMPLES
from refundlens.errors import ConfigError
from refundlens.reports.figures import ImageStore
from refundlens.reports.pdf import _photo_view, render_claim_pdf

CLAIM_ID = "clm_01JD7K2M4N"
DECISION_HASH = hashlib.sha256(b"decision event").hexdigest()
HEAD_HASH = hashlib.sha256(b"audit head").hexdigest()
REFERENCE = "listing-orange-juice.jpg"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: the PDF tests need the Debian package "
                    f"poppler-utils (apt-get install poppler-utils)")
    return path


def pdf_text(pdf: bytes, tmp_path: Path, name: str = "report") -> str:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    return subprocess.run([tool("pdftotext"), "-enc", "UTF-8", str(path), "-"],
                          capture_output=True, check=True).stdout.decode("utf-8")


def squash(text: str) -> str:
    """Text without whitespace: lines wrap differently from the message strings."""
    return re.sub(r"\s+", "", text)


class Blobs(dict):
    """The blob store fake: sha256 → bytes, KeyError when absent (like a missing file)."""

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self[digest] = data
        return digest


def photo_entry(blobs: Blobs, name: str, *, role: str = "claim",
                reference: tuple[Reference, str] | None = None, analysed: bool = True,
                data: bytes | None = None) -> dict[str, Any]:
    """A claim detail's photo: the demo sample ``name`` (or ``data``), analysed against
    ``reference`` (the listing photo and its sha256) unless ``analysed`` is false."""
    data = (SAMPLES / name).read_bytes() if data is None else data
    sha = blobs.put(data)
    loaded = load_photo(data, name=name)
    entry: dict[str, Any] = {"id": f"pho_{sha[:10]}", "sha256": sha, "filename": name,
                             "role": role, "width": loaded.width, "height": loaded.height,
                             "mask_sha256": None, "matched_reference": None, "analysis": None}
    if not analysed:
        return entry
    refs = (reference[0],) if reference else ()
    analysis = analyze(loaded, context=DetectorContext(references=refs))
    mask = analysis.mask()
    if mask.any():
        buffer = io.BytesIO()
        Image.fromarray(mask, "L").save(buffer, format="PNG")
        entry["mask_sha256"] = blobs.put(buffer.getvalue())
    if reference and any(f.code == "REFERENCE_DERIVED" for f in analysis.findings):
        entry["matched_reference"] = {"id": "ref_orange", "sha256": reference[1],
                                      "filename": REFERENCE}
    entry["analysis"] = analysis.to_dict()
    return entry


@pytest.fixture(scope="module")
def claim() -> tuple[dict[str, Any], Blobs]:
    """A rejected refund-only claim: the merchant's photo with a crack painted on (matched
    to the listing photo), a photo with the GB 45438 AI label, and an evidence photo the
    analysis has not reached yet."""
    blobs = Blobs()
    ref_data = (SAMPLES / REFERENCE).read_bytes()
    ref_sha = blobs.put(ref_data)
    reference = Reference(load_photo(ref_data, name=REFERENCE), "listing", REFERENCE)
    photos = [photo_entry(blobs, "claim-002-cracked.jpg", reference=(reference, ref_sha)),
              photo_entry(blobs, "claim-003-ai-labelled.jpg", reference=(reference, ref_sha)),
              photo_entry(blobs, "claim-009-camera.jpg", role="evidence", analysed=False)]
    risk = photos[0]["analysis"]["risk"]
    detail = {
        "id": CLAIM_ID, "status": "rejected", "route": "in_review", "type": "refund_only",
        "reason": "瓶身破裂漏液", "amount": "129.00", "currency": "CNY",
        "created_at": "2026-11-20T10:00:00+08:00", "updated_at": "2026-11-21T09:30:00+08:00",
        "order": {"id": "ord_5521", "merchant_id": "m_17", "merchant_name": "鲜榨果汁旗舰店",
                  "buyer": "b_3f9a0c17", "amount": "129.00",
                  "items": [{"sku": "OJ-1L", "name": "橙汁 1L", "quantity": 2}],
                  "shipped_at": "2026-11-16T08:00:00+08:00",
                  "delivered_at": "2026-11-18T15:00:00+08:00"},
        "risk": risk,
        "route_reasons": [{"code": "RISK_HIGH", "message_en": "High risk: sent to human review",
                           "message_zh": "高风险：转人工审核"}],
        "deadlines": {"review_due_at": "2026-11-22T10:00:00+08:00",
                      "merchant_response_due_at": "2026-11-21T10:00:00+08:00",
                      "evidence_due_at": None},
        "photos": photos,
        "evidence_requests": [{"id": "evr_1", "code": "ONE_TIME_CODE", "status": "fulfilled",
                               "due_at": "2026-11-21T10:00:00+08:00",
                               "instructions_en": "A new photo with the code 4821 beside the item",
                               "instructions_zh": "请重新拍摄商品，并在旁边写上验证码 4821"}],
        "merchant_responses": [{"id": "mr_1", "text": "发货时商品完好，附打包照片。",
                                "created_at": "2026-11-20T18:00:00+08:00",
                                "files": [{"sha256": ref_sha, "filename": "packing.jpg",
                                           "content_type": "image/jpeg"}]}],
        "decisions": [{"id": "dec_1", "outcome": "rejected", "actor": "reviewer:li",
                       "reason": "照片由商家商品图修改而来", "created_at": "2026-11-21T09:30:00+08:00",
                       "audit_hash": DECISION_HASH}],
        "timeline": [{"at": "2026-11-20T10:00:00+08:00", "actor": "buyer",
                      "action": "claim.submitted", "data": {"amount": "129.00"}},
                     {"at": "2026-11-20T10:00:04+08:00", "actor": "system",
                      "action": "claim.routed", "data": {"route": "in_review"}},
                     {"at": "2026-11-21T09:30:00+08:00", "actor": "reviewer:li",
                      "action": "claim.decided", "data": {"outcome": "rejected"}}],
        "audit": {"head_hash": HEAD_HASH, "decision_hash": DECISION_HASH},
    }
    return detail, blobs


def finding(detail: dict[str, Any], code: str) -> dict[str, Any]:
    return next(f for p in detail["photos"] if p["analysis"]
                for f in p["analysis"]["findings"] if f["code"] == code)


def test_the_fixture_has_the_evidence_the_report_must_show(claim):
    detail, _ = claim
    altered = finding(detail, "REFERENCE_ALTERED")
    assert altered["region"] is not None
    assert detail["photos"][0]["mask_sha256"] and detail["photos"][0]["matched_reference"]
    assert finding(detail, "AIGC_LABEL_TC260")


def test_chinese_report_text_has_claim_facts_findings_and_audit_hashes(claim, tmp_path):
    detail, blobs = claim
    pdf = render_claim_pdf(detail, load_blob=blobs.__getitem__, lang="zh")
    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf, tmp_path)
    assert CLAIM_ID in text
    assert DECISION_HASH in text and HEAD_HASH in text
    assert "refundlens audit verify" in text
    flat = squash(text)
    for expected in ("仅退款", "退款申请照片核验报告", "鲜榨果汁旗舰店", "瓶身破裂漏液", "商家图片被局部修改",
                     "已检查，未发现", "请重新拍摄商品", "发货时商品完好", "照片由商家商品图修改而来",
                     "尚未分析", "claim.decided"):
        assert expected in flat, expected
    # the findings in plain words, as the analysis wrote them, Chinese first
    assert squash(finding(detail, "REFERENCE_ALTERED")["message_zh"]) in flat
    assert squash(finding(detail, "AIGC_LABEL_TC260")["message_zh"]) in flat
    # the label as read: the producer and content ids from the TC260 metadata
    label = finding(detail, "AIGC_LABEL_TC260")["details"]
    assert label["producer"] in text and label["produce_id"] in text


def test_english_report_text_keeps_codes_and_chinese_in_small_type(claim, tmp_path):
    detail, blobs = claim
    text = pdf_text(render_claim_pdf(detail, load_blob=blobs.__getitem__, lang="en"), tmp_path)
    flat = squash(text)
    assert CLAIM_ID in text and DECISION_HASH in text
    for expected in ("Refundclaimphotoverificationreport", "Refundonly", "refund_only",
                     "REFERENCE_ALTERED", "AIGC_LABEL_TC260", "Notanalysedyet"):
        assert expected in flat, expected
    assert squash(finding(detail, "REFERENCE_ALTERED")["message_en"]) in flat
    assert squash(finding(detail, "REFERENCE_ALTERED")["message_zh"]) in flat


def test_chinese_renders_with_an_embedded_cjk_font(claim, tmp_path):
    detail, blobs = claim
    path = tmp_path / "fonts.pdf"
    path.write_bytes(render_claim_pdf(detail, load_blob=blobs.__getitem__, lang="zh"))
    listing = subprocess.run([tool("pdffonts"), str(path)], capture_output=True, text=True,
                             check=True).stdout.splitlines()[2:]
    assert listing, "no fonts in the PDF"
    for line in listing:  # columns: name type encoding emb sub uni object-id generation
        assert line.split()[-5] == "yes", f"font not embedded: {line}"
    assert any("RL-CJK" in line for line in listing), listing


def test_pages_render_to_images_that_are_not_blank(claim, tmp_path):
    detail, blobs = claim
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render_claim_pdf(detail, load_blob=blobs.__getitem__, lang="zh"))
    subprocess.run([tool("pdftoppm"), "-r", "50", "-png", str(pdf), str(tmp_path / "page")],
                   check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3, pages  # facts, three photos, responses and timeline
    ink = [(np.asarray(Image.open(page).convert("L")) < 200).mean() for page in pages]
    assert ink[0] > 0.02, f"the first page looks blank ({ink[0]:.2%} ink)"
    assert min(ink) > 0.002, f"a page looks blank: ink per page {ink}"
    # the photo pages carry the photos: far more colour than text pages
    saturation = [np.asarray(Image.open(p).convert("HSV"))[..., 1].mean() for p in pages]
    assert max(saturation) > 4 * min(saturation)


def test_changed_region_is_boxed_on_the_photo_and_the_reference(claim):
    detail, blobs = claim
    photo = detail["photos"][0]
    images = ImageStore(blobs.__getitem__)
    view = _photo_view(photo, 0, images=images, lang="zh")
    shown = _figure(images, view["uri"])
    region = finding(detail, "REFERENCE_ALTERED")["region"]
    scale = shown.shape[1] / photo["width"]
    x, y = round(region["x"] * scale), round(region["y"] * scale)
    w, h = round(region["width"] * scale), round(region["height"] * scale)
    left_edge = shown[y + h // 4: y + 3 * h // 4, max(0, x - 2): x + 3].astype(int)
    red = (left_edge[..., 0] > 170) & (left_edge[..., 1] < 90) & (left_edge[..., 2] < 110)
    assert red.any(axis=1).mean() > 0.9, "the box's left edge is not drawn where the region is"
    reference = _figure(images, view["reference"]["uri"]).astype(int)
    plain = load_photo(blobs[photo["matched_reference"]["sha256"]]).pixels.astype(int)
    drawn = (reference[..., 0] > 170) & (reference[..., 1] < 90) & (plain[..., 1] > 120)
    assert drawn.sum() > 50, "the region is not carried onto the matched reference"


def _figure(images: ImageStore, url: str) -> np.ndarray:
    data = images.figure_bytes(url)
    assert data is not None and data.startswith(b"\xff\xd8"), url
    return np.asarray(Image.open(io.BytesIO(data)))


def test_missing_optional_keys_and_blobs_still_render(tmp_path):
    """A claim just filed: no risk, no order, no analysis, no reference, no decision; one
    photo's file is missing from the blob store."""
    blobs = Blobs()
    sha = blobs.put((SAMPLES / "claim-001-buyer-photo.jpg").read_bytes())
    detail = {"id": "clm_new", "type": "refund_only", "status": "submitted",
              "photos": [{"id": "p1", "sha256": sha, "filename": "buyer.jpg"},
                         {"id": "p2", "sha256": "0" * 64, "filename": "lost.jpg",
                          "analysis": None, "matched_reference": None}],
              "risk": None, "audit": {"head_hash": HEAD_HASH, "decision_hash": None}}
    for lang, expected in (("zh", ("仅退款", "尚未分析", "图片无法显示", "尚无决定")),
                           ("en", ("Refundonly", "Notanalysedyet", "Imageunavailable",
                                   "nodecisionyet"))):
        text = pdf_text(render_claim_pdf(detail, load_blob=blobs.__getitem__, lang=lang),
                        tmp_path, lang)
        assert "clm_new" in text and HEAD_HASH in text and "lost.jpg" in text
        flat = squash(text)
        for word in expected:
            assert word in flat, (lang, word)
    bare = pdf_text(render_claim_pdf({"id": "clm_bare"}, load_blob=blobs.__getitem__),
                    tmp_path, "bare")
    assert "clm_bare" in bare


def test_claim_data_cannot_inject_markup_or_styles(tmp_path):
    hostile = 'clm_"\\</style><img src="file:///etc/passwd">'
    detail = {"id": hostile, "reason": "<script>alert(1)</script>",
              "audit": {"decision_hash": 'x"; } @page { size: 10mm', "head_hash": None}}
    pdf = render_claim_pdf(detail, load_blob=Blobs().__getitem__, lang="en")
    text = pdf_text(pdf, tmp_path)
    assert "<script>alert(1)</script>" in text
    assert '</style><img src="file:///etc/passwd">' in text
    path = tmp_path / "hostile.pdf"
    path.write_bytes(pdf)
    info = subprocess.run([tool("pdfinfo"), str(path)], capture_output=True, text=True,
                          check=True).stdout
    assert "595.276 x 841.89" in info  # still A4: the hash could not rewrite @page


def test_bad_arguments_and_a_missing_font_fail_clearly(claim, tmp_path):
    detail, blobs = claim
    with pytest.raises(ValueError, match="expected 'zh' or 'en'"):
        render_claim_pdf(detail, load_blob=blobs.__getitem__, lang="fr")
    with pytest.raises(ValueError, match="with an 'id'"):
        render_claim_pdf({"status": "submitted"}, load_blob=blobs.__getitem__)
    with pytest.raises(ConfigError, match="fonts-wqy-microhei"):
        render_claim_pdf(detail, load_blob=blobs.__getitem__, font=tmp_path / "none.ttc")


def test_the_renderer_may_load_only_data_uris_and_the_font():
    import weasyprint

    from refundlens.reports.pdf import _fetcher_class, find_cjk_font

    font = find_cjk_font().resolve().as_uri()
    images = ImageStore(Blobs().__getitem__)
    figure = images.figure(np.zeros((4, 4, 3), np.uint8))
    fetcher = _fetcher_class(weasyprint)({font}, images)
    for url in ("file:///etc/passwd", "http://127.0.0.1/x.png", "https://example.com/a.css",
                "figure:99"):
        with pytest.raises(ValueError, match="no external resource"):
            fetcher.fetch(url)
    assert fetcher.fetch("data:text/plain;base64,aGk=").read() == b"hi"
    assert fetcher.fetch(figure).read() == images.figure_bytes(figure)


def test_timeline_actions_are_shown_in_words_beside_their_names(tmp_path):
    detail = {"id": "clm_words", "timeline": [
        {"at": "2026-11-20T02:00:00+00:00", "actor": "key:intake", "action": "claim_submitted"},
        {"at": "2026-11-20T02:00:09+00:00", "actor": "policy", "action": "status_changed",
         "data": {"from": "analyzing", "to": "in_review"}},
        {"at": "2026-11-20T03:00:00+00:00", "actor": "later", "action": "from_a_later_version"}]}
    for lang, words in (("zh", ("提交申请", "状态变更")),
                        ("en", ("Claimsubmitted", "Statuschanged"))):
        flat = squash(pdf_text(render_claim_pdf(detail, load_blob=Blobs().__getitem__,
                                                lang=lang), tmp_path, lang))
        for word in (*words, "claim_submitted", "status_changed", "from_a_later_version"):
            assert word in flat, (lang, word)


def test_appeals_are_listed_with_who_when_why_and_whether_reviewed(tmp_path):
    detail = {"id": "clm_appeal", "status": "appealed", "appeals": [
        {"id": "apl_1", "reason": "买家称商品确有破损，补充了开箱视频", "status": "decided",
         "actor": "merchant:key_m", "created_at": "2026-11-20T02:00:00+00:00"},
        {"id": "apl_2", "reason": "second appeal after new evidence", "status": "open",
         "actor": "intake:key_i", "created_at": "2026-11-22T02:00:00+00:00"}]}
    for lang, words in (("zh", ("申诉", "已复审", "待复审")),
                        ("en", ("Appeals", "reviewed", "awaitingreview"))):
        flat = squash(pdf_text(render_claim_pdf(detail, load_blob=Blobs().__getitem__,
                                                lang=lang), tmp_path, lang))
        for word in (*words, "买家称商品确有破损", "secondappealafternewevidence",
                     "merchant:key_m", "2026-11-2010:00:00+08:00"):
            assert word in flat, (lang, word)
    plain = squash(pdf_text(render_claim_pdf({"id": "clm_none"}, load_blob=Blobs().__getitem__,
                                             lang="en"), tmp_path, "none"))
    assert "Appeals" not in plain


def test_times_are_printed_in_the_zone_given_and_the_report_names_it(tmp_path):
    import datetime as dt
    from zoneinfo import ZoneInfo

    detail = {"id": "clm_zone", "created_at": "2026-11-20T02:00:00+00:00",
              "timeline": [{"at": "2026-07-01T02:00:00+00:00", "actor": "policy",
                            "action": "status_changed"}]}
    now = dt.datetime(2026, 11, 23, 4, 0, tzinfo=dt.timezone.utc)
    shanghai = squash(pdf_text(render_claim_pdf(detail, load_blob=Blobs().__getitem__,
                                                lang="zh", now=now), tmp_path, "default"))
    for expected in ("2026-11-2010:00:00+08:00", "2026-11-2312:00:00+08:00",
                     "时间均按Asia/Shanghai时区显示（UTC+08:00）"):
        assert expected in shanghai, expected
    berlin = squash(pdf_text(render_claim_pdf(detail, load_blob=Blobs().__getitem__,
                                              lang="en", now=now,
                                              zone=ZoneInfo("Europe/Berlin")),
                             tmp_path, "berlin"))
    # winter and summer time, each with its own offset
    for expected in ("2026-11-2003:00:00+01:00", "2026-07-0104:00:00+02:00",
                     "TimesareinEurope/Berlin(UTC+01:00)"):
        assert expected in berlin, expected


# --- phone-size photos: figures decoded at a reduced scale, regions still in place ---------

REGION = {"x": 1800, "y": 2400, "width": 600, "height": 500}  # in the upright photo


def _upright_12mp() -> np.ndarray:
    """A 3000×4000 (12 MP, portrait) photo-like image: gradients and noise."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:4000, 0:3000]
    gray = (70 + 60 * xx / 3000 + 40 * np.sin(yy / 150)).astype(np.int16)
    pixels = np.repeat(gray[..., None], 3, axis=2) + rng.integers(-6, 7, (4000, 3000, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _jpeg_bytes(pixels: np.ndarray, **save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=92, **save)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def phone_claim() -> tuple[dict[str, Any], Blobs]:
    """A claim whose photo is a 12 MP phone JPEG stored sideways with EXIF orientation 6
    (as phones write portrait photos), a green patch where the 'changed region' is, its
    full-size mask, and a 12 MP reference it was derived from (identity transform)."""
    blobs = Blobs()
    upright = _upright_12mp()
    reference_sha = blobs.put(_jpeg_bytes(upright))
    x, y, w, h = REGION["x"], REGION["y"], REGION["width"], REGION["height"]
    edited = upright.copy()
    edited[y:y + h, x:x + w] = (0, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter left; shown after turning it right
    stored = np.ascontiguousarray(np.rot90(edited, 1))  # 4000 wide × 3000 high
    photo_sha = blobs.put(_jpeg_bytes(stored, exif=exif.tobytes()))
    mask = np.zeros((4000, 3000), np.uint8)
    mask[y:y + h, x:x + w] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask, "L").save(buffer, format="PNG")
    mask_sha = blobs.put(buffer.getvalue())
    altered = {"code": "REFERENCE_ALTERED", "detector": "reference", "score": 0.97,
               "strength": "conclusive", "region": REGION, "message_zh": "商家图片被局部修改",
               "message_en": "The merchant's photo was changed in places",
               "details": {"transform": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                           "reference_sha256": reference_sha}}
    photo = {"id": "pho_phone", "sha256": photo_sha, "filename": "IMG_0412.jpg",
             "role": "claim", "width": 3000, "height": 4000, "mask_sha256": mask_sha,
             "matched_reference": {"id": "ref_1", "sha256": reference_sha,
                                   "filename": "listing.jpg"},
             "analysis": {"width": 3000, "height": 4000, "findings": [altered],
                          "detectors": []}}
    return {"id": "clm_phone", "type": "refund_only", "status": "in_review",
            "photos": [photo]}, blobs


def test_a_phone_photo_is_shown_upright_downscaled_with_its_region_in_place(phone_claim):
    detail, blobs = phone_claim
    images = ImageStore(blobs.__getitem__)
    view = _photo_view(detail["photos"][0], 0, images=images, lang="zh")
    shown = _figure(images, view["uri"]).astype(int)
    assert shown.shape[:2] == (1200, 900)  # upright, long side at MAX_IMAGE_SIDE
    scale = 900 / 3000
    x, y = REGION["x"] * scale, REGION["y"] * scale
    w, h = REGION["width"] * scale, REGION["height"] * scale
    cy, cx = round(y + h / 2), round(x + w / 2)
    r, g, b = shown[cy - 5:cy + 5, cx - 5:cx + 5].reshape(-1, 3).mean(axis=0)
    assert r > 100 and g > 80 and b < 60, "the green patch is not under the red mask"
    outside = shown[cy - 5:cy + 5, round(x) - 40:round(x) - 30].reshape(-1, 3).mean(axis=0)
    assert abs(outside[0] - outside[1]) < 20, "the mask or the patch spills outside the region"
    left_edge = shown[round(y + h / 4):round(y + 3 * h / 4), round(x) - 3:round(x) + 3]
    red = (left_edge[..., 0] > 170) & (left_edge[..., 1] < 90) & (left_edge[..., 2] < 110)
    assert red.any(axis=1).mean() > 0.9, "the box's left edge is not drawn where the region is"
    reference = _figure(images, view["reference"]["uri"]).astype(int)
    assert reference.shape[:2] == (1200, 900)
    ref_edge = reference[round(y + h / 4):round(y + 3 * h / 4), round(x) - 3:round(x) + 3]
    red = (ref_edge[..., 0] > 170) & (ref_edge[..., 1] < 90)
    assert red.any(axis=1).mean() > 0.9, "the region is not carried onto the reference"


def test_a_phone_photo_report_embeds_small_images_and_prints_the_original_hashes(
        phone_claim, tmp_path):
    detail, blobs = phone_claim
    pdf = render_claim_pdf(detail, load_blob=blobs.__getitem__, lang="zh")
    path = tmp_path / "phone.pdf"
    path.write_bytes(pdf)
    listing = subprocess.run([tool("pdfimages"), "-list", str(path)], capture_output=True,
                             text=True, check=True).stdout.splitlines()[2:]
    sizes = [(int(line.split()[3]), int(line.split()[4])) for line in listing]
    assert sorted(sizes) == [(900, 1200), (900, 1200)], sizes  # photo and reference
    assert len(pdf) < 1_500_000, len(pdf)
    flat = squash(pdf_text(pdf, tmp_path, "phone"))
    photo = detail["photos"][0]
    for sha in (photo["sha256"], photo["mask_sha256"], photo["matched_reference"]["sha256"]):
        assert sha in flat  # the stored originals stay identifiable
    assert "3000×4000" in flat and "商家图片被局部修改" in flat


@pytest.mark.parametrize("fmt, orientation", [("JPEG", 1), ("JPEG", 6), ("JPEG", 8),
                                              ("PNG", 1), ("PNG", 6)])
def test_figures_decode_the_same_upright_pixels_as_the_analysis(fmt, orientation):
    """load_preview (reduced decode) against load_photo (what the analysis saw), fitted to
    the same figure size: same shape, same picture."""
    from refundlens.imaging import load_preview
    from refundlens.reports.figures import MAX_IMAGE_SIDE, fit

    pixels = np.ascontiguousarray(_upright_12mp()[:2400, :2000])  # not square: turns show
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, exif=exif.tobytes(),
                                 **({"quality": 92} if fmt == "JPEG" else {}))
    data = buffer.getvalue()
    full = load_photo(data)
    preview = load_preview(data, side=MAX_IMAGE_SIDE)
    assert (preview.width, preview.height) == (full.width, full.height)
    assert max(preview.pixels.shape[:2]) < max(full.pixels.shape[:2])  # decoded reduced
    a = fit(preview.pixels, MAX_IMAGE_SIDE).astype(int)
    b = fit(full.pixels, MAX_IMAGE_SIDE).astype(int)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 1.0  # measured 0.17 (JPEG decoded at 1/2), 0 (PNG)
