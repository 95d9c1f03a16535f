"""The one table of reason codes: code, strength, weight, and Chinese/English text.

Codes are stable: they are stored, sent to platforms and documented, so a code is never
renamed or reused; a new meaning gets a new code. ``docs/reasons.md`` is generated from this
table and a test fails when it drifts.

Strength is how much a finding alone says about a photo (DESIGN.md, "Reason codes"):

- ``conclusive``: deterministic evidence (an embedded AI label, a decoded AI watermark, a
  photo geometrically derived from the merchant's reference). Alone it puts a claim at high.
- ``strong``: near-deterministic but with an innocent explanation possible (the same photo
  in another claim may be the same buyer filing twice).
- ``moderate`` / ``weak``: statistical or circumstantial evidence that ranks claims.
- ``info``: recorded for the reviewer; adds no risk.

Message templates use ``str.format`` fields filled from a finding's ``details``; a missing
field renders as ``?`` rather than failing, so a detector can never crash on its own text.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["REASONS", "STRENGTH_WEIGHTS", "Reason", "get_reason", "render_message"]

#: Contribution of a finding of score 1.0 to the combined risk, by strength. The values
#: put one conclusive finding at 95 (high), one strong at 70 (just high at full score),
#: one moderate at 35 (medium) and keep weak findings below the medium line on their own.
STRENGTH_WEIGHTS: dict[str, float] = {
    "conclusive": 0.95,
    "strong": 0.70,
    "moderate": 0.35,
    "weak": 0.15,
    "info": 0.0,
}


@dataclass(frozen=True)
class Reason:
    code: str
    strength: str
    title_en: str
    title_zh: str
    template_en: str
    template_zh: str

    @property
    def family(self) -> str:
        for prefix in ("AIGC_LABEL", "AIGC_VISIBLE", "AI_WATERMARK", "REFERENCE", "REUSED",
                       "FORENSIC", "METADATA"):
            if self.code.startswith(prefix):
                return prefix
        return self.code

    @property
    def weight(self) -> float:
        return STRENGTH_WEIGHTS[self.strength]


def _r(code: str, strength: str, title_en: str, title_zh: str, template_en: str,
       template_zh: str) -> Reason:
    return Reason(code, strength, title_en, title_zh, template_en, template_zh)


_TABLE = [
    # --- embedded AI labels -----------------------------------------------------------
    _r("AIGC_LABEL_TC260", "conclusive",
       "GB 45438-2025 AI label", "GB 45438-2025 AI生成隐式标识",
       "The file carries the GB 45438-2025 implicit AI label in {carrier}: Label={label} "
       "({label_meaning_en}), content producer {producer}, produce id {produce_id}.",
       "文件{carrier}中含 GB 45438-2025 隐式标识：Label={label}（{label_meaning_zh}），"
       "生成服务提供者 {producer}，内容编号 {produce_id}。"),
    _r("AIGC_LABEL_TC260_MALFORMED", "strong",
       "Malformed AI label", "AI标识格式异常",
       "The file carries a GB 45438-2025 AIGC label in {carrier} that does not parse: {problem}.",
       "文件{carrier}中含 GB 45438-2025 AIGC 标识，但格式异常：{problem}。"),
    _r("AIGC_LABEL_C2PA", "conclusive",
       "C2PA: AI-generated content", "C2PA：AI生成内容",
       "The C2PA manifest records AI generation ({source_type}) on action {action}, "
       "signed by {signer} ({validation}).",
       "C2PA 内容凭证记录了 AI 生成（{source_type}），动作 {action}，签名者 {signer}（{validation}）。"),
    _r("AIGC_LABEL_IPTC", "conclusive",
       "IPTC: AI-generated content", "IPTC：AI生成内容",
       "The IPTC metadata declares the digital source type {source_type}{extra_en}.",
       "IPTC 元数据声明数字来源类型为 {source_type}{extra_zh}。"),
    _r("AIGC_LABEL_GENERATOR", "conclusive",
       "AI generator parameters", "AI生成参数",
       "The file carries {generator} generation parameters in {carrier}{prompt_en}.",
       "文件{carrier}中含 {generator} 生成参数{prompt_zh}。"),
    _r("AIGC_LABEL_SOFTWARE", "conclusive",
       "AI generator named in metadata", "元数据标明AI生成工具",
       "The metadata field {field} names the AI generator \u201c{software}\u201d.",
       "元数据字段 {field} 标明 AI 生成工具\u201c{software}\u201d。"),
    # --- visible marks and watermarks -------------------------------------------------
    _r("AIGC_VISIBLE_LABEL", "conclusive",
       "Visible AI mark", "可见AI生成标识",
       "The photo shows the visible AI mark \u201c{text}\u201d ({position}, OCR confidence "
       "{confidence}).",
       "照片上有可见的 AI 标识\u201c{text}\u201d（位置：{position_zh}，识别置信度 {confidence}）。"),
    _r("AI_WATERMARK", "conclusive",
       "AI watermark", "AI水印",
       "The {scheme} watermark was decoded: {matched} of {bits} bits match the payload "
       "\u201c{payload}\u201d (p = {p_value}).",
       "解码出 {scheme} 水印：{bits} 位中 {matched} 位与载荷\u201c{payload}\u201d一致（p = {p_value}）。"),
    # --- reference comparison ---------------------------------------------------------
    _r("REFERENCE_DERIVED", "conclusive",
       "Made from the merchant's photo", "由商家图片生成",
       "The photo is geometrically the merchant's {reference_kind} photo {reference} "
       "({inliers} matching points, {transform_en}).",
       "该照片在几何上与商家{reference_kind_zh}图片 {reference} 一致（{inliers} 个匹配点，{transform_zh}）。"),
    _r("REFERENCE_ALTERED", "conclusive",
       "Merchant's photo with regions changed", "商家图片被局部修改",
       "The photo is the merchant's photo {reference} with {region_count} region(s) changed, "
       "{area_percent}% of the product area.",
       "该照片是商家图片 {reference} 局部修改后的结果：{region_count} 处区域被改动，"
       "占画面 {area_percent}%。"),
    # --- reuse ------------------------------------------------------------------------
    _r("REUSED_PHOTO", "strong",
       "Photo used in another claim", "照片已用于其他申请",
       "The same photo (or a near copy, distance {distance}) was submitted before as "
       "{other}.",
       "相同照片（或近似副本，距离 {distance}）此前已作为 {other} 提交。"),
    # --- forensics --------------------------------------------------------------------
    _r("FORENSIC_ELA", "weak",
       "Error-level inconsistency", "压缩误差不一致",
       "Error-level analysis shows a region that recompresses differently from the rest "
       "(score {score_text}).",
       "误差水平分析（ELA）发现局部区域的压缩特性与其余部分不同（分数 {score_text}）。"),
    _r("FORENSIC_NOISE", "weak",
       "Noise inconsistency", "噪声不一致",
       "The sensor-noise residual of a region differs from the rest of the photo "
       "(score {score_text}).",
       "照片局部区域的噪声残差与其余部分不一致（分数 {score_text}）。"),
    _r("FORENSIC_DOUBLE_JPEG", "weak",
       "Double JPEG compression", "JPEG二次压缩痕迹",
       "A region carries traces of an earlier JPEG compression at quality ~{ghost_quality} "
       "that the rest does not (score {score_text}).",
       "局部区域带有此前以约 {ghost_quality} 质量压缩的 JPEG 痕迹，而其余部分没有（分数 {score_text}）。"),
    # --- metadata ---------------------------------------------------------------------
    _r("METADATA_C2PA_INVALID", "moderate",
       "C2PA manifest fails validation", "C2PA 内容凭证校验失败",
       "The C2PA manifest does not validate: {problem}. The file was changed after signing "
       "or the signature is broken.",
       "C2PA 内容凭证校验失败：{problem}。文件在签名后被修改，或签名已损坏。"),
    _r("METADATA_C2PA_REMOTE", "info",
       "Remote C2PA manifest not checked", "远程C2PA凭证未核验",
       "The file points to a remote C2PA manifest ({url}) that was not fetched offline.",
       "文件引用了远程 C2PA 内容凭证（{url}），离线模式下未获取核验。"),
    _r("METADATA_C2PA_PRESENT", "info",
       "C2PA manifest present", "含C2PA内容凭证",
       "The file carries a C2PA manifest by {claim_generator}, signed by {signer} "
       "({validation}); actions: {actions}.",
       "文件含 C2PA 内容凭证（生成工具 {claim_generator}，签名者 {signer}，{validation}）；"
       "动作：{actions}。"),
    _r("METADATA_THUMBNAIL_MISMATCH", "moderate",
       "EXIF thumbnail differs", "EXIF缩略图与图像不符",
       "The EXIF thumbnail does not match the image (difference {difference}): the image was "
       "edited after the camera wrote it.",
       "EXIF 缩略图与图像内容不符（差异 {difference}）：图像在拍摄后被修改过。"),
    _r("METADATA_EDITING_SOFTWARE", "weak",
       "Edited with software", "经软件编辑",
       "The metadata field {field} names the editing software \u201c{software}\u201d.",
       "元数据字段 {field} 显示经编辑软件\u201c{software}\u201d处理。"),
    _r("METADATA_CAPTURE_AFTER_CLAIM", "moderate",
       "Taken after the claim", "拍摄时间晚于申请",
       "The photo was taken at {captured_at}, after the claim was filed at {claim_time}.",
       "照片拍摄于 {captured_at}，晚于申请提交时间 {claim_time}。"),
    _r("METADATA_CAPTURE_BEFORE_DELIVERY", "moderate",
       "Taken before delivery", "拍摄时间早于签收",
       "The photo was taken at {captured_at}, before the parcel was delivered at "
       "{delivered_at}.",
       "照片拍摄于 {captured_at}，早于包裹签收时间 {delivered_at}。"),
    _r("METADATA_SCREENSHOT", "moderate",
       "Screenshot", "截图",
       "The photo is a screenshot, not a camera photo ({evidence_en}).",
       "该照片是截图而非相机拍摄（{evidence_zh}）。"),
    _r("METADATA_RECAPTURE", "weak",
       "Photo of a screen", "翻拍屏幕",
       "The photo shows signs of being taken of a screen ({evidence_en}).",
       "该照片有翻拍屏幕的迹象（{evidence_zh}）。"),
]

REASONS: dict[str, Reason] = {reason.code: reason for reason in _TABLE}


def get_reason(code: str) -> Reason:
    try:
        return REASONS[code]
    except KeyError:
        raise KeyError(f"unknown reason code {code!r}; known: {', '.join(sorted(REASONS))}") \
            from None


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return "?"


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        try:
            return super().format_field(value, format_spec)
        except (TypeError, ValueError):
            return str(value)


_FORMATTER = _Formatter()


def render_message(code: str, details: Mapping[str, Any], *, lang: str) -> str:
    """Render the ``lang`` ("en" or "zh") message of ``code`` with ``details``."""
    reason = get_reason(code)
    template = reason.template_zh if lang == "zh" else reason.template_en
    fields = _Fields({key: ("?" if value is None else value) for key, value in details.items()})
    return _FORMATTER.vformat(template, (), fields)
