"""Readable terminal summaries of scans, in Chinese or English."""

from __future__ import annotations

import textwrap

from .scan import ScanReport

__all__ = ["render_table"]

_LEVEL = {"zh": {"low": "低", "medium": "中", "high": "高"},
          "en": {"low": "low", "medium": "medium", "high": "high"}}
_ADVICE = {"zh": {"approve": "可通过", "request_evidence": "请买家补充证据",
                  "review": "转人工审核"},
           "en": {"approve": "approve", "request_evidence": "request more evidence",
                  "review": "send to human review"}}


def render_table(report: ScanReport, *, lang: str = "zh") -> str:
    """One block per photo: risk, recommendation and every finding's message."""
    lines: list[str] = []
    for entry in report.entries:
        if entry.analysis is None:
            label = "错误" if lang == "zh" else "ERROR"
            lines.append(f"{entry.source}: {label}: {entry.error}")
            lines.append("")
            continue
        risk = entry.analysis.risk
        head = (f"{entry.source}: 风险 {risk.score}/100（{_LEVEL[lang][risk.level]}）→ "
                f"{_ADVICE[lang][risk.recommendation]}" if lang == "zh" else
                f"{entry.source}: risk {risk.score}/100 ({risk.level}) -> "
                f"{_ADVICE[lang][risk.recommendation]}")
        lines.append(head)
        findings = sorted(entry.analysis.findings, key=lambda f: -f.score)
        if not findings:
            lines.append("  " + ("未发现问题" if lang == "zh" else "nothing found"))
        for finding in findings:
            text = finding.message(lang)
            wrapped = textwrap.wrap(text, width=96 if lang == "en" else 60) or [""]
            lines.append(f"  [{finding.code}] {wrapped[0]}")
            lines.extend(f"      {part}" for part in wrapped[1:])
        for result in entry.analysis.results:
            if result.status == "error":
                failed = "检测器出错" if lang == "zh" else "detector failed"
                lines.append(f"  ! {result.detector}: {failed}: {result.error}")
        if entry.mask:
            lines.append(f"  mask: {entry.mask}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
