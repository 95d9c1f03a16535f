"""Buyer history (issue 3, §2 and §4) on both databases: what routing counts — only the
buyer's claims filed before the routed one, whatever the order analyses finish in — and
``GET /api/v1/buyers/{buyer}/history`` by pseudonym or by the platform's raw id, with
outcomes over every claim while the listed claims are paged."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from conftest import jpeg, textured_rgb
from refundlens.claims.workflow import buyer_history
from refundlens.store.tables import Claim
from test_workflow import REFERENCE, add_merchant, add_order, detail, file_claim, reason_codes


def genuine(seed: int) -> bytes:
    """A photo of nothing the merchant listed: low risk, auto-approved when history allows."""
    return jpeg(textured_rgb(800, 600, seed=seed), 88)


def reason(body: dict[str, Any], code: str) -> dict[str, Any]:
    [found] = [r for r in body["route_reasons"] if r["code"] == code]
    return found


# --- what routing counts -------------------------------------------------------------------

def test_a_claim_filed_later_never_counts_in_an_earlier_claims_route(client, keys, svc,
                                                                     run_jobs):
    # no earlier claim allowed: the second claim needs evidence, the first does not —
    # even though both are analysed after both were filed
    svc.policy = dataclasses.replace(svc.policy, max_prior_claims=0)
    merchant_id = add_merchant(client, keys, jpeg(REFERENCE, 92))
    first = file_claim(client, keys, add_order(client, keys, merchant_id), [genuine(21)])
    second = file_claim(client, keys, add_order(client, keys, merchant_id), [genuine(22)])
    run_jobs()

    body = detail(client, keys, first)
    assert body["status"] == "auto_approved", body["route_reasons"]
    clean = reason(body, "ROUTE_HISTORY_CLEAN")
    assert clean["params"] == {"window_days": 180, "claims": 0, "rejected": 0,
                               "reused_photos": 0, "open_claims": 0}
    assert "before this claim" in clean["message_en"] and "本申请之前" in clean["message_zh"]

    body = detail(client, keys, second)
    assert body["status"] == "evidence_requested", body["route_reasons"]
    prior = reason(body, "ROUTE_HISTORY_PRIOR_CLAIMS")
    assert prior["params"]["count"] == 1 and prior["params"]["limit"] == 0
    assert "before this one" in prior["message_en"]


def test_history_window_ends_at_the_claim_and_ties_go_by_id(client, keys, svc):
    merchant_id = add_merchant(client, keys, jpeg(REFERENCE, 92))
    ids = [file_claim(client, keys, add_order(client, keys, merchant_id), [genuine(30 + i)])
           for i in range(4)]
    old, *same, later = ids
    low, high = sorted(same)
    with svc.db.write() as session:
        filed = session.get(Claim, low).created_at
        # one just outside the window, two filed on the same instant, one a second later
        for claim_id, when in ((old, filed - timedelta(days=180, seconds=1)),
                               (low, filed), (high, filed),
                               (later, filed + timedelta(seconds=1))):
            session.execute(update(Claim).where(Claim.id == claim_id).values(created_at=when))
    with svc.db.read() as session:
        claims = {c.id: c for c in session.execute(select(Claim).where(
            Claim.id.in_(ids))).scalars()}
        history = {claim_id: buyer_history(session, claim, window_days=180)
                   for claim_id, claim in claims.items()}
    assert history[old].claims_in_window == 0
    assert history[low].claims_in_window == 0  # outside the window, or filed after it
    assert history[high].claims_in_window == 1 and history[high].open_claims == 1
    assert history[later].claims_in_window == 2 and history[later].open_claims == 2


def test_reused_photos_and_rejections_of_earlier_claims_block_auto_approval(client, keys,
                                                                          run_jobs):
    merchant_id = add_merchant(client, keys, jpeg(REFERENCE, 92))
    photo = genuine(40)
    file_claim(client, keys, add_order(client, keys, merchant_id), [photo])
    run_jobs()
    reused = file_claim(client, keys, add_order(client, keys, merchant_id), [photo])
    run_jobs()
    assert "REUSED_PHOTO" in {f["code"] for f in detail(client, keys, reused)["photos"][0]
                              ["findings"]}
    assert client.post(f"/api/v1/claims/{reused}/decision", json={
        "outcome": "rejected", "reason": "同一照片已用于另一申请"},
        headers=keys.reviewer).status_code == 201
    fresh = file_claim(client, keys, add_order(client, keys, merchant_id), [genuine(41)])
    run_jobs()

    body = detail(client, keys, fresh)
    assert body["risk"]["level"] == "low" and body["status"] == "evidence_requested"
    assert {"ROUTE_HISTORY_REUSED_PHOTOS", "ROUTE_HISTORY_REJECTED"} <= set(reason_codes(body))
    assert reason(body, "ROUTE_HISTORY_REUSED_PHOTOS")["params"]["count"] == 1
    assert reason(body, "ROUTE_HISTORY_REJECTED")["params"]["count"] == 1
    assert "ROUTE_HISTORY_OPEN_CLAIMS" not in reason_codes(body)
    assert "buyer-42" not in json.dumps(body, ensure_ascii=False)


# --- GET /api/v1/buyers/{buyer}/history ----------------------------------------------------

def history(client: Any, keys: Any, buyer: str, **params: Any) -> Any:
    return client.get(f"/api/v1/buyers/{buyer}/history", params=params, headers=keys.reviewer)


def test_history_by_raw_id_or_pseudonym_counts_every_claim_and_pages_the_list(
        client, keys, run_jobs):
    first = add_merchant(client, keys, jpeg(REFERENCE, 92), name="A 店")
    second = add_merchant(client, keys, jpeg(textured_rgb(800, 600, seed=5), 92),
                          name="B 店", sku="TEA-1")
    photo = genuine(50)
    filed = []
    for merchant_id, sku, photos in ((first, "OJ-1L", [photo]), (second, "TEA-1", [photo]),
                                     (first, "OJ-1L", [genuine(51)])):
        filed.append(file_claim(client, keys, add_order(client, keys, merchant_id, sku=sku),
                                photos))
        run_jobs()
    other = file_claim(client, keys, add_order(client, keys, first, buyer="buyer-7"),
                       [genuine(52)])
    run_jobs()
    pseudonym = detail(client, keys, filed[0])["buyer"]
    statuses = [detail(client, keys, c)["status"] for c in filed]

    by_raw = history(client, keys, "buyer-42", limit=1)
    assert by_raw.status_code == 200, by_raw.text
    assert "buyer-42" not in by_raw.text
    body = by_raw.json()
    assert body["buyer"] == pseudonym
    assert (body["total"], body["limit"], body["offset"]) == (3, 1, 0)
    assert [c["id"] for c in body["claims"]] == [filed[2]]  # newest first, one listed
    # outcomes, merchants and reused photos count all three claims, not the one listed
    expected: dict[str, int] = {}
    for status in statuses:
        expected[status] = expected.get(status, 0) + 1
    assert body["outcomes"] == expected and body["merchants"] == 2
    assert [r["claim_id"] for r in body["reused_photos"]] == [filed[1]]

    # the pseudonym, or the raw id with the spaces intake trims, is the same buyer
    assert history(client, keys, pseudonym, limit=1).json() == body
    assert history(client, keys, " buyer-42 ", limit=1).json() == body
    page = history(client, keys, "buyer-42", limit=2, offset=1).json()
    assert [c["id"] for c in page["claims"]] == [filed[1], filed[0]]
    assert page["outcomes"] == expected
    assert [c["id"] for c in history(client, keys, "buyer-7").json()["claims"]] == [other]
    # a buyer with no claims, by raw id, is answered by pseudonym only
    nobody = history(client, keys, "buyer-999").json()
    assert nobody["total"] == 0 and nobody["buyer"].startswith("b_")
    assert "buyer-999" not in json.dumps(nobody)


def test_history_refuses_a_bad_page_or_buyer_naming_what_is_accepted(client, keys):
    for params, field, accepted in (({"limit": 0}, "limit", "1–500"),
                                    ({"limit": 501}, "limit", "1–500"),
                                    ({"offset": -1}, "offset", "≥ 0")):
        response = history(client, keys, "buyer-42", **params)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == field and accepted in error["message"]
    long_id = "x" * 201
    response = history(client, keys, long_id)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "buyer" and "the limit is 200" in error["message"]
    assert long_id not in response.text
