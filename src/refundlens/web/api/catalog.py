"""Merchants, products, reference photos, orders and shipping evidence."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from ...claims import catalog_views, intake
from ...claims.access import Caller
from ...claims.service import Service
from ...errors import NotFound
from ..deps import caller, service
from ..schemas import Created, MerchantCreate, OrderCreate, ProductCreate
from .uploads import read_form, single

router = APIRouter(tags=["catalog"])


@router.post("/merchants", response_model=Created, status_code=201)
def create_merchant(body: MerchantCreate, svc: Service = Depends(service),
                    who: Caller = Depends(caller)) -> Created:
    who.require("admin", "intake")
    return Created(id=intake.create_merchant(svc, name=body.name, actor=who.actor).id)


@router.post("/merchants/{merchant_id}/products", response_model=Created, status_code=201)
def create_product(merchant_id: str, body: ProductCreate, svc: Service = Depends(service),
                   who: Caller = Depends(caller)) -> Created:
    who.require("admin", "intake", "merchant")
    if who.merchant_scope and who.merchant_scope != merchant_id:
        raise NotFound(f"merchant {merchant_id!r}: no such merchant", field="merchant_id")
    product = intake.create_product(svc, merchant_id, sku=body.sku, name=body.name,
                                    actor=who.actor)
    return Created(id=product.id)


@router.post("/products/{product_id}/references", response_model=Created, status_code=201,
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["file"],
                 "properties": {"file": {"type": "string", "format": "binary"}}}}}}})
async def add_reference(product_id: str, request: Request, who: Caller = Depends(caller)
                        ) -> Created:
    """Add a listing photo (form field ``file``) to a product."""
    who.require("admin", "intake", "merchant")
    _, files = await read_form(request, max_files=1, field="file")
    upload = single(files, "file")
    ref = await run_in_threadpool(intake.add_reference, request.app.state.service, product_id,
                                  upload, actor=who.actor, merchant_scope=who.merchant_scope)
    return Created(id=ref.id)


@router.post("/orders", response_model=Created, status_code=201)
def create_order(body: OrderCreate, svc: Service = Depends(service),
                 who: Caller = Depends(caller)) -> Created:
    who.require("admin", "intake", "merchant")
    order = intake.create_order(
        svc, merchant_id=body.merchant_id, buyer_id=body.buyer_id, amount=body.amount,
        items=body.items, shipped_at=body.shipped_at, delivered_at=body.delivered_at,
        currency=body.currency, buyer=body.buyer.model_dump(exclude_none=True)
        if body.buyer else None, actor=who.actor, merchant_scope=who.merchant_scope)
    return Created(id=order.id)


@router.post("/orders/{order_id}/shipping-evidence", response_model=Created, status_code=201,
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["file"],
                 "properties": {"file": {"type": "string", "format": "binary"}}}}}}})
async def add_shipping_evidence(order_id: str, request: Request,
                                who: Caller = Depends(caller)) -> Created:
    """Add a packing or shipping photo (form field ``file``) to an order."""
    who.require("admin", "intake", "merchant")
    _, files = await read_form(request, max_files=1, field="file")
    row = await run_in_threadpool(intake.add_shipping_evidence, request.app.state.service,
                                  order_id, single(files, "file"), actor=who.actor,
                                  merchant_scope=who.merchant_scope)
    return Created(id=row.id)


def _merchant_visible(who: Caller, merchant_id: str) -> None:
    if who.merchant_scope and who.merchant_scope != merchant_id:
        raise NotFound(f"merchant {merchant_id!r}: no such merchant", field="merchant_id")


@router.get("/merchants/{merchant_id}")
def get_merchant(merchant_id: str, svc: Service = Depends(service),
                 who: Caller = Depends(caller)) -> dict[str, Any]:
    """A merchant with its products and their reference photos."""
    _merchant_visible(who, merchant_id)
    return catalog_views.merchant_view(svc, merchant_id)


@router.get("/products/{product_id}")
def get_product(product_id: str, svc: Service = Depends(service),
                who: Caller = Depends(caller)) -> dict[str, Any]:
    """A product and its reference photos."""
    return catalog_views.product_view(svc, product_id, merchant_scope=who.merchant_scope)


@router.get("/orders/{order_id}")
def get_order(order_id: str, svc: Service = Depends(service),
              who: Caller = Depends(caller)) -> dict[str, Any]:
    """An order (the buyer as a pseudonym; personal data only for admins), its shipping
    evidence and its claims."""
    return catalog_views.order_view(svc, order_id, merchant_scope=who.merchant_scope,
                                    with_pii=who.role == "admin")
