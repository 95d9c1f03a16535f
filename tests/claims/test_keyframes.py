"""Video keyframes (claims/keyframes.py): one sharp frame per view, flat frames skipped,
the count capped, bad files refused by name; and the job that turns a merchant's packing
video into references the claim photos are compared with again."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import jpeg, painted_crack, textured_rgb
from refundlens.claims.keyframes import extract_keyframes, probe_video, probe_video_bytes
from refundlens.errors import InvalidInput
from refundlens.store.tables import ShippingEvidence


def _crop(scene: np.ndarray, dx: int = 0, dy: int = 0) -> np.ndarray:
    """A 640×480 view of a larger RGB scene, as the BGR frame OpenCV writes."""
    return np.ascontiguousarray(scene[20 + dy:500 + dy, 20 + dx:660 + dx, ::-1])


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def packing_video(path: Path, scenes: list[np.ndarray], *, seconds: float = 2.0,
                  black: int = 10) -> Path:
    """Each scene held for ``seconds`` with a hand-held shake, black frames between."""
    frames: list[np.ndarray] = []
    for scene in scenes:
        for i in range(int(25 * seconds)):
            frames.append(_crop(scene, int(3 + 3 * np.sin(i / 3)), int(2 + 2 * np.cos(i / 4))))
        frames += [np.zeros((480, 640, 3), np.uint8)] * black
    return write_video(path, frames)


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def test_one_sharp_keyframe_per_view_and_no_black_frames(tmp_path):
    a, b = textured_rgb(900, 700, seed=1), textured_rgb(900, 700, seed=2)
    video = packing_video(tmp_path / "packing.mp4", [a, b])
    frames = extract_keyframes(video)
    assert len(frames) == 2
    assert frames[0].time_s < 2.0 < frames[1].time_s
    for frame, scene in zip(frames, (a, b)):
        decoded = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert (frame.width, frame.height) == (640, 480) == decoded.shape[1::-1]
        # the frame shows its own view (within the shake), not the other one
        own = np.mean(np.abs(_grey(decoded) - _grey(_crop(scene, 3, 2))))
        other = np.mean(np.abs(_grey(decoded) - _grey(_crop(b if scene is a else a, 3, 2))))
        assert own < 25 < other
        assert decoded.std() > 20  # not a black frame


def test_the_count_is_capped_and_spread_over_the_video(tmp_path):
    scenes = [textured_rgb(900, 700, seed=10 + i) for i in range(8)]
    video = packing_video(tmp_path / "many.mp4", scenes, seconds=1.0, black=0)
    every = extract_keyframes(video)
    capped = extract_keyframes(video, max_frames=3)
    assert len(every) >= 7
    assert len(capped) == 3
    times = [f.time_s for f in capped]
    assert times == sorted(times) and times[0] < 2.0 and times[-1] > 6.0


def test_probe_reports_size_and_duration(tmp_path):
    video = packing_video(tmp_path / "v.mp4", [textured_rgb(900, 700, seed=1)], black=0)
    info = probe_video(video)
    assert (info["width"], info["height"]) == (640, 480)
    assert info["duration_s"] == pytest.approx(2.0, abs=0.1)
    assert probe_video_bytes(video.read_bytes(), name="v.mp4")["width"] == 640


@pytest.mark.parametrize("data", [b"", b"not a video at all" * 100,
                                  jpeg(textured_rgb(64, 48, seed=1))])
def test_a_file_that_is_not_a_video_is_refused_naming_it_and_what_is_accepted(tmp_path, data):
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    with pytest.raises(InvalidInput, match=r"video 'clip.mp4'.*accepted: MP4, MOV and WebM"):
        extract_keyframes(path)
    with pytest.raises(InvalidInput, match="clip.mp4"):
        probe_video(path)


@pytest.mark.parametrize("options", [{"max_frames": 0}, {"max_frames": 101}, {"every_s": 0}])
def test_bad_options_are_refused(tmp_path, options):
    with pytest.raises(InvalidInput, match="expected"):
        extract_keyframes(tmp_path / "x.mp4", **options)


# --- the job -------------------------------------------------------------------------------

def test_a_packing_video_becomes_references_and_the_claim_is_analysed_again(
        client, keys, svc, run_analysis_jobs, tmp_path):
    from service.test_api_flow import file_claim, setup_catalog

    ids = setup_catalog(client, keys, jpeg(textured_rgb(800, 600, seed=3), 92))
    packed = textured_rgb(900, 700, seed=21)
    # the buyer's photo: a frame of the merchant's packing video with a crack painted in
    claim_photo = jpeg(painted_crack(np.ascontiguousarray(_crop(packed, 3, 2)[:, :, ::-1])), 90)
    claim_id = file_claim(client, keys, ids["order_id"], [claim_photo]).json()["id"]
    run_analysis_jobs()
    before = client.get(f"/api/v1/claims/{claim_id}", headers=keys.admin).json()
    assert not {f["code"] for f in before["photos"][0]["findings"]} & {
        "REFERENCE_DERIVED", "REFERENCE_ALTERED"}
    # nothing matched the listing, so the claim was auto-approved: the merchant appeals it
    # (an answer to an auto-approval would be read by no one), then answers with its video
    assert before["status"] == "auto_approved", before["route_reasons"]
    appealed = client.post(f"/api/v1/claims/{claim_id}/appeals",
                           json={"reason": "这张照片来自我们的打包视频 / from our packing video"},
                           headers=keys.merchant(ids["merchant_id"]))
    assert appealed.status_code == 201, appealed.text
    before = client.get(f"/api/v1/claims/{claim_id}", headers=keys.admin).json()

    video = packing_video(tmp_path / "packing.mp4", [packed, textured_rgb(900, 700, seed=22)])
    answer = client.post(f"/api/v1/claims/{claim_id}/responses",
                         data={"text": "打包视频 / packing video"},
                         files=[("files", ("packing.mp4", video.read_bytes(), "video/mp4"))],
                         headers=keys.merchant(ids["merchant_id"]))
    assert answer.status_code == 201, answer.text
    assert run_analysis_jobs() == 2  # keyframes, then the analysis again

    with svc.db.read() as session:
        rows = session.query(ShippingEvidence).filter_by(order_id=ids["order_id"]).all()
    kinds = sorted(r.kind for r in rows)
    assert kinds.count("video") == 1 and kinds.count("keyframe") == 2
    after = client.get(f"/api/v1/claims/{claim_id}", headers=keys.admin).json()
    findings = {f["code"]: f for f in after["photos"][0]["findings"]}
    assert "REFERENCE_ALTERED" in findings, sorted(findings)
    assert findings["REFERENCE_ALTERED"]["details"]["reference_kind"] == "shipping"
    assert after["photos"][0]["matched_reference"]["kind"] == "shipping"
    assert after["status"] == before["status"]  # analysed again, not routed again
    assert after["risk"]["score"] >= before["risk"]["score"]
    actions = [e["action"] for e in after["timeline"]]
    assert "keyframes_extracted" in actions
    assert actions.count("analysis_completed") == 2

    # the same video again adds no duplicate references
    client.post(f"/api/v1/claims/{claim_id}/responses", data={"text": "again"},
                files=[("files", ("packing.mp4", video.read_bytes(), "video/mp4"))],
                headers=keys.merchant(ids["merchant_id"]))
    assert run_analysis_jobs() == 1
    with svc.db.read() as session:
        assert session.query(ShippingEvidence).filter_by(order_id=ids["order_id"]).count() \
            == len(rows)
