"""The guide's product tables as pure functions: prices, descriptions, and writes that settle."""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.errors import RecordError
from daemon.product_mapping import (
    DRAFT,
    ProductRules,
    ShopifyVariant,
    applied,
    archived_by_daemon,
    changed_fields,
    held_by_daemon,
    held_mark,
    html_to_text,
    normalise_text,
    rackbeat_changes,
    rackbeat_fields,
    rackbeat_fingerprint,
    rackbeat_update_body,
    same_content,
    shop_price,
    shopify_changes,
    shopify_fields,
    shopify_fingerprint,
    shopify_variants,
    text_to_html,
)
from daemon.rackbeat import Product

CENT = Decimal("0.01")
RULES = ProductRules()
quick = settings(deadline=None, max_examples=150)

prices = st.decimals(min_value=0, max_value=100_000, places=4)
rates = st.decimals(min_value=0, max_value=100, places=2)
texts = st.text(max_size=60)


def variant(**fields: Any) -> ShopifyVariant:
    base: dict[str, Any] = {
        "product_id": "gid://shopify/Product/1",
        "variant_id": "gid://shopify/ProductVariant/2",
        "inventory_item_id": "gid://shopify/InventoryItem/3",
        "sku": "SKU-1",
        "product_title": "Mug",
        "variant_title": "Default Title",
        "variant_count": 1,
        "description_html": "",
        "product_type": "",
        "status": "ACTIVE",
        "price": Decimal("0.00"),
        "barcode": None,
        "cost": None,
        "weight": None,
        "weight_unit": None,
        "tracked": True,
    }
    base.update(fields)
    return ShopifyVariant(**base)


# --- S14 ------------------------------------------------------------------------------------------


@quick
@given(net=prices, rate=rates)
def test_vat_is_added_and_rounded_half_up_to_the_cent(net: Decimal, rate: Decimal) -> None:
    price = shop_price(net, exclude_vat=True, vat_rate=rate)
    exact = net * (1 + rate / 100)
    assert price == price.quantize(CENT)
    assert -Decimal("0.005") < price - exact <= Decimal("0.005")  # half-up: a tie goes up
    assert price == exact.quantize(CENT, rounding=ROUND_HALF_UP)


@quick
@given(net=prices, rate=rates)
def test_without_s14_the_price_is_copied_to_the_cent(net: Decimal, rate: Decimal) -> None:
    assert shop_price(net, exclude_vat=False, vat_rate=rate) == net.quantize(CENT, rounding=ROUND_HALF_UP)


def test_the_guides_example_and_a_tie() -> None:
    assert shop_price(Decimal("100.00"), exclude_vat=True, vat_rate=Decimal(25)) == Decimal("125.00")
    # 10.004 × 1.25 = 12.505: exactly half a cent, rounded up (banker's rounding would say 12.50)
    assert shop_price(Decimal("10.004"), exclude_vat=True, vat_rate=Decimal(25)) == Decimal("12.51")


# --- descriptions ---------------------------------------------------------------------------------


@quick
@given(texts)
def test_any_plain_text_survives_shopify_html(text: str) -> None:
    assert html_to_text(text_to_html(text)) == normalise_text(text)


@quick
@given(texts)
def test_html_to_text_accepts_anything_and_gives_normalised_text(markup: str) -> None:
    text = html_to_text(markup)
    assert normalise_text(text) == text


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        (
            "<p>Warm <b>wool</b> &amp; soft.</p><p>Line one<br>line two</p>",
            "Warm wool & soft.\n\nLine one\nline two",
        ),
        ("<ul><li>One</li><li>Two&nbsp;&lt;3</li></ul>", "- One\n- Two <3"),
        ("<h2>Care</h2>\n   Wash   cold.\n<style>p{}</style><script>x()</script>", "Care\n\nWash cold."),
        ("<div>Smörgås&#229;</div><div>Æble</div>", "Smörgåså\n\nÆble"),
        ("", ""),
    ],
)
def test_html_becomes_sensible_plain_text(markup: str, text: str) -> None:
    assert html_to_text(markup) == text


def test_plain_text_is_escaped_into_paragraphs() -> None:
    assert text_to_html("Tom & Jerry <3\nsecond line\n\n\n\nnext") == (
        "<p>Tom &amp; Jerry &lt;3<br>second line</p><p>next</p>"
    )


# --- the tables -----------------------------------------------------------------------------------


def test_rackbeat_to_shopify_table() -> None:
    product = Product(
        number="KAFFE-1",
        name=" Kaffekopp Ålesund ",
        description="Handmade.\r\nDishwasher  safe.",
        barcode="570",
        sales_price=Decimal("100"),
        cost_price=Decimal("35"),
        weight=Decimal("0.4"),
        weight_unit="kg",
        is_barred=False,
    )
    fields = shopify_fields(product, "Varer", RULES)
    assert (fields.sku, fields.title, fields.product_type) == ("KAFFE-1", "Kaffekopp Ålesund", "Varer")
    assert fields.description == "Handmade.\nDishwasher safe."
    assert (fields.price, fields.barcode, fields.archived) == (Decimal("125.00"), "570", False)
    assert not hasattr(fields, "weight")  # weight, unit and cost are not synced this way
    unmanaged = shopify_fields(product, None, replace(RULES, archive_barred=False))
    assert unmanaged.archived is None
    with pytest.raises(RecordError) as refused:
        shopify_fields(replace(product, name="  "), None, RULES)
    assert refused.value.reason == "MALFORMED"


def test_shopify_to_rackbeat_table() -> None:
    shirt = variant(
        product_title="Tröja Åre",
        variant_title="S",
        variant_count=3,
        description_html="<p>Warm</p>",
        price=Decimal("499.00"),
        barcode="111",
        cost=Decimal("120.50"),
        weight=Decimal("300"),
        weight_unit="GRAMS",
    )
    fields = rackbeat_fields(shirt)
    assert (fields.number, fields.name, fields.description) == ("SKU-1", "Tröja Åre – S", "Warm")
    assert (fields.sales_price, fields.cost_price) == (Decimal("499.00"), Decimal("120.50"))
    assert (fields.weight, fields.weight_unit) == (Decimal("300"), "g")
    assert not hasattr(fields, "barcode")
    assert rackbeat_fields(variant(variant_count=1)).name == "Mug"
    with pytest.raises(RecordError) as no_sku:
        rackbeat_fields(variant(sku=None))
    assert no_sku.value.reason == "NO_SKU"


def test_variants_are_read_from_the_documents_shape() -> None:
    product = {
        "id": "gid://shopify/Product/1",
        "title": "Mug",
        "descriptionHtml": "<p>x</p>",
        "productType": "Varer",
        "status": "ACTIVE",
        "updatedAt": "2026-11-01T10:00:00Z",
        "variants": {
            "nodes": [
                {
                    "id": "gid://shopify/ProductVariant/2",
                    "title": "Default Title",
                    "sku": "M-1",
                    "barcode": "",
                    "price": "12.50",
                    "inventoryItem": {
                        "id": "gid://shopify/InventoryItem/3",
                        "tracked": True,
                        "unitCost": {"amount": "4.0"},
                        "measurement": {"weight": {"unit": "KILOGRAMS", "value": 0.25}},
                    },
                }
            ]
        },
    }
    [one] = shopify_variants(product)
    assert (one.sku, one.price, one.barcode, one.cost) == ("M-1", Decimal("12.50"), None, Decimal("4.0"))
    assert (one.weight, one.weight_unit, one.tracked) == (Decimal("0.25"), "KILOGRAMS", True)


# --- writes settle: after applying the changes, the next decision is "nothing" ------------------------

products = st.builds(
    Product,
    number=st.just("SKU-1"),
    name=st.text(min_size=1, max_size=20).filter(str.strip),
    description=st.one_of(st.none(), texts),
    barcode=st.one_of(st.none(), st.text(alphabet="0123456789", max_size=13)),
    sales_price=st.one_of(st.none(), prices),
    is_barred=st.booleans(),
)
shop_variants = st.builds(
    variant,
    product_title=st.text(max_size=20).map(str.strip),
    description_html=texts,
    product_type=st.text(max_size=10).map(str.strip),
    status=st.sampled_from(["ACTIVE", "DRAFT", "ARCHIVED"]),
    price=prices.map(lambda p: p.quantize(CENT)),
    barcode=st.one_of(st.none(), st.text(alphabet="0123456789", min_size=1, max_size=13)),
    variant_count=st.integers(min_value=1, max_value=3),
)


@quick
@given(product=products, current=shop_variants, group=st.one_of(st.none(), st.text(max_size=10)))
def test_a_shopify_write_settles_in_one_step(
    product: Product, current: ShopifyVariant, group: str | None
) -> None:
    target = shopify_fields(product, group, RULES)
    changes = shopify_changes(current, target, RULES, archived_by_daemon=True)
    after = applied(current, changes)
    assert not shopify_changes(after, target, RULES, archived_by_daemon=True)
    if not current.multi:  # product-level fields belong to no single variant of several
        assert after.product_title == target.title
        assert html_to_text(after.description_html) == target.description


@quick
@given(current=shop_variants, product=products)
def test_a_rackbeat_write_settles_in_one_step(current: ShopifyVariant, product: Product) -> None:
    target = rackbeat_fields(current)
    changes = rackbeat_changes(product, target)
    after = replace(product, **changes)
    assert rackbeat_changes(after, target) == {}


def test_fingerprints_ignore_how_a_number_is_written_and_remember_archiving() -> None:
    plain = Product(number="P", name="Plate", sales_price=Decimal(100), is_barred=False)
    padded = replace(plain, sales_price=Decimal("100.0000"))
    assert rackbeat_fingerprint(shopify_fields(plain, None, RULES)) == rackbeat_fingerprint(
        shopify_fields(padded, None, RULES)
    )
    barred = rackbeat_fingerprint(shopify_fields(replace(plain, is_barred=True), None, RULES))
    assert archived_by_daemon(barred)
    assert not archived_by_daemon(rackbeat_fingerprint(shopify_fields(plain, None, RULES)))
    shirt = rackbeat_fields(variant(price=Decimal("125.00")))
    assert shopify_fingerprint(shirt, archived=False) != shopify_fingerprint(shirt, archived=True)


def test_the_tables_are_not_inverses_so_each_side_has_its_own_fingerprint() -> None:
    # S14: Rackbeat 100 is Shopify 125, and Shopify 125 maps back to Rackbeat 125
    rackbeat = Product(number="P", name="Plate", sales_price=Decimal(100), is_barred=False)
    shop = variant(sku="P", product_title="Plate", price=shopify_fields(rackbeat, None, RULES).price)
    assert rackbeat_fields(shop).sales_price == Decimal("125.00")
    assert rackbeat_changes(rackbeat, rackbeat_fields(shop)) == {"sales_price": Decimal("125.00")}


def test_status_follows_barring_but_never_unarchives_the_merchants_choice() -> None:
    barred = shopify_fields(
        Product(number="P", name="P", is_barred=True, sales_price=Decimal(8)), None, RULES
    )
    free = replace(barred, archived=False)
    active = variant(product_title="P", price=Decimal(10))
    archived = replace(active, status="ARCHIVED")
    assert shopify_changes(active, barred, RULES, archived_by_daemon=False).product == {"status": "ARCHIVED"}
    assert shopify_changes(archived, free, RULES, archived_by_daemon=True).product == {"status": "ACTIVE"}
    assert shopify_changes(archived, free, RULES, archived_by_daemon=False).product == {}
    # without a sales price it comes back as a draft, never sellable at 0.00
    priceless = replace(free, price=None)
    assert shopify_changes(archived, priceless, RULES, archived_by_daemon=True).product == {"status": "DRAFT"}
    several = replace(active, variant_count=2)
    assert "status" not in shopify_changes(several, barred, RULES, archived_by_daemon=False).product


# --- unknown values, held drafts, nested objects ------------------------------------------------


def test_a_rackbeat_product_without_barcode_leaves_shopifys_barcode_alone() -> None:
    target = shopify_fields(
        Product(number="SKU-1", name="Mug", sales_price=Decimal(8), barcode=""), None, RULES
    )
    assert target.barcode is None
    changes = shopify_changes(variant(barcode="5701234567890"), target, RULES, archived_by_daemon=False)
    assert "barcode" not in changes.variant
    with_code = replace(target, barcode="42")
    assert shopify_changes(variant(barcode="1"), with_code, RULES, archived_by_daemon=False).variant == {
        "barcode": "42",
        "price": "10.00",
    }


def test_a_draft_held_for_its_price_is_activated_by_one_and_only_then() -> None:
    draft = variant(status=DRAFT, price=Decimal("0.00"))
    priceless = shopify_fields(Product(number="SKU-1", name="Mug"), None, RULES)
    zero = shopify_fields(Product(number="SKU-1", name="Mug", sales_price=Decimal(0)), None, RULES)
    priced_now = shopify_fields(Product(number="SKU-1", name="Mug", sales_price=Decimal(8)), None, RULES)
    for target in (priceless, zero):
        assert (
            "status"
            not in shopify_changes(
                draft, target, RULES, archived_by_daemon=False, held_by_daemon=True
            ).product
        )
    assert shopify_changes(
        draft, priced_now, RULES, archived_by_daemon=False, held_by_daemon=True
    ).product == {"status": "ACTIVE"}
    # a draft the daemon did not hold back (the merchant's), or SYNC_NEW_PRODUCT_STATUS=draft: stays
    assert "status" not in shopify_changes(draft, priced_now, RULES, archived_by_daemon=False).product
    as_draft = replace(RULES, new_status=DRAFT)
    assert (
        "status"
        not in shopify_changes(
            draft, priced_now, as_draft, archived_by_daemon=False, held_by_daemon=True
        ).product
    )
    # the mark is history, not content: a held product with unchanged fields is not re-synced
    fingerprint = rackbeat_fingerprint(zero)
    stored = fingerprint + held_mark(zero, draft, by_daemon=True)
    assert held_by_daemon(stored)
    assert same_content(stored, fingerprint)
    assert not held_by_daemon(fingerprint + held_mark(priced_now, draft, by_daemon=True))
    assert not archived_by_daemon(stored)


def test_a_changed_weight_is_sent_with_the_whole_physical_object() -> None:
    current = Product.from_json(
        {
            "number": "SKU-1",
            "name": "Mug",
            "physical": {"weight": 0.3, "weight_unit": "kg", "height": 12, "width": 9, "depth": 9},
        }
    )
    body = rackbeat_update_body(current, {"weight": Decimal("0.4")})
    assert body == {"physical": {"weight": 0.4, "weight_unit": "kg", "height": 12, "width": 9, "depth": 9}}
    assert rackbeat_update_body(current, {"name": "Cup"}) == {"name": "Cup"}


def test_fingerprints_name_the_fields_that_changed() -> None:
    before = shopify_fields(
        Product(number="SKU-1", name="Mug", sales_price=Decimal(8), barcode="1"), None, RULES
    )
    after = replace(before, title="Cup", barcode="2")
    old, new = rackbeat_fingerprint(before), rackbeat_fingerprint(after)
    assert changed_fields(old, new, kind="rackbeat") == frozenset({"title", "barcode"})
    assert changed_fields(old, old, kind="rackbeat") == frozenset()
    shop = rackbeat_fields(variant(price=Decimal(10)))
    assert changed_fields(
        shopify_fingerprint(shop, archived=False),
        shopify_fingerprint(replace(shop, cost_price=Decimal(3)), archived=False),
        kind="shopify",
    ) == frozenset({"cost_price"})
    # a fingerprint stored before per-field hashes were kept: same content, fields unknown
    legacy = old.split(".")[0]
    assert same_content(legacy, old)
    assert not same_content(legacy, new)
    assert changed_fields(legacy, new, kind="rackbeat") is None
    assert changed_fields(None, new, kind="rackbeat") is None


def test_a_cost_edit_does_not_carry_a_price_that_differs_only_by_vat() -> None:
    rackbeat = Product(number="SKU-1", name="Mug", sales_price=Decimal(100), cost_price=Decimal(30))
    shop = rackbeat_fields(variant(product_title="Mug", price=Decimal(125), cost=Decimal(35)))
    assert rackbeat_changes(rackbeat, shop) == {"sales_price": Decimal(125), "cost_price": Decimal(35)}
    assert rackbeat_changes(rackbeat, shop, only={"cost_price"}) == {"cost_price": Decimal(35)}
