"""The claim page's view model: the claim detail (claims/views.py) shaped for templates —
photos with their overlay boxes, heatmap and matched reference, findings in the page's
language, the metadata that mattered, appeals beside the decisions they appeal, timeline
rows — for reviewers and merchants alike."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import select

from ...claims.actions import action_label
from ...claims.service import Service
from ...reasons import REASONS
from ...store.tables import ShippingEvidence

__all__ = ["appeal_rounds", "blob_url", "claim_view", "shipping_evidence"]

#: Finding families whose details are "the metadata that mattered": what the file said
#: about itself (labels, credentials, watermarks, EXIF facts, reuse).
_METADATA_PREFIXES = ("METADATA_", "AIGC_LABEL", "AIGC_VISIBLE", "AI_WATERMARK", "REUSED_")
#: Details that are drawing data or ids, not facts a person reads.
_HIDDEN_DETAILS = {"transform", "regions", "reference_sha256", "map", "hashes", "other_meta",
                   "reference_id"}
_TIMELINE_HIDDEN = {"photos", "files"}


def blob_url(sha256: str | None) -> str | None:
    return f"/console/blobs/{sha256}" if sha256 else None


def _text(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _title(code: str, lang: str) -> str:
    reason = REASONS.get(code)
    if reason is None:
        return code
    return reason.title_en if lang == "en" else reason.title_zh


def _details(details: Mapping[str, Any], lang: str) -> list[tuple[str, str]]:
    other = "_en" if lang == "zh" else "_zh"
    return [(key, _text(value)) for key, value in details.items()
            if key not in _HIDDEN_DETAILS and not key.endswith(other)
            and value not in (None, "", [], {})]


def _boxes(findings: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Changed regions as boxes: every region of a REFERENCE_ALTERED finding and the region
    of any other finding, numbered in order, without repeats."""
    boxes: list[dict[str, Any]] = []
    seen: set[tuple[int, int, int, int]] = set()
    for finding in findings:
        code = str(finding.get("code"))
        regions = list((finding.get("details") or {}).get("regions") or [])
        if finding.get("region"):
            regions.insert(0, finding["region"])
        for region in regions:
            try:
                key = (int(region["x"]), int(region["y"]), int(region["width"]),
                       int(region["height"]))
            except (KeyError, TypeError, ValueError):
                continue
            if key in seen or key[2] <= 0 or key[3] <= 0:
                continue
            seen.add(key)
            family = "ref" if code.startswith("REFERENCE") else \
                "forensic" if code.startswith("FORENSIC") else "other"
            boxes.append({"n": len(boxes) + 1, "x": key[0], "y": key[1], "w": key[2],
                          "h": key[3], "code": code, "family": family})
    return boxes


def _photo(photo: Mapping[str, Any], lang: str, n: int) -> dict[str, Any]:
    analysis = photo.get("analysis") or {}
    width = analysis.get("width") or photo["width"]
    height = analysis.get("height") or photo["height"]
    findings = list(photo.get("findings") or [])
    findings.sort(key=lambda f: -float(f.get("score") or 0))
    rows = []
    for f in findings:
        region = f.get("region")
        rows.append({
            "code": f.get("code"), "title": _title(str(f.get("code")), lang),
            "strength": f.get("strength") or "info",
            "score": round(100 * float(f.get("score") or 0)),
            "message": f.get("message_en") if lang == "en" else f.get("message_zh"),
            "detector": f.get("detector"), "region": region,
            "metadata": str(f.get("code")).startswith(_METADATA_PREFIXES),
            "details": _details(f.get("details") or {}, lang)})
    matched = photo.get("matched_reference")
    reference = None
    if matched and matched.get("sha256"):
        transform = None
        for f in findings:
            details = f.get("details") or {}
            if str(f.get("code")).startswith("REFERENCE") and details.get("transform"):
                transform = details["transform"]
                break
        reference = {"url": blob_url(matched["sha256"]), "kind": matched.get("kind"),
                     "filename": matched.get("filename") or "",
                     "transform": json.dumps(transform) if transform else ""}
    risk = photo.get("risk") or {}
    return {"id": photo["id"], "n": n, "role": photo.get("role", "claim"),
            "url": blob_url(photo["sha256"]), "mask_url": blob_url(photo.get("mask_sha256")),
            "filename": photo.get("filename"), "width": width, "height": height,
            "status": photo.get("status"), "error": (photo.get("error") or {}).get("message")
            if isinstance(photo.get("error"), Mapping) else photo.get("error"),
            "risk_score": risk.get("score"), "risk_level": risk.get("level"),
            "findings": rows, "boxes": _boxes(findings), "reference": reference}


def _summary(data: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in data.items() if k not in _TIMELINE_HIDDEN}
    hidden = {k: len(v) for k, v in data.items() if k in _TIMELINE_HIDDEN
              and isinstance(v, list)}
    text = _text(shown, 240) if shown else ""
    extra = ", ".join(f"{k}: {n}" for k, n in hidden.items())
    return (text + (" · " if text and extra else "") + extra) if (text or extra) else ""


def appeal_rounds(detail: Mapping[str, Any]) -> tuple[list[dict[str, Any]], set[str]]:
    """Each appeal, oldest first, with the decision it appeals (the last one before it) and
    the decision that answered it (the first one after it, before any later appeal); and
    the ids of the decisions made on appeal."""
    def at(row: Mapping[str, Any]) -> datetime:
        return datetime.fromisoformat(row["created_at"])

    decisions = sorted(detail.get("decisions") or [], key=at)
    appeals = sorted(detail.get("appeals") or [], key=at)
    rounds, on_appeal = [], set()
    for n, appeal in enumerate(appeals):
        ends = at(appeals[n + 1]) if n + 1 < len(appeals) else None
        before = [d for d in decisions if at(d) <= at(appeal)]
        after = [d for d in decisions if at(d) > at(appeal) and (ends is None or at(d) <= ends)]
        answer = after[0] if after else None
        if answer is not None:
            on_appeal.add(answer["id"])
        rounds.append({**appeal, "n": n + 1, "appealed": before[-1] if before else None,
                       "answer": answer})
    return rounds, on_appeal


def shipping_evidence(svc: Service, order_id: str) -> list[dict[str, Any]]:
    """The order's packing/shipping photos, videos and keyframes, oldest first."""
    with svc.db.read() as session:
        rows = session.execute(select(ShippingEvidence).where(
            ShippingEvidence.order_id == order_id).order_by(ShippingEvidence.created_at)
            .limit(200)).scalars().all()
    return [{"id": r.id, "kind": r.kind, "filename": r.filename, "url": blob_url(r.sha256),
             "content_type": r.content_type} for r in rows]


def claim_view(detail: Mapping[str, Any], lang: str) -> dict[str, Any]:
    """Everything the claim templates show, from a :func:`claims.views.claim_detail`."""
    photos, claim_n, evidence_n = [], 0, 0
    for photo in detail.get("photos") or []:
        if photo.get("role") == "evidence":
            evidence_n += 1
            photos.append(_photo(photo, lang, evidence_n))
        else:
            claim_n += 1
            photos.append(_photo(photo, lang, claim_n))
    reasons = [{"code": r.get("code"), "message": r.get("message_en") if lang == "en"
                else r.get("message_zh")} for r in detail.get("route_reasons") or []]
    responses = []
    for r in detail.get("merchant_responses") or []:
        files = [{"url": blob_url(f.get("sha256")), "filename": f.get("filename"),
                  "kind": f.get("kind", "photo"), "content_type": f.get("content_type")}
                 for f in r.get("files") or []]
        responses.append({**r, "files": files})
    timeline = [{"seq": e["seq"], "at": e["at"], "actor": e["actor"], "action": e["action"],
                 "label": action_label(e["action"], lang) or e["action"],
                 "summary": _summary(e.get("data") or {}), "hash": e["hash"],
                 "note": (e.get("data") or {}).get("text") if e["action"] == "note_added"
                 else None}
                for e in reversed(detail.get("timeline") or [])]
    risk = detail.get("risk") or {}
    appeals, on_appeal = appeal_rounds(detail)
    return {"photos": photos, "route_reasons": reasons, "responses": responses,
            "appeals": appeals, "open_appeal": next(
                (a for a in reversed(appeals) if a["status"] == "open"), None),
            "decisions": [{**d, "on_appeal": d["id"] in on_appeal}
                          for d in detail.get("decisions") or []],
            "timeline": timeline, "notes": [e for e in timeline if e["note"]],
            "risk_score": risk.get("score"), "risk_level": risk.get("level"),
            "has_heat": any(p["mask_url"] for p in photos),
            "metadata": [(p, f) for p in photos for f in p["findings"] if f["metadata"]]}
