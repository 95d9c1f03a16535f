"""Batch: one output line per input line, in order; bad lines reported; resume; engines."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from conftest import jpeg, paste_patch, textured_rgb
from refundlens import load_settings
from refundlens.batch import run_batch

SCHEMA = json.loads((Path(__file__).parents[1] / "src" / "refundlens" / "schemas" /
                     "batch-line.schema.json").read_text())
FAST = ("labels", "metadata", "reuse", "reference", "forensics")


@pytest.fixture
def claims(tmp_path):
    """A batch with good photos, a forgery of the reference, and bad lines in between."""
    listing = textured_rgb(480, 360, seed=11)
    (tmp_path / "listing.jpg").write_bytes(jpeg(listing, 92))
    forged = paste_patch(listing, (200, 120, 90, 70), color=(30, 25, 20))
    (tmp_path / "forged.jpg").write_bytes(jpeg(forged, 85))
    (tmp_path / "genuine.jpg").write_bytes(jpeg(textured_rgb(400, 300, seed=12), 90))
    good = jpeg(textured_rgb(300, 200, seed=13), 90)
    (tmp_path / "broken.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "notes.jpg").write_text("not a photo at all")
    lines = [
        {"id": "a", "photo": "genuine.jpg"},
        {"id": "b", "photo": "broken.jpg"},
        "{not json",
        {"id": "c", "photo": "forged.jpg", "references": ["listing.jpg"],
         "context": {"claim_time": "2026-11-20T10:00:00Z"}},
        {"id": "d", "photo": "missing.jpg"},
        {"id": "e", "photo": "notes.jpg"},
        {"id": "a", "photo": "genuine.jpg"},
        {"photo": "genuine.jpg"},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) +
                    "\n\n", encoding="utf-8")
    return path


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def settings():
    return load_settings(detectors=FAST)


def test_one_line_per_input_in_order_with_errors_named(claims, tmp_path):
    out = tmp_path / "out.jsonl"
    summary = run_batch(claims, out, masks_dir=tmp_path / "masks", settings=settings(),
                        index_dir=tmp_path / "index", progress=False)
    records = read(out)
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [r["id"] for r in records] == ["a", "b", None, "c", "d", "e", "a", None]
    for record in records:
        jsonschema.validate(record, SCHEMA)
    status = {r["line"]: r["status"] for r in records}
    assert status == {1: "ok", 2: "error", 3: "error", 4: "ok", 5: "error", 6: "error",
                      7: "error", 8: "error"}
    by_line = {r["line"]: r for r in records}
    assert "broken.jpg" in by_line[2]["error"] and by_line[2]["error_code"] == "photo_corrupt"
    assert "not valid JSON" in by_line[3]["error"]
    assert "missing.jpg" in by_line[5]["error"] and "not found" in by_line[5]["error"]
    assert "notes.jpg" in by_line[6]["error"] and "accepted: JPEG" in by_line[6]["error"]
    assert "duplicate id 'a'" in by_line[7]["error"]
    assert '"id"' in by_line[8]["error"]
    forged = by_line[4]
    assert {"REFERENCE_DERIVED", "REFERENCE_ALTERED"} <= {f["code"] for f in forged["findings"]}
    assert forged["risk"]["level"] == "high" and forged["recommendation"] == "review"
    mask = np.asarray(Image.open(forged["mask"]))
    assert mask.shape == (360, 480) and mask.dtype == np.uint8
    assert mask[120:190, 200:290].mean() > mask.mean() + 40  # the pasted box lights up
    assert summary.ok == 2 and summary.errors == 6 and summary.total == 8


def test_resume_skips_done_ids_and_repairs_a_cut_line(claims, tmp_path):
    out = tmp_path / "out.jsonl"
    run_batch(claims, out, settings=settings(), progress=False)
    full = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(full[:3]) + full[3][:25], encoding="utf-8")  # killed mid-line
    summary = run_batch(claims, out, settings=settings(), progress=False)
    records = read(out)
    ids = [r["id"] for r in records if r["id"] is not None]
    assert len(records) == len(full)
    assert sorted(ids) == sorted(r["id"] for r in (json.loads(l) for l in full)
                                 if r["id"] is not None)
    assert summary.skipped == 3  # lines 1-3 (a, b, bad JSON) were already done
    assert {r["id"] for r in records if r["id"]} >= {"a", "b", "c", "d", "e"}


def test_two_workers_give_the_same_results(claims, tmp_path):
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    run_batch(claims, one, settings=settings(), progress=False)
    run_batch(claims, two, settings=settings(), workers=2, progress=False)

    def essence(path):
        return [(r["line"], r["status"], r["risk"], sorted(f["code"] for f in r["findings"]))
                for r in read(path)]
    assert essence(one) == essence(two)


def test_reuse_across_items_in_a_batch(tmp_path):
    base = textured_rgb(400, 300, seed=21)
    (tmp_path / "first.jpg").write_bytes(jpeg(base, 92))
    copy = np.asarray(Image.fromarray(base).resize((600, 450)))
    (tmp_path / "again.jpg").write_bytes(jpeg(copy, 75))
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"id": "claim-1", "photo": "first.jpg"}) + "\n" +
        json.dumps({"id": "claim-2", "photo": "again.jpg"}) + "\n")
    out = tmp_path / "out.jsonl"
    run_batch(tmp_path / "in.jsonl", out, settings=load_settings(detectors=("reuse",)),
              index_dir=tmp_path / "index", progress=False)
    first, second = read(out)
    assert first["findings"] == []
    assert [f["code"] for f in second["findings"]] == ["REUSED_PHOTO"]
    assert "claim-1" in second["findings"][0]["message_en"]


@pytest.mark.ray
def test_ray_engine_matches_local(claims, tmp_path):
    local, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    run_batch(claims, local, settings=settings(), progress=False)
    run_batch(claims, ray_out, settings=settings(), engine="ray", workers=2, progress=False)

    def essence(path):
        return [(r["line"], r["id"], r["status"], sorted(f["code"] for f in r["findings"]))
                for r in read(path)]
    assert essence(ray_out) == essence(local)


def test_missing_input_is_a_config_error(tmp_path):
    from refundlens.errors import ConfigError

    with pytest.raises(ConfigError, match="nope.jsonl.*no such file"):
        run_batch(tmp_path / "nope.jsonl", tmp_path / "out.jsonl", progress=False)
    with pytest.raises(ConfigError, match="engine 'spark'"):
        run_batch(tmp_path / "nope.jsonl", tmp_path / "out.jsonl", engine="spark")
