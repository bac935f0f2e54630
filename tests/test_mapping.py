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


def allocate(amount: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """Split an order-level discount over lines in proportion, in cents, the remainder on
    the last line (as Shopify allocates a discount "across")."""
    whole = sum(weights, Decimal(0))
    if not amount or not whole:
        return [Decimal(0)] * len(weights)
    shares = [cents(amount * w / whole) for w in weights[:-1]]
    return [*shares, amount - sum(shares, Decimal(0))]


def make_order(
    lines: list[tuple[str, int, Decimal, Decimal, Decimal]],
    *,
    taxes_included: bool,
    shipping: Decimal = Decimal(0),
    shipping_rate: Decimal = Decimal("0.25"),
    total: Decimal | None = None,
    order_discount: Decimal = Decimal(0),
    shipping_lines: list[tuple[Decimal, Decimal, Decimal]] | None = None,
) -> dict[str, Any]:
    """An order as Shopify returns it; ``lines`` are (sku, qty, unit price, discount per unit, rate).

    ``order_discount`` is allocated over the lines in cents; ``shipping_lines`` are
    (price, shipping discount, rate) and replace ``shipping``. The total is computed the
    way Shopify does: line totals after all discounts as shown (tax-inclusive or not),
    tax per line rounded to the cent when taxes are added on top.
    """
    nodes: list[dict[str, Any]] = []
    computed = Decimal(0)
    shares = allocate(order_discount, [(price - discount) * qty for _, qty, price, discount, _ in lines])
    for (sku, qty, price, discount, rate), share in zip(lines, shares, strict=True):
        line_total = (price - discount) * qty - share
        unit = cents(line_total / qty)  # Shopify's "approximate" unit price after all discounts
        nodes.append(
            {
                "id": f"gid://shopify/LineItem/{len(nodes) + 1}",
                "sku": sku,
                "name": f"Product {sku} – blå",
                "quantity": qty,
                "currentQuantity": qty,
                "originalTotalSet": bag(price * qty),
                "discountAllocations": [
                    {"allocatedAmountSet": bag(amount)} for amount in (discount * qty, share) if amount
                ],
                "discountedUnitPriceAfterAllDiscountsSet": bag(unit),
                "taxLines": [{"rate": float(rate), "priceSet": bag(cents(line_total * rate))}]
                if rate
                else [],
            }
        )
        computed += line_total if taxes_included else line_total + cents(line_total * rate)
    if shipping_lines is None:
        shipping_lines = [(shipping, Decimal(0), shipping_rate)] if shipping else []
    ship_nodes = []
    for price, discount, rate in shipping_lines:
        charged = price - discount
        ship_nodes.append(
            {
                "title": "PostNord",
                "isRemoved": False,
                "currentDiscountedPriceSet": bag(charged),
                "taxLines": [{"rate": float(rate), "priceSet": bag("0")}] if rate else [],
            }
        )
        computed += charged if taxes_included else charged + cents(charged * rate)
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
        "shippingLines": {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": ship_nodes},
        "currentTotalPriceSet": bag(cents(computed) if total is None else total),
    }


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("20000"), places=2)
line_strategy = st.tuples(
    st.text(alphabet="ABCDEFG-123/æøå", min_size=1, max_size=8),
    st.integers(min_value=1, max_value=50),
    prices,
    st.sampled_from([Decimal(0), Decimal("0.5"), Decimal("1"), Decimal("0.33")]),  # per unit, below price
    st.sampled_from(RATES),
)
shipping_strategy = st.tuples(
    st.sampled_from([Decimal("49"), Decimal("79.20"), Decimal("0.01"), Decimal("12.34")]),
    st.sampled_from([Decimal(0), Decimal("0.01"), Decimal("10"), Decimal("1")]),  # discount ≤ the price
    st.sampled_from(RATES),  # 0: untaxed shipping
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(line_strategy, min_size=1, max_size=12),
    taxes_included=st.booleans(),
    shipping_lines=st.lists(shipping_strategy, max_size=4),
    order_discount=st.sampled_from(
        [Decimal(0), Decimal("1"), Decimal("0.01"), Decimal("7.77"), Decimal("100")]
    ),
)
def test_mapped_lines_add_up_to_shopifys_total(
    lines: list[tuple[str, int, Decimal, Decimal, Decimal]],
    taxes_included: bool,
    shipping_lines: list[tuple[Decimal, Decimal, Decimal]],
    order_discount: Decimal,
) -> None:
    lines = [(s, q, max(p, d + Decimal("0.01")), d, r) for s, q, p, d, r in lines]
    gross = sum(((p - d) * q for _, q, p, d, _ in lines), Decimal(0))
    order_discount = min(order_discount, gross - Decimal("0.01") * len(lines))  # never free
    shipping_lines = [(p, min(d, p), r) for p, d, r in shipping_lines]
    order = make_order(
        lines, taxes_included=taxes_included, shipping_lines=shipping_lines, order_discount=order_discount
    )
    mapped = map_order(order, shipping_product="frakt")
    check_totals(mapped)  # within 0.01 per line, or it raises
    shares = allocate(order_discount, [(p - d) * q for _, q, p, d, _ in lines])
    for line, (_, qty, price, discount, rate), share in zip(mapped.lines, lines, shares, strict=False):
        exact = ((price - discount) * qty - share) / qty
        expected = exact / (1 + rate) if taxes_included else exact
        # four decimals, from the line's exact total rather than Shopify's rounded unit price
        assert abs(line.unit_price - expected) <= Decimal("0.00005")
        assert line.quantity == qty
        # what Rackbeat's line costs excluding VAT is the exact figure within a few thousandths
        assert abs(line.unit_price * qty - expected * qty) <= Decimal("0.00005") * qty


def test_seven_units_with_one_krona_off_the_order_is_not_parked() -> None:
    order = make_order(
        [("MUG-1", 7, Decimal("100"), Decimal(0), Decimal("0.25"))],
        taxes_included=True,
        order_discount=Decimal("1"),
    )
    [line] = map_order(order, shipping_product="frakt").lines
    assert line.unit_price == Decimal("79.8857")  # not 99.86 / 1.25 = 79.888
    check_totals(map_order(order, shipping_product="frakt"))  # 699.00, not 699.02


def test_more_shipping_lines_than_fetched_is_not_imported_with_part_of_the_charge() -> None:
    order = make_order([("A", 1, Decimal("10"), Decimal(0), Decimal(0))], taxes_included=True)
    order["shippingLines"]["pageInfo"]["hasNextPage"] = True
    with pytest.raises(MalformedResponse, match="more shipping lines"):
        map_order(order, shipping_product="frakt")


def test_the_heading_names_the_shop() -> None:
    order = make_order([("A", 1, Decimal("10"), Decimal(0), Decimal(0))], taxes_included=True)
    assert map_order(order, shipping_product="frakt", shop="a.myshopify.com").heading == (
        "Shopify #1042 (a.myshopify.com)"
    )


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
    order["lineItems"]["nodes"][0]["originalTotalSet"] = bag("12,50")
    with pytest.raises(MalformedResponse, match="original total is not a number"):
        map_order(order, shipping_product="frakt")
