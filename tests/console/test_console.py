"""The console through a TestClient, on both databases: sign-in (form CSRF, wrong
passwords, lockout, safe redirects), sessions (server-side, hashed, expiring, sign-out),
CSRF on every POST (form field or header), every page in both languages, reviewer actions
reaching the API, the audit chain and the webhooks, merchant isolation, the merchant's
answer (photos, a video's keyframes), product photos, and a queue of thousands."""

from __future__ import annotations

import contextlib
import hashlib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import event, select, update

from conftest import jpeg, painted_crack, textured_rgb
from refundlens.claims.access import create_user
from refundlens.claims.audit import verify_chain
from refundlens.claims.intake import create_merchant, create_order, new_id
from refundlens.store.tables import (Claim, ConsoleSession, Job, MerchantResponse,
                                     ShippingEvidence, User, WebhookDelivery, utcnow)
from refundlens.web.console.i18n import TEXT
from refundlens.web.console.review import PAGE_SIZE
from refundlens.web.console.sessions import COOKIE
from console_support import PASSWORD, csrf_of, sign_in, stain


# --- a small world: two merchants, analysed claims, console users ----------------------------

def _shop(client: Any, keys: Any, name: str, seed: int) -> dict[str, Any]:
    merchant = client.post("/api/v1/merchants", json={"name": name}, headers=keys.admin)
    merchant_id = merchant.json()["id"]
    product = client.post(f"/api/v1/merchants/{merchant_id}/products",
                          json={"sku": f"SKU-{seed}", "name": name}, headers=keys.admin)
    reference = textured_rgb(640, 480, seed=seed)
    client.post(f"/api/v1/products/{product.json()['id']}/references",
                files={"file": ("listing.jpg", jpeg(reference, 92), "image/jpeg")},
                headers=keys.admin)
    return {"merchant_id": merchant_id, "product_id": product.json()["id"],
            "reference": reference, "sku": f"SKU-{seed}"}


def _claim(client: Any, keys: Any, shop: dict[str, Any], photo: bytes, buyer: str) -> str:
    order = client.post("/api/v1/orders", json={
        "merchant_id": shop["merchant_id"], "buyer_id": buyer, "amount": "129.00",
        "items": [{"sku": shop["sku"], "quantity": 1}],
        "delivered_at": "2026-11-03T10:00:00+08:00"}, headers=keys.intake)
    claim = client.post("/api/v1/claims", data={
        "order_id": order.json()["id"], "type": "refund_only", "reason": "破损",
        "amount": "129.00"}, files=[("photos", ("p.jpg", photo, "image/jpeg"))],
        headers=keys.intake)
    assert claim.status_code == 202, claim.text
    return str(claim.json()["id"])


@pytest.fixture
def world(svc, client, keys, run_analysis_jobs) -> dict[str, Any]:
    a = _shop(client, keys, "甲店", 3)
    b = _shop(client, keys, "乙店", 5)
    claims = {"a1": _claim(client, keys, a, jpeg(painted_crack(a["reference"]), 90), "buyer-1"),
              "a2": _claim(client, keys, a, jpeg(stain(a["reference"]), 90), "buyer-2"),
              "b1": _claim(client, keys, b, jpeg(painted_crack(b["reference"]), 90), "buyer-3")}
    run_analysis_jobs()
    with svc.db.read() as session:
        statuses = {k: session.get(Claim, v).status for k, v in claims.items()}
    assert statuses == {"a1": "in_review", "a2": "in_review", "b1": "in_review"}
    create_user(svc, username="rev", password=PASSWORD, role="reviewer")
    create_user(svc, username="shop-a", password=PASSWORD, role="merchant",
                merchant_id=a["merchant_id"])
    create_user(svc, username="shop-b", password=PASSWORD, role="merchant",
                merchant_id=b["merchant_id"])
    return {"a": a, "b": b, "claims": claims}


def _signed_in(client: Any, username: str) -> str:
    """Sign in; returns the session's CSRF token."""
    done = sign_in(client, username)
    assert done.status_code == 303, done.text
    return csrf_of(client.get(done.headers["location"]).text)


# --- sign-in -------------------------------------------------------------------------------

def test_sign_in_redirects_each_role_home_and_keeps_only_a_hash_of_the_session(
        svc, client, world):
    done = sign_in(client, "rev")
    assert done.status_code == 303 and done.headers["location"] == "/console/queue"
    cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith(COOKIE))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    token = client.cookies.get(COOKIE)
    with svc.db.read() as session:
        rows = session.execute(select(ConsoleSession)).scalars().all()
    assert [r.id for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in {r.id for r in rows} | {r.csrf_token for r in rows}
    assert client.get("/console", follow_redirects=False).headers["location"] == \
        "/console/queue"
    client.cookies.clear()
    assert sign_in(client, "shop-a").headers["location"] == "/console/merchant"


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(client, world):
    for username, password in (("rev", "wrong password"), ("nobody", PASSWORD)):
        refused = sign_in(client, username, password)
        assert refused.status_code == 401
        assert "用户名或密码错误" in refused.text
        assert COOKIE not in client.cookies


def test_the_sign_in_form_needs_its_csrf_token(client, world):
    client.get("/console/login")
    forged = client.post("/console/login", data={"username": "rev", "password": PASSWORD,
                                                 "csrf_token": "not-the-token"},
                         follow_redirects=False)
    assert forged.status_code == 403 and COOKIE not in client.cookies


def test_repeated_failures_lock_the_username(client, world):
    for _ in range(5):
        assert sign_in(client, "rev", "wrong password").status_code == 401
    locked = sign_in(client, "rev")  # even the right password, for now
    assert locked.status_code == 429
    assert "分钟后重试" in locked.text
    assert sign_in(client, "shop-a").status_code == 303  # other users are not locked


@pytest.mark.parametrize("target, expected", [
    ("/console/claims/x", "/console/claims/x"),
    ("//evil.example/console", "/console/queue"),
    ("https://evil.example/", "/console/queue"),
    ("/console/../../x\\y", "/console/queue")])
def test_sign_in_returns_only_to_console_pages(client, world, target, expected):
    assert sign_in(client, "rev", next=target).headers["location"] == expected


def test_pages_need_a_session_and_send_you_back_after_signing_in(client, world):
    claim = world["claims"]["a1"]
    away = client.get(f"/console/claims/{claim}", follow_redirects=False)
    assert away.status_code == 303
    assert away.headers["location"] == f"/console/login?next=%2Fconsole%2Fclaims%2F{claim}"
    form = client.get(away.headers["location"])
    assert f'value="/console/claims/{claim}"' in form.text
    for path in ("/console/queue", "/console/merchant", "/console/products",
                 f"/console/claims/{claim}/report.pdf"):
        assert client.get(path, follow_redirects=False).status_code == 303, path
    posted = client.post(f"/console/claims/{claim}/approve", data={},
                         headers={"Referer": f"http://testserver/console/claims/{claim}"},
                         follow_redirects=False)  # a form sent after the session ended
    assert posted.status_code == 303
    assert posted.headers["location"] == away.headers["location"]
    fetched = client.post(f"/console/claims/{claim}/notes", data={"text": "x"},
                          headers={"Accept": "application/json"})
    assert fetched.status_code == 401 and fetched.json()["error"]["code"] == "unauthorized"


# --- sessions ------------------------------------------------------------------------------

def test_signing_out_ends_the_session_on_the_server(svc, client, world):
    csrf = _signed_in(client, "rev")
    token = client.cookies.get(COOKIE)
    out = client.post("/console/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and "ended=1" in out.headers["location"]
    with svc.db.read() as session:
        assert session.execute(select(ConsoleSession)).first() is None
    client.cookies.set(COOKIE, token, path="/console")  # a copy of the old cookie
    assert client.get("/console/queue", follow_redirects=False).status_code == 303


def test_expired_sessions_and_disabled_users_are_signed_out(svc, client, world):
    _signed_in(client, "rev")
    with svc.db.write() as session:
        session.execute(update(ConsoleSession).values(expires_at=utcnow() - timedelta(
            seconds=1)))
    assert client.get("/console/queue", follow_redirects=False).status_code == 303
    _signed_in(client, "rev")
    with svc.db.write() as session:
        session.execute(update(User).where(User.username == "rev").values(disabled=True))
    assert client.get("/console/queue", follow_redirects=False).status_code == 303


def test_an_active_session_slides_its_expiry_within_the_absolute_limit(svc, client, world):
    from refundlens.web.console.sessions import ABSOLUTE

    _signed_in(client, "rev")
    with svc.db.write() as session:
        session.execute(update(ConsoleSession).values(
            created_at=utcnow() - ABSOLUTE + timedelta(minutes=30),
            last_seen_at=utcnow() - timedelta(hours=1)))
    assert client.get("/console/queue").status_code == 200
    with svc.db.read() as session:
        row = session.execute(select(ConsoleSession)).scalar_one()
    assert row.expires_at <= row.created_at + ABSOLUTE + timedelta(seconds=1)
    assert row.last_seen_at > utcnow() - timedelta(minutes=1)


# --- CSRF ----------------------------------------------------------------------------------

def test_every_post_needs_the_sessions_csrf_token(svc, client, world):
    claim = world["claims"]["a1"]
    csrf = _signed_in(client, "rev")
    for data in ({}, {"csrf_token": "wrong"}, {"csrf_token": csrf[:-1]}):
        refused = client.post(f"/console/claims/{claim}/approve", data=data,
                              follow_redirects=False)
        assert refused.status_code == 403 and "安全校验失败" in refused.text
    for path in (f"/console/claims/{claim}/reject", f"/console/claims/{claim}/notes",
                 f"/console/claims/{claim}/escalate",
                 f"/console/claims/{claim}/request-evidence", "/console/logout"):
        assert client.post(path, data={"reason": "x", "text": "x"},
                           follow_redirects=False).status_code == 403, path
    with svc.db.read() as session:
        assert session.get(Claim, claim).status == "in_review"

    other = client.__class__(client.app)  # a second browser, its own session
    with other:
        other_csrf = _signed_in(other, "rev")
        assert other_csrf != csrf
        refused = client.post(f"/console/claims/{claim}/approve",
                              data={"csrf_token": other_csrf}, follow_redirects=False)
        assert refused.status_code == 403


def test_fetch_sends_the_token_in_a_header_and_gets_json(svc, client, keys, world):
    claim = world["claims"]["a1"]
    csrf = _signed_in(client, "rev")
    headers = {"Accept": "application/json"}
    refused = client.post(f"/console/claims/{claim}/notes", data={"text": "hi"},
                          headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    added = client.post(f"/console/claims/{claim}/notes", data={"text": "查看过了"},
                        headers={**headers, "X-CSRF-Token": csrf})
    assert added.status_code == 200 and added.json()["result"]["text"] == "查看过了"
    detail = client.get(f"/api/v1/claims/{claim}", headers=keys.reviewer).json()
    assert detail["timeline"][-1]["action"] == "note_added"
    assert detail["timeline"][-1]["actor"] == "user:rev"


# --- pages in both languages ---------------------------------------------------------------

def test_every_page_renders_in_chinese_and_english(svc, client, keys, world):
    claim = world["claims"]["a1"]
    _signed_in(client, "rev")
    for lang, heading in (("zh", "待审核申请"), ("en", "Claims waiting for review")):
        queue = client.get(f"/console/queue?lang={lang}")
        assert queue.status_code == 200 and heading in queue.text
        assert f'<html lang="{"en" if lang == "en" else "zh-CN"}">' in queue.text
        page = client.get(f"/console/claims/{claim}?i=0")
        assert page.status_code == 200 and claim in page.text
        assert "REFERENCE_ALTERED" in page.text
    # the choice is remembered in the session
    assert "Claims waiting for review" in client.get("/console/queue").text
    assert "待审核申请" in client.get("/console/queue?lang=zh").text
    client.cookies.clear()
    _signed_in(client, "shop-a")
    for lang in ("zh", "en"):
        for path in ("/console/merchant", "/console/merchant?show=all", "/console/products",
                     f"/console/claims/{claim}"):
            assert client.get(f"{path}{'&' if '?' in path else '?'}lang={lang}"
                              ).status_code == 200, (path, lang)


def test_pages_carry_security_headers_and_load_nothing_from_elsewhere(client, world):
    _signed_in(client, "rev")
    page = client.get(f"/console/claims/{world['claims']['a1']}")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert not re.search(r'(src|href)="(https?:)?//', page.text)
    for asset in re.findall(r'(?:src|href)="(/console/static/[^"]+)"', page.text):
        assert client.get(asset).status_code == 200, asset


def _written_actions() -> dict[str, list[str]]:
    """Every audit action the code writes — the ``action=`` of each ``append_event`` call
    in src/refundlens — with where it is written."""
    import ast

    import refundlens

    found: dict[str, list[str]] = {}
    root = Path(refundlens.__file__).parent
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name != "append_event":
                continue
            where = f"{path.relative_to(root)}:{node.lineno}"
            action = next((k.value for k in node.keywords if k.arg == "action"), None)
            # a name this test cannot read would escape it: actions are written literally
            assert isinstance(action, ast.Constant) and isinstance(action.value, str), \
                f"{where}: append_event's action must be a string literal"
            found.setdefault(action.value, []).append(where)
    return found


def test_every_audit_action_the_code_writes_has_a_label_in_both_languages():
    from refundlens.claims.actions import ACTIONS

    written = _written_actions()
    assert {"claim_submitted", "status_changed", "decided", "merchant_responded"} <= \
        set(written)  # the walk found the claims workflow
    unlabelled = {a: where for a, where in written.items() if a not in ACTIONS}
    assert unlabelled == {}, "add these to refundlens.claims.actions.ACTIONS"
    for action, (zh, en) in ACTIONS.items():
        assert zh.strip() and en.strip() and zh != en, action


def test_the_timeline_shows_actions_in_words_with_their_names(client, world):
    _signed_in(client, "rev")
    claim = world["claims"]["a1"]
    zh = client.get(f"/console/claims/{claim}?lang=zh").text
    en = client.get(f"/console/claims/{claim}?lang=en").text
    timeline = re.compile(r'<section class="card timeline".*?</section>', re.S)
    for page, words in ((zh, ("提交申请", "照片分析完成", "状态变更")),
                        (en, ("Claim submitted", "Photo analysis completed",
                              "Status changed"))):
        shown = timeline.search(page).group(0)
        for word in words:
            assert word in shown, word
        assert '<code class="small">status_changed</code>' in shown


def test_the_string_table_has_both_languages_for_every_key():
    for key, (zh, en) in TEXT.items():
        assert zh.strip() and en.strip(), key
        assert re.findall(r"{(\w+)}", zh) == re.findall(r"{(\w+)}", en) or \
            sorted(re.findall(r"{(\w+)}", zh)) == sorted(re.findall(r"{(\w+)}", en)), key


# --- reviewer actions ----------------------------------------------------------------------

@pytest.mark.settings(webhook_allow_private=True)  # the subscriber is on 127.0.0.1
def test_reviewer_actions_reach_the_api_the_audit_chain_and_the_webhooks(
        svc, client, keys, world):
    created = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"},
                          headers=keys.admin)
    assert created.status_code == 201, created.text
    a1, a2 = world["claims"]["a1"], world["claims"]["a2"]
    csrf = _signed_in(client, "rev")

    missing = client.post(f"/console/claims/{a1}/reject", data={"csrf_token": csrf,
                                                                "reason": "  "})
    assert missing.status_code == 422 and "reason" in missing.text
    assert client.post(f"/console/claims/{a1}/notes",
                       data={"csrf_token": csrf, "text": "看过"}).status_code == 200
    assert client.post(f"/console/claims/{a1}/escalate",
                       data={"csrf_token": csrf, "reason": "金额大"}).status_code == 200
    rejected = client.post(f"/console/claims/{a1}/reject",
                           data={"csrf_token": csrf, "reason": "篡改商家主图", "i": "0"},
                           follow_redirects=False)
    assert rejected.status_code == 303
    # a1 left the queue: on to the claim that is now first in it
    assert rejected.headers["location"] == f"/console/claims/{a2}?i=0&done=rejected"
    again = client.post(f"/console/claims/{a1}/approve", data={"csrf_token": csrf})
    assert again.status_code == 409 and "already decided" in again.text
    evidence = client.post(f"/console/claims/{a2}/request-evidence",
                           data={"csrf_token": csrf, "note": "请补拍"},
                           follow_redirects=False)
    assert evidence.status_code == 303

    detail = client.get(f"/api/v1/claims/{a1}", headers=keys.admin).json()
    assert detail["status"] == "rejected" and detail["escalated"] is True
    assert detail["decisions"][-1]["actor"] == "user:rev"
    assert detail["decisions"][-1]["reason"] == "篡改商家主图"
    actions = [(e["action"], e["actor"]) for e in detail["timeline"]
               if e["actor"] == "user:rev"]
    assert [a for a, _ in actions] == ["note_added", "escalated", "status_changed",
                                       "decided"]
    assert client.get(f"/api/v1/claims/{a2}", headers=keys.admin).json()["status"] == \
        "evidence_requested"
    with svc.db.read() as session:
        events = {d.event for d in session.execute(select(WebhookDelivery)).scalars()}
        assert verify_chain(session).ok
    assert {"claim.decided", "claim.escalated", "claim.note_added",
            "claim.evidence_requested"} <= events


def test_the_claim_page_shows_what_a_reviewer_needs(svc, client, keys, world):
    a1 = world["claims"]["a1"]
    csrf = _signed_in(client, "rev")
    client.post(f"/console/claims/{a1}/notes", data={"csrf_token": csrf, "text": "内部备注"})
    page = client.get(f"/console/claims/{a1}?i=0").text
    detail = client.get(f"/api/v1/claims/{a1}", headers=keys.admin).json()
    photo = detail["photos"][0]
    assert f'/console/blobs/{photo["sha256"]}' in page
    assert f'/console/blobs/{photo["mask_sha256"]}' in page and 'class="overlay-heat"' in page
    region = next(f for f in photo["findings"] if f["code"] == "REFERENCE_ALTERED")["region"]
    assert f'<rect class="box box-ref" x="{region["x"]}" y="{region["y"]}"' in page
    assert f'/console/blobs/{photo["matched_reference"]["sha256"]}' in page
    assert 'data-transform="[[' in page  # the slider warps the reference onto the photo
    assert detail["timeline"][-1]["hash"][:16] in page
    assert "内部备注" in page and "买家历史" in page
    assert 'id="next-claim"' in page  # j goes on in the queue
    for blob in (photo["sha256"], photo["mask_sha256"]):
        got = client.get(f"/console/blobs/{blob}")
        assert got.status_code == 200 and got.headers["content-type"] == "image/" + (
            "png" if blob == photo["mask_sha256"] else "jpeg")


def test_sla_countdowns_turn_red_near_and_past_the_deadline(svc, client, world):
    a1, a2 = world["claims"]["a1"], world["claims"]["a2"]
    with svc.db.write() as session:
        session.execute(update(Claim).where(Claim.id == a1).values(
            review_due_at=utcnow() - timedelta(hours=3)))
        session.execute(update(Claim).where(Claim.id == a2).values(
            review_due_at=utcnow() + timedelta(minutes=40)))
    _signed_in(client, "rev")
    queue = client.get("/console/queue").text
    assert re.search(r'class="sla sla-overdue"[^>]*>已超时 3小时', queue)
    assert re.search(r'class="sla sla-near"[^>]*>剩余 \d+分', queue)
    assert re.search(r'id="count-overdue">1<', queue)
    # overdue first: the queue is by deadline, then risk
    assert queue.index(a1) < queue.index(a2) < queue.index(world["claims"]["b1"])


def test_queue_filters_are_checked_and_applied(client, world):
    _signed_in(client, "rev")
    only_b = client.get(f"/console/queue?merchant={world['b']['merchant_id']}").text
    assert world["claims"]["b1"] in only_b and world["claims"]["a1"] not in only_b
    assert world["claims"]["a1"] in client.get("/console/queue?code=REFERENCE_ALTERED").text
    assert world["claims"]["a1"] not in client.get("/console/queue?level=low").text
    assert world["claims"]["a1"] in client.get("/console/queue?age=").text
    for bad, field in (("level=extreme", "level"), ("code=NOPE", "code"), ("age=5", "age")):
        refused = client.get(f"/console/queue?{bad}")
        assert refused.status_code == 422 and field in refused.text, bad


# --- time zone -----------------------------------------------------------------------------

def _shown(instant: str, zone: str) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(instant).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def test_times_are_shown_in_asia_shanghai_by_default_and_the_page_says_so(client, keys,
                                                                         world):
    claim = world["claims"]["a1"]
    created = client.get(f"/api/v1/claims/{claim}", headers=keys.admin).json()["created_at"]
    _signed_in(client, "rev")
    page = client.get(f"/console/claims/{claim}").text
    assert f'<time datetime="{created}" title="Asia/Shanghai, UTC+08:00">' \
           f'{_shown(created, "Asia/Shanghai")}</time>' in page
    assert "时间均按 Asia/Shanghai 时区显示（UTC+08:00）" in page
    assert "Times are in Asia/Shanghai (UTC+08:00)" in client.get("/console/queue?lang=en").text


@pytest.mark.settings(timezone="America/New_York")
def test_the_timezone_setting_moves_every_time_and_names_the_zone(svc, client, keys, world):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    claim = world["claims"]["a1"]
    created = client.get(f"/api/v1/claims/{claim}", headers=keys.admin).json()["created_at"]
    _signed_in(client, "rev")
    page = client.get(f"/console/claims/{claim}?lang=en").text
    # New York is UTC-05:00 or, in summer, UTC-04:00: the offset of each time is its own
    then = datetime.fromisoformat(created).astimezone(ZoneInfo("America/New_York"))
    offset = then.strftime("%z")
    assert f'title="America/New_York, UTC{offset[:3]}:{offset[3:]}">' \
           f'{_shown(created, "America/New_York")}</time>' in page
    now = datetime.now(ZoneInfo("America/New_York")).strftime("%z")
    assert f"Times are in America/New_York (UTC{now[:3]}:{now[3:]})" in page
    assert _shown(created, "Asia/Shanghai") not in page


def test_an_unknown_time_zone_is_refused_naming_the_setting():
    from refundlens.config import load_settings
    from refundlens.errors import ConfigError

    assert str(load_settings(environ={}).zone) == "Asia/Shanghai"
    assert str(load_settings(environ={"REFUNDLENS_TIMEZONE": " Europe/Berlin "}).zone) == \
        "Europe/Berlin"
    for bad in ("Mars/Olympus_Mons", "asia/shanghai", "CST", "", "../etc/passwd"):
        with pytest.raises(ConfigError, match=r"REFUNDLENS_TIMEZONE=.*unknown time zone; "
                                              r"expected an IANA time zone name"):
            load_settings(environ={"REFUNDLENS_TIMEZONE": bad})
    with pytest.raises(ConfigError, match="REFUNDLENS_TIMEZONE"):
        load_settings(environ={}, timezone="Nowhere/Special")


def test_time_zones_work_without_the_systems_zone_data():
    """zoneinfo reads the system's files; where there are none (slim images, Windows) the
    tzdata package, a dependency, has them."""
    import subprocess
    import sys

    code = ("import zoneinfo; zoneinfo.reset_tzpath(to=[]); "
            "from refundlens.config import load_settings; "
            "print(load_settings(environ={'REFUNDLENS_TIMEZONE': 'Europe/Berlin'}).zone)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "Europe/Berlin", done.stderr


# --- appeals ---------------------------------------------------------------------------------

def _section(page: str, marker: str) -> str:
    """The <section> of ``page`` that carries ``marker`` (an id or class attribute)."""
    found = re.search(rf'<section[^>]*{marker}.*?</section>', page, re.S)
    assert found, marker
    return found.group(0)


def test_a_reviewer_sees_an_appeal_beside_the_decision_and_decides_it_as_an_appeal(
        svc, client, keys, world):
    a1, a2 = world["claims"]["a1"], world["claims"]["a2"]
    rejected = client.post(f"/api/v1/claims/{a1}/decision", headers=keys.reviewer,
                           json={"outcome": "rejected", "reason": "照片由商家主图篡改"})
    assert rejected.status_code == 201, rejected.text
    appealed = client.post(f"/api/v1/claims/{a1}/appeals", headers=keys.intake,
                           json={"reason": "买家提供了开箱视频，破损属实"})
    assert appealed.status_code == 201, appealed.text
    csrf = _signed_in(client, "rev")

    # the queue: marked, with the outcome appealed, and a filter for appeals alone
    queue = client.get("/console/queue").text
    row = re.search(rf'<tr class="queue-row"[^>]*{a1}.*?</tr>', queue, re.S).group(0)
    assert '<span class="badge appeal">申诉</span>' in row and "申诉原结果：已驳回" in row
    assert '<span class="badge appeal">' not in \
        re.search(rf'<tr class="queue-row"[^>]*{a2}.*?</tr>', queue, re.S).group(0)
    only = client.get("/console/queue?status=appealed").text
    assert a1 in only and a2 not in only and world["claims"]["b1"] not in only
    assert a1 not in client.get("/console/queue?status=in_review").text
    refused = client.get("/console/queue?status=approved")
    assert refused.status_code == 422 and "status" in refused.text
    assert 'href="/console/queue?status=appealed"' in queue

    # the claim page: the appeal beside the decision it appeals; the actions say "appeal"
    page = client.get(f"/console/claims/{a1}?i=0&q=status%3Dappealed").text
    appeals = _section(page, 'id="appeals"')
    pair = re.search(r'<div class="appeal-pair">.*?</article>', appeals, re.S).group(0)
    assert "被申诉的决定" in pair and "已驳回" in pair and "照片由商家主图篡改" in pair
    assert "买家提供了开箱视频，破损属实" in pair and "待复审" in appeals
    actions = _section(page, 'class="card actions"')
    assert "处理申诉" in actions and 'id="appeal-note"' in actions
    assert "“已驳回”的决定" in actions
    assert "申诉复审：确认同意该申请的退款？" in page  # the approve dialog
    assert "Decide the appeal" in client.get(f"/console/claims/{a1}?lang=en").text
    client.get("/console/queue?lang=zh")

    decided = client.post(f"/console/claims/{a1}/approve",
                          data={"csrf_token": csrf, "i": "0", "q": "status=appealed"},
                          follow_redirects=False)
    assert decided.status_code == 303
    # the only appealed claim left the appeals queue: back to it, saying what was done
    assert decided.headers["location"] == \
        "/console/queue?status=appealed&done=appeal_approved"
    assert "申诉已复审：同意退款。" in client.get(decided.headers["location"]).text

    detail = client.get(f"/api/v1/claims/{a1}", headers=keys.admin).json()
    assert detail["status"] == "approved"
    assert [a["status"] for a in detail["appeals"]] == ["decided"]
    assert (detail["decisions"][-1]["outcome"], detail["decisions"][-1]["actor"]) == \
        ("approved", "user:rev")
    event = [e for e in detail["timeline"] if e["action"] == "decided"][-1]
    assert event["data"]["appeal"] is True and event["actor"] == "user:rev"

    page = client.get(f"/console/claims/{a1}").text
    appeals = _section(page, 'id="appeals"')
    assert "已复审" in appeals and "复审结果" in appeals and "user:rev" in appeals
    decisions = _section(page, 'aria-labelledby="decisions-h"')
    assert decisions.count('<span class="badge appeal">申诉复审</span>') == 1
    assert "处理申诉" not in page  # decided: no longer an appeal to decide


def test_a_merchant_sees_the_appeal_and_may_answer_again(svc, client, keys, world):
    a1 = world["claims"]["a1"]
    client.post(f"/api/v1/claims/{a1}/decision", headers=keys.reviewer,
                json={"outcome": "rejected", "reason": "篡改"})
    client.post(f"/api/v1/claims/{a1}/appeals", headers=keys.intake,
                json={"reason": "我有开箱视频"})
    due = utcnow() + timedelta(hours=30)
    with svc.db.write() as session:  # the appeal's response window, however it was set
        session.execute(update(Claim).where(Claim.id == a1).values(
            merchant_response_due_at=due))
    csrf = _signed_in(client, "shop-a")
    listing = client.get("/console/merchant").text
    assert re.search(rf'{a1}.*?class="badge status status-appealed">申诉中<', listing, re.S)
    page = client.get(f"/console/claims/{a1}").text
    assert "我有开箱视频" in _section(page, 'id="appeals"')
    note = re.search(r'<p class="appeal-note" id="appeal-note">.*?</p>', page, re.S).group(0)
    assert "该申请已被申诉" in note and "前再次提交答复" in note and "sla-ok" in note
    assert 'id="answer-form"' in page and 'id="appeal-form"' not in page

    with svc.db.write() as session:  # the window has passed: answers are still taken
        session.execute(update(Claim).where(Claim.id == a1).values(
            merchant_response_due_at=utcnow() - timedelta(hours=1)))
    page = client.get(f"/console/claims/{a1}").text
    assert "您可以再次提交答复" in page and 'id="answer-form"' in page
    sent = client.post(f"/console/claims/{a1}/responses",
                       data={"csrf_token": csrf, "text": "发货视频见附件"},
                       files=[("files", ("", b"", "application/octet-stream"))],
                       follow_redirects=False)
    assert sent.status_code == 303
    detail = client.get(f"/api/v1/claims/{a1}", headers=keys.admin).json()
    assert detail["merchant_responses"][-1]["text"] == "发货视频见附件"


def test_a_merchant_appeals_a_granted_refund_as_the_api_allows(svc, client, keys, world):
    a1, a2, b1 = world["claims"]["a1"], world["claims"]["a2"], world["claims"]["b1"]
    for claim, outcome in ((a1, "rejected"), (a2, "approved"), (b1, "approved")):
        client.post(f"/api/v1/claims/{claim}/decision", headers=keys.reviewer,
                    json={"outcome": outcome, "reason": "已核实"})
    csrf = _signed_in(client, "shop-a")
    # a refund granted: the appeal form, not the answer form; a rejection: neither
    page = client.get(f"/console/claims/{a2}").text
    assert 'id="appeal-form"' in page and 'id="answer-form"' not in page
    assert 'id="appeal-form"' not in client.get(f"/console/claims/{a1}").text
    missing = client.post(f"/console/claims/{a2}/appeals",
                          data={"csrf_token": csrf, "reason": "  "})
    assert missing.status_code == 422 and "reason" in missing.text
    refused = client.post(f"/console/claims/{a1}/appeals",
                          data={"csrf_token": csrf, "reason": "x"})
    assert refused.status_code == 409 and "a merchant appeals a granted refund" in refused.text
    assert client.post(f"/console/claims/{b1}/appeals",  # another merchant's: not found
                       data={"csrf_token": csrf, "reason": "x"}).status_code == 404
    assert client.post(f"/console/claims/{a2}/appeals",
                       data={"reason": "x"}).status_code == 403  # CSRF

    sent = client.post(f"/console/claims/{a2}/appeals",
                       data={"csrf_token": csrf, "reason": "买家收到的商品完好，有签收照片"},
                       follow_redirects=False)
    assert sent.status_code == 303 and sent.headers["location"].endswith("done=appeal")
    page = client.get(sent.headers["location"]).text
    assert "申诉已提交" in page and "买家收到的商品完好" in page
    detail = client.get(f"/api/v1/claims/{a2}", headers=keys.admin).json()
    assert detail["status"] == "appealed"
    assert detail["appeals"][-1]["actor"] == "user:shop-a"
    with svc.db.write() as session:  # the policy's own approvals may be appealed too
        session.execute(update(Claim).where(Claim.id == a1).values(status="auto_approved"))
    assert 'id="appeal-form"' in client.get(f"/console/claims/{a1}").text

    client.cookies.clear()
    csrf = _signed_in(client, "rev")
    row = re.search(rf'<tr class="queue-row"[^>]*{a2}.*?</tr>',
                    client.get("/console/queue").text, re.S).group(0)
    assert "申诉原结果：已同意" in row
    # reviewers file no appeals from the console (the buyer's come through the platform)
    assert client.post(f"/console/claims/{b1}/appeals",
                       data={"csrf_token": csrf, "reason": "x"}).status_code == 403


# --- merchants -------------------------------------------------------------------------------

def test_a_merchant_sees_only_its_own_claims_and_files(svc, client, keys, world):
    b1 = world["claims"]["b1"]
    csrf = _signed_in(client, "shop-a")
    listing = client.get("/console/merchant").text
    assert world["claims"]["a1"] in listing and b1 not in listing
    assert client.get(f"/console/claims/{world['claims']['a1']}").status_code == 200
    theirs = client.get(f"/console/claims/{b1}")
    nobodys = client.get("/console/claims/clm_00000000000000000000")
    assert theirs.status_code == nobodys.status_code == 404  # the same answer: not confirmed
    assert theirs.text.replace(b1, "X") == nobodys.text.replace("clm_00000000000000000000", "X")
    assert client.get(f"/console/claims/{b1}/report.pdf").status_code == 404
    b_photo = client.get(f"/api/v1/claims/{b1}", headers=keys.admin).json()["photos"][0]
    for blob in (b_photo["sha256"], b_photo["mask_sha256"],
                 b_photo["matched_reference"]["sha256"]):
        assert client.get(f"/console/blobs/{blob}").status_code == 404
    answered = client.post(f"/console/claims/{b1}/responses",
                           data={"csrf_token": csrf, "text": "not mine"},
                           files=[("files", ("", b"", "application/octet-stream"))])
    assert answered.status_code == 404
    with svc.db.read() as session:
        assert session.execute(select(MerchantResponse)).first() is None
    for path in ("/console/queue", f"/console/claims/{b1}?i=0"):
        assert client.get(path).status_code in (403, 404), path
    assert client.post(f"/console/claims/{world['claims']['a1']}/approve",
                       data={"csrf_token": csrf}).status_code == 403
    assert client.post(f"/console/products/{world['b']['product_id']}/references",
                       data={"csrf_token": csrf},
                       files={"file": ("x.jpg", jpeg(textured_rgb(64, 64)), "image/jpeg")}
                       ).status_code == 404


def test_a_reviewer_cannot_use_the_merchant_portal(client, world):
    _signed_in(client, "rev")
    assert client.get("/console/merchant").status_code == 403
    assert client.get("/console/products").status_code == 403


def test_a_merchant_answers_with_text_photos_and_a_video_whose_keyframes_become_references(
        svc, client, keys, world, run_analysis_jobs, tmp_path):
    from claims.test_keyframes import packing_video

    a1 = world["claims"]["a1"]
    csrf = _signed_in(client, "shop-a")
    empty = client.post(f"/console/claims/{a1}/responses", data={"csrf_token": csrf},
                        files=[("files", ("", b"", "application/octet-stream"))])
    assert empty.status_code == 422 and "needs text or files" in empty.text
    broken = client.post(f"/console/claims/{a1}/responses",
                         data={"csrf_token": csrf, "text": "看视频"},
                         files=[("files", ("clip.mp4", b"\0\0\0\x18ftypmp42" + b"\0" * 200,
                                           "video/mp4"))])
    assert broken.status_code == 422 and "clip.mp4" in broken.text
    assert 'name="text"' in broken.text and "看视频" in broken.text  # the text is kept

    video = packing_video(tmp_path / "packing.mp4", [textured_rgb(900, 700, seed=31)])
    photo = jpeg(textured_rgb(320, 240, seed=32), 90)
    sent = client.post(f"/console/claims/{a1}/responses",
                       data={"csrf_token": csrf, "text": "已发货，附打包视频"},
                       files=[("files", ("box.jpg", photo, "image/jpeg")),
                              ("files", ("packing.mp4", video.read_bytes(), "video/mp4"))],
                       follow_redirects=False)
    assert sent.status_code == 303 and sent.headers["location"].endswith("done=response")
    page = client.get(sent.headers["location"]).text
    assert "答复已提交" in page and "视频关键帧提取中" in page
    with svc.db.read() as session:
        assert session.execute(select(Job.kind).where(Job.status == "queued")).scalars(
        ).all() == ["extract_keyframes"]
    assert run_analysis_jobs() == 2  # the keyframes, then the claim's photos again
    with svc.db.read() as session:
        kinds = sorted(s.kind for s in session.execute(select(ShippingEvidence)).scalars())
    assert kinds == ["keyframe", "video"]
    page = client.get(f"/console/claims/{a1}").text
    assert "视频关键帧提取中" not in page and "packing@" in page
    detail = client.get(f"/api/v1/claims/{a1}", headers=keys.admin).json()
    response = detail["merchant_responses"][-1]
    assert response["actor"] == "user:shop-a"
    assert [f["kind"] for f in response["files"]] == ["photo", "video"]
    video_url = f"/console/blobs/{response['files'][1]['sha256']}"
    assert client.get(video_url).headers["content-type"] == "video/mp4"


def test_a_merchant_manages_its_product_photos(svc, client, world):
    csrf = _signed_in(client, "shop-a")
    made = client.post("/console/products", data={"csrf_token": csrf, "sku": "NEW-1",
                                                   "name": "新品"}, follow_redirects=False)
    assert made.status_code == 303
    page = client.get("/console/products").text
    assert "NEW-1" in page and "SKU-3" in page and "SKU-5" not in page
    duplicate = client.post("/console/products", data={"csrf_token": csrf, "sku": "NEW-1",
                                                       "name": "again"})
    assert duplicate.status_code == 409 and "NEW-1" in duplicate.text
    product = re.search(r'action="/console/products/(prd_\w+)/references"', page).group(1)
    uploaded = client.post(f"/console/products/{product}/references",
                           data={"csrf_token": csrf},
                           files={"file": ("new.jpg", jpeg(textured_rgb(200, 150, seed=9)),
                                           "image/jpeg")}, follow_redirects=False)
    assert uploaded.status_code == 303
    bad = client.post(f"/console/products/{product}/references", data={"csrf_token": csrf},
                      files={"file": ("notes.txt", b"hello", "text/plain")})
    assert bad.status_code == 422 and "notes.txt" in bad.text
    assert "new.jpg" in client.get("/console/products").text


# --- scale -----------------------------------------------------------------------------------

@contextlib.contextmanager
def _queries(svc: Any) -> Iterator[list[tuple[str, Any]]]:
    """The SELECTs the service sends meanwhile, with their parameters (the console
    session's own are left out: when it is refreshed depends on the clock)."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "console_sessions" not in statement:
            seen.append((statement, parameters))

    engines = {svc.db.engine, svc.db.read_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def test_a_queue_of_thousands_pages_in_deadline_order_with_the_same_queries(
        svc, client, world):
    """Speed itself is measured by bench/console_bench.py (docs/benchmarks.md); here, what
    keeps it: each page sends as many queries at 3,003 claims as at 1,003, and fewer than
    its 50 rows (none per claim); and on SQLite, whose plans do not depend on the data (it
    keeps no statistics here), the page is read in the queue's index order and nothing
    scans a whole table or sorts the queue."""
    merchant = create_merchant(svc, name="大店", actor="test")
    order = create_order(svc, merchant_id=merchant.id, buyer_id="many", amount="10.00",
                         actor="test")
    now = utcnow()

    def add(numbers: range) -> None:
        with svc.db.write() as session:
            session.add_all([Claim(
                id=new_id("clm"), order_id=order.id, merchant_id=merchant.id,
                buyer=order.buyer, type="refund_only", amount_cents=1000,
                status="in_review" if i % 10 else "appealed", risk_score=i % 100,
                risk_level=("low", "medium", "high")[i % 3],
                review_due_at=now + timedelta(minutes=i),
                created_at=now - timedelta(hours=i % 48)) for i in numbers])

    _signed_in(client, "rev")

    def pages(last: int) -> tuple[list[Any], list[list[tuple[str, Any]]]]:
        got, queries = [], []
        for path in ("/console/queue", f"/console/queue?page={last}",
                     f"/console/queue?merchant={merchant.id}&level=high&age=24&page=3",
                     "/console/queue?code=REFERENCE_ALTERED", "/console/queue?status=appealed"):
            with _queries(svc) as seen:
                got.append(client.get(path))
            assert got[-1].status_code == 200, (path, got[-1].text)
            queries.append(seen)
        return got, queries

    add(range(1000))
    _, fewer = pages(21)
    add(range(1000, 3000))
    (first, last, filtered, by_code, appealed), queries = pages(61)
    assert "第 1 / 61 页，共 3003 条" in first.text
    assert first.text.count('class="queue-row"') == 50
    assert last.text.count('class="queue-row"') == 3  # 3003 = 60 × 50 + 3
    assert "第 3 /" in filtered.text and filtered.text.count('class="queue-row"') == 50
    assert world["claims"]["a1"] in by_code.text
    assert "共 300 条" in appealed.text
    rows = re.findall(r'datetime="([^"]+)" data-due', first.text)
    assert rows == sorted(rows)

    assert [len(q) for q in queries] == [len(q) for q in fewer], "queries grew with the queue"
    assert len(queries[0]) < PAGE_SIZE, "a query per row of the page"
    if not svc.db.is_sqlite:
        return
    with svc.db.read_engine.connect() as conn:
        for statement, parameters in (q for page in queries for q in page):
            if not re.search(r"\bFROM (claims|claim_photos|photo_codes)\b", statement):
                continue
            plan = [(row[1], row[3]) for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters)]
            details = [detail for _, detail in plan]
            assert not [d for d in details if re.fullmatch(r"SCAN \w+", d)], \
                (statement, details)
            if " IN (SELECT claims.id " in statement:  # a page: its ids in index order
                assert any(re.match(r"(SCAN|SEARCH) claims USING COVERING INDEX "
                                    r"ix_claims_waiting", d) for d in details), \
                    (statement, details)
                # the only sort is the page's own rows (top level), not the queue
                assert [p for p, d in plan if "TEMP B-TREE" in d] in ([], [0]), \
                    (statement, details)


def test_contrast_of_the_palette_meets_wcag_aa():
    css = (Path(__file__).parents[2] / "src/refundlens/web/console/static/console.css"
           ).read_text()
    colours = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", css))

    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
                  for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    def ratio(fg: str, bg: str) -> float:
        hi, lo = sorted((luminance(colours[fg]), luminance(colours[bg])), reverse=True)
        return (hi + 0.05) / (lo + 0.05)

    pairs = [("fg", "bg"), ("fg", "card"), ("muted", "bg"), ("muted", "card"),
             ("accent", "bg"), ("accent", "card"), ("accent-fg", "accent"),
             ("danger", "bg"), ("danger-fg", "danger"), ("ok", "ok-bg"), ("ok", "bg"),
             ("warn", "warn-bg"), ("high", "high-bg"), ("medium", "medium-bg"),
             ("low", "low-bg"), ("none", "none-bg"), ("topbar-fg", "topbar"),
             ("focus", "bg")]
    low = {f"{fg} on {bg}": round(ratio(fg, bg), 2) for fg, bg in pairs
           if ratio(fg, bg) < 4.5}
    assert low == {}


def test_a_claim_not_analysed_yet_or_unreadable_still_has_a_page(svc, client, keys, world):
    from refundlens.store.tables import ClaimPhoto

    pending = _claim(client, keys, world["a"], jpeg(textured_rgb(320, 240, seed=40)), "b-9")
    _signed_in(client, "rev")
    page = client.get(f"/console/claims/{pending}")
    assert page.status_code == 200 and "尚未分析完成" in page.text
    with svc.db.write() as session:
        session.execute(update(ClaimPhoto).where(ClaimPhoto.claim_id == pending).values(
            analysis={"status": "error", "error": {"code": "corrupt_photo",
                                                   "message": "truncated JPEG"},
                      "findings": [], "risk": None}))
    page = client.get(f"/console/claims/{pending}?lang=en")
    assert page.status_code == 200 and "Analysis failed: truncated JPEG" in page.text
