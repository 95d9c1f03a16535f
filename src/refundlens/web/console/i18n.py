"""Every string the console shows, in Chinese (the default) and English: one table.

Templates call ``t("key")`` (or ``t("key", n=3)`` for ``str.format`` fields); a key missing
from the table is a bug and raises, so a typo cannot ship as a blank label (the console
tests render every page in both languages). Reason codes' titles and findings' messages
are not here: they come from :mod:`refundlens.reasons` and the findings themselves.
"""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from typing import Any, Callable

__all__ = ["LANGS", "TEXT", "format_duration", "format_offset", "format_time",
           "translator"]

LANGS = ("zh", "en")

#: key → (Chinese, English)
TEXT: dict[str, tuple[str, str]] = {
    # --- frame ---------------------------------------------------------------------------
    "app_name": ("RefundLens 售后审核台", "RefundLens review console"),
    "skip_to_main": ("跳到正文", "Skip to main content"),
    "nav_queue": ("审核队列", "Review queue"),
    "nav_merchant_claims": ("我的售后申请", "My claims"),
    "nav_products": ("商品参考图", "Product photos"),
    "signed_in_as": ("已登录：{user}（{role}）", "Signed in as {user} ({role})"),
    "sign_out": ("退出登录", "Sign out"),
    "language": ("语言", "Language"),
    "lang_zh": ("中文", "中文"),
    "lang_en": ("English", "English"),
    "shortcuts_hint": ("按 ? 查看键盘快捷键", "Press ? for keyboard shortcuts"),
    "times_in": ("时间均按 {zone} 时区显示（{offset}）", "Times are in {zone} ({offset})"),
    "close": ("关闭", "Close"),
    "role_admin": ("管理员", "admin"),
    "role_reviewer": ("审核员", "reviewer"),
    "role_merchant": ("商家", "merchant"),
    # --- sign-in -------------------------------------------------------------------------
    "login_title": ("登录", "Sign in"),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "login_button": ("登录", "Sign in"),
    "login_failed": ("用户名或密码错误。", "Wrong username or password."),
    "login_locked": ("登录失败次数过多，请在 {minutes} 分钟后重试。",
                     "Too many failed sign-ins; try again in {minutes} minutes."),
    "login_expired_form": ("登录表单已过期，请重新提交。",
                           "The sign-in form expired; please submit it again."),
    "session_ended": ("已退出登录。", "You have signed out."),
    "login_intro": ("平台审核员与商家使用同一入口登录。",
                    "Platform reviewers and merchants sign in here."),
    # --- errors --------------------------------------------------------------------------
    "error_title": ("出错了", "Something went wrong"),
    "error_404": ("找不到该页面或申请。", "No such page or claim."),
    "error_403": ("您的账号无权执行此操作。", "Your account may not do this."),
    "error_csrf": ("页面已过期（安全校验失败），请刷新后重试。",
                   "The page expired (security check failed); reload it and try again."),
    "error_generic": ("请求未完成：", "The request was not done: "),
    "back": ("返回", "Back"),
    "action_failed": ("操作未完成：", "Not done: "),
    # --- queue ---------------------------------------------------------------------------
    "queue_title": ("待审核申请", "Claims waiting for review"),
    "filters": ("筛选", "Filters"),
    "filter_merchant": ("商家", "Merchant"),
    "filter_level": ("风险等级", "Risk level"),
    "filter_code": ("原因代码", "Reason code"),
    "filter_age": ("提交时长", "Age"),
    "filter_status": ("状态", "Status"),
    "any": ("全部", "Any"),
    "age_1": ("超过 1 小时", "Over 1 hour"),
    "age_4": ("超过 4 小时", "Over 4 hours"),
    "age_24": ("超过 1 天", "Over 1 day"),
    "age_72": ("超过 3 天", "Over 3 days"),
    "apply": ("应用", "Apply"),
    "reset": ("清除", "Reset"),
    "count_in_review": ("审核中", "In review"),
    "count_appealed": ("申诉中", "Appealed"),
    "count_evidence": ("待补充证据", "Waiting for evidence"),
    "count_overdue": ("已超时", "Overdue"),
    "count_matching": ("符合筛选", "Matching"),
    "col_claim": ("申请", "Claim"),
    "col_merchant": ("商家", "Merchant"),
    "col_amount": ("金额", "Amount"),
    "col_risk": ("风险", "Risk"),
    "col_status": ("状态", "Status"),
    "col_due": ("审核时限", "Review due"),
    "col_response_due": ("答复时限", "Answer due"),
    "col_created": ("提交时间", "Filed"),
    "queue_empty": ("没有符合条件的待审核申请。", "No claims waiting that match."),
    "page_of": ("第 {page} / {pages} 页，共 {total} 条",
                "Page {page} of {pages}, {total} in all"),
    "prev_page": ("上一页", "Previous page"),
    "next_page": ("下一页", "Next page"),
    "escalated": ("已升级", "Escalated"),
    "appeal_badge": ("申诉", "Appeal"),
    "appeal_of": ("申诉原结果：{outcome}", "appeal of: {outcome}"),
    # --- SLA -----------------------------------------------------------------------------
    "sla_left": ("剩余 {t}", "{t} left"),
    "sla_overdue": ("已超时 {t}", "overdue {t}"),
    "sla_none": ("无时限", "no deadline"),
    "unit_d": ("天", "d"),
    "unit_h": ("小时", "h"),
    "unit_m": ("分", "m"),
    # --- statuses, levels, strengths ----------------------------------------------------
    "status_submitted": ("已提交", "submitted"),
    "status_analyzing": ("分析中", "analysing"),
    "status_auto_approved": ("自动通过", "auto-approved"),
    "status_evidence_requested": ("待补充证据", "evidence requested"),
    "status_in_review": ("审核中", "in review"),
    "status_approved": ("已同意", "approved"),
    "status_rejected": ("已驳回", "rejected"),
    "status_appealed": ("申诉中", "appealed"),
    "level_low": ("低", "low"),
    "level_medium": ("中", "medium"),
    "level_high": ("高", "high"),
    "level_none": ("未评估", "not scored"),
    "strength_conclusive": ("确定性", "conclusive"),
    "strength_strong": ("强", "strong"),
    "strength_moderate": ("中等", "moderate"),
    "strength_weak": ("弱", "weak"),
    "strength_info": ("提示", "info"),
    "type_refund_only": ("仅退款", "refund only"),
    "type_return_refund": ("退货退款", "return and refund"),
    "rec_approve": ("建议同意", "approve"),
    "rec_request_evidence": ("建议补充证据", "request evidence"),
    "rec_review": ("建议人工审核", "review"),
    # --- claim page ----------------------------------------------------------------------
    "claim_title": ("售后申请 {id}", "Claim {id}"),
    "facts": ("申请信息", "Claim facts"),
    "claim_type": ("类型", "Type"),
    "claim_reason": ("买家理由", "Buyer's reason"),
    "amount": ("金额", "Amount"),
    "order": ("订单", "Order"),
    "merchant": ("商家", "Merchant"),
    "buyer": ("买家（化名）", "Buyer (pseudonym)"),
    "shipped_at": ("发货时间", "Shipped"),
    "delivered_at": ("签收时间", "Delivered"),
    "created_at": ("提交时间", "Filed"),
    "review_due": ("审核时限", "Review due"),
    "merchant_due": ("商家答复时限", "Merchant answer due"),
    "evidence_due": ("补充证据时限", "Evidence due"),
    "risk": ("风险", "Risk"),
    "risk_score": ("风险分 {score}/100", "Risk {score}/100"),
    "recommendation": ("建议", "Recommendation"),
    "route_reasons": ("分流原因", "Why it was routed here"),
    "photos": ("申请照片", "Claim photos"),
    "photo_n": ("照片 {n}", "Photo {n}"),
    "evidence_photo_n": ("补充证据照片 {n}", "Evidence photo {n}"),
    "overlays": ("叠加显示", "Overlays"),
    "toggle_boxes": ("改动区域框", "Changed regions"),
    "toggle_heat": ("热力图", "Heatmap"),
    "no_analysis": ("尚未分析完成。", "Not analysed yet."),
    "analysis_error": ("分析失败：{message}", "Analysis failed: {message}"),
    "photo_risk": ("本照片风险 {score}（{level}）", "This photo: risk {score} ({level})"),
    "matched_reference": ("匹配到的商家原图", "Matched merchant photo"),
    "ref_kind_listing": ("商品主图", "listing photo"),
    "ref_kind_shipping": ("发货留证", "shipping evidence"),
    "side_by_side": ("并排对比", "Side by side"),
    "before_after": ("前后对比滑块", "Before / after slider"),
    "slider_label": ("拖动比较：左侧为商家原图，右侧为申请照片",
                     "Drag to compare: merchant photo on the left, claim photo on the right"),
    "reference_photo": ("商家原图", "Merchant photo"),
    "claim_photo": ("申请照片", "Claim photo"),
    "findings": ("检测发现", "Findings"),
    "no_findings": ("未发现问题。", "Nothing found."),
    "col_code": ("代码", "Code"),
    "col_finding": ("发现", "Finding"),
    "col_strength": ("强度", "Strength"),
    "col_score": ("置信度", "Score"),
    "col_where": ("位置", "Where"),
    "region_fmt": ("x {x}, y {y}, {w}×{h}", "x {x}, y {y}, {w}×{h}"),
    "metadata": ("关键元数据", "Metadata that mattered"),
    "no_metadata": ("没有元数据类发现。", "No metadata findings."),
    "buyer_history": ("买家历史（跨商家）", "Buyer history (all merchants)"),
    "history_summary": ("共 {claims} 次申请，涉及 {merchants} 个商家",
                        "{claims} claims with {merchants} merchants"),
    "history_shown": ("下列为最近的 {n} 笔。", "The newest {n} are listed."),
    "history_later": ("在本申请之后提交，路由未计入", "filed after this claim, not counted in its route"),
    "history_reused": ("重复使用的照片 {n} 张", "{n} reused photos"),
    "history_none": ("该买家没有其他申请。", "No other claims by this buyer."),
    "this_claim": ("（本申请）", "(this claim)"),
    "merchant_responses": ("商家答复与证据", "Merchant responses and evidence"),
    "no_responses": ("商家尚未答复。", "The merchant has not answered."),
    "shipping_evidence": ("发货留证（含视频关键帧）",
                          "Shipping evidence (incl. video keyframes)"),
    "keyframe_at": ("视频关键帧 {name}", "Video keyframe {name}"),
    "evidence_requests": ("补充证据请求", "Evidence requests"),
    "evidence_code": ("验证码 {code}", "Code {code}"),
    "code_found_yes": ("照片中已识别到验证码", "code read in the photo"),
    "code_found_no": ("照片中未识别到验证码", "code not read in the photo"),
    "decisions": ("处理结果", "Decisions"),
    "decision_on_appeal": ("申诉复审", "on appeal"),
    "appeals": ("申诉", "Appeals"),
    "appeal_n": ("申诉 {n}", "Appeal {n}"),
    "appeal_open": ("待复审", "open"),
    "appeal_decided": ("已复审", "decided"),
    "appealed_decision": ("被申诉的决定", "The decision appealed"),
    "appeal_reason_h": ("申诉理由", "Why it is appealed"),
    "no_prior_decision": ("没有记录。", "None recorded."),
    "appeal_answer": ("复审结果", "Decision on the appeal"),
    "appeal_pending": ("尚未复审。", "not decided yet."),
    "decision_by": ("{outcome}，{actor}，{at}", "{outcome} by {actor}, {at}"),
    "audit_hash": ("审计哈希", "Audit hash"),
    "timeline": ("时间线与审计记录", "Timeline and audit trail"),
    "col_seq": ("序号", "Seq"),
    "col_at": ("时间", "Time"),
    "col_actor": ("操作者", "By"),
    "col_action": ("事件", "Event"),
    "col_details": ("详情", "Details"),
    "col_hash": ("哈希", "Hash"),
    "chain_head": ("审计链最新哈希 #{seq}：{hash}", "Audit chain head #{seq}: {hash}"),
    "report_pdf": ("证据报告 PDF", "Evidence report (PDF)"),
    "report_zh": ("中文", "Chinese"),
    "report_en": ("英文", "English"),
    "prev_claim": ("上一条 (k)", "Previous (k)"),
    "next_claim": ("下一条 (j)", "Next (j)"),
    "back_to_queue": ("返回队列", "Back to queue"),
    # --- actions -------------------------------------------------------------------------
    "actions": ("处理", "Actions"),
    "actions_appeal": ("处理申诉", "Decide the appeal"),
    "appeal_decide_note": ("该申请对“{outcome}”的决定（{actor}，{at}）提出了申诉。您在此作出的决定即为申诉复审结果。",
                           "This claim appeals the decision “{outcome}” ({actor}, {at}). "
                           "Your decision here answers the appeal."),
    "appeal_decide_note_bare": ("该申请已被申诉。您在此作出的决定即为申诉复审结果。",
                                "This claim is appealed. Your decision here answers the "
                                "appeal."),
    "see_appeal": ("查看申诉", "See the appeal"),
    "approve": ("同意退款", "Approve"),
    "approve_confirm": ("确认同意该申请的退款？", "Approve the refund for this claim?"),
    "approve_confirm_appeal": ("申诉复审：确认同意该申请的退款？",
                               "Appeal: approve the refund for this claim?"),
    "reject": ("驳回", "Reject"),
    "reject_reason": ("驳回理由（买家可见，必填）",
                      "Reason for rejecting (the buyer reads it; required)"),
    "request_evidence": ("要求补充证据", "Request evidence"),
    "evidence_note": ("给买家的说明（可选）", "Note to the buyer (optional)"),
    "escalate": ("升级处理", "Escalate"),
    "escalate_reason": ("升级原因", "Why escalate"),
    "add_note": ("添加备注", "Add note"),
    "note_text": ("内部备注（商家不可见）", "Internal note (merchants do not see it)"),
    "notes": ("内部备注", "Internal notes"),
    "cancel": ("取消", "Cancel"),
    "decided_already": ("该申请已处理，无法再操作；申诉会重新打开。",
                        "This claim is decided; an appeal reopens it."),
    "done_approved": ("已同意该申请。", "Claim approved."),
    "done_rejected": ("已驳回该申请。", "Claim rejected."),
    "done_appeal_approved": ("申诉已复审：同意退款。", "Appeal decided: approved."),
    "done_appeal_rejected": ("申诉已复审：驳回。", "Appeal decided: rejected."),
    "done_appeal": ("申诉已提交，该申请将重新审核。",
                    "Appeal sent; the claim will be reviewed again."),
    "done_evidence": ("已向买家发出补充证据请求。", "Evidence requested from the buyer."),
    "done_escalated": ("已升级。", "Escalated."),
    "done_note": ("备注已添加。", "Note added."),
    "done_response": ("答复已提交。", "Your answer was sent."),
    "done_reference": ("参考图已上传。", "Photo uploaded."),
    "done_product": ("商品已创建。", "Product created."),
    "note_saved": ("备注已保存", "Note saved"),
    # --- shortcuts -----------------------------------------------------------------------
    "shortcuts": ("键盘快捷键", "Keyboard shortcuts"),
    "sc_help": ("显示/隐藏本帮助", "show or hide this help"),
    "sc_next": ("下一条申请", "next claim"),
    "sc_prev": ("上一条申请", "previous claim"),
    "sc_open": ("打开选中的申请", "open the selected claim"),
    "sc_approve": ("同意（再按 Enter 确认）", "approve (Enter confirms)"),
    "sc_reject": ("填写驳回理由", "write a rejection reason"),
    "sc_evidence": ("要求补充证据", "request evidence"),
    "sc_escalate": ("升级处理", "escalate"),
    "sc_note": ("添加备注", "add a note"),
    "sc_boxes": ("显示/隐藏改动区域框", "show or hide changed regions"),
    "sc_heat": ("显示/隐藏热力图", "show or hide the heatmap"),
    "sc_submit": ("在文本框中直接提交", "submit from a text field"),
    "sc_escape": ("离开输入框 / 关闭对话框", "leave a text field / close a dialog"),
    # --- merchant portal -----------------------------------------------------------------
    "merchant_claims_title": ("我的售后申请", "Claims against my store"),
    "show_open": ("待处理", "Open"),
    "show_all": ("全部", "All"),
    "merchant_intro": ("以下是买家针对本店订单提交的售后申请。请在答复时限前提交说明、照片或"
                       "打包/发货视频。",
                       "Buyers' claims on your orders. Answer before the deadline with text, "
                       "photos or packing and shipping videos."),
    "no_claims": ("没有售后申请。", "No claims."),
    "what_we_found": ("检测结果与原因", "What was found and why"),
    "your_answer": ("提交答复", "Your answer"),
    "answer_text": ("说明（最多 5000 字）", "Explanation (up to 5000 characters)"),
    "answer_files": ("照片与打包/发货视频（可多选）",
                     "Photos and packing/shipping videos (several allowed)"),
    "answer_files_hint": ("视频会自动提取关键帧，与申请照片进行比对。",
                          "Keyframes are taken from videos and compared with the claim photos."),
    "send_answer": ("提交答复", "Send answer"),
    "answer_closed": ("该申请已处理，答复通道已关闭。",
                      "This claim is decided; answers are closed."),
    "your_responses": ("已提交的答复", "Answers sent"),
    "merchant_appealed": ("该申请已被申诉，正在重新审核。",
                          "This claim was appealed and is being reviewed again."),
    "answer_again_until": ("您可以在 {due} 前再次提交答复：",
                           "You may answer again until {due}:"),
    "answer_again": ("您可以再次提交答复，审核员会看到。",
                     "You may answer again; the reviewer sees it."),
    "appeal_title": ("对处理结果提出申诉", "Appeal this decision"),
    "appeal_intro": ("如您认为不应为该申请退款，可以提出申诉，申诉后该申请将由人工重新审核。",
                     "If this refund should not have been granted, appeal: a reviewer will "
                     "look at the claim again."),
    "appeal_reason": ("申诉理由（审核员可见，必填）",
                      "Why you appeal (the reviewer reads it; required)"),
    "send_appeal": ("提交申诉", "Send appeal"),
    "video": ("视频", "video"),
    "keyframes_pending": ("视频关键帧提取中……", "Extracting video keyframes…"),
    "products_title": ("商品参考图", "Product reference photos"),
    "products_intro": ("申请照片会与这里的商品图比对，以识别由商家图片篡改而来的照片。",
                       "Claim photos are compared with these photos to catch photos edited "
                       "from your own."),
    "new_product": ("新建商品", "New product"),
    "sku": ("商品编码（SKU）", "SKU"),
    "product_name": ("商品名称", "Product name"),
    "create": ("创建", "Create"),
    "upload_reference": ("上传参考图", "Upload a photo"),
    "reference_file": ("参考图文件", "Photo file"),
    "upload": ("上传", "Upload"),
    "no_products": ("还没有商品。", "No products yet."),
    "n_photos": ("{n} 张图片", "{n} photos"),
}


def translator(lang: str) -> Callable[..., str]:
    """``t(key, **fields)`` in ``lang`` (zh or en)."""
    column = 1 if lang == "en" else 0

    def t(key: str, **fields: Any) -> str:
        try:
            text = TEXT[key][column]
        except KeyError:
            raise KeyError(f"console text {key!r} is not in refundlens.web.console.i18n.TEXT"
                           ) from None
        return text.format(**fields) if fields else text

    return t


def _moment(value: str | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    # stored times are UTC; a naive one is read as UTC, not as the server's local time
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def format_time(value: str | datetime | None, zone: tzinfo) -> str:
    """``2026-11-23 20:07`` in ``zone`` (the ``timezone`` setting); '' for None. The page
    names the zone (:func:`format_offset`), and ``<time datetime>`` keeps the instant."""
    moment = _moment(value)
    return "" if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def format_offset(value: str | datetime | None, zone: tzinfo) -> str:
    """``zone``'s offset from UTC at ``value`` (default: now) as ``UTC+08:00`` — it
    changes with daylight saving time where the zone has it."""
    moment = (_moment(value) or datetime.now(timezone.utc)).astimezone(zone)
    offset = moment.strftime("%z") or "+0000"
    return f"UTC{offset[:3]}:{offset[3:5]}"


def format_duration(seconds: float, lang: str) -> str:
    """A compact duration: ``2天3小时`` / ``2d 3h``, ``45分`` / ``45m``."""
    t = translator(lang)
    seconds = abs(int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    sep = "" if lang == "zh" else " "
    if days:
        return f"{days}{t('unit_d')}{sep}{hours}{t('unit_h')}"
    if hours:
        return f"{hours}{t('unit_h')}{sep}{minutes}{t('unit_m')}"
    return f"{minutes}{t('unit_m')}"
