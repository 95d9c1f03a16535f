"""Issue 3 §2, §3 and §5 at intake, on both databases: nothing half-written on a 4xx or 5xx
(no rows, no job, no audit event, no blob file), Idempotency-Key retries (sequential and
concurrent), upload and rate limits, and buyer personal data (sealed at rest, never in a
claim, pseudonymous buyer ids)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from conftest import jpeg, textured_rgb
from refundlens.claims import intake
from refundlens.claims.access import create_key, rotate_key
from refundlens.claims.intake import Upload
from refundlens.claims.retention import sweep_blobs
from refundlens.claims.service import open_service
from refundlens.config import load_settings
from refundlens.errors import Conflict
from refundlens.security import PiiCipher, Pseudonymizer
from refundlens.store.tables import (AuditEvent, Base, Claim, ClaimPhoto, IdempotencyRecord,
                                     Job, MerchantResponse, Order, ReferencePhoto,
                                     ShippingEvidence, WebhookDelivery)
from refundlens.web import create_app

GOOD = jpeg(textured_rgb(64, 48, seed=1))
GOOD_2 = jpeg(textured_rgb(64, 48, seed=2))
BIG_PIXELS = jpeg(textured_rgb(400, 300, seed=3), 70)         # 120,000 pixels
BIG_BYTES = jpeg(textured_rgb(400, 300, seed=4), 100)         # > 40 kB of noise
TRUNCATED_HEADER = GOOD[:30]
NOT_AN_IMAGE = b"Dear merchant, the bottle arrived broken.\n" * 3
VIDEO = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 4


# --- fixtures: the service with per-test settings ----------------------------------------

@pytest.fixture
def overrides() -> dict[str, Any]:
    """Settings changes for one test: ``@pytest.mark.parametrize("overrides", [{...}])``."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, database_url: str, overrides: dict[str, Any]) -> Any:
    # ``shop`` subscribes a webhook receiver on 127.0.0.1
    return load_settings(environ={}, data_dir=tmp_path / "data", database_url=database_url,
                         analysis_workers=0, webhook_allow_private=True, **overrides)


@pytest.fixture
def raw_client(svc: Any, settings: Any) -> Iterator[TestClient]:
    """A client that answers 500s instead of raising the server's exception."""
    app = create_app(settings, service=svc, workers=False)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def shop(client: Any, keys: Any) -> dict[str, str]:
    merchant = client.post("/api/v1/merchants", json={"name": "Shop"}, headers=keys.admin)
    assert merchant.status_code == 201, merchant.text
    merchant_id = merchant.json()["id"]
    product = client.post(f"/api/v1/merchants/{merchant_id}/products",
                          json={"sku": "OJ-1L", "name": "Juice"}, headers=keys.admin)
    assert product.status_code == 201, product.text
    order = client.post("/api/v1/orders", json={
        "merchant_id": merchant_id, "buyer_id": "buyer-7", "amount": "100.00",
        "items": [{"sku": "OJ-1L"}]}, headers=keys.intake)
    assert order.status_code == 201, order.text
    # a subscriber, so an accepted claim also queues a webhook delivery (and a refused
    # one must not)
    hook = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"},
                       headers=keys.admin)
    assert hook.status_code == 201, hook.text
    return {"merchant_id": merchant_id, "product_id": product.json()["id"],
            "order_id": order.json()["id"]}


def _state(svc: Any) -> dict[str, Any]:
    """Row counts of every table intake writes, and the blob files on disk."""
    tables = (Claim, ClaimPhoto, Job, AuditEvent, IdempotencyRecord, ReferencePhoto,
              ShippingEvidence, MerchantResponse, Order, WebhookDelivery)
    with svc.db.read() as session:
        counts = {t.__tablename__: session.execute(select(func.count()).select_from(t)
                                                   ).scalar_one() for t in tables}
        counts["analysis jobs"] = session.execute(select(func.count()).select_from(Job).where(
            Job.kind == "analyze_claim")).scalar_one()
    root = Path(svc.settings.data_dir) / "blobs"
    counts["blob files"] = sorted(p.name for p in root.rglob("*") if p.is_file()) \
        if root.exists() else []
    return counts


def _claim(client: Any, headers: dict[str, str], order_id: str, photos: list[bytes], *,
           amount: str = "50.00", reason: str = "broken", **extra: str) -> Any:
    return client.post("/api/v1/claims", data={
        "order_id": order_id, "type": "refund_only", "reason": reason, "amount": amount},
        files=[("photos", (f"p{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)],
        headers={**headers, **extra})


def _error(response: Any, status: int | tuple[int, ...], code: str, field: str | None
           ) -> dict[str, Any]:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field"}, error
    assert error["code"] == code and error["field"] == field, error
    return error


# --- nothing half-written ----------------------------------------------------------------

BAD_PHOTOS = [
    pytest.param({}, [GOOD, TRUNCATED_HEADER], 422, "photo_corrupt", "photos[1]",
                 "damaged", id="truncated-header"),
    pytest.param({}, [GOOD, NOT_AN_IMAGE], 422, "photo_unsupported_format", "photos[1]",
                 "accepted: JPEG", id="not-an-image"),
    pytest.param({}, [GOOD, b""], 422, "photo_empty", "photos[1]", "empty", id="empty"),
    pytest.param({"max_pixels": 50_000}, [GOOD, BIG_PIXELS], 422, "photo_too_large",
                 "photos[1]", "megapixels", id="too-many-pixels"),
    pytest.param({"max_bytes": 20_000}, [GOOD, BIG_BYTES], (413, 422), "photo_too_large",
                 "photos[1]", "limit", id="too-many-bytes"),
    pytest.param({"max_photos_per_claim": 2}, [GOOD, GOOD_2, GOOD], 422, "invalid_input",
                 "photos", "limit is 2", id="too-many-photos"),
    pytest.param({"max_photos_per_claim": 2}, [GOOD, GOOD_2] * 3, 422, "invalid_input",
                 "photos", "limit is 2", id="far-too-many-photos"),
]


@pytest.mark.parametrize("overrides,photos,status,code,field,words", BAD_PHOTOS)
def test_a_claim_with_a_bad_photo_leaves_nothing_behind(client, keys, svc, shop, photos,
                                                        status, code, field, words):
    before = _state(svc)
    response = _claim(client, keys.intake, shop["order_id"], photos,
                      **{"Idempotency-Key": "retry-1"})
    error = _error(response, status, code, field)
    assert words in error["message"], error
    after = _state(svc)
    assert after == before
    assert after["claims"] == 0 and after["claim_photos"] == 0 and after["analysis jobs"] == 0
    assert after["idempotency_keys"] == 0
    # the same Idempotency-Key is still free for the corrected request
    fixed = _claim(client, keys.intake, shop["order_id"], [GOOD],
                   **{"Idempotency-Key": "retry-1"})
    assert fixed.status_code == 202, fixed.text


@pytest.mark.parametrize("overrides", [{"max_pixels": 50_000}])
@pytest.mark.parametrize("data,code", [
    (NOT_AN_IMAGE, "photo_unsupported_format"), (TRUNCATED_HEADER, "photo_corrupt"),
    (BIG_PIXELS, "photo_too_large"),
], ids=["not-an-image", "truncated", "too-many-pixels"])
def test_a_bad_reference_or_shipping_photo_leaves_nothing_behind(client, keys, svc, shop,
                                                                 data, code):
    before = _state(svc)
    response = client.post(f"/api/v1/products/{shop['product_id']}/references",
                           files={"file": ("listing.jpg", data, "image/jpeg")},
                           headers=keys.admin)
    error = _error(response, 422, code, "file[0]")
    assert "listing.jpg" in error["message"]
    response = client.post(f"/api/v1/orders/{shop['order_id']}/shipping-evidence",
                           files={"file": ("packing.jpg", data, "image/jpeg")},
                           headers=keys.admin)
    _error(response, 422, code, "file[0]")
    assert _state(svc) == before


def test_a_reference_for_a_missing_product_leaves_no_blob(client, keys, svc, shop):
    before = _state(svc)
    _error(client.post("/api/v1/products/prd_nope/references",
                       files={"file": ("listing.jpg", GOOD, "image/jpeg")}, headers=keys.admin),
           404, "not_found", "product_id")
    assert _state(svc) == before


def test_a_failure_while_writing_a_claim_is_a_500_and_leaves_nothing(raw_client, keys, svc,
                                                                     shop, monkeypatch):
    def broken_enqueue(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("queue table is gone")

    monkeypatch.setattr(intake, "enqueue", broken_enqueue)
    before = _state(svc)
    response = _claim(raw_client, keys.intake, shop["order_id"], [GOOD, GOOD_2],
                      **{"Idempotency-Key": "k-500"})
    error = _error(response, 500, "internal_error", None)
    assert "queue table" not in error["message"]
    _expect_only_orphan_blobs(svc, before, [GOOD, GOOD_2])
    monkeypatch.undo()
    retried = _claim(raw_client, keys.intake, shop["order_id"], [GOOD, GOOD_2],
                     **{"Idempotency-Key": "k-500"})
    assert retried.status_code == 202, retried.text


def test_a_failure_while_writing_a_reference_is_a_500_and_leaves_nothing(raw_client, keys, svc,
                                                                         shop, monkeypatch):
    def broken_append(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit head locked")

    monkeypatch.setattr(intake, "append_event", broken_append)
    before = _state(svc)
    response = raw_client.post(f"/api/v1/products/{shop['product_id']}/references",
                               files={"file": ("listing.jpg", GOOD, "image/jpeg")},
                               headers=keys.admin)
    _error(response, 500, "internal_error", None)
    _expect_only_orphan_blobs(svc, before, [GOOD])


def _expect_only_orphan_blobs(svc: Any, before: dict[str, Any], photos: list[bytes]) -> None:
    """No row was written; the photos stored before the transaction failed are blobs no
    row names, which the blob sweep removes once past its grace period."""
    after = _state(svc)
    orphans = sorted(hashlib.sha256(p).hexdigest() for p in photos)
    assert {**after, "blob files": before["blob files"]} == before
    assert sorted(set(after["blob files"]) - set(before["blob files"])) == orphans
    two_days_ago = time.time() - 2 * 86400
    for name in after["blob files"]:
        os.utime(svc.blobs.path(name), (two_days_ago, two_days_ago))
    report = sweep_blobs(svc)
    assert report.removed == len(orphans)
    swept = _state(svc)
    assert swept["audit_events"] == before["audit_events"] + 1  # the sweep's own record
    assert {**swept, "audit_events": before["audit_events"]} == before


def test_a_refused_merchant_response_leaves_nothing(client, keys, svc, shop):
    claim = _claim(client, keys.intake, shop["order_id"], [GOOD])
    assert claim.status_code == 202, claim.text
    merchant = keys.merchant(shop["merchant_id"])
    before = _state(svc)
    response = client.post(f"/api/v1/claims/{claim.json()['id']}/responses",
                           data={"text": "here is our packing photo"},
                           files=[("files", ("a.jpg", GOOD_2, "image/jpeg")),
                                  ("files", ("b.jpg", NOT_AN_IMAGE, "image/jpeg"))],
                           headers=merchant)
    _error(response, 422, "photo_unsupported_format", "files[1]")
    assert _state(svc) == before


def test_a_refused_response_does_not_delete_an_earlier_responses_video(client, keys, svc,
                                                                       shop):
    """The same packing video sent again after the claim was decided is refused (409); the
    copy the first response keeps must survive the clean-up of the refused one."""
    claim_id = _claim(client, keys.intake, shop["order_id"], [GOOD]).json()["id"]
    merchant = keys.merchant(shop["merchant_id"])
    first = client.post(f"/api/v1/claims/{claim_id}/responses", data={"text": "packing video"},
                        files=[("files", ("pack.mp4", VIDEO, "video/mp4"))], headers=merchant)
    assert first.status_code == 201, first.text
    detail = client.get(f"/api/v1/claims/{claim_id}", headers=merchant).json()
    video = detail["merchant_responses"][0]["files"][0]
    assert video["kind"] == "video"
    assert client.post(f"/api/v1/claims/{claim_id}/decision", json={"outcome": "approved"},
                       headers=keys.reviewer).status_code == 201
    again = client.post(f"/api/v1/claims/{claim_id}/responses", data={"text": "again"},
                        files=[("files", ("pack.mp4", VIDEO, "video/mp4"))], headers=merchant)
    _error(again, 409, "invalid_state", "claim_id")
    kept = client.get(video["url"], headers=merchant)
    assert kept.status_code == 200 and kept.content == VIDEO


# --- Idempotency-Key ---------------------------------------------------------------------

def test_the_same_key_and_request_return_the_same_claim(client, keys, svc, shop):
    first = _claim(client, keys.intake, shop["order_id"], [GOOD, GOOD_2],
                   **{"Idempotency-Key": "order-1-claim"})
    assert first.status_code == 202, first.text
    after_first = _state(svc)
    for _ in range(2):
        again = _claim(client, keys.intake, shop["order_id"], [GOOD, GOOD_2],
                       **{"Idempotency-Key": "order-1-claim"})
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        assert again.headers["location"] == f"/api/v1/claims/{first.json()['id']}"
    state = _state(svc)
    assert state == after_first
    assert state["claims"] == 1 and state["claim_photos"] == 2 and state["analysis jobs"] == 1
    with svc.db.read() as session:
        submitted = session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "claim_submitted")).scalar_one()
    assert submitted == 1


@pytest.mark.parametrize("change", [
    {"amount": "40.00"}, {"reason": "a different reason"}, {"photos": [GOOD_2, GOOD]},
    {"photos": [GOOD]},
], ids=["amount", "reason", "photo-order", "fewer-photos"])
def test_the_same_key_with_a_different_request_is_409(client, keys, svc, shop, change):
    first = _claim(client, keys.intake, shop["order_id"], [GOOD, GOOD_2],
                   **{"Idempotency-Key": "k1"})
    assert first.status_code == 202, first.text
    before = _state(svc)
    change = dict(change)  # the parameter is shared by both databases' runs
    photos = change.pop("photos", [GOOD, GOOD_2])
    response = _claim(client, keys.intake, shop["order_id"], photos,
                      **{"Idempotency-Key": "k1"}, **change)
    error = _error(response, 409, "idempotency_key_reused", "Idempotency-Key")
    assert first.json()["id"] in error["message"]
    assert _state(svc) == before


def test_idempotency_keys_are_scoped_per_api_key(client, keys, svc, shop):
    _, token = create_key(svc, role="intake")
    other = {"Authorization": f"Bearer {token}"}
    a = _claim(client, keys.intake, shop["order_id"], [GOOD], **{"Idempotency-Key": "same"})
    b = _claim(client, other, shop["order_id"], [GOOD_2], amount="30.00",
               **{"Idempotency-Key": "same"})
    assert a.status_code == 202 and b.status_code == 202, (a.text, b.text)
    assert a.json()["id"] != b.json()["id"]
    # each key's retry finds its own claim
    assert _claim(client, keys.intake, shop["order_id"], [GOOD],
                  **{"Idempotency-Key": "same"}).json()["id"] == a.json()["id"]
    assert _claim(client, other, shop["order_id"], [GOOD_2], amount="30.00",
                  **{"Idempotency-Key": "same"}).json()["id"] == b.json()["id"]
    assert _state(svc)["claims"] == 2


def test_a_retry_with_the_successor_of_a_rotated_key_finds_the_claim(client, keys, svc,
                                                                      shop):
    """Idempotency-Keys belong to the key's rotation chain, not to one key: a client that
    rotates its key between a timed-out request and its retry must not file twice."""
    first_key, token = create_key(svc, role="intake")
    first = _claim(client, {"Authorization": f"Bearer {token}"}, shop["order_id"], [GOOD],
                   **{"Idempotency-Key": "rotate-me"})
    assert first.status_code == 202, first.text
    successor = first_key
    for _ in range(2):  # rotated twice: the chain still finds it
        successor, token = rotate_key(svc, successor.id)
        retry = _claim(client, {"Authorization": f"Bearer {token}"}, shop["order_id"],
                       [GOOD], **{"Idempotency-Key": "rotate-me"})
        assert retry.status_code == 200, retry.text
        assert retry.json()["id"] == first.json()["id"]
    assert _state(svc)["claims"] == 1


def test_without_a_key_each_request_is_a_new_claim(client, keys, svc, shop):
    for _ in range(2):
        assert _claim(client, keys.intake, shop["order_id"], [GOOD]).status_code == 202
    state = _state(svc)
    assert state["claims"] == 2 and state["analysis jobs"] == 2
    # the same photo twice: one blob
    assert len(state["blob files"]) == 1


def test_concurrent_retries_through_the_api_make_one_claim(client, keys, svc, shop):
    barrier = threading.Barrier(4)

    def attempt(_: int) -> Any:
        barrier.wait()
        return _claim(client, keys.intake, shop["order_id"], [GOOD, GOOD_2],
                      **{"Idempotency-Key": "parallel"})

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(attempt, range(4)))
    assert all(r.status_code in (200, 202) for r in responses), [r.text for r in responses]
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 202]
    assert len({r.json()["id"] for r in responses}) == 1
    state = _state(svc)
    assert state["claims"] == 1 and state["analysis jobs"] == 1 and state["claim_photos"] == 2
    assert state["idempotency_keys"] == 1 and len(state["blob files"]) == 2


def test_concurrent_create_claim_calls_make_one_claim(svc, shop):
    barrier = threading.Barrier(6)
    photos = [Upload(GOOD, "a.jpg"), Upload(GOOD_2, "b.jpg")]

    def attempt(_: int) -> tuple[str, bool]:
        barrier.wait()
        claim, created = intake.create_claim(
            svc, order_id=shop["order_id"], type="refund_only", reason="broken",
            amount="50.00", photos=photos, actor="intake:test", api_key_id="key-test",
            idempotency_key="parallel-direct")
        return claim.id, created

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(attempt, range(6)))
    assert len({claim_id for claim_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    state = _state(svc)
    assert state["claims"] == 1 and state["analysis jobs"] == 1 and len(state["blob files"]) == 2


def test_concurrent_different_requests_with_one_key_make_one_claim_and_conflicts(svc, shop):
    barrier = threading.Barrier(4)

    def attempt(i: int) -> str:
        barrier.wait()
        try:
            claim, _ = intake.create_claim(
                svc, order_id=shop["order_id"], type="refund_only", reason=f"reason {i}",
                amount="50.00", photos=[Upload(GOOD, "a.jpg")], actor="intake:test",
                api_key_id="key-test", idempotency_key="contested")
        except Conflict as exc:
            assert exc.code == "idempotency_key_reused"
            return "conflict"
        return claim.id

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(attempt, range(4)))
    assert results.count("conflict") == 3, results
    assert _state(svc)["claims"] == 1


# --- limits ------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [{"max_bytes": 20_000, "max_photos_per_claim": 1}])
def test_a_declared_body_over_the_limit_is_413_before_it_is_read(client, keys, svc, shop):
    before = _state(svc)
    huge = GOOD + b"\0" * (1024 * 1024 + 30_000)
    response = _claim(client, keys.intake, shop["order_id"], [huge])
    error = _error(response, 413, "payload_too_large", None)
    assert "20000 bytes" in error["message"]
    assert _state(svc) == before


@pytest.mark.parametrize("overrides", [{"max_bytes": 20_000, "max_photos_per_claim": 1}])
def test_a_chunked_body_over_the_limit_is_413(client, keys, svc, shop):
    """No Content-Length: the limit is enforced while the body arrives."""
    boundary = "refundlens-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"order_id\"\r\n\r\n"
            f"{shop['order_id']}\r\n--{boundary}\r\nContent-Disposition: form-data; "
            f"name=\"photos\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(40):  # 2.5 MiB, over 20 kB + 1 MiB
            yield b"\xff" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    before = _state(svc)
    response = client.post("/api/v1/claims", content=body(), headers={
        **keys.intake, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    _error(response, 413, "payload_too_large", None)
    assert _state(svc) == before


@pytest.mark.parametrize("overrides", [{"intake_rate": 1}])
def test_the_intake_rate_limit_answers_429_with_retry_after(client, keys, svc, shop):
    # a burst of 2 × rate, then 429 until the bucket refills
    responses = [_claim(client, keys.intake, shop["order_id"], [GOOD]) for _ in range(3)]
    assert [r.status_code for r in responses[:2]] == [202, 202], responses[-1].text
    error = _error(responses[2], 429, "rate_limited", None)
    assert "1 claims a second" in error["message"]
    assert int(responses[2].headers["retry-after"]) >= 1
    assert _state(svc)["claims"] == 2
    # the limit is per key: another intake key is not held back
    _, token = create_key(svc, role="intake")
    other = _claim(client, {"Authorization": f"Bearer {token}"}, shop["order_id"], [GOOD])
    assert other.status_code == 202, other.text
    time.sleep(1.1)
    assert _claim(client, keys.intake, shop["order_id"], [GOOD]).status_code == 202


@pytest.mark.parametrize("overrides", [{"intake_rate": 1}])
def test_evidence_and_appeals_count_against_the_intake_rate_limit(client, keys, svc, shop):
    """An intake key uploads photos with evidence too, and files appeals: both take from
    the key's bucket, as claims do, and a refused one changes nothing."""
    # two claims drain the intake key's burst (2 × rate)
    filed = [_claim(client, keys.intake, shop["order_id"], [GOOD]) for _ in range(2)]
    assert [r.status_code for r in filed] == [202, 202], filed[-1].text
    waiting, decided = (r.json()["id"] for r in filed)
    with svc.db.write() as session:  # one in review, one decided, without the analysis
        session.get(Claim, waiting).status = "in_review"
        session.get(Claim, decided).status = "rejected"
    asked = client.post(f"/api/v1/claims/{waiting}/evidence-requests", json={},
                        headers=keys.reviewer)
    assert asked.status_code == 201, asked.text

    def evidence(headers: dict[str, str]) -> Any:
        return client.post(f"/api/v1/claims/{waiting}/evidence", headers=headers,
                           files=[("photos", ("e.jpg", GOOD_2, "image/jpeg"))])

    def appeal(headers: dict[str, str]) -> Any:
        return client.post(f"/api/v1/claims/{decided}/appeals", headers=headers,
                           json={"reason": "the buyer sent the broken bottle back"})

    before = _state(svc)
    for refused in (evidence(keys.intake), appeal(keys.intake)):
        error = _error(refused, 429, "rate_limited", None)
        assert "evidence submissions and appeals" in error["message"], error
        assert int(refused.headers["retry-after"]) >= 1
    assert _state(svc) == before
    with svc.db.read() as session:
        assert session.get(Claim, waiting).status == "evidence_requested"
        assert session.get(Claim, decided).status == "rejected"
    # the limit is per key: another intake key is not held back
    _, token = create_key(svc, role="intake")
    accepted = evidence({"Authorization": f"Bearer {token}"})
    assert accepted.status_code == 202, accepted.text
    time.sleep(1.1)  # the bucket refills
    assert appeal(keys.intake).status_code == 201


def test_api_processes_share_out_the_rate_limit():
    """With N API processes each holds 1/N of a key's bucket: together they allow the
    configured rate, not N times it."""
    from refundlens.errors import RateLimited
    from refundlens.web.deps import RateLimiter

    def burst(limiter: RateLimiter) -> int:
        allowed = 0
        for _ in range(100):
            try:
                limiter.check("key")
            except RateLimited as exc:
                rate = limiter.rate
                assert f"{rate} claims a second" in str(exc), exc
                assert f"bursts of {2 * rate}" in str(exc), exc
                return allowed
            allowed += 1
        return allowed

    assert burst(RateLimiter(10)) == 20
    assert [burst(RateLimiter(10, processes=2)) for _ in range(2)] == [10, 10]
    assert burst(RateLimiter(1, processes=4)) == 1  # never below one claim


# --- buyer personal data -----------------------------------------------------------------

PII = {"name": "王小明", "phone": "13912345678", "address": "上海市浦东新区世纪大道100号 8栋"}
PII_KEY = bytes(range(7, 39))


def _all_rows_text(svc: Any) -> str:
    """Every row of every table, as text."""
    chunks = []
    with svc.db.read() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(table.select()).all():
                chunks.append(repr(tuple(row)))
                chunks.append(json.dumps([str(v) for v in row], ensure_ascii=False))
    return "\n".join(chunks)


def _pii_order(client: Any, keys: Any, merchant_id: str, buyer_id: str = "platform-buyer-881"
               ) -> str:
    response = client.post("/api/v1/orders", json={
        "merchant_id": merchant_id, "buyer_id": buyer_id, "amount": "88.00",
        "items": [{"sku": "OJ-1L"}], "buyer": PII}, headers=keys.intake)
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.mark.parametrize("overrides", [{"pii_keys": (base64.b64encode(PII_KEY).decode(),)}])
def test_buyer_pii_is_sealed_at_rest_with_the_configured_key(client, keys, svc, shop,
                                                             database_url):
    order_id = _pii_order(client, keys, shop["merchant_id"])
    claim = _claim(client, keys.intake, order_id, [GOOD], amount="88.00")
    assert claim.status_code == 202, claim.text

    rows = _all_rows_text(svc)
    for secret in (*PII.values(), "platform-buyer-881", "13912345678"[-8:]):
        assert secret not in rows, secret
    if database_url.startswith("sqlite"):
        files = [Path(database_url.removeprefix("sqlite:///"))]
        files += [Path(f"{files[0]}-wal")]
        raw = b"".join(f.read_bytes() for f in files if f.exists())
        assert raw, files
        for secret in (*PII.values(), "platform-buyer-881"):
            assert secret.encode() not in raw, secret
    else:
        with svc.db.read() as session:
            dump = session.execute(text("SELECT buyer_pii::text FROM orders")).scalars().all()
        assert all(v is None or "13912345678" not in v for v in dump)

    with svc.db.read() as session:
        sealed = session.get(Order, order_id).buyer_pii
    assert sealed.startswith(f"v1:{PiiCipher.key_id(PII_KEY)}:")
    # the key from the settings (the environment) opens it, bound to the order
    assert json.loads(PiiCipher(PII_KEY).open(sealed, context=order_id)) == PII
    assert json.loads(svc.cipher.open(sealed, context=order_id)) == PII


def test_buyer_pii_never_appears_in_claims_or_to_non_admins(client, keys, svc, shop):
    order_id = _pii_order(client, keys, shop["merchant_id"])
    claim_id = _claim(client, keys.intake, order_id, [GOOD], amount="88.00").json()["id"]
    merchant = keys.merchant(shop["merchant_id"])
    detail = client.get(f"/api/v1/claims/{claim_id}", headers=keys.admin).json()
    buyer = detail["buyer"]
    views = {
        "detail/admin": detail,
        "detail/reviewer": client.get(f"/api/v1/claims/{claim_id}", headers=keys.reviewer),
        "detail/merchant": client.get(f"/api/v1/claims/{claim_id}", headers=merchant),
        "detail/intake": client.get(f"/api/v1/claims/{claim_id}", headers=keys.intake),
        "list/reviewer": client.get("/api/v1/claims", headers=keys.reviewer),
        "list/merchant": client.get("/api/v1/claims", headers=merchant),
        "history": client.get(f"/api/v1/buyers/{buyer}/history", headers=keys.reviewer),
        "order/reviewer": client.get(f"/api/v1/orders/{order_id}", headers=keys.reviewer),
        "order/merchant": client.get(f"/api/v1/orders/{order_id}", headers=merchant),
        "order/intake": client.get(f"/api/v1/orders/{order_id}", headers=keys.intake),
    }
    for name, view in views.items():
        if not isinstance(view, dict):
            assert view.status_code == 200, (name, view.text)
            view = view.json()
        dumped = json.dumps(view, ensure_ascii=False)
        for secret in (*PII.values(), "platform-buyer-881"):
            assert secret not in dumped, (name, secret)
    assert detail["order"]["buyer"] == buyer


def test_buyer_pseudonyms_are_keyed_and_shared_across_merchants(client, keys, svc, shop,
                                                                settings, tmp_path):
    other = client.post("/api/v1/merchants", json={"name": "Other shop"}, headers=keys.admin)
    order_a = _pii_order(client, keys, shop["merchant_id"], "platform-buyer-42")
    order_b = _pii_order(client, keys, other.json()["id"], "platform-buyer-42")
    order_c = _pii_order(client, keys, shop["merchant_id"], "platform-buyer-43")
    with svc.db.read() as session:
        a, b, c = (session.get(Order, o).buyer for o in (order_a, order_b, order_c))
    assert a == b == svc.pseudonymize("platform-buyer-42")
    assert a.startswith("b_") and len(a) == 34 and "42" not in a[:2]
    assert c != a
    claim_a = _claim(client, keys.intake, order_a, [GOOD], amount="88.00").json()["id"]
    claim_b = _claim(client, keys.intake, order_b, [GOOD_2], amount="88.00").json()["id"]
    history = client.get(f"/api/v1/buyers/{a}/history", headers=keys.reviewer).json()
    assert {x["id"] for x in history["claims"]} == {claim_a, claim_b}
    assert history["merchants"] == 2

    # a deployment with another pseudonym key gives the same buyer another pseudonym
    other_key = base64.b64encode(bytes(range(50, 82))).decode()
    second = open_service(settings.with_(data_dir=tmp_path / "data-2",
                                         pseudonym_key=other_key))
    try:
        order_d = intake.create_order(second, merchant_id=shop["merchant_id"],
                                      buyer_id="platform-buyer-42", amount="1.00",
                                      actor="test")
        assert order_d.buyer == Pseudonymizer(base64.b64decode(other_key))("platform-buyer-42")
        assert order_d.buyer != a
    finally:
        second.close()


@pytest.mark.parametrize("overrides", [{"pseudonym_key": bytes(range(32)).hex()}])
def test_the_pseudonym_key_comes_from_the_settings(client, keys, svc, shop):
    order_id = _pii_order(client, keys, shop["merchant_id"], "platform-buyer-42")
    with svc.db.read() as session:
        buyer = session.get(Order, order_id).buyer
    assert buyer == Pseudonymizer(bytes(range(32)))("platform-buyer-42")
    assert buyer != Pseudonymizer(bytes(range(1, 33)))("platform-buyer-42")
