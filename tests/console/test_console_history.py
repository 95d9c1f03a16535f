"""The buyer history on the console's claim page, on both databases: counted over every
claim of the buyer (the list shows the newest 50), and the claims filed after this one —
which its route did not count — marked as such."""

from __future__ import annotations

from datetime import timedelta

from conftest import jpeg, textured_rgb
from refundlens.claims.access import create_user
from refundlens.store.tables import Claim
from console_support import PASSWORD, sign_in


def test_the_claim_page_counts_every_claim_and_marks_those_filed_after_it(
        svc, client, keys, run_analysis_jobs):
    merchant = client.post("/api/v1/merchants", json={"name": "甲店"}, headers=keys.admin)
    merchant_id = merchant.json()["id"]
    claims = []
    for seed in (61, 62, 63):
        order = client.post("/api/v1/orders", json={
            "merchant_id": merchant_id, "buyer_id": "buyer-42", "amount": "129.00",
            "delivered_at": "2026-11-03T10:00:00+08:00"}, headers=keys.intake)
        claim = client.post("/api/v1/claims", data={
            "order_id": order.json()["id"], "type": "refund_only", "reason": "破损",
            "amount": "129.00"}, files=[("photos", (
                "p.jpg", jpeg(textured_rgb(640, 480, seed=seed), 88), "image/jpeg"))],
            headers=keys.intake)
        assert claim.status_code == 202, claim.text
        claims.append(claim.json()["id"])
    run_analysis_jobs()
    with svc.db.write() as session:
        first = session.get(Claim, claims[0])
        # 50 older, decided claims of the same buyer: more than the page lists
        session.add_all(Claim(id=f"clm_old{i:02d}", order_id=first.order_id,
                              merchant_id=merchant_id, buyer=first.buyer, type="refund_only",
                              amount_cents=1000, status="approved",
                              created_at=first.created_at - timedelta(days=1 + i))
                        for i in range(50))
    create_user(svc, username="rev", password=PASSWORD, role="reviewer")
    assert sign_in(client, "rev").status_code == 303

    page = client.get(f"/console/claims/{claims[0]}?lang=en").text
    assert "53 claims with 1 merchants" in page
    assert "The newest 50 are listed." in page
    assert "approved 50" in page  # outcomes over every claim, not the 50 listed
    assert page.count("filed after this claim, not counted in its route") == 2
    last = client.get(f"/console/claims/{claims[2]}?lang=en").text
    assert "filed after this claim" not in last
    assert "在本申请之后提交" in client.get(f"/console/claims/{claims[0]}?lang=zh").text
