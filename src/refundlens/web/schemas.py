"""Request and response bodies of the REST API (the OpenAPI schema is built from these).

Bodies are typed loosely where the service checks values itself, so a bad value gets the
service's message ("amount: got 'x', expected an amount such as \\"129.00\\"") rather than
a generic one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

__all__ = [
    "AppealCreate", "Created", "DecisionCreate", "EscalateCreate", "MerchantCreate",
    "NoteCreate", "OrderCreate", "ProductCreate", "WebhookCreate",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Created(BaseModel):
    id: str


class ClaimAccepted(BaseModel):
    id: str
    status: str


class MerchantCreate(_Body):
    name: str = Field(description="The merchant's shop name.")


class ProductCreate(_Body):
    sku: str = Field(description="The merchant's SKU; order items refer to products by it.")
    name: str


class BuyerPII(_Body):
    name: str | None = None
    phone: str | None = None
    address: str | None = None


class OrderCreate(_Body):
    merchant_id: str
    buyer_id: str = Field(description="The platform's buyer id; stored only as a keyed "
                                      "pseudonym.")
    # strict: JSON true is not an amount (lax mode would read it as 1)
    amount: StrictStr | StrictFloat | StrictInt = Field(
        description="Order total, e.g. \"129.00\".")
    currency: str = "CNY"
    items: list[dict[str, Any] | str] = Field(
        default_factory=list, description="[{\"sku\", \"name\", \"quantity\", \"price\"}]")
    shipped_at: str | None = Field(default=None, description="ISO 8601; no zone means UTC.")
    delivered_at: str | None = None
    buyer: BuyerPII | None = Field(default=None, description="Personal data, sealed at rest.")


class DecisionCreate(_Body):
    outcome: Literal["approved", "rejected"] | str
    reason: str = ""


class AppealCreate(_Body):
    reason: str


class EscalateCreate(_Body):
    reason: str = ""


class NoteCreate(_Body):
    text: str


class EvidenceRequestCreate(_Body):
    note: str = ""


class WebhookCreate(_Body):
    url: str = Field(description="The receiver: an http:// or https:// URL whose host is at "
                                 "public addresses only, checked again at every delivery "
                                 "(`REFUNDLENS_WEBHOOK_ALLOW_PRIVATE` admits private and "
                                 "loopback ones).")
    events: list[str] = Field(default_factory=list, description="Empty: every event.")
    secret: str | None = Field(default=None, description="Signing secret; generated when "
                                                         "absent and returned once.")
    merchant_id: str | None = None


class KeyCreate(_Body):
    role: str
    merchant_id: str | None = None
    name: str = ""
