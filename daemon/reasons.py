"""Reason codes of parked records: what each means and how to fix it.

The README's troubleshooting table is generated from (and tested against) this one
list, so an operator reads the same words in ``rackbeat-shopify parked`` and the docs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Advice:
    """One reason code's meaning and suggested fix."""

    meaning: str
    fix: str


REASONS: dict[str, Advice] = {
    "UNKNOWN_SKU": Advice(
        "an order line's SKU is not a Rackbeat product number",
        "create the product in Rackbeat with that number, or correct the SKU in Shopify; retried automatically",
    ),
    "NO_SKU": Advice(
        "a Shopify variant or order line has no SKU",
        "give the variant a SKU equal to the Rackbeat product number, then `rackbeat-shopify retry KEY`",
    ),
    "NO_EMAIL": Advice(
        "the order has no e-mail, so no customer can be matched",
        "set SYNC_FALLBACK_CUSTOMER to a Rackbeat customer number, or add an e-mail to the order",
    ),
    "NO_SHIPPING_PRODUCT": Advice(
        "the S15 shipping product does not exist in Rackbeat",
        "create the product named in SYNC_SHIPPING_PRODUCT in Rackbeat (a group without stock); retried automatically",
    ),
    "NUMBER_TAKEN": Advice(
        "S2 reuses Shopify's order number, but Rackbeat already has an order with it",
        "set SYNC_ORDER_NUMBER=rackbeat (the guide's advice with several order sources), then retry",
    ),
    "TOTALS_MISMATCH": Advice(
        "the mapped lines do not add up to Shopify's order total",
        "compare the order in Shopify and the detail; fix the VAT settings or import the order by hand",
    ),
    "REJECTED": Advice(
        "the API refused the record (422 or userErrors); the detail has its field messages",
        "correct the field named in the detail on the side that owns it, then `rackbeat-shopify retry KEY`",
    ),
    "DUPLICATE_SKU": Advice(
        "the same SKU is on more than one Shopify variant, so stock cannot be matched",
        "make SKUs unique in Shopify; the daemon picks the change up on its next cycle",
    ),
    "MALFORMED": Advice(
        "the API returned this record without a field the daemon needs",
        "look at the record in the admin; after fixing it there, `rackbeat-shopify retry KEY`",
    ),
    "REPEATED_FAILURE": Advice(
        "the API failed on this record several times in a row (5xx, an unreadable answer), so it was set aside",
        "it is retried with backoff and at once when the flow recovers; if it keeps failing, check the record "
        "and the API's status, then `rackbeat-shopify retry KEY`",
    ),
    "NOT_FOUND": Advice(
        "a record the daemon expected is gone on the other side",
        "check whether it was deleted on purpose; retry or leave it",
    ),
}

_UNKNOWN = Advice(
    "not a reason code this version knows", "see the detail; `rackbeat-shopify retry KEY` when fixed"
)


def advice_for(reason: str) -> Advice:
    """Meaning and fix of ``reason`` (a generic line for an unknown code)."""
    return REASONS.get(reason, _UNKNOWN)
