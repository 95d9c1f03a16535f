"""The console as a person uses it: a real ``refundlens serve`` (job workers on) in a
subprocess, seeded through the API, driven by Debian's chromium through Playwright.

Reviewer: sign in, open the queue, open a claim, toggle the overlays, use the slider and
the shortcuts, reject with a reason — and the decision is in the API. A merchant answers
its claim with text and a photo, and cannot open another merchant's claim. Screenshots of
the main pages go to a temporary directory (and to REFUNDLENS_SCREENSHOTS_DIR when set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import jpeg, painted_crack, textured_rgb
from console_support import CHROMIUM, PASSWORD, LiveServer, save_screenshot, stain

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"),
]

REASON = "照片由商家主图篡改而来 / edited from the merchant's listing photo"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    server = LiveServer(tmp_path_factory.mktemp("live")).start()
    try:
        shop_a = server.seed_merchant("甲店 Shop A", seed=3)
        shop_b = server.seed_merchant("乙店 Shop B", seed=5)
        forged_a = jpeg(painted_crack(shop_a["reference"]), 90)
        claims = {
            "a1": server.file_claim(shop_a, "buyer-1", forged_a),
            "a2": server.file_claim(shop_a, "buyer-2", jpeg(stain(shop_a["reference"]), 88)),
            "b1": server.file_claim(shop_b, "buyer-3",
                                    jpeg(painted_crack(shop_b["reference"]), 90)),
        }
        server.cli("users", "create", "--role", "reviewer", "--username", "rita",
                   "--password", PASSWORD)
        server.cli("users", "create", "--role", "merchant", "--username", "shop-a",
                   "--password", PASSWORD, "--merchant", shop_a["merchant_id"])
        server.cli("users", "create", "--role", "merchant", "--username", "shop-b",
                   "--password", PASSWORD, "--merchant", shop_b["merchant_id"])
        server.wait_for(list(claims.values()), ("in_review",))
        yield {"server": server, "claims": claims, "shop_a": shop_a, "shop_b": shop_b}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _page(browser: Any, live: dict[str, Any]) -> Any:
    context = browser.new_context(base_url=live["server"].url, locale="zh-CN",
                                  viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(20_000)
    return context.new_page()


def _sign_in(page: Any, username: str) -> None:
    page.goto("/console")
    assert "/console/login" in page.url
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_load_state()


def test_a_reviewer_reviews_and_rejects_and_the_api_shows_it(browser, live, shots):
    server, claims = live["server"], live["claims"]
    page = _page(browser, live)
    _sign_in(page, "rita")
    assert page.url.endswith("/console/queue")
    assert page.get_by_role("heading", name="待审核申请").is_visible()
    for claim_id in claims.values():
        assert page.get_by_role("link", name=claim_id).is_visible()
    assert int(page.locator("#count-matching").inner_text()) == 3
    save_screenshot(page, shots, "01-queue")

    # j/k select rows, o opens the selected one
    page.keyboard.press("j")
    first = page.locator(".queue-row.selected a.claim-link").inner_text()
    page.keyboard.press("o")
    page.wait_for_url(f"**/console/claims/{first}**")
    page.go_back()

    # filters narrow the queue (merchant B has one claim)
    page.get_by_label("商家").select_option(live["shop_b"]["merchant_id"])
    page.get_by_role("button", name="应用").click()
    assert int(page.locator("#count-matching").inner_text()) == 1
    assert page.get_by_role("link", name=claims["b1"]).is_visible()
    page.goto("/console/queue")

    page.get_by_role("link", name=claims["a1"]).click()
    page.wait_for_url(f"**/console/claims/{claims['a1']}**")
    assert page.locator("table.findings").first.inner_text().count("REFERENCE_ALTERED") >= 1
    boxes, heat = page.locator(".overlay-boxes").first, page.locator(".overlay-heat").first
    assert boxes.is_visible() and not heat.is_visible()
    assert page.locator(".overlay-boxes rect").count() >= 1
    save_screenshot(page, shots, "02-claim")

    page.get_by_label("热力图").check()
    assert heat.is_visible()
    page.keyboard.press("b")  # shortcut: boxes off
    assert not boxes.is_visible()
    page.keyboard.press("b")
    assert boxes.is_visible()
    save_screenshot(page, shots, "03-claim-heatmap")

    # the matched listing photo: side by side and under the slider, warped onto the claim
    compare = page.locator(".compare-block").first
    assert compare.is_visible()
    assert "matrix3d" in page.locator(".compare-ref").first.evaluate("e => e.style.transform")
    compare.locator("input[type=range]").fill("20")
    assert "80%" in page.locator(".compare-top").first.evaluate("e => e.style.clipPath")
    compare.scroll_into_view_if_needed()
    save_screenshot(page, shots, "04-claim-compare")

    # the shortcut help
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("?")
    help_dialog = page.locator("#shortcuts-dialog")
    assert help_dialog.is_visible() and "驳回" in help_dialog.inner_text()
    page.keyboard.press("Escape")
    assert not help_dialog.is_visible()

    # r focuses the rejection reason; Ctrl+Enter sends it
    page.keyboard.press("r")
    assert page.evaluate("document.activeElement.id") == "reject-reason"
    page.keyboard.type(REASON)
    page.keyboard.press("Control+Enter")
    page.wait_for_load_state()
    assert page.locator(".flash.ok").inner_text() == "已驳回该申请。"
    save_screenshot(page, shots, "05-after-reject")

    detail = server.api("GET", f"/claims/{claims['a1']}").json()
    assert detail["status"] == "rejected"
    decision = detail["decisions"][-1]
    assert (decision["outcome"], decision["reason"], decision["actor"]) == \
        ("rejected", REASON, "user:rita")
    assert decision["audit_hash"] and any(
        e["action"] == "decided" and e["actor"] == "user:rita" for e in detail["timeline"])

    # a note through fetch (X-CSRF-Token header), no reload
    page.goto(f"/console/claims/{claims['a2']}")
    marker = page.evaluate("window.__marker = 42")
    page.keyboard.press("n")
    page.keyboard.type("买家此前有类似申请 / similar claims before")
    page.keyboard.press("Control+Enter")
    page.locator("#notes-list li").first.wait_for()
    assert page.evaluate("window.__marker") == marker  # the page was not reloaded
    notes = [e for e in server.api("GET", f"/claims/{claims['a2']}").json()["timeline"]
             if e["action"] == "note_added"]
    assert notes and notes[-1]["actor"] == "user:rita"

    # English, remembered across pages
    page.get_by_role("link", name="English").click()
    assert page.get_by_role("heading", name=f"Claim {claims['a2']}").is_visible()
    page.goto("/console/queue")
    assert page.get_by_role("heading", name="Claims waiting for review").is_visible()
    save_screenshot(page, shots, "06-queue-en")

    pdf = page.request.get(f"/console/claims/{claims['a1']}/report.pdf")
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body()[:5] == b"%PDF-"
    page.context.close()


def test_a_merchant_answers_its_claim_and_cannot_open_another_merchants(browser, live,
                                                                         shots):
    server, claims = live["server"], live["claims"]
    page = _page(browser, live)
    _sign_in(page, "shop-a")
    assert page.url.endswith("/console/merchant")
    listed = page.locator("#merchant-claims").inner_text()
    assert claims["a2"] in listed and claims["b1"] not in listed
    save_screenshot(page, shots, "07-merchant-claims")

    page.get_by_role("link", name=claims["a2"]).click()
    page.wait_for_url(f"**/console/claims/{claims['a2']}")
    assert page.get_by_role("heading", name="检测结果与原因").is_visible()
    assert page.locator("#answer-form").is_visible()
    save_screenshot(page, shots, "08-merchant-claim")

    packing = jpeg(textured_rgb(640, 480, seed=77), 90)
    page.get_by_label("说明（最多 5000 字）").fill("发货前已拍照留证 / photographed at packing")
    page.get_by_label("照片与打包/发货视频（可多选）").set_input_files(
        [{"name": "packing.jpg", "mimeType": "image/jpeg", "buffer": packing}])
    page.get_by_role("button", name="提交答复").click()
    page.wait_for_load_state()
    assert page.locator(".flash.ok").inner_text() == "答复已提交。"
    save_screenshot(page, shots, "09-merchant-answered")

    responses = server.api("GET", f"/claims/{claims['a2']}").json()["merchant_responses"]
    assert responses[-1]["text"] == "发货前已拍照留证 / photographed at packing"
    assert responses[-1]["actor"] == "user:shop-a"
    assert [f["kind"] for f in responses[-1]["files"]] == ["photo"]

    other = page.goto(f"/console/claims/{claims['b1']}")
    assert other.status == 404
    assert page.locator(".flash.error").inner_text() == "找不到该页面或申请。"
    assert page.request.get(f"/console/claims/{claims['b1']}/report.pdf").status == 404
    reviewer_page = page.goto("/console/queue")
    assert reviewer_page.status == 403

    page.goto("/console/products")
    assert page.get_by_role("heading", name="商品参考图").is_visible()
    save_screenshot(page, shots, "10-merchant-products")
    page.context.close()


def test_keyboard_and_labels(browser, live):
    page = _page(browser, live)
    _sign_in(page, "rita")
    page.goto("/console/queue")
    page.keyboard.press("Tab")  # the first stop is the skip link, and it lands on main
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert page.locator(".skip-link").is_visible()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    for path in ("/console/queue", f"/console/claims/{live['claims']['a2']}"):
        page.goto(path)
        unlabelled = page.evaluate("""() => [...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea, button')].filter(el =>
            !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
            && !el.getAttribute('aria-labelledby') && !el.textContent.trim()
            ).map(el => el.outerHTML.slice(0, 120))""")
        assert unlabelled == [], path
        images = page.evaluate("""() => [...document.querySelectorAll('img')].filter(
            el => !el.hasAttribute('alt')).length""")
        assert images == 0, path
        # every focusable control shows a focus outline
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), path
    page.context.close()



def test_a_reviewer_opens_an_appealed_claim_and_decides_the_appeal(browser, live, shots):
    server, claims = live["server"], live["claims"]
    claim = claims["b1"]
    decided = server.api("POST", f"/claims/{claim}/decision",
                         json={"outcome": "rejected", "reason": "照片与商家主图一致，仅添加了裂纹"})
    assert decided.status_code == 201, decided.text
    appealed = server.api("POST", f"/claims/{claim}/appeals", role="intake",
                          json={"reason": "买家补充：开箱视频显示到货即破损 / unboxing video"})
    assert appealed.status_code == 201, appealed.text

    page = _page(browser, live)
    _sign_in(page, "rita")
    page.get_by_label("状态").select_option("appealed")
    page.get_by_role("button", name="应用").click()
    page.wait_for_url("**status=appealed**")
    row = page.locator(".queue-row", has=page.get_by_role("link", name=claim))
    assert row.locator(".badge.appeal").inner_text() == "申诉"
    assert "申诉原结果：已驳回" in row.inner_text()
    save_screenshot(page, shots, "11-queue-appeals")

    page.get_by_role("link", name=claim).click()
    page.wait_for_url(f"**/console/claims/{claim}**")
    appeal = page.locator("#appeals")
    assert appeal.is_visible()
    appealed_decision = appeal.locator(".appealed-decision").inner_text()
    assert "已驳回" in appealed_decision and "仅添加了裂纹" in appealed_decision
    assert "开箱视频显示到货即破损" in appeal.locator(".appeal-filed").inner_text()
    # the two sit side by side
    left = appeal.locator(".appealed-decision").bounding_box()
    right = appeal.locator(".appeal-filed").bounding_box()
    assert right["x"] > left["x"] + left["width"] - 1 and abs(right["y"] - left["y"]) < 2
    assert page.get_by_role("heading", name="处理申诉").is_visible()
    assert "申诉" in page.locator("#appeal-note").inner_text()
    save_screenshot(page, shots, "12-appeal-claim")

    # a approves: the dialog says it is the appeal being decided
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("a")
    dialog = page.locator("#approve-dialog")
    assert dialog.is_visible() and "申诉复审" in dialog.inner_text()
    save_screenshot(page, shots, "13-appeal-approve-dialog")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert page.locator(".flash.ok").inner_text() == "申诉已复审：同意退款。"
    save_screenshot(page, shots, "14-appeal-decided")

    detail = server.api("GET", f"/claims/{claim}").json()
    assert detail["status"] == "approved"
    assert [a["status"] for a in detail["appeals"]] == ["decided"]
    assert (detail["decisions"][-1]["outcome"], detail["decisions"][-1]["actor"]) == \
        ("approved", "user:rita")
    page.goto(f"/console/claims/{claim}")
    assert "user:rita" in page.locator("#appeals .appeal-answer").inner_text()
    page.context.close()
