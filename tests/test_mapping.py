"""Order mapping: VAT, discounts and rounding agree with Shopify's totals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.errors import MalformedResponse, RecordError
from daemon.mapping import cents, check_totals, map_order

RATES = [Decimal("0.25"), Decimal("0.12"), Decimal("0.06"), Decimal("0")]


def bag(amount: Decimal | str) -> dict[str, Any]:
    return {"shopMoney": {"amount": str(amount), "currencyCode": "SEK"}}


def make_order(
    lines: list[tuple[str, int, Decimal, Decimal, Decimal]],
    *,
    taxes_included: bool,
    shipping: Decimal = Decimal(0),
    shipping_rate: Decimal = Decimal("0.25"),
    total: Decimal | None = None,
) -> dict[str, Any]:
    """An order as Shopify returns it; ``lines`` are (sku, qty, unit price, discount per unit, rate).

    The total is computed the way Shopify does: line prices as shown (tax-inclusive or
    not), tax per line rounded to the cent when taxes are added on top.
    """
    nodes: list[dict[str, Any]] = []
    computed = Decimal(0)
    for sku, qty, price, discount, rate in lines:
        unit = price - discount
        nodes.append(
            {
                "id": f"gid://shopify/LineItem/{len(nodes) + 1}",
                "sku": sku,
                "name": f"Product {sku} – blå",
                "quantity": qty,
                "currentQuantity": qty,
                "originalUnitPriceSet": bag(price),
                "discountedUnitPriceSet": bag(unit),
                "discountedUnitPriceAfterAllDiscountsSet": bag(unit),
                "taxLines": [{"rate": float(rate), "priceSet": bag(cents(unit * qty * rate))}]
                if rate
                else [],
            }
        )
        computed += unit * qty if taxes_included else unit * qty + cents(unit * qty * rate)
    ship_nodes = []
    if shipping:
        ship_nodes.append(
            {
                "title": "PostNord",
                "isRemoved": False,
                "discountedPriceSet": bag(shipping),
                "currentDiscountedPriceSet": bag(shipping),
                "taxLines": [{"rate": float(shipping_rate), "priceSet": bag("0")}],
            }
        )
        computed += shipping if taxes_included else shipping + cents(shipping * shipping_rate)
    return {
        "id": "gid://shopify/Order/1",
        "name": "#1042",
        "number": 1042,
        "email": "Anna.Svensson@Example.se ",
        "taxesIncluded": taxes_included,
        "currencyCode": "SEK",
        "customer": {"firstName": "Anna", "lastName": "Svensson", "email": "anna.svensson@example.se"},
        "shippingAddress": {
            "name": "Anna Svensson",
            "address1": "Storgatan 1",
            "address2": None,
            "zip": "111 22",
            "city": "Malmö",
            "countryCodeV2": "SE",
        },
        "lineItems": {"nodes": nodes},
        "shippingLines": {"nodes": ship_nodes},
        "currentTotalPriceSet": bag(cents(computed) if total is None else total),
    }


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("20000"), places=2)
line_strategy = st.tuples(
    st.text(alphabet="ABCDEFG-123/æøå", min_size=1, max_size=8),
    st.integers(min_value=1, max_value=50),
    prices,
    st.sampled_from([Decimal(0), Decimal("0.5"), Decimal("1")]),  # discount per unit (kept below price)
    st.sampled_from(RATES),
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(line_strategy, min_size=1, max_size=12),
    taxes_included=st.booleans(),
    shipping=st.sampled_from([Decimal(0), Decimal("49"), Decimal("79.20"), Decimal("0.01")]),
)
def test_mapped_lines_add_up_to_shopifys_total(
    lines: list[tuple[str, int, Decimal, Decimal, Decimal]], taxes_included: bool, shipping: Decimal
) -> None:
    lines = [(s, q, max(p, d + Decimal("0.01")), d, r) for s, q, p, d, r in lines]
    order = make_order(lines, taxes_included=taxes_included, shipping=shipping)
    mapped = map_order(order, shipping_product="frakt")
    check_totals(mapped)  # within 0.01 per line, or it raises
    for line, (_, qty, price, discount, rate) in zip(mapped.lines, lines, strict=False):
        unit = price - discount
        expected = unit / (1 + rate) if taxes_included else unit
        assert abs(line.unit_price - expected) <= Decimal("0.00005")
        assert line.quantity == qty


def test_price_including_vat_is_divided_by_the_rate() -> None:
    mapped = map_order(
        make_order(
            [("MUG-1", 2, Decimal("99.00"), Decimal(0), Decimal("0.25"))],
            taxes_included=True,
            shipping=Decimal("49.00"),
        ),
        shipping_product="frakt",
    )
    assert [(line.item_id, line.quantity, line.unit_price) for line in mapped.lines] == [
        ("MUG-1", 2, Decimal("79.2000")),
        ("frakt", 1, Decimal("39.2000")),
    ]
    assert mapped.reference == "#1042"
    assert mapped.number == "1042"
    assert mapped.customer.email == "anna.svensson@example.se"
    assert mapped.delivery_address["city"] == "Malmö"
    assert mapped.demand == {"MUG-1": 2}


def test_discount_is_reflected_in_the_unit_price() -> None:
    order = make_order([("MUG-1", 1, Decimal("100"), Decimal("20"), Decimal("0.25"))], taxes_included=True)
    [line] = map_order(order, shipping_product="frakt").lines
    assert line.unit_price == Decimal("64.0000")


def test_removed_lines_and_edited_quantities() -> None:
    order = make_order(
        [("A", 3, Decimal("10"), Decimal(0), Decimal(0)), ("B", 1, Decimal("5"), Decimal(0), Decimal(0))],
        taxes_included=True,
        total=Decimal("10"),
    )
    order["lineItems"]["nodes"][0]["currentQuantity"] = 1
    order["lineItems"]["nodes"][1]["currentQuantity"] = 0
    mapped = map_order(order, shipping_product="frakt")
    assert [(line.item_id, line.quantity) for line in mapped.lines] == [("A", 1)]
    check_totals(mapped)


def test_wrong_total_is_parked_with_both_figures() -> None:
    order = make_order(
        [("A", 1, Decimal("100"), Decimal(0), Decimal("0.25"))], taxes_included=True, total=Decimal("90")
    )
    with pytest.raises(RecordError) as info:
        check_totals(map_order(order, shipping_product="frakt"))
    assert info.value.reason == "TOTALS_MISMATCH"
    assert "100.00" in str(info.value)
    assert "90" in str(info.value)


def test_line_without_sku_is_a_record_error() -> None:
    order = make_order([("A", 1, Decimal("100"), Decimal(0), Decimal(0))], taxes_included=True)
    order["lineItems"]["nodes"][0]["sku"] = None
    with pytest.raises(RecordError) as info:
        map_order(order, shipping_product="frakt")
    assert info.value.reason == "NO_SKU"


def test_malformed_amount_is_a_clear_error() -> None:
    order = make_order([("A", 1, Decimal("100"), Decimal(0), Decimal(0))], taxes_included=True)
    order["lineItems"]["nodes"][0]["discountedUnitPriceAfterAllDiscountsSet"] = bag("12,50")
    with pytest.raises(MalformedResponse, match="price is not a number"):
        map_order(order, shipping_product="frakt")
