"""The refundlens command: scan output (table, JSON against its schema, HTML), exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from conftest import jpeg, paste_patch, textured_rgb
from refundlens.cli import main

SCHEMA = json.loads((Path(__file__).parents[1] / "src" / "refundlens" / "schemas" /
                     "scan.schema.json").read_text())
FAST = "labels,metadata,reference,forensics"


@pytest.fixture
def files(tmp_path):
    listing = textured_rgb(480, 360, seed=31)
    (tmp_path / "listing.jpg").write_bytes(jpeg(listing, 92))
    forged = paste_patch(listing, (100, 100, 80, 60), color=(20, 20, 20))
    (tmp_path / "forged.jpg").write_bytes(jpeg(forged, 85))
    (tmp_path / "genuine.jpg").write_bytes(jpeg(textured_rgb(400, 300, seed=32), 90))
    (tmp_path / "bad.jpg").write_bytes(b"GIF? no, text")
    return tmp_path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_scan_json_matches_schema_and_keeps_order(files, capsys, tmp_path):
    code, out, _ = run(capsys, "scan", str(files / "genuine.jpg"), str(files / "bad.jpg"),
                       str(files / "forged.jpg"), "--reference", str(files / "listing.jpg"),
                       "--json", "--detectors", FAST, "--index", "none",
                       "--masks", str(tmp_path / "masks"))
    document = json.loads(out)
    jsonschema.validate(document, SCHEMA)
    results = document["results"]
    assert [Path(r["photo"]).name for r in results] == ["genuine.jpg", "bad.jpg", "forged.jpg"]
    assert [r["status"] for r in results] == ["ok", "error", "ok"]
    assert "bad.jpg" in results[1]["error"]
    assert "REFERENCE_ALTERED" in {f["code"] for f in results[2]["findings"]}
    assert Path(results[2]["mask"]).is_file()
    assert code == 3  # an input could not be analysed


def test_scan_table_in_both_languages(files, capsys):
    code, out, _ = run(capsys, "scan", str(files / "forged.jpg"), "--reference",
                       str(files / "listing.jpg"), "--detectors", FAST, "--index", "none")
    assert code == 0 and "REFERENCE_ALTERED" in out and "转人工审核" in out
    code, out, _ = run(capsys, "scan", str(files / "forged.jpg"), "--reference",
                       str(files / "listing.jpg"), "--detectors", FAST, "--index", "none",
                       "--lang", "en")
    assert code == 0 and "send to human review" in out


def test_scan_html_report_is_self_contained(files, capsys, tmp_path):
    code, out, _ = run(capsys, "scan", str(files / "forged.jpg"), str(files / "bad.jpg"),
                       "--reference", str(files / "listing.jpg"), "--detectors", FAST,
                       "--index", "none", "--html", str(tmp_path / "report"))
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "HTML report" in out or "report.html" in out
    assert "商家图片被局部修改" in html or "局部修改" in html
    assert "regions changed" in html or "region(s) changed" in html
    assert "data:image/jpeg;base64," in html
    # offline: nothing is loaded from anywhere else
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "bad.jpg" in html


def test_reference_that_cannot_load_is_a_clear_error(files, capsys):
    code, _, err = run(capsys, "scan", str(files / "genuine.jpg"), "--reference",
                       str(files / "bad.jpg"), "--detectors", FAST, "--index", "none")
    assert code == 3 and "reference" in err and "bad.jpg" in err


def test_usage_errors_exit_2(files, capsys):
    code, _, err = run(capsys, "scan", str(files / "genuine.jpg"), "--detectors", "nope")
    assert code == 2 and "unknown nope" in err
    code, _, err = run(capsys, "batch", str(files / "missing.jsonl"), "--out",
                       str(files / "o.jsonl"))
    assert code == 2 and "missing.jsonl" in err
    code, _, _ = run(capsys, "frobnicate")
    assert code == 2


def test_listing_commands(capsys):
    code, out, _ = run(capsys, "detectors")
    assert code == 0 and "reference" in out and "REFERENCE_ALTERED" in out
    code, out, _ = run(capsys, "reasons", "--json")
    codes = {r["code"] for r in json.loads(out)}
    assert code == 0 and {"AIGC_LABEL_TC260", "AI_WATERMARK", "REUSED_PHOTO"} <= codes


def test_console_script_batch_end_to_end(files, tmp_path):
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"id": "x", "photo": str(files / "forged.jpg"),
                    "references": [str(files / "listing.jpg")]}) + "\n" +
        json.dumps({"id": "y", "photo": str(files / "bad.jpg")}) + "\n")
    exe = Path(sys.executable).parent / "refundlens"
    proc = subprocess.run([str(exe), "batch", str(tmp_path / "in.jsonl"), "--out",
                           str(tmp_path / "out.jsonl"), "--index", "none", "--no-progress"],
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "REFUNDLENS_DETECTORS": FAST})
    assert proc.returncode == 3, proc.stderr
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(l)["status"] for l in lines] == ["ok", "error"]
    assert "2 lines: 1 analysed, 1 errors" in proc.stderr


def test_scan_with_an_index_directory_that_cannot_be_created_is_a_clear_error(files, capsys):
    blocker = files / "a-file"
    blocker.write_text("in the way")
    code, out, err = run(capsys, "scan", str(files / "genuine.jpg"), "--detectors", FAST,
                         "--index", str(blocker / "index"))
    assert code == 2 and out == ""
    assert f"reuse index '{blocker / 'index'}': cannot create the directory" in err
    assert "Traceback" not in err
