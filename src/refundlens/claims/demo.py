"""``refundlens serve --demo``: a demo merchant, its product and listing photo, orders and
the bundled sample claims (``refundlens/demo/samples``, from ../shared/data; see
SOURCES.md there), filed through the same intake as real claims so the workers analyse
and route them. Seeding twice adds nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from ..demo import SAMPLES
from ..store.tables import Merchant
from .intake import Upload, add_reference, create_claim, create_merchant, create_order, \
    create_product
from .service import Service

__all__ = ["DEMO_MERCHANT", "seed_demo"]

DEMO_MERCHANT = "RefundLens 演示旗舰店 (demo store)"
#: Demo console users' password: a demo on a laptop, printed at start; never use --demo on
#: a deployment that holds real claims.
DEMO_PASSWORD = "refundlens-demo"


def seed_demo(svc: Service) -> str:
    """Seed the demo data; returns one line saying what was done."""
    with svc.db.read() as session:
        if session.execute(select(Merchant).where(Merchant.name == DEMO_MERCHANT)).first():
            return (f"demo data already seeded; console users demo-reviewer and "
                    f"demo-merchant, password {DEMO_PASSWORD!r}")
    merchant = create_merchant(svc, name=DEMO_MERCHANT, actor="demo")
    product = create_product(svc, merchant.id, sku="OJ-1L", name="鲜榨橙汁 1L / Orange juice 1 L",
                             actor="demo")
    listing = SAMPLES / "listing-orange-juice.jpg"
    add_reference(svc, product.id, Upload(listing.read_bytes(), listing.name), actor="demo")
    claims = json.loads((SAMPLES / "claims.json").read_text(encoding="utf-8"))
    now = datetime.now(timezone.utc)
    for sample in claims:  # one buyer each: claim-007 reuses claim-001's photo
        order = create_order(
            svc, merchant_id=merchant.id, buyer_id=f"demo-buyer-{sample['id']}",
            amount="59.00", items=[{"sku": "OJ-1L", "name": "鲜榨橙汁 1L", "quantity": 1}],
            shipped_at=(now - timedelta(days=4)).isoformat(),
            delivered_at=(now - timedelta(days=2)).isoformat(), actor="demo",
            buyer={"name": "演示买家", "phone": "13800000000", "address": "上海市演示路 1 号"})
        photo = SAMPLES / sample["photo"]
        create_claim(svc, order_id=order.id, type="refund_only",
                     reason=f"商品破损 / damaged on arrival ({sample['story']})",
                     amount="59.00", photos=[Upload(photo.read_bytes(), photo.name, "photos")],
                     actor="demo", idempotency_key=f"demo-{sample['id']}")
    from .access import create_user

    for username, role, merchant_id in (("demo-reviewer", "reviewer", None),
                                        ("demo-merchant", "merchant", merchant.id)):
        create_user(svc, username=username, password=DEMO_PASSWORD, role=role,
                    merchant_id=merchant_id, actor="demo")
    return (f"demo data seeded: merchant {merchant.id}, product {product.id}, "
            f"{len(claims)} claims queued for analysis; console users demo-reviewer and "
            f"demo-merchant, password {DEMO_PASSWORD!r}")
