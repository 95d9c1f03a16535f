"""The API contract of issue 3 §8, end to end on both databases: merchant, product,
reference photo, order, claim with photos → 202; the analysis job runs; the claim detail
has a status, a route, a risk and each photo's findings."""

from __future__ import annotations

from typing import Any


from conftest import jpeg, painted_crack, textured_rgb


def setup_catalog(client: Any, keys: Any, reference: bytes) -> dict[str, str]:
    merchant = client.post("/api/v1/merchants", json={"name": "橙子旗舰店"},
                           headers=keys.admin)
    assert merchant.status_code == 201, merchant.text
    merchant_id = merchant.json()["id"]
    product = client.post(f"/api/v1/merchants/{merchant_id}/products",
                          json={"sku": "OJ-1L", "name": "Orange juice"}, headers=keys.admin)
    assert product.status_code == 201, product.text
    ref = client.post(f"/api/v1/products/{product.json()['id']}/references",
                      files={"file": ("listing.jpg", reference, "image/jpeg")},
                      headers=keys.admin)
    assert ref.status_code == 201, ref.text
    order = client.post("/api/v1/orders", json={
        "merchant_id": merchant_id, "buyer_id": "buyer-42", "amount": "129.00",
        "items": [{"sku": "OJ-1L", "quantity": 1}], "shipped_at": "2026-11-01T10:00:00+08:00",
        "delivered_at": "2026-11-03T10:00:00+08:00"}, headers=keys.intake)
    assert order.status_code == 201, order.text
    return {"merchant_id": merchant_id, "product_id": product.json()["id"],
            "order_id": order.json()["id"]}


def file_claim(client: Any, keys: Any, order_id: str, photos: list[bytes],
               **headers: str) -> Any:
    return client.post("/api/v1/claims", data={
        "order_id": order_id, "type": "refund_only", "reason": "瓶身破裂", "amount": "129.00"},
        files=[("photos", (f"p{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)],
        headers={**keys.intake, **headers})


def test_forged_claim_is_routed_to_review_with_the_reference_finding(client, keys, run_jobs):
    reference = textured_rgb(800, 600, seed=3)
    ids = setup_catalog(client, keys, jpeg(reference, 92))
    response = file_claim(client, keys, ids["order_id"], [jpeg(painted_crack(reference), 90)])
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "submitted" and body["id"].startswith("clm_")

    detail = client.get(f"/api/v1/claims/{body['id']}", headers=keys.reviewer).json()
    assert detail["status"] == "submitted" and detail["route"] is None

    assert run_jobs() >= 1
    detail = client.get(f"/api/v1/claims/{body['id']}", headers=keys.reviewer).json()
    assert detail["status"] == "in_review"
    assert detail["route"] == "in_review"
    assert detail["risk"]["level"] == "high" and detail["risk"]["score"] >= 70
    codes = {f["code"] for f in detail["photos"][0]["findings"]}
    assert "REFERENCE_ALTERED" in codes
    assert detail["photos"][0]["matched_reference"]["kind"] == "listing"
    assert detail["deadlines"]["review_due_at"] is not None
    assert detail["route_reasons"] and detail["route_reasons"][0]["message_zh"]
    actions = [e["action"] for e in detail["timeline"]]
    assert actions[:1] == ["claim_submitted"] and "analysis_completed" in actions


def test_a_genuine_photo_is_not_sent_to_review(client, keys, run_jobs):
    ids = setup_catalog(client, keys, jpeg(textured_rgb(800, 600, seed=3), 92))
    response = file_claim(client, keys, ids["order_id"],
                          [jpeg(textured_rgb(800, 600, seed=11), 88)])
    run_jobs()
    detail = client.get(f"/api/v1/claims/{response.json()['id']}", headers=keys.admin).json()
    assert detail["risk"]["level"] == "low", detail["photos"][0]["findings"]
    assert detail["route"] in ("auto_approved", "evidence_requested")
    assert detail["status"] == detail["route"]


def test_health_needs_no_key(client):
    assert client.get("/api/v1/health").json()["status"] == "ok"


def test_catalog_and_order_read_back(client, keys):
    ids = setup_catalog(client, keys, jpeg(textured_rgb(320, 240, seed=5), 90))
    merchant = client.get(f"/api/v1/merchants/{ids['merchant_id']}", headers=keys.admin).json()
    assert merchant["name"] == "橙子旗舰店"
    assert merchant["products"][0]["sku"] == "OJ-1L"
    assert len(merchant["products"][0]["references"]) == 1
    order = client.get(f"/api/v1/orders/{ids['order_id']}", headers=keys.reviewer).json()
    assert order["amount"] == "129.00" and order["buyer"].startswith("b_")
    assert "buyer_pii" not in order
    other = client.post("/api/v1/merchants", json={"name": "other"}, headers=keys.admin).json()
    assert client.get(f"/api/v1/orders/{ids['order_id']}",
                      headers=keys.merchant(other["id"])).status_code == 404


def test_the_evidence_report_pdf_is_served(client, keys, run_jobs):
    reference = textured_rgb(640, 480, seed=3)
    ids = setup_catalog(client, keys, jpeg(reference, 92))
    claim = file_claim(client, keys, ids["order_id"], [jpeg(painted_crack(reference), 90)]).json()
    run_jobs()
    pdf = client.get(f"/api/v1/claims/{claim['id']}/report.pdf?lang=en", headers=keys.reviewer)
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content[:5] == b"%PDF-"
    bad = client.get(f"/api/v1/claims/{claim['id']}/report.pdf?lang=fr", headers=keys.reviewer)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "lang"
    other = client.post("/api/v1/merchants", json={"name": "x"}, headers=keys.admin).json()
    assert client.get(f"/api/v1/claims/{claim['id']}/report.pdf",
                      headers=keys.merchant(other["id"])).status_code == 404


def test_a_merchant_sees_reuse_but_not_another_merchants_claim(client, keys, run_jobs):
    photo = jpeg(textured_rgb(640, 480, seed=21), 90)
    first = setup_catalog(client, keys, jpeg(textured_rgb(640, 480, seed=4), 92))
    second = setup_catalog(client, keys, jpeg(textured_rgb(640, 480, seed=5), 92))
    one = file_claim(client, keys, first["order_id"], [photo]).json()
    run_jobs()
    two = file_claim(client, keys, second["order_id"], [photo]).json()
    run_jobs()

    def reuse(headers: dict[str, str]) -> dict[str, Any]:
        detail = client.get(f"/api/v1/claims/{two['id']}", headers=headers).json()
        return next(f for f in detail["photos"][0]["findings"] if f["code"] == "REUSED_PHOTO")

    assert reuse(keys.reviewer)["details"]["other_meta"]["claim_id"] == one["id"]
    seen = client.get(f"/api/v1/claims/{two['id']}",
                      headers=keys.merchant(second["merchant_id"])).text
    assert "REUSED_PHOTO" in seen and one["id"] not in seen
    assert first["merchant_id"] not in seen
