"""analyze(): one failing detector never sinks an analysis; results are timed and kept."""

from __future__ import annotations

import pickle

import pytest

from conftest import jpeg, textured_rgb
from refundlens import DetectorContext, analyze, load_photo
from refundlens.detectors import Detector, DetectorOutput, Skip


class Boom(Detector):
    name, version, codes = "boom", "1", ()

    def run(self, photo, context):
        raise RuntimeError("kaboom")


class Skipper(Detector):
    name, version, codes = "skipper", "1", ()

    def run(self, photo, context):
        raise Skip("nothing to do")


class Finder(Detector):
    name, version, codes = "finder", "2", ("FORENSIC_ELA",)

    def run(self, photo, context):
        return DetectorOutput([self.finding("FORENSIC_ELA", score=0.7, score_text="0.70")],
                              info={"seen": photo.width})


@pytest.fixture(scope="module")
def photo():
    return load_photo(jpeg(textured_rgb(120, 80)), name="p.jpg")


def test_failure_is_isolated_and_recorded(photo):
    analysis = analyze(photo, detectors=[Boom(), Finder(), Skipper()])
    statuses = {r.detector: r.status for r in analysis.results}
    assert statuses == {"boom": "error", "finder": "ok", "skipper": "skipped"}
    assert "kaboom" in analysis.result("boom").error
    assert analysis.codes() == ["FORENSIC_ELA"]
    assert analysis.result("finder").info == {"seen": 120}
    assert analysis.risk.recommendation == "review"  # a detector failed: never auto-approve
    assert all(r.elapsed_ms >= 0 for r in analysis.results)


def test_finding_messages_are_rendered_in_both_languages(photo):
    finding = analyze(photo, detectors=[Finder()]).findings[0]
    assert "0.70" in finding.message_en and "0.70" in finding.message_zh
    assert finding.to_dict()["strength"] == "weak"


def test_a_detector_cannot_emit_a_code_it_does_not_declare(photo):
    class Liar(Detector):
        name, version, codes = "liar", "1", ("FORENSIC_ELA",)

        def run(self, photo, context):
            return [self.finding("REFERENCE_DERIVED", score=1.0)]

    analysis = analyze(photo, detectors=[Liar()])
    assert analysis.result("liar").status == "error"


def test_analyze_accepts_a_path(tmp_path):
    path = tmp_path / "p.jpg"
    path.write_bytes(jpeg(textured_rgb(50, 40)))
    analysis = analyze(path, detectors=[Finder()])
    assert analysis.width == 50 and analysis.source == str(path)


def test_mask_is_photo_sized_and_zero_without_maps(photo):
    mask = analyze(photo, detectors=[Finder()]).mask()
    assert mask.shape == (80, 120) and mask.dtype.name == "uint8" and not mask.any()


def test_analysis_and_context_pickle(photo):
    analysis = analyze(photo, detectors=[Finder()], context=DetectorContext())
    clone = pickle.loads(pickle.dumps(analysis))
    assert clone.to_dict()["risk"] == analysis.to_dict()["risk"]


def test_context_from_mapping_validates_times():
    from refundlens.errors import ConfigError

    ctx = DetectorContext.from_mapping({"claim_time": "2026-11-20T10:00:00+08:00"})
    assert ctx.claim_time.utcoffset().total_seconds() == 8 * 3600
    with pytest.raises(ConfigError, match="claim_time.*ISO 8601"):
        DetectorContext.from_mapping({"claim_time": "yesterday"})
    with pytest.raises(ConfigError, match="unknown field"):
        DetectorContext.from_mapping({"colour": "red"})
