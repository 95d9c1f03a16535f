"""The HTML evidence report: one self-contained file that opens offline.

Per photo: the photo beside its matched reference, toggleable overlays (changed-region
boxes, the alteration heatmap), the findings in Chinese and English, and the metadata that
mattered. Images are embedded as data URIs; there are no external links, fonts or scripts.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from .. import __version__
from ..models import Analysis, Photo
from ..scan import ScanReport

__all__ = ["render_html_report", "write_html_report"]

_MAX_SIDE = 1100  # px: sharp on a laptop screen, small enough to keep the file light

_TEXT = {
    "zh": {"title": "RefundLens 照片证据报告", "risk": "风险", "advice": "建议",
           "photo": "申请照片", "reference": "匹配的商家图片", "no_reference": "未匹配到商家图片",
           "boxes": "改动区域", "heatmap": "热力图", "findings": "发现", "none": "未发现问题",
           "metadata": "相关元数据", "detectors": "检测器", "error": "无法分析",
           "generated": "生成时间", "code": "代码", "strength": "强度", "score": "分数",
           "message": "说明", "status": "状态", "time": "耗时",
           "low": "低", "medium": "中", "high": "高",
           "approve": "可通过", "request_evidence": "请买家补充证据", "review": "转人工审核",
           "note": "本报告列出证据，不作最终裁决；驳回申请须由人工作出。"},
    "en": {"title": "RefundLens photo evidence report", "risk": "Risk", "advice": "Recommendation",
           "photo": "Claim photo", "reference": "Matched merchant photo",
           "no_reference": "No merchant photo matched", "boxes": "Changed regions",
           "heatmap": "Heatmap", "findings": "Findings", "none": "Nothing found",
           "metadata": "Metadata that mattered", "detectors": "Detectors",
           "error": "Could not be analysed", "generated": "Generated", "code": "Code",
           "strength": "Strength", "score": "Score", "message": "Message", "status": "Status",
           "time": "Time", "low": "low", "medium": "medium", "high": "high",
           "approve": "approve", "request_evidence": "request more evidence",
           "review": "send to human review",
           "note": "This report lists evidence, not a verdict; only a person rejects a claim."},
}

_EXIF_KEYS = ("Make", "Model", "Software", "DateTimeOriginal", "DateTime", "OffsetTimeOriginal",
              "ImageDescription", "Artist", "LensModel")


def _environment() -> Environment:
    return Environment(loader=PackageLoader("refundlens.reports", "templates"),
                       autoescape=select_autoescape(["html"]), trim_blocks=True,
                       lstrip_blocks=True)


def _scaled(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    height, width = pixels.shape[:2]
    factor = min(1.0, _MAX_SIDE / max(height, width))
    if factor < 1.0:
        pixels = cv2.resize(pixels, (max(1, round(width * factor)), max(1, round(height * factor))),
                            interpolation=cv2.INTER_AREA)
    return pixels, factor


def _jpeg_uri(pixels: np.ndarray) -> str:
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR),
                              [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("could not encode a report image")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.tobytes()).decode("ascii")


def _heatmap_uri(mask: np.ndarray, width: int, height: int) -> str | None:
    if mask is None or not mask.any():
        return None
    small = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
    colored = cv2.applyColorMap(small, cv2.COLORMAP_JET)  # BGR
    alpha = np.clip(small.astype(np.float32) * 0.8, 0, 200).astype(np.uint8)
    rgba = np.dstack([colored, alpha])  # BGRA for imencode
    ok, buffer = cv2.imencode(".png", rgba)
    return "data:image/png;base64," + base64.b64encode(buffer.tobytes()).decode("ascii") \
        if ok else None


def _metadata(photo: Photo, analysis: Analysis) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [("format", f"{photo.format} {photo.width}×{photo.height}, "
                                              f"{photo.size_bytes:,} bytes"),
                                   ("sha256", photo.sha256)]
    for key in _EXIF_KEYS:
        value = photo.exif.get(key)
        if value not in (None, "", b""):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            rows.append((f"EXIF {key}", text.strip("\x00 ")[:200]))
    for result in analysis.results:
        for key, value in dict(result.to_dict()["info"]).items():
            if value in (None, "", [], {}):
                continue
            text = value if isinstance(value, str) else _short(value)
            rows.append((f"{result.detector}.{key}", text[:400]))
    return rows


def _short(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


def _photo_view(entry: Any, report: ScanReport, lang: str) -> dict[str, Any]:
    analysis, photo = entry.analysis, entry.photo
    pixels, factor = _scaled(photo.pixels)
    height, width = pixels.shape[:2]
    boxes = []
    for finding in analysis.findings:
        regions = [finding.region] if finding.region else []
        extra = finding.details.get("regions") if isinstance(finding.details, dict) else None
        if isinstance(extra, list) and len(extra) > 1:
            regions = [r for r in extra if isinstance(r, dict)]
        for region in regions:
            r = region if isinstance(region, dict) else region.to_dict()
            boxes.append({"x": 100.0 * r["x"] / photo.width, "y": 100.0 * r["y"] / photo.height,
                          "w": 100.0 * r["width"] / photo.width,
                          "h": 100.0 * r["height"] / photo.height, "code": finding.code})
    reference_view = None
    derived = next((f for f in analysis.findings if f.code == "REFERENCE_DERIVED"), None)
    if derived is not None:
        label = derived.details.get("reference")
        match = next((r for r in report.references if r.label == label), None)
        if match is not None:
            ref_pixels, _ = _scaled(match.photo.pixels)
            reference_view = {"uri": _jpeg_uri(ref_pixels), "label": match.label,
                              "kind": match.kind}
    findings = sorted(analysis.findings, key=lambda f: -f.score)
    return {
        "source": entry.source,
        "risk": analysis.risk,
        "uri": _jpeg_uri(pixels),
        "heatmap": _heatmap_uri(analysis.mask(), width, height),
        "boxes": boxes,
        "reference": reference_view,
        "findings": findings,
        "metadata": _metadata(photo, analysis),
        "results": analysis.results,
        "factor": factor,
    }


def render_html_report(report: ScanReport, *, lang: str = "zh") -> str:
    """The report as one HTML string."""
    views = []
    for index, entry in enumerate(report.entries):
        if entry.analysis is None or entry.photo is None:
            views.append({"source": entry.source, "error": str(entry.error), "index": index})
        else:
            views.append({**_photo_view(entry, report, lang), "index": index})
    template = _environment().get_template("report.html")
    return template.render(t=_TEXT[lang], lang=lang, views=views, version=__version__,
                           generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def write_html_report(report: ScanReport, directory: Path, *, lang: str = "zh",
                      name: str = "report.html") -> Path:
    """Write the report into ``directory`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(render_html_report(report, lang=lang), encoding="utf-8")
    return path
