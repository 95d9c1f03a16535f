"""Keyframes of a merchant's packing or shipping video, kept as reference photos.

A merchant answers a claim with a video of the goods being packed; the frames that show the
goods become :class:`~refundlens.store.tables.ShippingEvidence` rows of kind ``keyframe`` on
the order, and the reference detector compares the claim photos against them exactly as it
does against listing photos (a buyer who edits a "damage" into a frame of the merchant's own
packing video is caught the same way). Then the claim's photos are analysed again.

How frames are chosen (:func:`extract_keyframes`): the video is sampled at
:data:`SAMPLE_FPS`; the samples are cut into segments at scene changes (the mean absolute
difference of 64×64 grey thumbnails against the segment's first sample exceeds
:data:`SCENE_CHANGE` grey levels) and at least every ``every_s`` seconds; each segment keeps
its sharpest sample (variance of the Laplacian — packing videos are full of motion blur, and
a blurred frame gives the reference matcher few keypoints); flat samples (a hand over the
lens, a black frame) are skipped; at most ``max_frames`` are kept, spread evenly over the
video. Long videos are read up to ``max_seconds``.

What it cannot do: decode codecs OpenCV's bundled FFmpeg lacks (the error says so); find the
goods in a frame (a frame of the packing table alone is kept too — it matches nothing and
costs one comparison).

Job: ``extract_keyframes`` (payload ``{"response_id"}``), queued by
:func:`~refundlens.claims.workflow.add_merchant_response` when a response carries videos.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from ..errors import InvalidInput
from ..jobs import JobContext, enqueue
from ..store.tables import Claim, ClaimPhoto, MerchantResponse, ShippingEvidence
from .audit import append_event
from .service import Service

__all__ = ["Keyframe", "SAMPLE_FPS", "SCENE_CHANGE", "extract_keyframes",
           "handle_extract_keyframes", "probe_video", "probe_video_bytes"]

log = logging.getLogger(__name__)

#: Samples a second: a packing video moves slowly; four a second never misses a view that
#: is held long enough to be useful, and keeps decoding the only real cost.
SAMPLE_FPS = 4.0
#: Mean absolute difference (grey levels, 0–255) of 64×64 thumbnails that starts a new
#: segment. Measured on the generated videos of tests/claims/test_keyframes.py: a shake of
#: a few pixels moves it 1–2, a cut to another view 30 or more.
SCENE_CHANGE = 18.0
#: Standard deviation (grey levels) under which a sample is flat: covered lens, black frame.
MIN_CONTRAST = 6.0
#: Longest side of a stored keyframe (the reference detector works at lower sizes anyway).
MAX_SIDE = 1920
JPEG_QUALITY = 92


@dataclass(frozen=True)
class Keyframe:
    """One chosen frame: its time in the video, JPEG bytes and size."""

    time_s: float
    jpeg: bytes
    width: int
    height: int
    sharpness: float


_ACCEPTED = "accepted: MP4, MOV and WebM videos (H.264, HEVC, MPEG-4, VP8, VP9)"
#: First box types of MP4/QuickTime files (ISO/IEC 14496-12 §4.2; old QuickTime files may
#: start with moov, mdat, wide, free or skip rather than ftyp).
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
_EBML = b"\x1a\x45\xdf\xa3"  # Matroska / WebM


def _open(path: str | os.PathLike[str], name: str) -> Any:
    import cv2

    # FFmpeg would also open a JPEG or a GIF as a one-frame "video": accept containers only.
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError as exc:
        raise InvalidInput(f"video {name!r}: cannot be read ({exc.strerror})",
                           code="unreadable_video") from exc
    if head[4:8] not in _MP4_BOXES and head[:4] != _EBML:
        raise InvalidInput(f"video {name!r}: not a video container; {_ACCEPTED}",
                           code="unreadable_video")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise InvalidInput(f"video {name!r}: cannot be opened; {_ACCEPTED}",
                           code="unreadable_video")
    return capture


def probe_video(path: str | os.PathLike[str], *, name: str | None = None) -> dict[str, Any]:
    """Open a video and decode its first frame; its size, frame rate and duration.

    Raises:
        InvalidInput: the file is not a video OpenCV can decode.
    """
    import cv2

    name = name or Path(path).name
    capture = _open(path, name)
    try:
        ok, frame = capture.read()
        if not ok or frame is None:
            raise InvalidInput(f"video {name!r}: no frame could be decoded; {_ACCEPTED}",
                               code="unreadable_video")
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        frames = capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0
        return {"width": int(frame.shape[1]), "height": int(frame.shape[0]),
                "fps": round(float(fps), 3),
                "duration_s": round(frames / fps, 3) if fps > 0 and frames > 0 else None}
    finally:
        capture.release()


def probe_video_bytes(data: bytes, *, name: str = "video") -> dict[str, Any]:
    """:func:`probe_video` for bytes in memory (written to a temporary file: OpenCV reads
    videos from paths only)."""
    with tempfile.NamedTemporaryFile(suffix=Path(name).suffix[:10] or ".mp4") as handle:
        handle.write(data)
        handle.flush()
        return probe_video(handle.name, name=name)


def extract_keyframes(path: str | os.PathLike[str], *, every_s: float = 2.0,
                      max_frames: int = 12, max_seconds: float = 300.0,
                      name: str | None = None) -> list[Keyframe]:
    """The keyframes of the video at ``path``, in time order (see the module docstring).

    Args:
        every_s: the longest a segment lasts without a scene change; raised for long
            videos so that ``max_frames`` segments cover the part read.
        max_frames: at most this many keyframes (1–100).
        max_seconds: read at most this much of the video.

    Raises:
        InvalidInput: an option is out of range, or the file is not a decodable video.
    """
    import cv2

    name = name or Path(path).name
    if not 1 <= max_frames <= 100:
        raise InvalidInput(f"max_frames: got {max_frames}, expected 1–100", field="max_frames")
    if not every_s > 0 or not max_seconds > 0:
        raise InvalidInput(f"every_s, max_seconds: got {every_s}, {max_seconds}; expected "
                           f"numbers above 0", field="every_s")
    capture = _open(path, name)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and 1.0 <= fps <= 1000.0 else 30.0  # some containers report 0
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0
        duration = min(max_seconds, count / fps) if count > 0 else max_seconds
        every_s = max(every_s, duration / max_frames)
        step = max(1, int(round(fps / SAMPLE_FPS)))
        last_index = int(max_seconds * fps)
        segments: list[tuple[float, float, np.ndarray]] = []  # (sharpness, time, frame)
        best: tuple[float, float, np.ndarray] | None = None
        start_time, start_thumb = 0.0, None
        index = -1
        while index < last_index:
            index += 1
            if index % step:
                if not capture.grab():
                    break
                continue
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            time_s = index / fps
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            thumb = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
            if start_thumb is None:
                start_time, start_thumb = time_s, thumb
            elif (float(np.mean(np.abs(thumb - start_thumb))) > SCENE_CHANGE
                  or time_s - start_time >= every_s):
                if best is not None:
                    segments.append(best)
                best = None
                start_time, start_thumb = time_s, thumb
            if float(thumb.std()) < MIN_CONTRAST:
                continue
            sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
            if best is None or sharpness > best[0]:
                best = (sharpness, time_s, frame)
        if best is not None:
            segments.append(best)
        if index <= 0 and not segments:
            raise InvalidInput(f"video {name!r}: no frame could be decoded; {_ACCEPTED}",
                               code="unreadable_video")
    finally:
        capture.release()
    if len(segments) > max_frames:
        keep = np.linspace(0, len(segments) - 1, max_frames).round().astype(int)
        segments = [segments[i] for i in sorted(set(keep.tolist()))]
    return [_encode(frame, time_s, sharpness) for sharpness, time_s, frame in segments]


def _encode(frame: np.ndarray, time_s: float, sharpness: float) -> Keyframe:
    import cv2

    h, w = frame.shape[:2]
    scale = MAX_SIDE / max(h, w)
    if scale < 1.0:
        frame = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA)
        h, w = frame.shape[:2]
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok, "JPEG encoding of a decoded frame cannot fail"
    return Keyframe(round(time_s, 3), encoded.tobytes(), int(w), int(h), round(sharpness, 2))


# --- the job -------------------------------------------------------------------------------

def handle_extract_keyframes(svc: Service, ctx: JobContext) -> None:
    """The ``extract_keyframes`` job: keyframes of a response's videos become shipping
    evidence of the order, and the claim's photos are analysed again against them.

    Idempotent: a keyframe already stored for the order (same sha256) is not added twice.
    A video that cannot be decoded is recorded in the audit event, not retried.
    """
    response_id = ctx.payload["response_id"]
    with svc.db.read() as session:
        response = session.get(MerchantResponse, response_id)
        claim = session.get(Claim, response.claim_id) if response is not None else None
        if response is None or claim is None:
            videos: list[dict[str, Any]] = []
        else:
            videos = [f for f in response.files or [] if f.get("kind") == "video"]
            order_id, claim_id = claim.order_id, claim.id
    if not videos:
        with svc.db.write() as session:
            ctx.complete(session)
        return
    report: list[dict[str, Any]] = []
    frames: list[tuple[dict[str, Any], Keyframe, str]] = []
    for video in videos:
        entry: dict[str, Any] = {"sha256": video["sha256"], "filename": video.get("filename")}
        try:
            found = extract_keyframes(svc.blobs.path(video["sha256"]),
                                      name=video.get("filename") or video["sha256"][:12])
        except InvalidInput as exc:
            entry["error"] = str(exc)
            found = []
        entry["keyframes"] = []
        for keyframe in found:
            sha = svc.blobs.put(keyframe.jpeg)
            frames.append((video, keyframe, sha))
            entry["keyframes"].append({"sha256": sha, "time_s": keyframe.time_s})
        report.append(entry)
    with svc.db.write() as session:
        known = set(session.execute(select(ShippingEvidence.sha256).where(
            ShippingEvidence.order_id == order_id)).scalars())
        from .intake import new_id

        added = 0
        for video in videos:
            if video["sha256"] not in known:
                session.add(ShippingEvidence(
                    id=new_id("shp"), order_id=order_id, sha256=video["sha256"],
                    filename=(video.get("filename") or "video")[:300],
                    content_type=video.get("content_type") or "video/mp4", kind="video"))
                known.add(video["sha256"])
        for video, keyframe, sha in frames:
            if sha in known:
                continue
            stem = Path(video.get("filename") or "video").stem[:200]
            session.add(ShippingEvidence(
                id=new_id("shp"), order_id=order_id, sha256=sha,
                filename=f"{stem}@{keyframe.time_s:.1f}s.jpg", content_type="image/jpeg",
                kind="keyframe", width=keyframe.width, height=keyframe.height))
            known.add(sha)
            added += 1
        session.flush()
        append_event(session, actor="keyframes", action="keyframes_extracted",
                     claim_id=claim_id, data={"response_id": response_id, "order_id": order_id,
                                              "added": added, "videos": report})
        if added:
            photo_ids = list(session.execute(select(ClaimPhoto.id).where(
                ClaimPhoto.claim_id == claim_id)).scalars())
            if photo_ids:
                enqueue(session, "analyze_claim", claim_id=claim_id,
                        payload={"role": "claim", "reanalyze": photo_ids})
        ctx.complete(session)
