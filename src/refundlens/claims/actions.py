"""The audit trail's action names, each with a Chinese and an English label: the one table.

Every ``append_event(..., action="...")`` in the code names an action listed here;
``tests/console/test_console.py`` walks the source and fails on one that is not. The
console's timeline and the PDF report show the label with the stored name beside it (the
name is what ``refundlens audit`` and the API print). An event whose action is not in the
table — written by an older or a newer version — is shown by its name alone.
"""

from __future__ import annotations

__all__ = ["ACTIONS", "action_label"]

#: action → (Chinese, English)
ACTIONS: dict[str, tuple[str, str]] = {
    # claims
    "claim_submitted": ("提交申请", "Claim submitted"),
    "analysis_completed": ("照片分析完成", "Photo analysis completed"),
    "status_changed": ("状态变更", "Status changed"),
    "decided": ("作出决定", "Decision made"),
    "evidence_submitted": ("买家提交补充证据", "Buyer sent more evidence"),
    "evidence_expired": ("补充证据逾期", "Evidence request expired"),
    "escalated": ("升级处理", "Escalated"),
    "note_added": ("添加内部备注", "Internal note added"),
    "merchant_responded": ("商家答复", "Merchant answered"),
    "keyframes_extracted": ("提取视频关键帧", "Video keyframes extracted"),
    # catalogue and orders
    "merchant_created": ("创建商家", "Merchant created"),
    "product_created": ("创建商品", "Product created"),
    "reference_added": ("添加商品参考图", "Reference photo added"),
    "order_created": ("创建订单", "Order created"),
    "shipping_evidence_added": ("添加发货留证", "Shipping evidence added"),
    # access
    "api_key_created": ("创建 API 密钥", "API key created"),
    "api_key_rotated": ("轮换 API 密钥", "API key rotated"),
    "api_key_revoked": ("吊销 API 密钥", "API key revoked"),
    "user_created": ("创建用户", "User created"),
    "console_signed_in": ("登录审核台", "Signed in to the console"),
    "console_signed_out": ("退出审核台", "Signed out of the console"),
    # storage
    "blobs_swept": ("清理无引用的存储文件", "Unreferenced stored files swept"),
}


def action_label(action: str, lang: str) -> str | None:
    """The label of ``action`` in ``lang`` (``"zh"`` or ``"en"``), or None for an action
    not in :data:`ACTIONS` (show its name)."""
    labels = ACTIONS.get(action)
    if labels is None:
        return None
    return labels[1] if lang == "en" else labels[0]
