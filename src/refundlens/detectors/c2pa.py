"""C2PA Content Credentials: AI generation recorded in the manifest, broken manifests,
remote manifests, and the manifest summary.

What it detects:
    * ``AIGC_LABEL_C2PA``: an action (``c2pa.created``, ``c2pa.edited``, ``c2pa.placed``...,
      in ``c2pa.actions`` or ``c2pa.actions.v2``) or an IPTC assertion whose
      ``digitalSourceType`` is synthetic (:data:`refundlens.detectors.labels.AI_SOURCE_TYPES`:
      ``trainedAlgorithmicMedia``, ``compositeWithTrainedAlgorithmicMedia`` at 1.0,
      ``algorithmicMedia``, ``compositeSynthetic`` at 0.9 — see that table for why), in the
      active manifest or in any ingredient's manifest (an AI image opened, or placed, in an
      editor still carries its origin in the ingredient chain).
    * ``METADATA_C2PA_INVALID``: the manifest does not validate (data hash mismatch: pixels
      changed after signing; claim signature mismatch; unreadable manifest store), with the
      C2PA validation status codes.
    * ``METADATA_C2PA_REMOTE``: the file points to a remote manifest (XMP
      ``dcterms:provenance``) that is not fetched: analysis is offline by design.
    * ``METADATA_C2PA_PRESENT``: any manifest that was read, with claim generator, signer,
      validation and actions (info: adds no risk).

Validation: "trusted" when the signer chains to a trust anchor configured with the
``c2pa_trust_anchors`` setting (a PEM file, passed to the C2PA SDK as ``trust.trust_anchors``);
"valid" when the signature and hashes check but the signer is not on that list (every
signer, with no list configured); "invalid" otherwise. ``signingCredential.untrusted`` alone
is not a validation failure: anyone can sign, and nobody signs an AI label onto their own
genuine photo to lose a refund.

What it cannot do:
    Re-encoding, screenshots and most upload pipelines strip the manifest, so no manifest
    is no evidence. Remote manifests are not fetched; OCSP revocation is not checked.

Cost: the C2PA SDK is only called when the file holds a JUMBF box (``jumb``; in a JPEG,
looked for in the header's APP11 segments only) or its XMP names a remote manifest; a
genuine JPEG costs a walk over its header segments.

Known false positives:
    ``algorithmicMedia`` also covers non-AI procedural renders (scored 0.9, still
    conclusive: such a picture is not a photo of the goods).

References:
    * C2PA Technical Specification 2.1: §15 (manifest store, JUMBF), §18 (standard
      assertions: actions, ingredients), §15.10/§15.11 and "Validation" (status codes such
      as ``assertion.dataHash.mismatch``, ``claimSignature.mismatch``).
    * IPTC NewsCodes Digital Source Type, http://cv.iptc.org/newscodes/digitalsourcetype/.
    * c2pa-python 0.38 (``c2pa.Reader``, ``c2pa.Context``; settings ``verify.*``,
      ``trust.trust_anchors``).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from collections import deque
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from ..models import Finding, Photo
from ..xmp import NS_DCTERMS, parse_xmp
from .base import Detector, DetectorContext, DetectorOutput
from .labels import AI_SOURCE_TYPES, ai_source_type

__all__ = ["C2paDetector"]

#: Photo.format -> the MIME type the C2PA SDK reads it as.
_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heic",
         "AVIF": "image/avif", "TIFF": "image/tiff", "GIF": "image/gif"}

#: Every embedded manifest store is a JUMBF superbox, box type "jumb" (ISO 19566-5; C2PA 2.1
#: §15.2), whatever the container: JPEG APP11, PNG caBX, WebP C2PA chunk, ISO BMFF uuid box,
#: TIFF tag 52545. Its "c2pa" label sits inside that box, so "jumb" alone is the marker.
_JUMBF = b"jumb"
_APP11, _SOS, _EOI = 0xEB, 0xDA, 0xD9
#: ``dcterms:provenance`` in an XMP packet that does not parse, by pattern (any prefix).
_PROVENANCE = re.compile(r"[\w.-]+:provenance\s*(?:=\s*[\"']([^\"']+)[\"']|>\s*([^<\s]+)\s*<)")
_URL = re.compile(r"https?://[^\s\"'<>)]+")

#: Validation codes that say the signer is not on the trust list: not a failure (module
#: docstring).
_TRUST_CODES = {"signingCredential.untrusted"}
#: A manifest that fails validation still records what its tool did; the AI statement is
#: then less certain (whoever broke it may have changed it): 0.8 of its score.
_INVALID_FACTOR = 0.8
_MAX_PROBLEMS = 4
_MAX_TEXT = 200


class C2paDetector(Detector):
    """Reads and validates the C2PA manifest store with the C2PA SDK, offline."""

    name = "c2pa"
    version = "2"
    description = "C2PA Content Credentials: AI digital source type, validation, remote manifests."
    codes = ("AIGC_LABEL_C2PA", "METADATA_C2PA_INVALID", "METADATA_C2PA_REMOTE",
             "METADATA_C2PA_PRESENT")

    def __init__(self, *, trust_anchors: str | None = None) -> None:
        """Args:
            trust_anchors: PEM text of the signer roots to trust (None: trust nobody).
        """
        if trust_anchors is not None:
            _check_pem(trust_anchors, origin="trust_anchors")
        self._trust_anchors = trust_anchors
        self._context: Any = None

    @classmethod
    def from_settings(cls, settings: Any) -> "C2paDetector":
        path: Path | None = getattr(settings, "c2pa_trust_anchors", None)
        if path is None:
            return cls()
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"setting c2pa_trust_anchors={str(path)!r}: cannot read it "
                              f"({exc}); expected a PEM file of certificates") from exc
        _check_pem(text, origin=f"c2pa_trust_anchors={str(path)!r}")
        return cls(trust_anchors=text)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_context"] = None  # a native handle: rebuilt where the detector lands
        return state

    def _sdk_context(self) -> Any:
        import c2pa  # local: the native library loads only when a manifest is seen

        if self._context is None or not self._context.is_valid:
            config: dict[str, Any] = {
                # Offline by design: never fetch remote manifests or OCSP responses (the
                # SDK's default fetches remote manifests, which can hang on the network).
                "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False,
                           "verify_trust": True},
            }
            if self._trust_anchors:
                config["trust"] = {"trust_anchors": self._trust_anchors}
            self._context = c2pa.Context.from_dict(config)
        return self._context

    def run(self, photo: Photo, context: DetectorContext) -> DetectorOutput:
        remote_url = _xmp_provenance(photo.xmp)
        embedded = _has_jumbf(photo.data, photo.format)
        if not embedded and remote_url is None:
            return DetectorOutput([], {"manifest": "none"})
        mime = _MIME.get(photo.format)
        if mime is None:
            return DetectorOutput([], {"manifest": "not read",
                                       "reason": f"C2PA is not read from {photo.format}"})
        import c2pa

        try:
            reader = c2pa.Reader(mime, io.BytesIO(photo.data), context=self._sdk_context())
        except c2pa.C2paError.ManifestNotFound:
            if remote_url:
                return self._remote(remote_url, "no embedded manifest")
            return DetectorOutput([], {"manifest": "none", "marker_bytes": True})
        except c2pa.C2paError as exc:
            return self._unreadable(str(exc), remote_url)
        with reader:
            store = json.loads(reader.json())
            state = reader.get_validation_state() or store.get("validation_state") or "Invalid"
            reader_remote = reader.get_remote_url()
        return self._read_store(store, state, remote_url or reader_remote)

    # --- outcomes ---------------------------------------------------------------------
    def _remote(self, url: str, reason: str) -> DetectorOutput:
        finding = self.finding("METADATA_C2PA_REMOTE", score=1.0, url=url)
        return DetectorOutput([finding], {"manifest": "remote", "url": url, "reason": reason})

    def _unreadable(self, message: str, remote_url: str | None) -> DetectorOutput:
        if message.startswith(("Remote", "RemoteManifest")):
            match = _URL.search(message)
            return self._remote(match[0] if match else remote_url or "?", _cut(message))
        if "prerelease" in message.lower():
            # Content Credentials from before C2PA 1.0 (2021): present, but the SDK no
            # longer validates that format. Recorded, not held against the photo.
            finding = self.finding("METADATA_C2PA_PRESENT", score=1.0,
                                   claim_generator="unknown (pre-release C2PA format)",
                                   signer="unknown", validation="not validated",
                                   actions="not read")
            return DetectorOutput([finding], {"manifest": "prerelease", "error": _cut(message)})
        finding = self.finding("METADATA_C2PA_INVALID", score=1.0,
                               problem=f"the manifest store cannot be read ({_cut(message)})",
                               codes=[])
        return DetectorOutput([finding], {"manifest": "unreadable", "error": _cut(message)})

    def _read_store(self, store: Mapping[str, Any], state: str,
                    remote_url: str | None) -> DetectorOutput:
        manifests: Mapping[str, Any] = store.get("manifests") or {}
        active_label = store.get("active_manifest")
        active = manifests.get(active_label) or {}
        failures = [s for s in store.get("validation_status") or []
                    if isinstance(s, Mapping) and s.get("code") not in _TRUST_CODES]
        validation = {"Trusted": "trusted", "Valid": "valid, signer untrusted"}.get(
            state, "invalid")
        signer = _signer(active)
        generator = _claim_generator(active)
        actions = _actions(active)

        findings: list[Finding] = []
        hits = _ai_hits(manifests, active_label)
        if hits:
            best = max(hits, key=lambda h: (AI_SOURCE_TYPES[h["source_type"]],
                                            h["where"] == "active manifest"))
            score = AI_SOURCE_TYPES[best["source_type"]]
            if validation == "invalid":
                score *= _INVALID_FACTOR
            findings.append(self.finding(
                "AIGC_LABEL_C2PA", score=score, source_type=best["source_type"],
                action=f"{best['action']} ({best['where']})", signer=best["signer"],
                validation=validation, software_agent=best.get("software_agent"),
                also=[f"{h['source_type']} on {h['action']} ({h['where']})"
                      for h in hits if h is not best]))
        if validation == "invalid":
            findings.append(self.finding(
                "METADATA_C2PA_INVALID", score=1.0,
                problem=_problem(failures, active_label) or f"validation state {state}",
                codes=[str(f.get("code")) for f in failures]))
        findings.append(self.finding(
            "METADATA_C2PA_PRESENT", score=1.0, claim_generator=generator, signer=signer,
            validation=validation,
            actions=", ".join(_action_text(a) for a in actions) or "none recorded"))

        info: dict[str, Any] = {
            "manifest": "embedded",
            "active_manifest": active_label,
            "validation_state": state,
            "claim_generator": generator,
            "signer": signer,
            "signed_at": (active.get("signature_info") or {}).get("time"),
            "title": active.get("title"),
            "actions": [_action_text(a) for a in actions],
            "ingredients": [_ingredient_summary(i) for i in active.get("ingredients") or []],
            "manifests": len(manifests),
            "validation_failures": [f"{f.get('code')}: {_cut(f.get('explanation', ''))}"
                                    for f in failures],
        }
        if remote_url:
            info["remote_url"] = remote_url
        if hits:
            info["ai_source_types"] = [f"{h['source_type']} on {h['action']} ({h['where']})"
                                       for h in hits]
        return DetectorOutput(findings, info)


# --- manifest reading -------------------------------------------------------------------------
def _ai_hits(manifests: Mapping[str, Any], active_label: str | None) -> list[dict[str, Any]]:
    """Synthetic digitalSourceTypes in the active manifest and, breadth first, in the
    manifests of its ingredients (then any manifest the walk did not reach)."""
    order: list[tuple[str, str]] = []
    seen: set[str] = set()
    queue = deque([(active_label, "active manifest")] if active_label in manifests else [])
    while queue:
        label, where = queue.popleft()
        if label in seen:
            continue
        seen.add(label)
        order.append((label, where))
        for ingredient in manifests[label].get("ingredients") or []:
            child = ingredient.get("active_manifest")
            if child in manifests and child not in seen:
                title = _cut(ingredient.get("title") or child, 60)
                queue.append((child, f"ingredient \u201c{title}\u201d, "
                                     f"{ingredient.get('relationship', 'ingredient')}"))
    order += [(label, "other manifest") for label in manifests if label not in seen]

    hits = []
    for label, where in order:
        manifest = manifests[label]
        signer = _signer(manifest)
        for action in _actions(manifest):
            source = ai_source_type(action.get("digitalSourceType"))
            if source:
                hits.append({"source_type": source, "action": str(action.get("action")),
                             "where": where, "signer": signer,
                             "software_agent": _agent(action.get("softwareAgent"))})
        for assertion in manifest.get("assertions") or []:
            if str(assertion.get("label", "")).startswith("stds.iptc"):
                data = assertion.get("data") or {}
                for key, value in data.items() if isinstance(data, Mapping) else ():
                    source = ai_source_type(value) if key.endswith("DigitalSourceType") else None
                    if source:
                        hits.append({"source_type": source, "action": "IPTC assertion",
                                     "where": where, "signer": signer})
    return hits


def _actions(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out = []
    for assertion in manifest.get("assertions") or []:
        # c2pa.actions, c2pa.actions.v2, and repeated instances ("c2pa.actions__1").
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            data = assertion.get("data") or {}
            out += [a for a in data.get("actions") or [] if isinstance(a, Mapping)]
    return out


def _action_text(action: Mapping[str, Any]) -> str:
    name = str(action.get("action", "?"))
    source = action.get("digitalSourceType")
    if isinstance(source, str) and source:
        return f"{name} ({source.rstrip('/').rsplit('/', 1)[-1]})"
    return name


def _agent(agent: Any) -> str | None:
    if isinstance(agent, Mapping):
        agent = agent.get("name")
    return _cut(agent, 80) if isinstance(agent, str) else None


def _signer(manifest: Mapping[str, Any]) -> str:
    info = manifest.get("signature_info") or {}
    name, issuer = info.get("common_name"), info.get("issuer")
    if name and issuer and name != issuer:
        return f"{name}, issued by {issuer}"
    return str(name or issuer or "unknown signer")


def _claim_generator(manifest: Mapping[str, Any]) -> str:
    generator = manifest.get("claim_generator")
    if isinstance(generator, str) and generator:
        return _cut(generator, 80)
    parts = [f"{g.get('name', '')} {g.get('version', '')}".strip()
             for g in manifest.get("claim_generator_info") or [] if isinstance(g, Mapping)]
    return _cut(", ".join(p for p in parts if p), 80) or "unknown"


def _ingredient_summary(ingredient: Mapping[str, Any]) -> dict[str, Any]:
    return {"title": ingredient.get("title"), "relationship": ingredient.get("relationship"),
            "has_manifest": bool(ingredient.get("active_manifest")),
            "validation": [s.get("code") for s in ingredient.get("validation_status") or []
                           if isinstance(s, Mapping)]}


def _problem(failures: list[Mapping[str, Any]], active_label: str | None) -> str:
    parts = []
    for failure in failures[:_MAX_PROBLEMS]:
        where = "" if active_label and active_label in str(failure.get("url", "")) \
            else " in an ingredient's manifest"
        parts.append(f"{failure.get('code')}{where} ({_cut(failure.get('explanation', ''), 90)})")
    if len(failures) > _MAX_PROBLEMS:
        parts.append(f"and {len(failures) - _MAX_PROBLEMS} more")
    return "; ".join(parts)


def _has_jumbf(data: bytes, fmt: str) -> bool:
    """Whether the file may hold an embedded manifest store.

    The store sits where C2PA 2.1 §15.3 puts it for each container: JPEG APP11 segments of
    the header, a PNG ``caBX`` chunk, a WebP ``C2PA`` chunk, a top-level ISO BMFF ``uuid``
    box (HEIF, AVIF). Walking those structures reads a few headers instead of the whole file
    (a byte scan costs about 2 ms per MB here); other formats, and files whose structure
    does not parse, are scanned whole.
    """
    walk = {"JPEG": _walk_jpeg, "PNG": _walk_png, "WEBP": _walk_riff, "HEIF": _walk_bmff,
            "AVIF": _walk_bmff}.get(fmt)
    found = walk(data) if walk else None
    return _JUMBF in data if found is None else found


def _walk_jpeg(data: bytes) -> bool | None:
    i, end = 2, len(data)
    while i + 4 <= end and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in (_SOS, _EOI):
            return False
        if 0xD0 <= marker <= 0xD7 or marker in (0x01, 0xD8):  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if length < 2:
            return None
        if marker == _APP11 and _JUMBF in data[i + 4:i + 2 + length]:
            return True
        i += 2 + length
    return None


def _walk_png(data: bytes) -> bool | None:
    i, end = 8, len(data)
    while i + 8 <= end:
        kind = data[i + 4:i + 8]
        if kind == b"caBX":
            return True
        if kind == b"IEND":
            return False
        i += 12 + int.from_bytes(data[i:i + 4], "big")
    return None


def _walk_riff(data: bytes) -> bool | None:
    i, end = 12, len(data)
    while i + 8 <= end:
        if data[i:i + 4] == b"C2PA":
            return True
        size = int.from_bytes(data[i + 4:i + 8], "little")
        i += 8 + size + (size & 1)  # chunks are padded to even sizes
    return False if i == end else None


def _walk_bmff(data: bytes) -> bool | None:
    i, end = 0, len(data)
    while i + 8 <= end:
        size, kind = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8]
        if size == 1 and i + 16 <= end:
            size = int.from_bytes(data[i + 8:i + 16], "big")
        elif size == 0:
            size = end - i
        if size < 8:
            return None
        # The C2PA uuid box: uuid, purpose "manifest", an offset, then the JUMBF superbox.
        if kind == b"uuid" and _JUMBF in data[i + 8:i + min(size, 96)]:
            return True
        i += size
    return False if i == end else None


def _xmp_provenance(packets: tuple[str, ...]) -> str | None:
    """The remote manifest URL of XMP ``dcterms:provenance`` (C2PA 2.1 §15.6), if any."""
    for packet in packets:
        if "provenance" in packet:
            parsed = parse_xmp(packet)
            if parsed.error is None:
                urls = [v.strip() for v in parsed.values(NS_DCTERMS, "provenance") if v.strip()]
                if urls:
                    return urls[0]
                continue
            match = _PROVENANCE.search(packet)
            if match:
                return match[1] or match[2]
    return None


def _check_pem(text: str, *, origin: str) -> None:
    """Refuse what cannot be a PEM certificate list, before the SDK fails on every read."""
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)
    if not blocks:
        raise ConfigError(f"{origin}: no PEM certificate found; expected one or more "
                          f"'-----BEGIN CERTIFICATE-----' blocks")
    for number, block in enumerate(blocks, 1):
        try:
            der = base64.b64decode("".join(block.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"{origin}: certificate {number} is not valid base64 ({exc})") \
                from exc
        if der[:1] != b"\x30":  # an X.509 certificate is a DER SEQUENCE
            raise ConfigError(f"{origin}: certificate {number} is not a DER X.509 certificate")


def _cut(text: Any, limit: int = _MAX_TEXT) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
