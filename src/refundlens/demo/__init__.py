"""``refundlens demo``: the analysis on bundled sample claims (see samples/SOURCES.md).

Each sample claim is analysed against its merchant references, with a fresh reuse index so
the demo's reused photo is found; the run prints a readable summary, writes one JSON line
per claim (the batch output shape), the masks and the HTML evidence report, and says where.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..config import load_settings
from ..detectors import create_detectors
from ..reports.html import write_html_report
from ..scan import ScanReport, scan_photos

__all__ = ["SAMPLES", "run_demo"]

SAMPLES = Path(__file__).parent / "samples"

_LEVEL = {"zh": {"low": "低", "medium": "中", "high": "高"},
          "en": {"low": "low", "medium": "medium", "high": "high"}}
_ADVICE = {"zh": {"approve": "可通过", "request_evidence": "补充证据", "review": "人工审核"},
           "en": {"approve": "approve", "request_evidence": "ask for evidence",
                  "review": "human review"}}


def run_demo(out: Path, *, lang: str = "zh") -> int:
    claims = json.loads((SAMPLES / "claims.json").read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    index_dir = out / "reuse-index"
    shutil.rmtree(index_dir, ignore_errors=True)
    settings = load_settings()
    detectors = create_detectors(settings=settings)
    merged = ScanReport(entries=[])
    lines = []
    print(("RefundLens 演示：分析 {} 个样例申请\n" if lang == "zh" else
           "RefundLens demo: analysing {} sample claims\n").format(len(claims)))
    for claim in claims:
        report = scan_photos([str(SAMPLES / claim["photo"])],
                             references=[str(SAMPLES / r) for r in claim.get("references", [])],
                             settings=settings, context=claim.get("context"),
                             index_dir=index_dir, masks_dir=out / "masks", detectors=detectors)
        entry = report.entries[0]
        merged.entries.append(entry)
        merged.references += tuple(r for r in report.references
                                   if r.label not in {m.label for m in merged.references})
        lines.append({"id": claim["id"], **entry.record(full=False)})
        print(_summary_line(claim, entry, lang))
    results = out / "results.jsonl"
    results.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                       encoding="utf-8")
    html = write_html_report(merged, out, lang=lang)
    if lang == "zh":
        print(f"\n逐条结果（JSON Lines）：{results}\n改动掩码：{out / 'masks'}\nHTML 证据报告：{html}")
    else:
        print(f"\nResults (JSON lines): {results}\nMasks: {out / 'masks'}\nHTML report: {html}")
    return 0


def _summary_line(claim: dict, entry, lang: str) -> str:
    head = f"{claim['id']}  {claim['story']}"
    if entry.analysis is None:
        word = "无法分析" if lang == "zh" else "could not be analysed"
        return f"{head}\n    {word}: {entry.error}"
    risk = entry.analysis.risk
    codes = ", ".join(dict.fromkeys(f.code for f in entry.analysis.findings)) or "-"
    risk_word = "风险" if lang == "zh" else "risk"
    return (f"{head}\n    {risk_word} {risk.score:3d} {_LEVEL[lang][risk.level]:6} → "
            f"{_ADVICE[lang][risk.recommendation]:16} {codes}")
