"""Issue 3 §2: every error the API answers has one JSON shape,
``{"error": {"code", "message", "field"}}``, with a stable code and the field at fault, on
both databases — service checks, FastAPI's own validation, unknown routes, and a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import jpeg, textured_rgb
from refundlens.web import create_app
from refundlens.web.deps import caller

PHOTO = jpeg(textured_rgb(96, 72, seed=4))


def _error(response: Any, status: int, code: str, field: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "field"}, error
    assert error["code"] == code, error
    assert error["field"] == field, error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    if field:
        # the message names the input at fault ("merchant 'mer_x'" names merchant_id)
        name = field.split(".")[0].split("[")[0]
        assert name.removesuffix("_id") in error["message"], error
    return error


@pytest.fixture
def order(client: Any, keys: Any) -> dict[str, str]:
    merchant = client.post("/api/v1/merchants", json={"name": "Shop"}, headers=keys.admin)
    assert merchant.status_code == 201, merchant.text
    created = client.post("/api/v1/orders", json={
        "merchant_id": merchant.json()["id"], "buyer_id": "buyer-1", "amount": "100.00",
        "items": [{"sku": "A-1"}]}, headers=keys.intake)
    assert created.status_code == 201, created.text
    return {"merchant_id": merchant.json()["id"], "order_id": created.json()["id"]}


def _claim_fields(order: str, **changes: Any) -> dict[str, str]:
    fields = {"order_id": order, "type": "refund_only", "reason": "broken",
              "amount": "50.00"}
    for name, value in changes.items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return fields


def _total_claims(client: Any, keys: Any) -> int:
    return client.get("/api/v1/claims", headers=keys.admin).json()["total"]


# --- claim intake ------------------------------------------------------------------------

@pytest.mark.parametrize("changes,status,code,field", [
    ({"amount": "abc"}, 422, "invalid_input", "amount"),
    ({"amount": "-1"}, 422, "invalid_input", "amount"),
    ({"amount": "0"}, 422, "invalid_input", "amount"),
    ({"amount": "1.234"}, 422, "invalid_input", "amount"),
    ({"amount": "NaN"}, 422, "invalid_input", "amount"),
    ({"amount": None}, 422, "invalid_input", "amount"),
    ({"amount": "100.01"}, 422, "invalid_input", "amount"),  # more than the order
    ({"type": "gift"}, 422, "invalid_input", "type"),
    ({"type": None}, 422, "invalid_input", "type"),
    ({"order_id": None}, 422, "invalid_input", "order_id"),
    ({"order_id": ""}, 422, "invalid_input", "order_id"),
    ({"order_id": "ord_doesnotexist"}, 404, "not_found", "order_id"),
    ({"reason": "x" * 2001}, 422, "invalid_input", "reason"),
], ids=lambda v: str(v)[:30])
def test_bad_claim_fields_name_the_field_and_store_nothing(client, keys, order, changes,
                                                           status, code, field):
    response = client.post("/api/v1/claims", data=_claim_fields(order["order_id"], **changes),
                           files=[("photos", ("p.jpg", PHOTO, "image/jpeg"))],
                           headers=keys.intake)
    _error(response, status, code, field)
    assert _total_claims(client, keys) == 0


def test_a_claim_without_photos_names_the_photos_field(client, keys, order):
    response = client.post("/api/v1/claims", data=_claim_fields(order["order_id"]),
                           headers=keys.intake)
    error = _error(response, 422, "invalid_input", "photos")
    assert "no photo" in error["message"]


def test_a_photo_in_the_wrong_form_field_is_named(client, keys, order):
    response = client.post("/api/v1/claims", data=_claim_fields(order["order_id"]),
                           files=[("photos", ("p.jpg", PHOTO, "image/jpeg")),
                                  ("image", ("q.jpg", PHOTO, "image/jpeg"))],
                           headers=keys.intake)
    error = _error(response, 422, "invalid_input", "image")
    assert "'photos'" in error["message"]


def test_an_overlong_idempotency_key_is_named(client, keys, order):
    response = client.post("/api/v1/claims", data=_claim_fields(order["order_id"]),
                           files=[("photos", ("p.jpg", PHOTO, "image/jpeg"))],
                           headers={**keys.intake, "Idempotency-Key": "k" * 201})
    _error(response, 422, "invalid_input", "Idempotency-Key")
    assert _total_claims(client, keys) == 0


@pytest.mark.parametrize("kwargs", [
    {"json": {"order_id": "x", "type": "refund_only", "amount": "1.00"}},
    {"content": b"order_id=x", "headers": {"Content-Type": "text/plain"}},
    {"content": b"\x89PNG", "headers": {"Content-Type": "image/png"}},
    {"content": b""},
], ids=["json", "text", "image", "no-body"])
def test_a_claim_body_that_is_not_a_form_is_415(client, keys, kwargs):
    headers = {**keys.intake, **kwargs.pop("headers", {})}
    error = _error(client.post("/api/v1/claims", headers=headers, **kwargs), 415,
                   "unsupported_media_type", "content-type")
    assert "multipart/form-data" in error["message"]


def _multipart(order_id: str, **changes: Any) -> tuple[bytes, dict[str, str]]:
    """A claim form as the bytes a client sends, and its content-type header."""
    request = httpx.Request("POST", "http://test/", data=_claim_fields(order_id, **changes),
                            files=[("photos", ("p.jpg", PHOTO, "image/jpeg"))])
    return request.read(), {"Content-Type": request.headers["content-type"]}


@pytest.mark.parametrize("name,values", [("type", ["refund_only", "return_refund"]),
                                         ("amount", ["50.00", "50.00", "1.00"])])
def test_a_text_field_given_twice_is_refused_naming_it(client, keys, order, name, values):
    """Not the last one silently winning (a form's `type` could flip a claim's kind)."""
    response = client.post("/api/v1/claims",
                           data={**_claim_fields(order["order_id"]), name: values},
                           files=[("photos", ("p.jpg", PHOTO, "image/jpeg"))],
                           headers=keys.intake)
    error = _error(response, 422, "invalid_input", name)
    assert error["message"] == f"{name}: given {len(values)} times; send it once"
    assert _total_claims(client, keys) == 0


@pytest.mark.parametrize("photo", [None, ("p.jpg", PHOTO, "image/jpeg")],
                         ids=["text-only", "with-a-photo"])
def test_text_in_the_photos_field_says_it_expects_a_file(client, keys, order, photo):
    files = [("photos", (None, "hello"))] + ([("photos", photo)] if photo else [])
    response = client.post("/api/v1/claims", data=_claim_fields(order["order_id"]),
                           files=files, headers=keys.intake)
    error = _error(response, 422, "invalid_input", "photos")
    assert "expected a file" in error["message"] and "unknown" not in error["message"]
    assert _total_claims(client, keys) == 0


@pytest.mark.parametrize("where", ["in-the-photo", "in-the-fields", "in-the-closing-boundary"])
def test_a_truncated_multipart_body_is_400_and_stores_nothing(client, keys, order, where):
    """python-multipart does not say a body ended early: without the check, a body cut
    inside a photo was a claim without that photo, and one cut before `order_id` was
    reported as "order_id: missing"."""
    body, headers = _multipart(order["order_id"])
    cut = {"in-the-photo": body.index(PHOTO) + len(PHOTO) // 2,
           "in-the-fields": body.index(b'name="type"') + 5,
           "in-the-closing-boundary": len(body) - 5}[where]
    response = client.post("/api/v1/claims", content=body[:cut],
                           headers={**keys.intake, **headers})
    error = _error(response, 400, "bad_request", None)
    assert "truncated" in error["message"] and f"{cut} bytes" in error["message"], error
    assert _total_claims(client, keys) == 0


def test_a_body_sent_in_chunks_is_whole_when_the_closing_boundary_spans_two(client, keys,
                                                                            order):
    body, headers = _multipart(order["order_id"])
    split = len(body) - 8  # inside the closing "--boundary--"
    response = client.post("/api/v1/claims", content=iter([body[:split], body[split:]]),
                           headers={**keys.intake, **headers})
    assert response.status_code == 202, response.text


def test_a_malformed_multipart_body_is_400(client, keys, order):
    response = client.post("/api/v1/claims", content=b"order_id=x&type=refund_only",
                           headers={**keys.intake,
                                    "Content-Type": "multipart/form-data; boundary=b0und"})
    error = _error(response, 400, "bad_request", None)
    assert "malformed multipart/form-data" in error["message"], error
    assert _total_claims(client, keys) == 0


# --- JSON bodies -------------------------------------------------------------------------

def _order_body(merchant_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"merchant_id": merchant_id, "buyer_id": "buyer-9",
                            "amount": "10.00"}
    body.update(changes)
    return body


@pytest.mark.parametrize("changes,field,words", [
    ({"discount": "5"}, "discount", "unknown field"),
    ({"buyer": {"name": "x", "email": "a@b"}}, "buyer.email", "unknown field"),
    ({"amount": [1]}, "amount", "got [1]"),
    ({"amount": None}, "amount", "got None"),
    ({"amount": True}, "amount", "amount"),
    ({"amount": "ten"}, "amount", "'ten'"),
    ({"buyer_id": 42}, "buyer_id", "got 42"),
    ({"items": "OJ-1L"}, "items", "list"),
    ({"items": [5]}, "items[0]", "got 5"),
    ({"items": [{"sku": "A", "quantity": 0}]}, "items[0].quantity", "≥ 1"),
    ({"items": [{"sku": "A", "price": "x"}]}, "items[0].price", "'x'"),
    ({"items": [""]}, "items[0].sku", "missing"),
    ({"items": [{"sku": "  "}]}, "items[0].sku", "missing"),
    ({"items": ["A-1", {"sku": "S" * 150}]}, "items[1].sku", "150 characters, the limit is 100"),
    ({"items": ["A-1", "has space"]}, "items[1].sku", "no spaces"),
    ({"buyer": "Zhang San"}, "buyer", "got 'Zhang San'"),
    ({"shipped_at": "yesterday"}, "shipped_at", "ISO 8601"),
    ({"shipped_at": "2026-11-05T00:00:00Z", "delivered_at": "2026-11-01T00:00:00Z"},
     "delivered_at", "before"),
    ({"currency": "yuan"}, "currency", "ISO 4217"),
], ids=lambda v: str(v)[:30])
def test_bad_order_bodies_name_the_field(client, keys, order, changes, field, words):
    response = client.post("/api/v1/orders", json=_order_body(order["merchant_id"], **changes),
                           headers=keys.intake)
    error = _error(response, 422, "invalid_input", field)
    assert words in error["message"], error


def test_order_item_skus_are_kept_whole_and_need_no_product(client, keys, order, svc):
    """A 100-character SKU is stored as sent (longer ones are refused above, not cut to
    100); a SKU that is no product of the merchant is accepted: orders may list items
    without listing photos."""
    from refundlens.store.tables import Order

    long_sku = "S" * 100
    response = client.post("/api/v1/orders", json=_order_body(
        order["merchant_id"], items=[long_sku, {"sku": "NOT-A-PRODUCT", "quantity": 2}]),
        headers=keys.intake)
    assert response.status_code == 201, response.text
    with svc.db.read() as session:
        items = session.get(Order, response.json()["id"]).items
    assert [i["sku"] for i in items] == [long_sku, "NOT-A-PRODUCT"]


def test_a_missing_json_field_is_named(client, keys, order):
    body = _order_body(order["merchant_id"])
    del body["buyer_id"]
    error = _error(client.post("/api/v1/orders", json=body, headers=keys.intake), 422,
                   "invalid_input", "buyer_id")
    assert "missing" in error["message"]


def test_an_order_for_a_nonexistent_merchant_is_404(client, keys):
    _error(client.post("/api/v1/orders", json=_order_body("mer_nope"), headers=keys.intake),
           404, "not_found", "merchant_id")


@pytest.mark.parametrize("content", [b"{not json", b'{"name": "x",}', b"\xff\xfe"])
def test_a_body_that_is_not_json_is_422(client, keys, content):
    error = _error(client.post("/api/v1/merchants", content=content,
                               headers={**keys.admin, "Content-Type": "application/json"}),
                   422, "invalid_input", None)
    assert "JSON" in error["message"]


def test_a_json_array_instead_of_an_object_is_422(client, keys):
    _error(client.post("/api/v1/merchants", json=["x"], headers=keys.admin), 422,
           "invalid_input", None)


@pytest.mark.parametrize("path,body,field", [
    ("/api/v1/merchants", {"name": 5}, "name"),
    ("/api/v1/merchants", {"name": ""}, "name"),
    ("/api/v1/merchants", {}, "name"),
    ("/api/v1/keys", {"role": "god"}, "role"),
    ("/api/v1/keys", {"role": "merchant"}, "merchant_id"),
    ("/api/v1/keys", {"role": "admin", "merchant_id": "mer_x"}, "merchant_id"),
    ("/api/v1/keys", {"role": ["admin"]}, "role"),
])
def test_bad_admin_bodies_name_the_field(client, keys, path, body, field):
    _error(client.post(path, json=body, headers=keys.admin), 422, "invalid_input", field)


def test_a_product_for_a_nonexistent_merchant_and_a_duplicate_sku(client, keys, order):
    _error(client.post("/api/v1/merchants/mer_nope/products", json={"sku": "A", "name": "a"},
                       headers=keys.admin), 404, "not_found", "merchant_id")
    url = f"/api/v1/merchants/{order['merchant_id']}/products"
    assert client.post(url, json={"sku": "A", "name": "a"}, headers=keys.admin
                       ).status_code == 201
    _error(client.post(url, json={"sku": "A", "name": "b"}, headers=keys.admin), 409,
           "duplicate_sku", "sku")
    _error(client.post(url, json={"sku": "has space", "name": "b"}, headers=keys.admin), 422,
           "invalid_input", "sku")


# --- decisions and states ----------------------------------------------------------------

@pytest.fixture
def claim_id(client: Any, keys: Any, order: dict[str, str]) -> str:
    response = client.post("/api/v1/claims", data=_claim_fields(order["order_id"]),
                           files=[("photos", ("p.jpg", PHOTO, "image/jpeg"))],
                           headers=keys.intake)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_decision_errors(client, keys, claim_id):
    url = f"/api/v1/claims/{claim_id}/decision"
    _error(client.post(url, json={"outcome": "maybe"}, headers=keys.reviewer), 422,
           "invalid_input", "outcome")
    _error(client.post(url, json={"outcome": 5}, headers=keys.reviewer), 422,
           "invalid_input", "outcome")
    _error(client.post(url, json={"outcome": "rejected"}, headers=keys.reviewer), 422,
           "invalid_input", "reason")
    _error(client.post(url, json={"outcome": "approved", "note": "x"}, headers=keys.reviewer),
           422, "invalid_input", "note")
    _error(client.post("/api/v1/claims/clm_nope/decision", json={"outcome": "approved"},
                       headers=keys.reviewer), 404, "not_found", "claim_id")
    assert client.post(url, json={"outcome": "approved"}, headers=keys.reviewer
                       ).status_code == 201
    _error(client.post(url, json={"outcome": "approved"}, headers=keys.reviewer), 409,
           "invalid_state", "claim_id")
    detail = client.get(f"/api/v1/claims/{claim_id}", headers=keys.admin).json()
    assert [d["outcome"] for d in detail["decisions"]] == ["approved"]


def test_an_undecided_claim_cannot_be_appealed(client, keys, claim_id):
    _error(client.post(f"/api/v1/claims/{claim_id}/appeals", json={"reason": "please"},
                       headers=keys.intake), 409, "invalid_state", "claim_id")
    _error(client.post(f"/api/v1/claims/{claim_id}/appeals", json={"reason": " "},
                       headers=keys.intake), 422, "invalid_input", "reason")


def test_unknown_claim_is_404(client, keys):
    _error(client.get("/api/v1/claims/clm_nope", headers=keys.reviewer), 404, "not_found",
           "claim_id")


# --- query parameters, routes ------------------------------------------------------------

@pytest.mark.parametrize("query,field", [
    ("limit=abc", "limit"), ("limit=0", "limit"), ("limit=100000", "limit"),
    ("offset=-1", "offset"), ("sort=bogus", "sort"), ("risk_level=extreme", "risk_level"),
    ("min_age_hours=soon", "min_age_hours"),
    ("status=bogus", "status"), ("status=in_review,bogus", "status"),
    ("status=IN_REVIEW", "status"),
])
def test_bad_query_parameters_name_the_parameter(client, keys, query, field):
    _error(client.get(f"/api/v1/claims?{query}", headers=keys.reviewer), 422, "invalid_input",
           field)


def test_a_status_filter_accepts_every_claim_state_and_names_them_when_refused(client, keys):
    from refundlens.store.tables import CLAIM_STATUSES

    everything = client.get(f"/api/v1/claims?status={','.join(CLAIM_STATUSES)}",
                            headers=keys.reviewer)
    assert everything.status_code == 200, everything.text
    error = _error(client.get("/api/v1/claims?status=in_review,bogus", headers=keys.reviewer),
                   422, "invalid_input", "status")
    assert "'bogus'" in error["message"]
    assert all(status in error["message"] for status in CLAIM_STATUSES), error


def test_the_claim_states_are_the_ones_the_console_and_reports_name():
    """One list of claim states (store.tables.CLAIM_STATUSES); the words for them in the
    console and the PDF report must cover them all."""
    from refundlens.reports.pdf import _TERMS
    from refundlens.store.tables import CLAIM_STATUSES
    from refundlens.web.console.i18n import TEXT

    assert set(_TERMS["status"]) >= set(CLAIM_STATUSES)  # and an appeal's "decided"
    assert {k.removeprefix("status_") for k in TEXT if k.startswith("status_")} \
        == set(CLAIM_STATUSES)


def test_unknown_routes_and_methods_have_the_error_shape(client, keys):
    error = _error(client.get("/api/v1/nothing", headers=keys.admin), 404, "not_found", None)
    assert "/api/v1/nothing" in error["message"]
    _error(client.delete("/api/v1/claims", headers=keys.admin), 405, "method_not_allowed",
           None)


# --- unexpected failures -----------------------------------------------------------------

def test_an_unexpected_exception_is_a_500_with_the_error_shape(svc, settings, keys):
    app = create_app(settings, service=svc, workers=False)

    def broken_caller() -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    app.dependency_overrides[caller] = broken_caller
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/v1/claims", headers=keys.admin)
        error = _error(response, 500, "internal_error", None)
        assert "secret internal detail" not in error["message"]
        assert "retry" in error["message"]
        # health does not need the caller and still answers
        assert client.get("/api/v1/health").status_code == 200


def test_a_closed_database_is_a_500_with_the_error_shape(svc, settings, keys):
    app = create_app(settings, service=svc, workers=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/v1/claims", headers=keys.admin).status_code == 200
        real = svc.db

        class Closed:
            def __getattr__(self, name: str) -> Any:
                def fail(*args: Any, **kwargs: Any) -> Any:
                    raise ConnectionError("database is gone")
                return fail

        svc.db = Closed()  # type: ignore[assignment]
        try:
            other = {"Authorization": keys.reviewer["Authorization"]}
            response = client.get("/api/v1/claims", headers=other)
            assert response.status_code == 500, response.text
            _error(response, 500, "internal_error", None)
            assert client.get("/api/v1/health").status_code in (500, 503)
        finally:
            svc.db = real
