"""Read models of the catalogue: merchants, products with reference photos, orders."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from ..errors import NotFound
from ..store.tables import Claim, Merchant, Order, Product, ReferencePhoto, ShippingEvidence
from .intake import format_amount
from .service import Service

__all__ = ["merchant_view", "order_view", "product_view"]


def _reference(r: ReferencePhoto) -> dict[str, Any]:
    return {"id": r.id, "sha256": r.sha256, "filename": r.filename,
            "content_type": r.content_type, "width": r.width, "height": r.height,
            "url": f"/api/v1/blobs/{r.sha256}", "created_at": r.created_at.isoformat()}


def _product(session: Any, p: Product) -> dict[str, Any]:
    refs = session.execute(select(ReferencePhoto).where(ReferencePhoto.product_id == p.id)
                           .order_by(ReferencePhoto.created_at)).scalars().all()
    return {"id": p.id, "merchant_id": p.merchant_id, "sku": p.sku, "name": p.name,
            "references": [_reference(r) for r in refs], "created_at": p.created_at.isoformat()}


def merchant_view(svc: Service, merchant_id: str) -> dict[str, Any]:
    with svc.db.read() as session:
        merchant = session.get(Merchant, merchant_id)
        if merchant is None:
            raise NotFound(f"merchant {merchant_id!r}: no such merchant", field="merchant_id")
        products = session.execute(select(Product).where(Product.merchant_id == merchant_id)
                                   .order_by(Product.sku)).scalars().all()
        return {"id": merchant.id, "name": merchant.name,
                "created_at": merchant.created_at.isoformat(),
                "products": [_product(session, p) for p in products]}


def product_view(svc: Service, product_id: str, *, merchant_scope: str | None = None
                 ) -> dict[str, Any]:
    with svc.db.read() as session:
        product = session.get(Product, product_id)
        if product is None or (merchant_scope and product.merchant_id != merchant_scope):
            raise NotFound(f"product {product_id!r}: no such product", field="product_id")
        return _product(session, product)


def order_view(svc: Service, order_id: str, *, merchant_scope: str | None = None,
               with_pii: bool = False) -> dict[str, Any]:
    with svc.db.read() as session:
        order = session.get(Order, order_id)
        if order is None or (merchant_scope and order.merchant_id != merchant_scope):
            raise NotFound(f"order {order_id!r}: no such order", field="order_id")
        evidence = session.execute(select(ShippingEvidence).where(
            ShippingEvidence.order_id == order_id).order_by(ShippingEvidence.created_at)
        ).scalars().all()
        claims = session.execute(select(Claim.id, Claim.status).where(
            Claim.order_id == order_id).order_by(Claim.created_at)).all()
        view = {"id": order.id, "merchant_id": order.merchant_id, "buyer": order.buyer,
                "amount": format_amount(order.amount_cents), "currency": order.currency,
                "items": order.items or [],
                "shipped_at": order.shipped_at.isoformat() if order.shipped_at else None,
                "delivered_at": order.delivered_at.isoformat() if order.delivered_at else None,
                "shipping_evidence": [{"id": e.id, "sha256": e.sha256, "filename": e.filename,
                                       "kind": e.kind, "url": f"/api/v1/blobs/{e.sha256}"}
                                      for e in evidence],
                "claims": [{"id": c.id, "status": c.status} for c in claims]}
        if with_pii and order.buyer_pii:
            view["buyer_pii"] = json.loads(svc.cipher.open(order.buyer_pii, context=order.id))
        return view
