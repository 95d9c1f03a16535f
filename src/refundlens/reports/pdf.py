"""The claim PDF report: one file per claim, in Chinese or English, for a third party to keep.

:func:`render_claim_pdf` turns the claim detail the REST API returns (claim and order facts,
risk, photos with their analyses, evidence requests, merchant responses, decisions, timeline,
audit hashes) into a PDF. Per photo it shows the photo with the changed regions marked —
numbered boxes from the findings' regions and the alteration mask as a translucent red
overlay — beside the matched merchant photo (the regions carried onto it through the
match's transform), the findings in plain words, and what the provenance detectors read
(embedded AI labels, C2PA credentials, AI watermarks, visible marks). The header carries the
audit hashes and how to verify them.

Rendering is HTML + CSS through WeasyPrint (imported on first use). Chinese renders with a
CJK font embedded (subset) in the PDF: the first of :data:`CJK_FONTS` that exists, else the
first font fontconfig lists for Chinese; without one the call fails with
:class:`~refundlens.errors.ConfigError` naming the Debian package to install. Nothing is
fetched: the only resources the document may load are its own figures and that font.

Images are downscaled to at most :data:`MAX_IMAGE_SIDE` pixels and embedded as JPEG, which
keeps a three-photo claim at a few hundred kilobytes.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from PIL import Image

from ..claims.actions import action_label
from ..config import DEFAULT_TIMEZONE, time_zone
from ..errors import ConfigError
from ..reasons import REASONS
from .figures import (
    MAX_IMAGE_SIDE,
    ImageStore,
    draw_marks,
    finding_regions,
    fit,
    overlay,
    reference_polygon,
)

__all__ = ["CJK_FONTS", "MAX_IMAGE_SIDE", "find_cjk_font", "render_claim_pdf"]

_THUMB_SIDE = 480  # merchant-response images: a glance, not evidence analysis

#: Known CJK font files, in order of preference, with the Debian package that installs each.
CJK_FONTS: tuple[tuple[str, str], ...] = (
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "fonts-wqy-microhei"),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "fonts-noto-cjk"),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "fonts-wqy-zenhei"),
    ("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf", "fonts-droid-fallback"),
)

_STRENGTH_ORDER = {"conclusive": 0, "strong": 1, "moderate": 2, "weak": 3, "info": 4}
# what the provenance section reads, per detector, in display order
_PROVENANCE = ("labels", "c2pa", "watermark", "visible_label")
_PROVENANCE_CODES = ("AIGC_LABEL", "AIGC_VISIBLE_LABEL", "AI_WATERMARK", "METADATA_C2PA")
# details that are drawing or bookkeeping data, not facts a reader needs
_HIDDEN_DETAILS = {"transform", "regions", "score_text", "reference_sha256", "reference_id"}

_TEXT: dict[str, dict[str, str]] = {
    "zh": {
        "title": "退款申请照片核验报告", "claim": "申请", "status": "状态", "generated": "生成时间",
        "audit": "审计哈希", "decision_hash": "决定哈希", "head_hash": "审计链最新哈希",
        "no_decision": "尚无决定",
        "verify": "核验方法：在平台上运行 refundlens audit verify，它重新计算整条审计哈希链；"
                  "上面的决定哈希必须与链中该决定事件的哈希一致。该哈希覆盖决定事件（结论、理由、"
                  "操作人、时间），并经哈希链覆盖此前的全部事件，任何改动都会使其不一致。",
        "facts": "申请与订单", "claim_id": "申请编号", "type": "类型", "route": "分流",
        "reason": "申请理由", "amount": "金额", "created": "提交时间", "updated": "更新时间",
        "order": "订单", "merchant": "商家", "buyer": "买家（化名）", "order_amount": "订单金额",
        "order_items": "商品", "shipped": "发货时间", "delivered": "签收时间",
        "review_due": "审核截止", "merchant_due": "商家答复截止", "evidence_due": "补证截止",
        "risk": "风险与分流", "score": "风险分", "advice": "建议", "reasons": "风险原因",
        "contribution": "贡献", "route_reasons": "分流原因", "no_risk": "尚未评分",
        "photos": "照片", "photo": "照片", "matched": "匹配的商家图片",
        "no_reference": "未匹配到商家图片", "not_analysed": "尚未分析",
        "image_missing": "图片无法显示", "legend": "红框/编号：改动或可疑区域，对应下表编号；"
        "红色半透明：改动可能性（掩码）。商家图片上的框为同一区域经匹配变换后的位置。",
        "findings": "发现", "no_findings": "未发现问题", "strength": "强度", "finding_score": "分数",
        "provenance": "读取到的标识与水印", "detectors": "检测器",
        "refs": "sha256", "evidence_requests": "补充证据请求", "due": "截止",
        "instructions": "要求", "merchant_responses": "商家答复", "files": "附件",
        "decisions": "决定", "outcome": "结论", "actor": "操作人", "time": "时间",
        "appeals": "申诉", "appeal_status": "状态", "appeal_open": "待复审",
        "appeal_decided": "已复审",
        "timeline": "时间线", "action": "事件", "data": "数据", "none": "无",
        "note": "本报告列出证据，不作最终裁决；驳回申请须由人工作出。",
        "page": "页", "read_nothing": "已检查，未发现", "skipped": "未运行", "error": "出错",
        "text_read": "识别到的文字", "times_in": "时间均按 {zone} 时区显示（{offset}）",
    },
    "en": {
        "title": "Refund claim photo verification report", "claim": "Claim", "status": "Status",
        "generated": "Generated", "audit": "Audit hashes", "decision_hash": "Decision hash",
        "head_hash": "Audit chain head", "no_decision": "no decision yet",
        "verify": "To verify: run refundlens audit verify on the platform; it recomputes the "
                  "whole audit hash chain, and the decision hash above must equal the hash of "
                  "the decision event in it. The hash covers the decision event (outcome, "
                  "reason, actor, time) and, through the chain, every event before it, so any "
                  "change breaks it.",
        "facts": "Claim and order", "claim_id": "Claim id", "type": "Type", "route": "Route",
        "reason": "Reason given", "amount": "Amount", "created": "Filed", "updated": "Updated",
        "order": "Order", "merchant": "Merchant", "buyer": "Buyer (pseudonym)",
        "order_amount": "Order amount", "order_items": "Items", "shipped": "Shipped",
        "delivered": "Delivered", "review_due": "Review due",
        "merchant_due": "Merchant response due", "evidence_due": "Evidence due",
        "risk": "Risk and route", "score": "Risk score", "advice": "Recommendation",
        "reasons": "Risk reasons", "contribution": "Contribution",
        "route_reasons": "Why this route", "no_risk": "not scored yet",
        "photos": "Photos", "photo": "Photo", "matched": "Matched merchant photo",
        "no_reference": "No merchant photo matched", "not_analysed": "Not analysed yet",
        "image_missing": "Image unavailable", "legend": "Red boxes / numbers: changed or "
        "suspicious regions, numbered as in the table below; translucent red: likelihood of "
        "alteration (mask). Boxes on the merchant photo are the same regions carried back "
        "through the match.",
        "findings": "Findings", "no_findings": "Nothing found", "strength": "Strength",
        "finding_score": "Score",
        "provenance": "Labels and watermarks read", "detectors": "Detectors",
        "refs": "sha256", "evidence_requests": "Evidence requests", "due": "Due",
        "instructions": "Instructions", "merchant_responses": "Merchant responses",
        "files": "Files", "decisions": "Decisions", "outcome": "Outcome", "actor": "Actor",
        "appeals": "Appeals", "appeal_status": "Status", "appeal_open": "awaiting review",
        "appeal_decided": "reviewed",
        "time": "Time", "timeline": "Timeline", "action": "Event", "data": "Data",
        "none": "none", "note": "This report lists evidence, not a verdict; only a person "
        "rejects a claim.", "page": "page", "read_nothing": "checked, nothing found",
        "skipped": "not run", "error": "failed", "text_read": "Text read",
        "times_in": "Times are in {zone} ({offset})",
    },
}

# Enumerations shown in words; the code itself is printed beside in small type.
_TERMS: dict[str, dict[str, tuple[str, str]]] = {
    "type": {"refund_only": ("仅退款", "Refund only"),
             "return_refund": ("退货退款", "Return and refund")},
    "status": {"submitted": ("已提交", "submitted"), "analyzing": ("分析中", "analysing"),
               "auto_approved": ("自动通过", "auto-approved"),
               "evidence_requested": ("待补充证据", "evidence requested"),
               "in_review": ("人工审核中", "in review"), "approved": ("已同意退款", "approved"),
               "rejected": ("已驳回", "rejected"), "appealed": ("申诉中", "appealed"),
               "decided": ("已决定", "decided")},
    "level": {"low": ("低", "low"), "medium": ("中", "medium"), "high": ("高", "high")},
    "recommendation": {"approve": ("可通过", "approve"),
                       "request_evidence": ("请买家补充证据", "request more evidence"),
                       "review": ("转人工审核", "human review")},
    "role": {"claim": ("申请照片", "Claim photo"), "evidence": ("补充证据照片", "Evidence photo")},
    "strength": {"conclusive": ("确定性", "conclusive"), "strong": ("强", "strong"),
                 "moderate": ("中等", "moderate"), "weak": ("弱", "weak"),
                 "info": ("提示", "info")},
    "detector": {"labels": ("嵌入式 AI 标识", "Embedded AI labels"),
                 "c2pa": ("C2PA 内容凭证", "C2PA Content Credentials"),
                 "watermark": ("AI 水印", "AI watermark"),
                 "visible_label": ("可见标识（OCR）", "Visible marks (OCR)")},
    "outcome": {"approved": ("同意退款", "approved"), "rejected": ("驳回", "rejected")},
}


# --- fonts ----------------------------------------------------------------------------------


def find_cjk_font(path: str | os.PathLike[str] | None = None) -> Path:
    """The CJK font file the report embeds.

    Args:
        path: use this file; otherwise the first of :data:`CJK_FONTS` that exists, else the
            first font file ``fc-list :lang=zh`` names.

    Raises:
        ConfigError: ``path`` does not exist, or no CJK font is installed; the message names
            the Debian packages that provide one.
    """
    packages = " or ".join(package for _, package in CJK_FONTS[:2])
    if path is not None:
        font = Path(path)
        if not font.is_file():
            raise ConfigError(f"CJK font {str(font)!r} for the PDF report: file not found; "
                              f"give an existing .ttf/.otf/.ttc file or install {packages}")
        return font
    found = _installed_cjk_font()
    if found is None:
        raise ConfigError(
            "the PDF report needs a CJK font to render Chinese and none is installed "
            f"(looked for {', '.join(p for p, _ in CJK_FONTS)} and asked fc-list :lang=zh); "
            f"install the Debian package {packages} (apt-get install fonts-wqy-microhei)")
    return found


@functools.lru_cache(maxsize=1)
def _installed_cjk_font() -> Path | None:
    for candidate, _ in CJK_FONTS:
        if os.path.isfile(candidate):
            return Path(candidate)
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return None
    try:
        listed = subprocess.run([fc_list, ":lang=zh", "file"], capture_output=True, text=True,
                                timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    files = sorted({line.split(":")[0].strip() for line in listed.splitlines() if line.strip()})
    # sans faces first: they read better at small sizes than song/ming (serif) faces
    files.sort(key=lambda f: not any(s in f.lower() for s in ("sans", "hei", "gothic")))
    return Path(files[0]) if files else None


# --- view building --------------------------------------------------------------------------


def _term(kind: str, value: Any, lang: str) -> dict[str, str]:
    """A value in words in ``lang``, with the stored code as the secondary text."""
    if value in (None, ""):
        return {"main": "—", "code": ""}
    words = _TERMS.get(kind, {}).get(str(value))
    if words is None:
        return {"main": str(value), "code": ""}
    return {"main": words[0] if lang == "zh" else words[1], "code": str(value)}


def _ordered(words: tuple[str, str], lang: str) -> tuple[str, str]:
    """(zh, en) words as (this language, the other)."""
    return (words[0], words[1]) if lang == "zh" else (words[1], words[0])


def _when(value: Any, zone: dt.tzinfo) -> str:
    """An ISO 8601 time in ``zone`` as ``2026-11-20 10:00:00 +08:00`` (a time without an
    offset is read as UTC, as times are stored); anything else as given."""
    if value in (None, ""):
        return "—"
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    moment = moment.astimezone(zone)
    offset = moment.strftime("%z")
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text + (" UTC" if offset in ("+0000", "-0000") else f" {offset[:3]}:{offset[3:]}")


def _zone_note(zone: dt.tzinfo, now: dt.datetime, lang: str) -> str:
    """Which zone the report's times are in: ``Asia/Shanghai (UTC+08:00)``."""
    offset = now.astimezone(zone).strftime("%z")
    return _TEXT[lang]["times_in"].format(zone=getattr(zone, "key", None) or str(zone),
                                          offset=f"UTC{offset[:3]}:{offset[3:5]}")


def _text(value: Any, limit: int = 300) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        text = value
    elif isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _pick(mapping: Mapping[str, Any], base: str, lang: str) -> str:
    """``mapping[base_<lang>]``, falling back to the other language."""
    other = "en" if lang == "zh" else "zh"
    return mapping.get(f"{base}_{lang}") or mapping.get(f"{base}_{other}") or ""


def _finding_views(analysis: Mapping[str, Any], lang: str) -> list[dict[str, Any]]:
    other = "en" if lang == "zh" else "zh"
    findings = [f for f in analysis.get("findings") or () if isinstance(f, Mapping)]
    findings.sort(key=lambda f: (_STRENGTH_ORDER.get(_strength(f), 9), -float(f.get("score") or 0)))
    views = []
    for number, finding in enumerate(findings, start=1):
        code = str(finding.get("code", "?"))
        reason = REASONS.get(code)
        title = (reason.title_zh if lang == "zh" else reason.title_en) if reason else code
        views.append({
            "number": number, "code": code, "title": title,
            "strength": _strength(finding),
            "strength_text": _term("strength", _strength(finding), lang)["main"],
            "score": float(finding.get("score") or 0.0),
            "message": finding.get(f"message_{lang}") or finding.get(f"message_{other}") or "",
            "message_other": finding.get(f"message_{other}") or "",
            "regions": finding_regions(finding),
            "details": finding.get("details") or {},
            "detector": finding.get("detector", ""),
        })
    return views


def _strength(finding: Mapping[str, Any]) -> str:
    if finding.get("strength"):
        return str(finding["strength"])
    reason = REASONS.get(str(finding.get("code")))
    return reason.strength if reason else "weak"


def _detail_rows(details: Mapping[str, Any], lang: str) -> list[tuple[str, str]]:
    """A finding's details as (key, value) facts: empty values, drawing data and the other
    language's variants left out."""
    other = "_en" if lang == "zh" else "_zh"
    rows = []
    for key, value in details.items():
        if key in _HIDDEN_DETAILS or key.endswith(other) or value in (None, "", [], {}):
            continue
        rows.append((key, _text(value, 240)))
    return rows


def _provenance(analysis: Mapping[str, Any], findings: Sequence[dict[str, Any]],
                lang: str) -> list[dict[str, Any]]:
    """What the label, C2PA, watermark and visible-mark detectors read, detector by detector:
    the facts behind their findings, the raw label or credential read, the OCR text, or that
    they looked and found nothing (which is evidence too)."""
    t = _TEXT[lang]
    results = {str(r.get("detector")): r for r in analysis.get("detectors") or ()
               if isinstance(r, Mapping)}
    rows = []
    for name in _PROVENANCE:
        result = results.get(name)
        if result is None:
            continue
        info = result.get("info") or {}
        lines: list[tuple[str, str]] = []
        for finding in findings:
            if finding["detector"] == name and finding["code"].startswith(_PROVENANCE_CODES):
                lines.append((f"#{finding['number']} {finding['code']}", ""))
                lines += [(f"  {k}", v) for k, v in _detail_rows(finding["details"], lang)]
        if name == "labels":
            for record in info.get("tc260") or ():
                if isinstance(record, Mapping) and record.get("raw"):
                    lines.append((f"TC260 {record.get('carrier', '')}".strip(),
                                  _text(record["raw"], 400)))
            for key in ("iptc", "generators", "software", "ai_names"):
                if info.get(key):
                    lines.append((key, _text(info[key], 400)))
        elif name == "c2pa" and info.get("manifest") not in (None, "none"):
            for key in ("claim_generator", "signer", "signed_at", "validation_state", "actions",
                        "ai_source_types", "validation_failures"):
                if info.get(key) not in (None, "", [], {}):
                    lines.append((key, _text(info[key], 300)))
        elif name == "visible_label":
            read = [line for line in info.get("lines_read") or ()
                    if isinstance(line, Mapping) and str(line.get("text") or "").strip()]
            if read:
                lines.append((t["text_read"], "  ·  ".join(
                    f"“{str(line['text']).strip()}” ({_text(line.get('confidence'))})"
                    for line in read[:12])))
        status = str(result.get("status") or "")
        if status == "error":
            lines.insert(0, (t["error"], _text(result.get("error"), 300)))
        elif status == "skipped":
            lines.insert(0, (t["skipped"], _text(result.get("error") or "", 200)))
        elif not lines:
            lines.append((t["read_nothing"], ""))
        words = _TERMS["detector"][name]
        main, secondary = _ordered(words, lang)
        rows.append({"name": main, "name_other": secondary, "detector": name,
                     "version": result.get("version") or "", "lines": lines})
    return rows


def _photo_view(photo: Mapping[str, Any], index: int, *, images: ImageStore,
                lang: str) -> dict[str, Any]:
    analysis = photo.get("analysis") if isinstance(photo.get("analysis"), Mapping) else None
    name = str(photo.get("filename") or photo.get("id") or f"photo-{index + 1}")
    image = images.get(photo.get("sha256"), name)
    findings = _finding_views(analysis, lang) if analysis else []
    view: dict[str, Any] = {
        "index": index + 1, "id": photo.get("id") or "", "filename": name,
        "sha256": photo.get("sha256") or "", "mask_sha256": photo.get("mask_sha256") or "",
        "role": _term("role", photo.get("role") or "claim", lang),
        "width": photo.get("width"), "height": photo.get("height"),
        "analysis": analysis, "findings": findings, "uri": None, "error": image.error,
        "risk": analysis.get("risk") if analysis else None,
        "provenance": _provenance(analysis, findings, lang) if analysis else [],
        "detectors": [r for r in (analysis.get("detectors") or ()) if isinstance(r, Mapping)]
        if analysis else [],
    }
    if image.pixels is not None:
        # finding regions are in the analysed photo's pixels: the decoded size, normally
        space_w = float((analysis or {}).get("width") or photo.get("width") or image.width)
        shown = image.pixels
        mask = None
        if photo.get("mask_sha256"):
            mask_image = images.get(photo["mask_sha256"], f"{name} mask")
            if mask_image.pixels is not None:
                mask = mask_image.pixels[..., 0]
            else:
                view["mask_error"] = mask_image.error
        shown = overlay(shown, mask)
        scale = shown.shape[1] / space_w
        marks = [{"number": f["number"], "strength": f["strength"],
                  "points": [(x * scale, y * scale), ((x + w) * scale, (y + h) * scale)]}
                 for f in findings for (x, y, w, h) in f["regions"]]
        canvas = Image.fromarray(shown, "RGB")
        draw_marks(canvas, marks, polygons=False)
        view["uri"] = images.figure(canvas)
    view["reference"] = _reference_view(photo, findings, images=images)
    return view


def _reference_view(photo: Mapping[str, Any], findings: Sequence[dict[str, Any]], *,
                    images: ImageStore) -> dict[str, Any] | None:
    reference = photo.get("matched_reference")
    if not isinstance(reference, Mapping):
        return None
    name = str(reference.get("filename") or reference.get("id") or "reference")
    image = images.get(reference.get("sha256"), name)
    view = {"id": reference.get("id") or "", "filename": name,
            "sha256": reference.get("sha256") or "", "uri": None, "error": image.error}
    if image.pixels is None:
        return view
    shown = image.pixels
    scale = shown.shape[1] / image.width
    marks = []
    for finding in findings:
        details = finding["details"]
        if not finding["code"].startswith("REFERENCE_") or "transform" not in details:
            continue
        if details.get("reference_sha256") not in (None, reference.get("sha256")):
            continue  # regions found against another reference
        for box in finding["regions"]:
            polygon = reference_polygon(box, details["transform"])
            if polygon:
                marks.append({"number": finding["number"], "strength": finding["strength"],
                              "points": [(x * scale, y * scale) for x, y in polygon]})
    canvas = Image.fromarray(shown, "RGB")
    draw_marks(canvas, marks, polygons=True)
    view["uri"] = images.figure(canvas)
    return view


def _response_views(responses: Iterable[Any], *, images: ImageStore, zone: dt.tzinfo,
                    ) -> list[dict[str, Any]]:
    views = []
    for response in responses:
        if not isinstance(response, Mapping):
            continue
        files = []
        for item in response.get("files") or ():
            if not isinstance(item, Mapping):
                continue
            entry = {"filename": item.get("filename") or "", "sha256": item.get("sha256") or "",
                     "content_type": item.get("content_type") or "", "uri": None}
            if str(entry["content_type"]).startswith("image/"):
                image = images.get(entry["sha256"], entry["filename"])
                if image.pixels is not None:
                    entry["uri"] = images.figure(fit(image.pixels, _THUMB_SIDE))
                entry["error"] = image.error
            files.append(entry)
        views.append({"id": response.get("id") or "", "text": response.get("text") or "",
                      "created_at": _when(response.get("created_at"), zone), "files": files})
    return views


def _order_view(order: Any, lang: str, zone: dt.tzinfo) -> dict[str, Any] | None:
    if not isinstance(order, Mapping):
        return None
    items = [f"{i.get('name') or '?'} ({i.get('sku') or '?'}) ×{i.get('quantity', 1)}"
             for i in order.get("items") or () if isinstance(i, Mapping)]
    merchant = order.get("merchant_name") or ""
    if order.get("merchant_id"):
        merchant = f"{merchant} ({order['merchant_id']})" if merchant else order["merchant_id"]
    return {"id": order.get("id") or "—", "merchant": merchant or "—",
            "buyer": order.get("buyer") or "—", "amount": order.get("amount"),
            "items": items, "shipped_at": _when(order.get("shipped_at"), zone),
            "delivered_at": _when(order.get("delivered_at"), zone)}


def _timeline_data(data: Any) -> str:
    if data in (None, "", {}, []):
        return ""
    if isinstance(data, Mapping):
        return _text(", ".join(f"{k}={_text(v, 80)}" for k, v in data.items()), 240)
    return _text(data, 240)


def _context(detail: Mapping[str, Any], *, images: ImageStore, lang: str,
             now: dt.datetime, zone: dt.tzinfo) -> dict[str, Any]:
    from .. import __version__

    risk = detail.get("risk") if isinstance(detail.get("risk"), Mapping) else None
    audit = detail.get("audit") if isinstance(detail.get("audit"), Mapping) else {}
    deadlines = detail.get("deadlines") if isinstance(detail.get("deadlines"), Mapping) else {}
    decisions = [d for d in detail.get("decisions") or () if isinstance(d, Mapping)]
    view = {
        "t": _TEXT[lang], "lang": lang, "version": __version__,
        "other": _TEXT["en" if lang == "zh" else "zh"],
        "generated": _when(now.isoformat(), zone),
        "times_in": _zone_note(zone, now, lang),
        "generated_iso": now.astimezone(dt.timezone.utc).isoformat(timespec="seconds"),
        "claim": detail, "claim_id": str(detail.get("id")),
        "status": _term("status", detail.get("status"), lang),
        "route": _term("status", detail.get("route"), lang),
        "type": _term("type", detail.get("type"), lang),
        "created_at": _when(detail.get("created_at"), zone),
        "updated_at": _when(detail.get("updated_at"), zone),
        "deadlines": {key: _when(deadlines.get(key), zone) for key in
                      ("review_due_at", "merchant_response_due_at", "evidence_due_at")
                      if deadlines.get(key)},
        "order": _order_view(detail.get("order"), lang, zone),
        "risk": risk,
        "risk_level": _term("level", (risk or {}).get("level"), lang),
        "risk_advice": _term("recommendation", (risk or {}).get("recommendation"), lang),
        "risk_reasons": [{"title": _pick(r, "title", lang), "code": r.get("code", ""),
                          "contribution": r.get("contribution")}
                         for r in (risk or {}).get("reasons") or () if isinstance(r, Mapping)],
        "route_reasons": [{"message": _pick(r, "message", lang), "code": r.get("code", "")}
                          for r in detail.get("route_reasons") or ()
                          if isinstance(r, Mapping)],
        "photos": [_photo_view(p, i, images=images, lang=lang)
                   for i, p in enumerate(detail.get("photos") or ()) if isinstance(p, Mapping)],
        "evidence_requests": [{"code": r.get("code") or "", "status": r.get("status") or "",
                               "due_at": _when(r.get("due_at"), zone),
                               "instructions": _pick(r, "instructions", lang)}
                              for r in detail.get("evidence_requests") or ()
                              if isinstance(r, Mapping)],
        "responses": _response_views(detail.get("merchant_responses") or (),
                                     images=images, zone=zone),
        "decisions": [{"outcome": _term("outcome", d.get("outcome"), lang),
                       "reason": d.get("reason") or "", "actor": d.get("actor") or "",
                       "created_at": _when(d.get("created_at"), zone),
                       "audit_hash": d.get("audit_hash") or ""} for d in decisions],
        "appeals": [{"created_at": _when(a.get("created_at"), zone),
                     "actor": a.get("actor") or "", "reason": a.get("reason") or "",
                     "status": _TEXT[lang]["appeal_decided" if a.get("status") == "decided"
                                           else "appeal_open"]}
                    for a in detail.get("appeals") or () if isinstance(a, Mapping)],
        "timeline": [{"at": _when(e.get("at"), zone), "actor": e.get("actor") or "",
                      "action": e.get("action") or "",
                      "label": action_label(str(e.get("action") or ""), lang),
                      "data": _timeline_data(e.get("data"))}
                     for e in detail.get("timeline") or () if isinstance(e, Mapping)],
        "decision_hash": audit.get("decision_hash") or "",
        "head_hash": audit.get("head_hash") or "",
    }
    view["latest_decision"] = view["decisions"][-1] if view["decisions"] else None
    return view


# --- rendering ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("refundlens.reports", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["css_string"] = _css_string
    return env


def _css_string(value: Any) -> Markup:
    """``value`` as a quoted CSS string for the template's ``<style>``: every character that
    could end the string, the declaration or the style element is a CSS escape, so claim data
    printed in page margins cannot change the stylesheet."""
    out = []
    for char in str(value):
        if char.isalnum() or char in " ·:./-_()#+,@" or ord(char) > 0x7F:
            out.append(char)
        else:
            out.append(f"\\{ord(char):x} ")
    return Markup('"' + "".join(out) + '"')


def _weasyprint() -> Any:
    from PIL import ImageFile

    # WeasyPrint sets Pillow's process-wide LOAD_TRUNCATED_IMAGES = True when imported, which
    # would make load_photo accept truncated uploads as whole photos anywhere in the
    # process. We hand WeasyPrint only complete images we encoded ourselves, so put the
    # flag back.
    truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        import weasyprint
    except ImportError as exc:
        raise ConfigError(
            "the PDF report needs WeasyPrint: pip install 'weasyprint>=68' (it also needs the "
            "Debian packages libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0); "
            f"import failed: {exc}") from exc
    except OSError as exc:  # the Python package is there, a system library is not
        raise ConfigError(
            "WeasyPrint is installed but a system library it loads is missing; install the "
            f"Debian packages libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0: {exc}"
        ) from exc
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated
    return weasyprint


@functools.lru_cache(maxsize=1)
def _fetcher_class(weasyprint: Any) -> type:
    base = weasyprint.urls.URLFetcher

    class _LocalOnly(base):  # type: ignore[misc, valid-type]
        """Loads the report's own figures, ``data:`` URIs and the one font file; refuses
        everything else, so nothing in a claim (a merchant's text, a file name) can make
        the renderer read a file or the network."""

        def __init__(self, allowed: set[str], figures: ImageStore | None = None) -> None:
            super().__init__(allowed_protocols={"data", "file"})
            self._allowed = allowed
            self._figures = figures

        def fetch(self, url: str, headers: Any = None) -> Any:
            figure = self._figures.figure_bytes(url) if self._figures is not None else None
            if figure is not None:
                return weasyprint.urls.URLFetcherResponse(
                    url, figure, headers={"Content-Type": "image/jpeg"})
            if not url.startswith("data:") and url not in self._allowed:
                raise ValueError(f"the claim report loads no external resource: {url[:80]}")
            return super().fetch(url, headers)

    return _LocalOnly


_RENDER_LOCK = threading.Lock()


def render_claim_pdf(detail: Mapping[str, Any], *, load_blob: Callable[[str], bytes],
                     lang: str = "zh", font: str | os.PathLike[str] | None = None,
                     now: dt.datetime | None = None, zone: dt.tzinfo | None = None) -> bytes:
    """The claim report as PDF bytes.

    Args:
        detail: the claim detail JSON the REST API returns for one claim; only ``id`` is
            required, every other key may be missing or null.
        load_blob: returns a stored file's bytes by sha256 (photos, masks, references,
            merchant files). A blob it cannot find (``LookupError`` or ``OSError``) or that
            does not decode is shown as unavailable, with the reason, not dropped.
        lang: ``"zh"`` or ``"en"``: the report's language; codes and the other language's
            messages are printed beside in small type.
        font: the CJK font file to embed (default: :func:`find_cjk_font`).
        now: the generation time printed on the report (default: now).
        zone: the time zone every time is printed in, with its offset (the service passes
            its ``timezone`` setting; default :data:`~refundlens.config.DEFAULT_TIMEZONE`).

    Raises:
        ValueError: ``detail`` has no ``id`` or ``lang`` is not zh/en.
        ConfigError: WeasyPrint or a CJK font is not installed (the message says what to
            install).
    """
    if lang not in _TEXT:
        raise ValueError(f"lang {lang!r}: expected 'zh' or 'en'")
    if not isinstance(detail, Mapping) or not detail.get("id"):
        got = type(detail).__name__ if not isinstance(detail, Mapping) else \
            f"keys {sorted(detail)[:8]}"
        raise ValueError(f"claim detail: expected a mapping with an 'id', got {got}")
    font_path = find_cjk_font(font)
    weasyprint = _weasyprint()
    images = ImageStore(load_blob)
    context = _context(detail, images=images, lang=lang,
                       now=now or dt.datetime.now(dt.timezone.utc),
                       zone=zone or time_zone(DEFAULT_TIMEZONE))
    font_uri = font_path.resolve().as_uri()
    html = _environment().get_template("claim_report.html").render(font_uri=font_uri, **context)
    fetcher = _fetcher_class(weasyprint)({font_uri}, images)
    # One render at a time: WeasyPrint's font configuration goes through fontconfig, which
    # is not documented as thread-safe, and the render is CPU-bound under the GIL anyway.
    with _RENDER_LOCK:
        document = weasyprint.HTML(string=html, url_fetcher=fetcher, base_url=None)
        return document.write_pdf()
