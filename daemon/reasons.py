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
    #: the record waits for a person (no automatic retries): it comes due only with ``retry``
    manual: bool = False


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
    "CANCELLED_AFTER_TRANSFER": Advice(
        "the order was cancelled in Shopify after its Rackbeat order was booked or shipped (or Rackbeat "
        "refused to delete its draft); its units are released and nothing is fulfilled for it",
        "credit (or cancel) the Rackbeat order named in the detail, then `rackbeat-shopify retry KEY` to clear this",
        manual=True,
    ),
    "CHANGED_AFTER_TRANSFER": Advice(
        "order lines were edited in Shopify after the transfer; the Rackbeat order keeps the old quantities "
        "(the detail has the difference)",
        "change the Rackbeat order by hand (a booked order's lines are locked: credit it and enter it again), "
        "then `rackbeat-shopify retry KEY` to clear this",
        manual=True,
    ),
    "FULFILMENT_ELSEWHERE": Advice(
        "Rackbeat shipped the order, but Shopify assigned its fulfillment order to another location than "
        "SHOPIFY_LOCATION_ID",
        "move the fulfillment order to that location in Shopify (or fulfil it by hand); retried automatically",
    ),
    "FULFILMENT_ON_HOLD": Advice(
        "Rackbeat shipped the order, but its fulfillment order is on hold in Shopify",
        "release the hold in Shopify; retried automatically",
    ),
    "FULFILMENT_CLOSED": Advice(
        "Rackbeat shipped units whose fulfillment order is closed or cancelled in Shopify",
        "look at the order in Shopify and fulfil it by hand if needed, then `rackbeat-shopify retry KEY` to clear this",
        manual=True,
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
