"""`refundlens demo` on the bundled samples: every claim gets a result, each forgery its code."""

from __future__ import annotations

import json

from refundlens.demo import run_demo


def test_demo_routes_each_sample_claim(tmp_path, capsys):
    assert run_demo(tmp_path, lang="en") == 0
    out = capsys.readouterr().out
    assert "HTML report" in out and (tmp_path / "report.html").is_file()
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "results.jsonl").read_text(
        encoding="utf-8").splitlines())}
    assert len(records) == 9
    expected = {"claim-002": "REFERENCE_ALTERED", "claim-003": "AIGC_LABEL_TC260",
                "claim-004": "AIGC_VISIBLE_LABEL", "claim-005": "AIGC_LABEL_C2PA",
                "claim-006": "AI_WATERMARK", "claim-007": "REUSED_PHOTO"}
    for claim, code in expected.items():
        assert code in {f["code"] for f in records[claim]["findings"]}, claim
        assert records[claim]["recommendation"] == "review", claim
    for genuine in ("claim-001", "claim-009"):
        assert records[genuine]["risk"]["level"] == "low", genuine
    assert records["claim-008"]["status"] == "error"
    assert "truncated" in records["claim-008"]["error"]
