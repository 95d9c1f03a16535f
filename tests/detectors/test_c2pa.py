"""C2paDetector: real C2PA fixtures (AI created, edit chain, tampered, remote, unsigned) and
manifests signed here with a throw-away test CA (valid/untrusted, trusted, ingredient chain,
stripped by re-encoding, byte-tampered)."""

from __future__ import annotations

import datetime
import io
import pickle
import time
from pathlib import Path
from typing import Any

import c2pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import DATA, encode, jpeg, photo, recompress, textured_rgb
from refundlens.analysis import run_detector
from refundlens.config import Settings
from refundlens.detectors import DetectorContext
from refundlens.detectors.c2pa import C2paDetector
from refundlens.errors import ConfigError

FIXTURES = DATA / "c2pa"
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


def run(data: bytes, detector: C2paDetector | None = None, name: str = "test.jpg"):
    output = (detector or C2paDetector()).run(photo(data, name), DetectorContext())
    return output.findings, output.info


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def only(findings, code: str):
    hits = [f for f in findings if f.code == code]
    assert len(hits) == 1, [f.code for f in findings]
    return hits[0]


def codes(findings) -> list[str]:
    return sorted(f.code for f in findings)


# --- a throw-away PKI: root CA -> ES256 signing certificate ------------------------------------
@pytest.fixture(scope="module")
def pki() -> dict[str, bytes]:
    """A test root CA and an end-entity signing certificate with the extensions C2PA
    requires of a signer (C2PA 2.1 §14.5: digitalSignature key usage, an allowed extended
    key usage such as emailProtection, not a CA, not self-signed)."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RefundLens Tests")])

    def usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False,
                             key_encipherment=False, data_encipherment=False,
                             key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                             encipher_only=False, decipher_only=False)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(name("RefundLens Test Root CA"))
        .issuer_name(name("RefundLens Test Root CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name("RefundLens Test Signer"))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return {
        "chain": cert.public_bytes(pem) + ca_cert.public_bytes(pem),
        "key": key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()),
        "ca": ca_cert.public_bytes(pem),
    }


def sign(pki: dict[str, bytes], source: bytes, actions: list[dict[str, Any]], *,
         title: str = "signed.jpg", ingredient: tuple[str, bytes] | None = None,
         mime: str = "image/jpeg") -> bytes:
    """``source`` with a signed manifest holding ``actions`` (and one parentOf ingredient,
    labelled "parent" for the actions to reference). No timestamp authority: offline."""
    manifest = {"claim_generator_info": [{"name": "refundlens-tests", "version": "1"}],
                "title": title,
                "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}]}
    builder = c2pa.Builder(manifest)
    if ingredient is not None:
        builder.add_ingredient({"title": ingredient[0], "relationship": "parentOf",
                                "label": "parent"}, "image/jpeg", io.BytesIO(ingredient[1]))
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(
        c2pa.C2paSigningAlg.ES256, pki["chain"], pki["key"], None))
    out = io.BytesIO()
    builder.sign(signer, mime, io.BytesIO(source), out)
    return out.getvalue()


@pytest.fixture(scope="module")
def ai_created(pki) -> bytes:
    return sign(pki, jpeg(textured_rgb(320, 240), 90), [
        {"action": "c2pa.created", "digitalSourceType": IPTC + "trainedAlgorithmicMedia",
         "softwareAgent": {"name": "TestDiffusion 2"}}], title="generated.jpg")


OPENED = {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}}


# --- genuine photos ---------------------------------------------------------------------------
def test_photo_without_manifest_is_skipped_quickly() -> None:
    data = jpeg(textured_rgb(640, 480), 90)
    assert b"jumb" not in data and b"c2pa" not in data
    findings, info = run(data)
    assert findings == []
    assert info == {"manifest": "none"}


def test_unsigned_fixture_has_no_finding() -> None:
    findings, info = run(fixture("A.jpg"))
    assert findings == [] and info["manifest"] == "none"


def test_marker_bytes_without_a_manifest() -> None:
    data = jpeg(textured_rgb(64, 64), 90)
    data = data[:2] + b"\xff\xfe\x00\x0ejumb c2pa ." + data[2:]  # a JPEG comment
    findings, info = run(data)
    assert findings == []
    assert info == {"manifest": "none", "marker_bytes": True}


# --- real fixtures ----------------------------------------------------------------------------
def test_ai_created_fixture() -> None:
    findings, info = run(fixture("C.jpg"))
    assert codes(findings) == ["AIGC_LABEL_C2PA", "METADATA_C2PA_PRESENT"]
    ai = only(findings, "AIGC_LABEL_C2PA")
    assert ai.details["source_type"] == "algorithmicMedia"
    assert ai.score == pytest.approx(0.9)
    assert ai.details["action"] == "c2pa.created (active manifest)"
    assert ai.details["signer"] == "C2PA Signer, issued by C2PA Test Signing Cert"
    assert ai.details["validation"] == "valid, signer untrusted"
    present = only(findings, "METADATA_C2PA_PRESENT")
    assert present.details["claim_generator"] == "make_test_images/0.26.0 c2pa-rs/0.26.0"
    assert info["validation_state"] == "Valid"
    assert info["actions"] == ["c2pa.created (algorithmicMedia)"]


def test_edit_chain_without_ai() -> None:
    findings, info = run(fixture("files-for-reading-tests_CA.jpg"))
    present = only(findings, "METADATA_C2PA_PRESENT")
    assert codes(findings) == ["METADATA_C2PA_PRESENT"]
    assert present.details["actions"] == "c2pa.opened, c2pa.color_adjustments"
    assert info["ingredients"] == [{"title": "A.jpg", "relationship": "parentOf",
                                    "has_manifest": False, "validation": []}]


@pytest.mark.parametrize("name, code, in_ingredient", [
    ("files-for-reading-tests_XCA.jpg", "assertion.dataHash.mismatch", False),
    ("files-for-reading-tests_E-sig-CA.jpg", "claimSignature.mismatch", False),
    ("files-for-reading-tests_CIE-sig-CA.jpg", "claimSignature.mismatch", True),
])
def test_tampered_fixtures_are_invalid(name: str, code: str, in_ingredient: bool) -> None:
    findings, info = run(fixture(name))
    invalid = only(findings, "METADATA_C2PA_INVALID")
    assert code in invalid.details["codes"]
    assert "signingCredential.untrusted" not in invalid.details["codes"]
    assert code in invalid.details["problem"]
    assert ("ingredient" in invalid.details["problem"]) == in_ingredient
    assert only(findings, "METADATA_C2PA_PRESENT").details["validation"] == "invalid"
    assert info["validation_state"] == "Invalid"


def test_invalid_manifest_weakens_its_ai_statement() -> None:
    findings, _ = run(fixture("files-for-reading-tests_CIE-sig-CA.jpg"))
    ai = only(findings, "AIGC_LABEL_C2PA")
    assert ai.score == pytest.approx(0.9 * 0.8)
    assert ai.details["validation"] == "invalid"


def test_remote_manifest_is_reported_offline_without_error() -> None:
    start = time.perf_counter()
    result = run_detector(C2paDetector(), photo(fixture("cloud.jpg")), DetectorContext())
    assert time.perf_counter() - start < 2.0  # no network attempt, no timeout wait
    assert result.status == "ok"
    remote = only(result.findings, "METADATA_C2PA_REMOTE")
    assert remote.details["url"].startswith("https://cai-manifests.adobe.com/manifests/")
    assert result.info["manifest"] == "remote"
    assert codes(result.findings) == ["METADATA_C2PA_REMOTE"]


@pytest.mark.parametrize("form", ["attribute", "element"])
def test_remote_manifest_named_in_xmp_by_namespace(form) -> None:
    url = "https://example.com/manifests/abc"
    value = (f'dc2:provenance="{url}"/>' if form == "attribute"
             else f'><dc2:provenance>{url}</dc2:provenance></rdf:Description>')
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
           '02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
           f'xmlns:dc2="http://purl.org/dc/terms/" {value}</rdf:RDF></x:xmpmeta>')
    data = jpeg(textured_rgb(64, 64), 90, xmp=xmp.encode())
    result = run_detector(C2paDetector(), photo(data), DetectorContext())
    assert only(result.findings, "METADATA_C2PA_REMOTE").details["url"] == url


def test_unreadable_manifest_store_is_invalid_not_an_error() -> None:
    data = jpeg(textured_rgb(64, 64), 90)
    jumbf = (b"JP\x00\x00\x00\x00\x00\x01" + b"\x00\x00\x00\x20jumb" +
             b"\x00\x00\x00\x18jumdc2pa" + b"\x00" * 12)
    segment = b"\xff\xeb" + (len(jumbf) + 2).to_bytes(2, "big") + jumbf
    findings, info = run(data[:2] + segment + data[2:])
    invalid = only(findings, "METADATA_C2PA_INVALID")
    assert "cannot be read" in invalid.details["problem"]
    assert info["manifest"] == "unreadable"


# --- manifests signed here ------------------------------------------------------------------
def test_signed_ai_image_reads_as_ai_valid_untrusted(ai_created: bytes) -> None:
    findings, info = run(ai_created)
    ai = only(findings, "AIGC_LABEL_C2PA")
    assert ai.score == 1.0
    assert ai.details["source_type"] == "trainedAlgorithmicMedia"
    assert ai.details["action"] == "c2pa.created (active manifest)"
    assert ai.details["signer"] == "RefundLens Test Signer, issued by RefundLens Tests"
    assert ai.details["validation"] == "valid, signer untrusted"
    assert ai.details["software_agent"] == "TestDiffusion 2"
    assert "trainedAlgorithmicMedia" in ai.message_en and "AI 生成" in ai.message_zh
    assert info["title"] == "generated.jpg"
    assert "METADATA_C2PA_INVALID" not in codes(findings)


def test_trust_anchor_makes_the_signer_trusted(pki, ai_created: bytes, tmp_path: Path) -> None:
    ai = only(run(ai_created, C2paDetector(trust_anchors=pki["ca"].decode()))[0],
              "AIGC_LABEL_C2PA")
    assert ai.details["validation"] == "trusted"
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(pki["ca"])
    detector = C2paDetector.from_settings(Settings(c2pa_trust_anchors=anchors))
    findings, info = run(ai_created, detector)
    assert only(findings, "METADATA_C2PA_PRESENT").details["validation"] == "trusted"
    assert info["validation_state"] == "Trusted"
    # Trusting another CA does not make this signer trusted.
    other = C2paDetector(trust_anchors=_other_ca_pem())
    assert only(run(ai_created, other)[0], "AIGC_LABEL_C2PA").details["validation"] == \
        "valid, signer untrusted"


def _other_ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Unrelated Root")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_ai_edit_found_in_an_ingredient_manifest(pki) -> None:
    original = jpeg(textured_rgb(320, 240, seed=3), 90)
    ai_edit = sign(pki, original, [
        OPENED,
        {"action": "c2pa.edited",
         "digitalSourceType": IPTC + "compositeWithTrainedAlgorithmicMedia"}],
        title="ai-edit.jpg", ingredient=("photo.jpg", original))
    final = sign(pki, ai_edit, [OPENED, {"action": "c2pa.resized"}], title="final.jpg",
                 ingredient=("ai-edit.jpg", ai_edit))
    findings, info = run(final)
    ai = only(findings, "AIGC_LABEL_C2PA")
    assert ai.details["source_type"] == "compositeWithTrainedAlgorithmicMedia"
    assert ai.details["action"] == "c2pa.edited (ingredient \u201cai-edit.jpg\u201d, parentOf)"
    assert ai.score == 1.0
    # The active manifest itself records no AI: only the ingredient walk finds it.
    assert only(findings, "METADATA_C2PA_PRESENT").details["actions"] == \
        "c2pa.opened, c2pa.resized"
    assert info["manifests"] == 2


@pytest.mark.parametrize("fmt, mime", [("PNG", "image/png"), ("WEBP", "image/webp"),
                                       ("AVIF", "image/avif"), ("HEIF", "image/heic")])
def test_signed_image_in_other_containers(pki, fmt: str, mime: str) -> None:
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    source = encode(textured_rgb(160, 120, seed=5), fmt)
    signed = sign(pki, source, [{"action": "c2pa.created",
                                 "digitalSourceType": IPTC + "trainedAlgorithmicMedia"}],
                  mime=mime)
    ai = only(run(signed, name=f"signed.{fmt.lower()}")[0], "AIGC_LABEL_C2PA")
    assert ai.details["validation"] == "valid, signer untrusted"


def test_reencoding_through_pillow_strips_the_manifest(ai_created: bytes) -> None:
    stripped = recompress(ai_created, 90)
    assert run(stripped) == ([], {"manifest": "none"})


def test_byte_tampering_after_signing_is_invalid(ai_created: bytes) -> None:
    at = ai_created.index(b"JFIF\x00") + 8  # the JFIF density: hashed, harmless to decoding
    tampered = ai_created[:at] + bytes([ai_created[at] ^ 0x5A]) + ai_created[at + 1:]
    findings, _ = run(tampered)
    invalid = only(findings, "METADATA_C2PA_INVALID")
    assert "assertion.dataHash.mismatch" in invalid.details["codes"]
    ai = only(findings, "AIGC_LABEL_C2PA")
    assert ai.score == pytest.approx(0.8)


def test_detector_pickles_after_use(pki, ai_created: bytes) -> None:
    detector = C2paDetector(trust_anchors=pki["ca"].decode())
    run(ai_created, detector)
    clone = pickle.loads(pickle.dumps(detector))
    assert only(run(ai_created, clone)[0], "AIGC_LABEL_C2PA").details["validation"] == \
        "trusted"


@pytest.mark.parametrize("text, message", [
    ("not a certificate", "no PEM certificate"),
    ("-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n", "not valid base64"),
    ("-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n", "not a DER"),
])
def test_bad_trust_anchors_are_refused(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        C2paDetector(trust_anchors=text)
    path = tmp_path / "anchors.pem"
    path.write_text(text)
    with pytest.raises(ConfigError, match="c2pa_trust_anchors"):
        C2paDetector.from_settings(Settings(c2pa_trust_anchors=path))
