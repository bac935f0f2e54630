"""Pure functions between the two systems' records: no I/O, no clock.

Orders: a Shopify order (the JSON of ``ORDERS_UPDATED_SINCE``) becomes a
:class:`MappedOrder` — Rackbeat lines with unit prices excluding VAT, the shipping
charge as one S15 line, the delivery address — and :func:`check_totals` proves that
those lines, with VAT, add up to what the customer paid in Shopify.

Money is :class:`~decimal.Decimal` throughout. Unit prices are kept to four decimals
(a price including 25 % VAT divided by 1.25 is rarely a whole øre), totals are
compared rounded half-up to the cent.

A line's price comes from what the line really costs: its original total less every
discount allocated to it (line- and order-level), divided by its quantity. Shopify's own
unit prices after discounts are rounded to the cent, so 7 units with 1 kr off the order
would come out as 7 × 99.86 = 699.02 instead of 699.00.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from daemon.errors import MalformedResponse, RecordError

CENT = Decimal("0.01")
UNIT = Decimal("0.0001")


def money(value: Any, what: str = "amount") -> Decimal:
    """A Shopify/Rackbeat amount (string or number) as a Decimal; malformed → MalformedResponse."""
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise MalformedResponse(f"{what} is not a number: {value!r}") from None
    if not result.is_finite():
        raise MalformedResponse(f"{what} is not a finite number: {value!r}")
    return result


def cents(value: Decimal) -> Decimal:
    """Round half-up to 0.01."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _shop_money(bag: Any, what: str) -> Decimal:
    try:
        return money(bag["shopMoney"]["amount"], what)
    except (KeyError, TypeError):
        raise MalformedResponse(f"{what} is missing") from None


def _rate(tax_lines: Any) -> Decimal:
    """Combined tax rate of a line (Shopify's ``rate`` is a fraction: 0.25 = 25 %)."""
    total = Decimal(0)
    for tax in tax_lines or []:
        total += money(tax.get("rate", 0), "tax rate")
    return total


@dataclass(frozen=True)
class OrderLine:
    """One Rackbeat order line."""

    item_id: str
    name: str
    quantity: int
    unit_price: Decimal  # excluding VAT, 4 decimals
    vat_rate: Decimal  # fraction, for the totals check

    @property
    def total_incl_vat(self) -> Decimal:
        """What this line costs the customer, VAT included."""
        return self.unit_price * self.quantity * (1 + self.vat_rate)


@dataclass(frozen=True)
class Customer:
    """Who ordered, as far as Rackbeat needs it."""

    email: str | None
    name: str
    phone: str | None


@dataclass(frozen=True)
class MappedOrder:
    """A Shopify order in Rackbeat's terms, before any customer or number is known."""

    order_id: str
    reference: str  # Shopify's order name, e.g. "#1042": Rackbeat's your_reference
    number: str  # Shopify's order number (S2 = shopify reuses it)
    heading: str
    currency: str
    customer: Customer
    delivery_address: dict[str, str]
    lines: tuple[OrderLine, ...]
    shopify_total: Decimal
    demand: dict[str, int] = field(default_factory=dict)  # SKU → units, shipping excluded

    @property
    def total_incl_vat(self) -> Decimal:
        """Sum of the mapped lines with VAT."""
        return sum((line.total_incl_vat for line in self.lines), Decimal(0))


def _unit_excl(price: Decimal, rate: Decimal, taxes_included: bool) -> Decimal:
    excl = price / (1 + rate) if taxes_included else price
    return excl.quantize(UNIT, rounding=ROUND_HALF_UP)


def _allocated(allocations: Any, what: str) -> Decimal:
    """Sum of a line's ``discountAllocations`` (every discount that reached it)."""
    total = Decimal(0)
    for allocation in allocations or []:
        total += _shop_money((allocation or {}).get("allocatedAmountSet"), what)
    return total


def _unit_price(item: Mapping[str, Any], what: str) -> Decimal:
    """What one unit of a line item sells for after all discounts, unrounded.

    From ``originalTotalSet`` less the ``discountAllocations`` (both over the quantity
    ordered, so divided by ``quantity``); without them, Shopify's cent-rounded
    ``discountedUnitPriceAfterAllDiscountsSet``.
    """
    if item.get("originalTotalSet") is not None and "discountAllocations" in item:
        ordered = int(item.get("quantity") or 0)
        if ordered > 0:
            original = _shop_money(item["originalTotalSet"], f"{what} original total")
            return (original - _allocated(item["discountAllocations"], f"{what} discount")) / ordered
    bag = item.get("discountedUnitPriceAfterAllDiscountsSet") or item.get("discountedUnitPriceSet")
    return _shop_money(bag, f"{what} price")


def shopify_heading(name: str, shop: str | None) -> str:
    """The Rackbeat heading of a Shopify order: its name and, when known, the shop's
    domain (which tells apart the ``#1001`` of two shops that feed one Rackbeat)."""
    return f"Shopify {name} ({shop})" if shop else f"Shopify {name}"


def _customer(order: Mapping[str, Any]) -> Customer:
    cust = order.get("customer") or {}
    ship = order.get("shippingAddress") or {}
    email = (order.get("email") or cust.get("email") or "").strip().lower() or None
    name = " ".join(p for p in (cust.get("firstName"), cust.get("lastName")) if p) or ship.get("name") or ""
    phone = order.get("phone") or cust.get("phone") or ship.get("phone")
    return Customer(email=email, name=name or (email or "Shopify customer"), phone=phone or None)


def _address(order: Mapping[str, Any]) -> dict[str, str]:
    ship = order.get("shippingAddress") or {}
    return {
        "name": ship.get("name") or "",
        "street": ship.get("address1") or "",
        "street2": ship.get("address2") or "",
        "zipcode": ship.get("zip") or "",
        "city": ship.get("city") or "",
        "country": ship.get("countryCodeV2") or "",
    }


def order_demand(order: Mapping[str, Any]) -> dict[str, int]:
    """SKU → units the order takes from stock: its current quantities (edits and refunds
    applied), lines without SKU left out.

    Only the SKU and the quantity are needed, so an order that cannot be mapped (a line
    without SKU or price, too many shipping lines) still holds its stock while parked."""
    demand: dict[str, int] = {}
    for item in (order.get("lineItems") or {}).get("nodes") or []:
        quantity = int(item.get("currentQuantity", item.get("quantity", 0)) or 0)
        sku = (item.get("sku") or "").strip()
        if quantity > 0 and sku:
            demand[sku] = demand.get(sku, 0) + quantity
    return demand


def map_order(order: Mapping[str, Any], *, shipping_product: str, shop: str | None = None) -> MappedOrder:
    """Map a Shopify order to Rackbeat terms (``shop``, the shop's domain, goes in the heading).

    Raises :class:`RecordError` (NO_SKU) for a line without SKU and
    :class:`MalformedResponse` when a required field is missing (or the order has more
    shipping lines than were fetched).
    """
    try:
        order_id = str(order["id"])
        name = str(order["name"])
        items = order["lineItems"]["nodes"]
    except (KeyError, TypeError):
        raise MalformedResponse("order without id, name or lineItems") from None
    taxes_included = bool(order.get("taxesIncluded"))
    lines: list[OrderLine] = []
    for item in items:
        quantity = int(item.get("currentQuantity", item.get("quantity", 0)) or 0)
        if quantity <= 0:
            continue  # removed by an edit, or refunded
        sku = (item.get("sku") or "").strip()
        if not sku:
            raise RecordError(f"order {name}: line {item.get('name')!r} has no SKU", reason="NO_SKU")
        rate = _rate(item.get("taxLines"))
        price = _unit_price(item, f"order {name} line {sku}")
        lines.append(
            OrderLine(
                item_id=sku,
                name=str(item.get("name") or sku),
                quantity=quantity,
                unit_price=_unit_excl(price, rate, taxes_included),
                vat_rate=rate,
            )
        )
    shipping = Decimal(0)
    shipping_incl = Decimal(0)
    shipping_lines = order.get("shippingLines") or {}
    if (shipping_lines.get("pageInfo") or {}).get("hasNextPage"):
        raise MalformedResponse(f"order {name} has more shipping lines than one page")
    for ship_line in shipping_lines.get("nodes", []):
        if ship_line.get("isRemoved"):
            continue
        # after refunds and every discount, the free-shipping kind included (2024-07 on)
        bag = ship_line.get("currentDiscountedPriceSet") or ship_line.get("discountedPriceSet")
        price = _shop_money(bag, f"order {name} shipping price")
        rate = _rate(ship_line.get("taxLines"))
        excl = price / (1 + rate) if taxes_included else price
        shipping += excl
        shipping_incl += excl * (1 + rate)
    if shipping:
        # one line for all shipping lines; its VAT rate is what makes the totals add up
        unit = shipping.quantize(UNIT, rounding=ROUND_HALF_UP)
        lines.append(
            OrderLine(
                item_id=shipping_product,
                name="Shipping",
                quantity=1,
                unit_price=unit,
                vat_rate=(shipping_incl / shipping - 1) if shipping else Decimal(0),
            )
        )
    total_bag = order.get("currentTotalPriceSet") or order.get("totalPriceSet")
    return MappedOrder(
        order_id=order_id,
        reference=name,
        number=str(order.get("number") or name.lstrip("#")),
        heading=shopify_heading(name, shop),
        currency=str(order.get("currencyCode") or ""),
        customer=_customer(order),
        delivery_address=_address(order),
        lines=tuple(lines),
        shopify_total=_shop_money(total_bag, f"order {name} total"),
        demand=order_demand(order),
    )


def check_totals(mapped: MappedOrder) -> None:
    """Raise TOTALS_MISMATCH unless the lines with VAT come within 0.01 per line of Shopify's total."""
    ours = cents(mapped.total_incl_vat)
    tolerance = CENT * max(1, len(mapped.lines))
    if abs(ours - mapped.shopify_total) > tolerance:
        raise RecordError(
            f"order {mapped.reference}: lines add up to {ours} {mapped.currency} with VAT, "
            f"Shopify's total is {mapped.shopify_total} {mapped.currency}",
            reason="TOTALS_MISMATCH",
        )
