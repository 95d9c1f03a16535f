"""The audit chain (issue 3 §6) on both databases: every state change of a real flow is an
event, the chain verifies, and tampering done directly in the database — an edited event,
one deleted in the middle, a forged one inserted, the last ones deleted — is named by
:func:`verify_chain` at the first bad event with its kind. Concurrent appenders never fork
the chain."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, update

from conftest import jpeg, textured_rgb
from refundlens.claims.audit import GENESIS, append_event, event_hash, verify_chain
from refundlens.claims.workflow import add_note
from refundlens.store.tables import AuditEvent, AuditHead, Claim


def verify(svc: Any) -> Any:
    with svc.db.read() as session:
        return verify_chain(session)


def events(svc: Any) -> list[AuditEvent]:
    with svc.db.read() as session:
        return list(session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())


def catalog_and_claim(client: Any, keys: Any) -> dict[str, str]:
    """A merchant, a product with its listing photo, an order and a claim (not analysed):
    a dozen events to tamper with."""
    merchant = client.post("/api/v1/merchants", json={"name": "审计店"}, headers=keys.admin)
    merchant_id = merchant.json()["id"]
    product = client.post(f"/api/v1/merchants/{merchant_id}/products",
                          json={"sku": "A-1", "name": "Lamp"}, headers=keys.admin).json()
    client.post(f"/api/v1/products/{product['id']}/references",
                files={"file": ("ref.jpg", jpeg(textured_rgb(320, 240, seed=2)), "image/jpeg")},
                headers=keys.admin)
    order = client.post("/api/v1/orders", json={
        "merchant_id": merchant_id, "buyer_id": "b-1", "amount": "80.00",
        "items": [{"sku": "A-1"}]}, headers=keys.intake).json()
    claim = client.post("/api/v1/claims", data={
        "order_id": order["id"], "type": "refund_only", "reason": "灯罩裂了", "amount": "80.00"},
        files=[("photos", ("p.jpg", jpeg(textured_rgb(320, 240, seed=4)), "image/jpeg"))],
        headers=keys.intake)
    assert claim.status_code == 202, claim.text
    claim_id = claim.json()["id"]
    for text in ("第一条", "第二条", "第三条"):
        assert client.post(f"/api/v1/claims/{claim_id}/notes", json={"text": text},
                           headers=keys.reviewer).status_code == 201
    return {"merchant_id": merchant_id, "claim_id": claim_id}


# --- a real flow ---------------------------------------------------------------------------

def test_every_state_change_of_a_flow_is_an_event_and_the_chain_verifies(client, keys, svc,
                                                                         run_jobs):
    merchant = client.post("/api/v1/merchants", json={"name": "审计店"}, headers=keys.admin)
    merchant_id = merchant.json()["id"]
    product = client.post(f"/api/v1/merchants/{merchant_id}/products",
                          json={"sku": "A-1", "name": "Lamp"}, headers=keys.admin).json()
    client.post(f"/api/v1/products/{product['id']}/references",
                files={"file": ("ref.jpg", jpeg(textured_rgb(800, 600, seed=3), 92),
                                "image/jpeg")}, headers=keys.admin)
    order = client.post("/api/v1/orders", json={
        "merchant_id": merchant_id, "buyer_id": "b-1", "amount": "80.00",
        "items": [{"sku": "A-1"}]}, headers=keys.intake).json()
    claim_id = client.post("/api/v1/claims", data={
        "order_id": order["id"], "type": "refund_only", "reason": "灯罩裂了", "amount": "80.00"},
        files=[("photos", ("p.jpg", jpeg(textured_rgb(800, 600, seed=11), 88), "image/jpeg"))],
        headers=keys.intake).json()["id"]
    run_jobs()
    url = f"/api/v1/claims/{claim_id}"
    assert client.get(url, headers=keys.reviewer).json()["status"] == "auto_approved"
    steps = [
        ("post", f"{url}/escalate", {"json": {"reason": "抽查"}}, keys.reviewer),
        ("post", f"{url}/notes", {"json": {"text": "查看中"}}, keys.reviewer),
        ("post", f"{url}/responses", {"data": {"text": "已发货完好"}},
         keys.merchant(merchant_id)),
        ("post", f"{url}/decision", {"json": {"outcome": "rejected", "reason": "照片不符"}},
         keys.reviewer),
        ("post", f"{url}/appeals", {"json": {"reason": "有新证据"}}, keys.intake),
        ("post", f"{url}/decision", {"json": {"outcome": "approved"}}, keys.reviewer),
    ]
    for method, path, kwargs, headers in steps:
        response = getattr(client, method)(path, headers=headers, **kwargs)
        assert response.status_code in (200, 201), (path, response.text)
    run_jobs()

    with svc.db.read() as session:
        claim = session.get(Claim, claim_id)
        trail = list(session.execute(select(AuditEvent).where(AuditEvent.claim_id == claim_id)
                                     .order_by(AuditEvent.seq)).scalars())
    actions = [e.action for e in trail]
    for action in ("claim_submitted", "analysis_completed", "decided", "note_added",
                   "merchant_responded"):
        assert action in actions, (action, actions)
    assert actions.count("decided") == 3  # the policy's approval, the rejection, the appeal's
    # the status changes link up, from submitted to the claim's status now
    changes = [(e.data["from"], e.data["to"]) for e in trail if e.action == "status_changed"]
    assert changes[0][0] == "submitted"
    assert all(a[1] == b[0] for a, b in zip(changes, changes[1:])), changes
    assert changes[-1][1] == claim.status == "approved"
    assert [to for _, to in changes] == ["analyzing", "auto_approved", "in_review", "rejected",
                                         "appealed", "approved"]

    report = verify(svc)
    assert report.ok, report.to_dict()
    everything = events(svc)
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
    assert report.events == len(everything) == report.head_seq
    assert report.head_hash == everything[-1].hash and everything[0].prev_hash == GENESIS
    api = client.get("/api/v1/audit/verify", headers=keys.admin)
    assert api.status_code == 200 and api.json()["ok"] is True
    assert api.json()["first_problem"] is None
    assert client.get("/api/v1/audit/verify", headers=keys.reviewer).status_code == 403


# --- tampering -----------------------------------------------------------------------------

def test_an_edited_event_is_named_edited(client, keys, svc):
    catalog_and_claim(client, keys)
    target = events(svc)[6]
    with svc.db.write() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == target.seq)
                        .values(data={**target.data, "forged": True}))
    report = verify(svc)
    assert not report.ok
    assert (report.first_problem.seq, report.first_problem.kind) == (target.seq, "edited")
    assert [(p.seq, p.kind) for p in report.problems] == [(target.seq, "edited")]
    api = client.get("/api/v1/audit/verify", headers=keys.admin).json()
    assert api["ok"] is False and api["first_problem"]["seq"] == target.seq
    assert api["first_problem"]["kind"] == "edited"


@pytest.mark.parametrize("column, value", [("actor", "admin:someone-else"),
                                           ("action", "note_deleted"),
                                           ("claim_id", "clm_other")])
def test_editing_any_hashed_column_is_caught(client, keys, svc, column, value):
    catalog_and_claim(client, keys)
    target = events(svc)[-2]
    with svc.db.write() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == target.seq)
                        .values({column: value}))
    problem = verify(svc).first_problem
    assert problem is not None and (problem.seq, problem.kind) == (target.seq, "edited")


def test_an_event_deleted_in_the_middle_is_named_deleted(client, keys, svc):
    catalog_and_claim(client, keys)
    before = events(svc)
    gone = before[len(before) // 2].seq
    with svc.db.write() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == gone))
    report = verify(svc)
    assert (report.first_problem.seq, report.first_problem.kind) == (gone, "deleted")
    assert str(gone) in report.first_problem.detail
    assert report.events == len(before) - 1


def test_a_forged_event_inserted_with_later_ones_renumbered_is_named_inserted(client, keys,
                                                                              svc):
    catalog_and_claim(client, keys)
    before = events(svc)
    after = before[5]  # the forger slips an event in after this one
    with svc.db.write() as session:
        # make room: seq + 1 for every later event (in two steps: seq is the primary key)
        session.execute(update(AuditEvent).where(AuditEvent.seq > after.seq)
                        .values(seq=AuditEvent.seq + 1_000_000))
        session.execute(update(AuditEvent).where(AuditEvent.seq > 1_000_000)
                        .values(seq=AuditEvent.seq - 1_000_000 + 1))
        forged = {"seq": after.seq + 1, "at": after.at, "actor": "reviewer:fake",
                  "action": "decided", "claim_id": after.claim_id,
                  "data": {"outcome": "rejected", "reason": "forged"}}
        # a valid own hash, linked to the event before it
        session.execute(insert(AuditEvent).values(
            **forged, prev_hash=after.hash, hash=event_hash(after.hash, **forged)))
        session.execute(update(AuditHead).values(seq=AuditHead.seq + 1))
    report = verify(svc)
    assert not report.ok
    assert (report.first_problem.seq, report.first_problem.kind) == (after.seq + 1, "inserted")
    assert report.events == len(before) + 1


def test_a_forged_event_in_place_of_a_real_one_breaks_the_next_link(client, keys, svc):
    catalog_and_claim(client, keys)
    before = events(svc)
    target, prev = before[6], before[5]
    forged = {"seq": target.seq, "at": target.at, "actor": target.actor,
              "action": target.action, "claim_id": target.claim_id,
              "data": {**target.data, "text": "改写过的备注"}}
    with svc.db.write() as session:  # edited and re-hashed, so it checks out on its own
        session.execute(update(AuditEvent).where(AuditEvent.seq == target.seq).values(
            data=forged["data"], hash=event_hash(prev.hash, **forged)))
    report = verify(svc)
    assert (report.first_problem.seq, report.first_problem.kind) == (target.seq + 1, "broken")


def test_the_last_events_deleted_are_named_truncated(client, keys, svc):
    catalog_and_claim(client, keys)
    before = events(svc)
    keep = before[-3].seq
    with svc.db.write() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq > keep))
    report = verify(svc)
    assert (report.first_problem.seq, report.first_problem.kind) == (keep + 1, "truncated")
    assert [p.kind for p in report.problems] == ["truncated"]
    assert report.head_seq == before[-1].seq


def test_a_later_problem_does_not_hide_the_first(client, keys, svc):
    catalog_and_claim(client, keys)
    before = events(svc)
    with svc.db.write() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == before[-2].seq)
                        .values(actor="x"))
        session.execute(update(AuditEvent).where(AuditEvent.seq == before[3].seq)
                        .values(actor="y"))
    report = verify(svc)
    assert [(p.seq, p.kind) for p in report.problems] == [(before[3].seq, "edited"),
                                                          (before[-2].seq, "edited")]


# --- concurrency ---------------------------------------------------------------------------

def test_concurrent_appends_make_one_unbroken_chain(client, keys, svc):
    ids = catalog_and_claim(client, keys)
    start = len(events(svc))
    threads, per_thread = 6, 12
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                if i % 2:  # a workflow change: the event and the claim row together
                    add_note(svc, ids["claim_id"], text=f"thread {n} note {i}",
                             actor=f"reviewer:t{n}")
                else:
                    with svc.db.write() as session:
                        append_event(session, actor=f"test:t{n}", action="probe",
                                     data={"thread": n, "i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    assert errors == []
    everything = events(svc)
    seqs = [e.seq for e in everything]
    assert len(seqs) == len(set(seqs)) == start + threads * per_thread
    assert seqs == list(range(1, len(seqs) + 1))
    with svc.db.read() as session:
        assert session.execute(select(func.count()).select_from(AuditEvent)).scalar_one() \
            == len(seqs)
    report = verify(svc)
    assert report.ok, report.to_dict()
    assert report.head_seq == seqs[-1]
    # each thread's events are in its own order
    for n in range(threads):
        mine = [e.data["i"] for e in everything if e.actor == f"test:t{n}"]
        assert mine == sorted(mine) and len(mine) == per_thread // 2
