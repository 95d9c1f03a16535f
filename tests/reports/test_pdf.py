"""The claim PDF report: rendered from a claim detail built on real analyses of the demo
photos, then read back with poppler (pdftotext for the text, Chinese included; pdffonts for
the embedded CJK font; pdftoppm for page images)."""

from __future__ import annotations

import base64
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
                ) -> dict[str, Any]:
    data = (SAMPLES / name).read_bytes()
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
    view = _photo_view(photo, 0, images=ImageStore(blobs.__getitem__), lang="zh")
    shown = _decode_uri(view["uri"])
    region = finding(detail, "REFERENCE_ALTERED")["region"]
    scale = shown.shape[1] / photo["width"]
    x, y = round(region["x"] * scale), round(region["y"] * scale)
    w, h = round(region["width"] * scale), round(region["height"] * scale)
    left_edge = shown[y + h // 4: y + 3 * h // 4, max(0, x - 2): x + 3].astype(int)
    red = (left_edge[..., 0] > 170) & (left_edge[..., 1] < 90) & (left_edge[..., 2] < 110)
    assert red.any(axis=1).mean() > 0.9, "the box's left edge is not drawn where the region is"
    reference = _decode_uri(view["reference"]["uri"]).astype(int)
    plain = load_photo(blobs[photo["matched_reference"]["sha256"]]).pixels.astype(int)
    drawn = (reference[..., 0] > 170) & (reference[..., 1] < 90) & (plain[..., 1] > 120)
    assert drawn.sum() > 50, "the region is not carried onto the matched reference"


def _decode_uri(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/jpeg;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


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
    fetcher = _fetcher_class(weasyprint)({font})
    for url in ("file:///etc/passwd", "http://127.0.0.1/x.png", "https://example.com/a.css"):
        with pytest.raises(ValueError, match="no external resource"):
            fetcher.fetch(url)
    assert fetcher.fetch("data:text/plain;base64,aGk=").read() == b"hi"


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
