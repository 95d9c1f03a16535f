"""Issue 3 §5: who may call the API and what each role may see and do, on both databases.

Authentication (401 with the JSON error shape and ``WWW-Authenticate``), key revocation and
rotation with a grace period, role checks (403), and merchant isolation: another
merchant's claims, photos and catalogue answer exactly like things that do not exist
(404), so ids are never confirmed."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from conftest import jpeg, textured_rgb
from refundlens.claims import access
from refundlens.store.tables import ApiKey, utcnow


def _error(response: Any, status: int, code: str, field: str | None = "any") -> dict[str, Any]:
    """Assert the one JSON error shape; returns the error object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "field"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    if field != "any":
        assert error["field"] == field, error
    return error


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _shop(client: Any, keys: Any, name: str, seed: int) -> dict[str, Any]:
    """A merchant with a product, a reference photo, an order and one claim."""
    merchant = client.post("/api/v1/merchants", json={"name": name}, headers=keys.admin)
    assert merchant.status_code == 201, merchant.text
    merchant_id = merchant.json()["id"]
    product = client.post(f"/api/v1/merchants/{merchant_id}/products",
                          json={"sku": f"SKU-{seed}", "name": name}, headers=keys.admin)
    assert product.status_code == 201, product.text
    reference = jpeg(textured_rgb(320, 240, seed=seed), 92)
    ref = client.post(f"/api/v1/products/{product.json()['id']}/references",
                      files={"file": ("listing.jpg", reference, "image/jpeg")},
                      headers=keys.admin)
    assert ref.status_code == 201, ref.text
    order = client.post("/api/v1/orders", json={
        "merchant_id": merchant_id, "buyer_id": f"buyer-{seed}", "amount": "99.00",
        "items": [{"sku": f"SKU-{seed}"}]}, headers=keys.intake)
    assert order.status_code == 201, order.text
    photo = jpeg(textured_rgb(320, 240, seed=seed + 1000), 88)
    claim = client.post("/api/v1/claims", data={
        "order_id": order.json()["id"], "type": "refund_only", "reason": "broken",
        "amount": "99.00"}, files=[("photos", ("p.jpg", photo, "image/jpeg"))],
        headers=keys.intake)
    assert claim.status_code == 202, claim.text
    return {"merchant_id": merchant_id, "product_id": product.json()["id"],
            "order_id": order.json()["id"], "claim_id": claim.json()["id"],
            "reference_sha": hashlib.sha256(reference).hexdigest(),
            "photo_sha": hashlib.sha256(photo).hexdigest(),
            "key": keys.merchant(merchant_id)}


@pytest.fixture
def shops(client: Any, keys: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return _shop(client, keys, "Shop A", 1), _shop(client, keys, "Shop B", 2)


# --- authentication ----------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", "/api/v1/claims"), ("POST", "/api/v1/claims"), ("GET", "/api/v1/claims/clm_x"),
    ("POST", "/api/v1/merchants"), ("POST", "/api/v1/orders"), ("GET", "/api/v1/queue"),
    ("POST", "/api/v1/keys"), ("GET", "/api/v1/blobs/" + "0" * 64),
    ("POST", "/api/v1/claims/clm_x/decision"), ("GET", "/api/v1/audit/verify"),
])
def test_a_missing_key_is_401_with_the_error_shape_and_www_authenticate(client, method, path):
    response = client.request(method, path)
    error = _error(response, 401, "unauthorized", field=None)
    assert "Authorization: Bearer" in error["message"]
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", [
    "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer-rl_key_secret", "Token rl_key_secret",
    "Bearer garbage", "Bearer rl_", "Bearer rl_keyid", "Bearer rl_key000000000000_secret",
    "Bearer xx_key000000000000_secret",
])
def test_malformed_or_unknown_keys_are_401(client, header):
    response = client.get("/api/v1/claims", headers={"Authorization": header})
    _error(response, 401, "unauthorized", field=None)
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_known_key_id_with_the_wrong_secret_is_401(client, svc):
    row, token = access.create_key(svc, role="admin")
    assert client.get("/api/v1/claims", headers=_bearer(token)).status_code == 200
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    _error(client.get("/api/v1/claims", headers=_bearer(wrong)), 401, "unauthorized")
    # another key's secret under this key's id
    _, other = access.create_key(svc, role="admin")
    swapped = f"rl_{row.id}_{other.split('_', 2)[2]}"
    _error(client.get("/api/v1/claims", headers=_bearer(swapped)), 401, "unauthorized")


def test_a_revoked_key_is_401_at_once(client, svc, keys):
    """Revoked outside this app, as ``refundlens keys revoke`` does from another process:
    the key worked a moment ago, and the very next request is refused (the app reads the
    key on every request; test_service_cli runs this against a real ``serve``)."""
    row, token = access.create_key(svc, role="reviewer")
    for _ in range(3):
        assert client.get("/api/v1/claims", headers=_bearer(token)).status_code == 200
    access.revoke_key(svc, row.id)
    _error(client.get("/api/v1/claims", headers=_bearer(token)), 401, "unauthorized")


def test_a_key_revoked_through_the_api_stops_working_at_once(client, svc, keys):
    """The key was just used: revoking it through this app takes effect on the next
    request."""
    made = client.post("/api/v1/keys", json={"role": "reviewer"}, headers=keys.admin)
    assert made.status_code == 201, made.text
    token, key_id = made.json()["key"], made.json()["id"]
    assert client.get("/api/v1/claims", headers=_bearer(token)).status_code == 200
    revoked = client.delete(f"/api/v1/keys/{key_id}", headers=keys.admin)
    assert revoked.status_code == 204, revoked.text
    _error(client.get("/api/v1/claims", headers=_bearer(token)), 401, "unauthorized")
    # and a revoked key cannot be rotated into a fresh one
    _error(client.post(f"/api/v1/keys/{key_id}/rotate", headers=keys.admin), 404, "not_found",
           field="key_id")


def test_an_expired_key_is_401(client, svc):
    _, token = access.create_key(svc, role="reviewer", expires_in=timedelta(seconds=-1))
    _error(client.get("/api/v1/claims", headers=_bearer(token)), 401, "unauthorized")


def test_a_rotated_key_works_until_its_grace_ends_and_its_successor_works(client, svc):
    """Rotated outside this app (as the CLI does): the app learns the grace end when it
    reads the key, which it does on every request, so it never honours the key past it."""
    old_row, old_token = access.create_key(svc, role="reviewer")
    new_row, new_token = access.rotate_key(svc, old_row.id, grace=timedelta(seconds=1.5))
    assert new_row.replaces == old_row.id and new_row.role == "reviewer"
    assert client.get("/api/v1/claims", headers=_bearer(new_token)).status_code == 200
    assert client.get("/api/v1/claims", headers=_bearer(old_token)).status_code == 200
    time.sleep(1.7)
    # the grace has ended although the old key was used a moment ago
    _error(client.get("/api/v1/claims", headers=_bearer(old_token)), 401, "unauthorized")
    assert client.get("/api/v1/claims", headers=_bearer(new_token)).status_code == 200


def test_a_grace_ended_in_the_database_ends_the_old_key(client, svc):
    old_row, old_token = access.create_key(svc, role="intake")
    _, new_token = access.rotate_key(svc, old_row.id)
    with svc.db.write() as session:
        session.execute(update(ApiKey).where(ApiKey.id == old_row.id)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    _error(client.get("/api/v1/claims", headers=_bearer(old_token)), 401, "unauthorized")
    assert client.get("/api/v1/claims", headers=_bearer(new_token)).status_code == 200


def test_rotation_through_the_api_keeps_the_role_and_merchant(client, keys, shops):
    a, _ = shops
    made = client.post("/api/v1/keys", json={"role": "merchant", "merchant_id": a["merchant_id"]},
                       headers=keys.admin)
    assert made.status_code == 201, made.text
    rotated = client.post(f"/api/v1/keys/{made.json()['id']}/rotate", headers=keys.admin)
    assert rotated.status_code == 201, rotated.text
    assert rotated.json()["replaces"] == made.json()["id"]
    assert rotated.json()["key"] != made.json()["key"]
    successor = _bearer(rotated.json()["key"])
    listed = client.get("/api/v1/claims", headers=successor).json()["claims"]
    assert {c["merchant_id"] for c in listed} == {a["merchant_id"]}
    # the old key is still in its grace period
    assert client.get("/api/v1/claims", headers=_bearer(made.json()["key"])).status_code == 200


def test_health_needs_no_key(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


# --- roles -------------------------------------------------------------------------------

def test_an_intake_key_cannot_decide_or_manage(client, keys, shops):
    a, _ = shops
    claim = a["claim_id"]
    _error(client.post(f"/api/v1/claims/{claim}/decision", json={"outcome": "approved"},
                       headers=keys.intake), 403, "forbidden")
    _error(client.post(f"/api/v1/claims/{claim}/decision",
                       json={"outcome": "rejected", "reason": "forged"},
                       headers=keys.intake), 403, "forbidden")
    _error(client.post("/api/v1/keys", json={"role": "admin"}, headers=keys.intake),
           403, "forbidden")
    _error(client.post("/api/v1/keys", json={"role": "intake"}, headers=keys.intake),
           403, "forbidden")
    _error(client.post(f"/api/v1/claims/{claim}/evidence-requests", json={},
                       headers=keys.intake), 403, "forbidden")
    _error(client.post(f"/api/v1/claims/{claim}/escalate", json={}, headers=keys.intake),
           403, "forbidden")
    _error(client.get("/api/v1/queue", headers=keys.intake), 403, "forbidden")
    _error(client.get("/api/v1/audit/verify", headers=keys.intake), 403, "forbidden")
    detail = client.get(f"/api/v1/claims/{claim}", headers=keys.admin).json()
    assert detail["decisions"] == [] and detail["status"] == "submitted"


def test_a_reviewer_cannot_create_claims_or_keys(client, keys, shops):
    a, _ = shops
    photo = jpeg(textured_rgb(64, 48, seed=5))
    response = client.post("/api/v1/claims", data={
        "order_id": a["order_id"], "type": "refund_only", "amount": "1.00"},
        files=[("photos", ("p.jpg", photo, "image/jpeg"))], headers=keys.reviewer)
    error = _error(response, 403, "forbidden")
    assert "reviewer" in error["message"]
    _error(client.post("/api/v1/keys", json={"role": "admin"}, headers=keys.reviewer),
           403, "forbidden")
    assert client.get("/api/v1/claims", headers=keys.admin).json()["total"] == 2


def test_a_merchant_cannot_create_claims_decide_or_create_keys(client, keys, shops):
    a, _ = shops
    photo = jpeg(textured_rgb(64, 48, seed=5))
    _error(client.post("/api/v1/claims", data={
        "order_id": a["order_id"], "type": "refund_only", "amount": "1.00"},
        files=[("photos", ("p.jpg", photo, "image/jpeg"))], headers=a["key"]),
        403, "forbidden")
    # not even on its own claim
    _error(client.post(f"/api/v1/claims/{a['claim_id']}/decision",
                       json={"outcome": "approved"}, headers=a["key"]), 403, "forbidden")
    _error(client.post("/api/v1/keys", json={"role": "merchant",
                                             "merchant_id": a["merchant_id"]},
                       headers=a["key"]), 403, "forbidden")
    _error(client.get("/api/v1/queue", headers=a["key"]), 403, "forbidden")
    detail = client.get(f"/api/v1/claims/{a['claim_id']}", headers=keys.admin).json()
    assert detail["decisions"] == [] and detail["status"] == "submitted"


def test_buyer_history_is_for_reviewers_only(client, keys, shops):
    a, _ = shops
    buyer = client.get(f"/api/v1/claims/{a['claim_id']}", headers=keys.admin).json()["buyer"]
    assert client.get(f"/api/v1/buyers/{buyer}/history", headers=keys.reviewer
                      ).status_code == 200
    _error(client.get(f"/api/v1/buyers/{buyer}/history", headers=a["key"]), 403, "forbidden")
    _error(client.get(f"/api/v1/buyers/{buyer}/history", headers=keys.intake), 403,
           "forbidden")


# --- merchant isolation ------------------------------------------------------------------

def test_a_merchant_sees_its_own_claim(client, shops):
    a, _ = shops
    response = client.get(f"/api/v1/claims/{a['claim_id']}", headers=a["key"])
    assert response.status_code == 200, response.text
    assert response.json()["merchant_id"] == a["merchant_id"]


def test_another_merchants_claim_is_404_like_a_nonexistent_one(client, shops):
    a, b = shops
    foreign = client.get(f"/api/v1/claims/{b['claim_id']}", headers=a["key"])
    missing = client.get("/api/v1/claims/clm_00000000000000000000", headers=a["key"])
    f_error = _error(foreign, 404, "not_found", field="claim_id")
    m_error = _error(missing, 404, "not_found", field="claim_id")
    assert f_error["message"].replace(b["claim_id"], "ID") == \
        m_error["message"].replace("clm_00000000000000000000", "ID")
    _error(client.get(f"/api/v1/claims/{b['claim_id']}/report.pdf", headers=a["key"]),
           404, "not_found", field="claim_id")


def test_a_merchant_cannot_respond_to_or_appeal_another_merchants_claim(client, keys, shops):
    a, b = shops
    photo = jpeg(textured_rgb(64, 48, seed=7))
    _error(client.post(f"/api/v1/claims/{b['claim_id']}/responses", data={"text": "fake"},
                       files=[("files", ("r.jpg", photo, "image/jpeg"))], headers=a["key"]),
           404, "not_found", field="claim_id")
    decided = client.post(f"/api/v1/claims/{b['claim_id']}/decision",
                          json={"outcome": "approved"}, headers=keys.reviewer)
    assert decided.status_code == 201, decided.text
    _error(client.post(f"/api/v1/claims/{b['claim_id']}/appeals", json={"reason": "no"},
                       headers=a["key"]), 404, "not_found", field="claim_id")
    detail = client.get(f"/api/v1/claims/{b['claim_id']}", headers=keys.admin).json()
    assert detail["status"] == "approved"
    assert detail["merchant_responses"] == [] and detail["appeals"] == []
    # nothing of the refused response was kept
    assert hashlib.sha256(photo).hexdigest() not in {
        f["sha256"] for r in detail["merchant_responses"] for f in r["files"]}
    # its own claim it may answer
    own = client.post(f"/api/v1/claims/{a['claim_id']}/responses", data={"text": "we packed it"},
                      headers=a["key"])
    assert own.status_code == 201, own.text


def test_a_merchants_claim_list_shows_only_its_own(client, keys, shops):
    a, b = shops
    for query in ("", f"?merchant_id={b['merchant_id']}", "?status=submitted"):
        listed = client.get(f"/api/v1/claims{query}", headers=a["key"])
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert [c["id"] for c in body["claims"]] == [a["claim_id"]], query
        assert body["total"] == 1 and sum(body["counts"].values()) == 1
    assert client.get("/api/v1/claims", headers=keys.reviewer).json()["total"] == 2


def test_a_merchant_cannot_fetch_another_merchants_blobs(client, shops):
    a, b = shops
    own = client.get(f"/api/v1/blobs/{a['photo_sha']}", headers=a["key"])
    assert own.status_code == 200 and own.headers["content-type"] == "image/jpeg"
    assert client.get(f"/api/v1/blobs/{a['reference_sha']}", headers=a["key"]
                      ).status_code == 200
    for sha in (b["photo_sha"], b["reference_sha"]):
        foreign = _error(client.get(f"/api/v1/blobs/{sha}", headers=a["key"]), 404,
                         "not_found", field="sha256")
        missing = _error(client.get(f"/api/v1/blobs/{'f' * 64}", headers=a["key"]), 404,
                         "not_found", field="sha256")
        assert foreign["message"].replace(sha, "X") == missing["message"].replace("f" * 64, "X")
    _error(client.get("/api/v1/blobs/not-a-sha", headers=a["key"]), 404, "not_found",
           field="sha256")


def test_a_merchant_cannot_touch_another_merchants_catalogue(client, shops):
    a, b = shops
    photo = jpeg(textured_rgb(64, 48, seed=9))
    _error(client.post(f"/api/v1/merchants/{b['merchant_id']}/products",
                       json={"sku": "X-1", "name": "x"}, headers=a["key"]),
           404, "not_found", field="merchant_id")
    _error(client.post(f"/api/v1/products/{b['product_id']}/references",
                       files={"file": ("r.jpg", photo, "image/jpeg")}, headers=a["key"]),
           404, "not_found", field="product_id")
    _error(client.post(f"/api/v1/orders/{b['order_id']}/shipping-evidence",
                       files={"file": ("s.jpg", photo, "image/jpeg")}, headers=a["key"]),
           404, "not_found", field="order_id")
    _error(client.post("/api/v1/orders", json={"merchant_id": b["merchant_id"],
                                               "buyer_id": "x", "amount": "1.00"},
                       headers=a["key"]), 404, "not_found", field="merchant_id")
    # nor read it
    _error(client.get(f"/api/v1/merchants/{b['merchant_id']}", headers=a["key"]),
           404, "not_found", field="merchant_id")
    _error(client.get(f"/api/v1/products/{b['product_id']}", headers=a["key"]),
           404, "not_found", field="product_id")
    _error(client.get(f"/api/v1/orders/{b['order_id']}", headers=a["key"]),
           404, "not_found", field="order_id")
    assert client.get(f"/api/v1/orders/{a['order_id']}", headers=a["key"]).status_code == 200

