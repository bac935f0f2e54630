"""Products in S13's direction against both simulators: the guide's fields, no echoes, no twins."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLSchema
from hypothesis import given
from hypothesis import strategies as st

from daemon.config import ProductPriority
from daemon.flows.products import ProductsFlow, html_to_text, shop_price, text_to_html
from daemon.sim.shopify import InventoryItem, ProductVariant
from daemon.sim.shopify import Product as ShopifyProduct
from tests.harness import World, make_world

pytestmark = pytest.mark.anyio


def products_flow(w: World) -> ProductsFlow:
    return ProductsFlow(
        w.settings,
        w.store,
        w.shopify,
        w.rackbeat_client,
        index=w.index,
        metrics=w.metrics,
        shutdown=w.shutdown,
        clock=w.clock.now,
    )


async def cycles(w: World, n: int = 1) -> int:
    written = 0
    for _ in range(n):
        w.tick(60)
        written += await products_flow(w).run_once()
    return written


def shopify_writes(w: World) -> int:
    return sum(
        n
        for op, n in w.shopify_sim.requests.items()
        if op in ("ProductCreate", "ProductUpdate", "VariantsBulkUpdate")
    )


def rackbeat_writes(w: World) -> int:
    return sum(n for route, n in w.rackbeat.requests.items() if route.startswith(("POST", "PUT")))


def shopify_variant(w: World, sku: str) -> tuple[ShopifyProduct, ProductVariant]:
    variant = w.shopify_sim.find_by_sku(sku)
    assert variant is not None, sku
    product = w.shopify_sim.node(variant.product_id)
    assert isinstance(product, ShopifyProduct)
    return product, variant


def shopify_products_with(w: World, sku: str) -> int:
    return sum(1 for v in w.shopify_sim.variants.values() if inventory_item(w, v).sku == sku)


def inventory_item(w: World, variant: ProductVariant) -> InventoryItem:
    item = w.shopify_sim.node(variant.inventory_item_id)
    assert isinstance(item, InventoryItem)
    return item


async def test_rackbeat_products_reach_shopify_with_every_field(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.rackbeat.add_product(
            "KAFFE-1",
            "Kaffekopp Ålesund",
            sales_price="100.00",
            barcode="5701234567890",
            description="Handmade mug.\n\nDishwasher safe.",
            group="1",
            weight="0.4",
            cost_price="35",
            stock=4,
        )
        w.rackbeat.add_product("frakt", "Frakt", sales_price="39")
        assert await cycles(w) == 1
        product, variant = shopify_variant(w, "KAFFE-1")
        assert product.title == "Kaffekopp Ålesund"
        assert product.product_type == "Varer"  # the product group's name
        assert html_to_text(product.description_html) == "Handmade mug.\n\nDishwasher safe."
        assert product.status == "ACTIVE"
        assert variant.price == Decimal("125.00")  # S14: 100 + 25 % VAT
        assert variant.barcode == "5701234567890"
        item = inventory_item(w, variant)
        assert item.tracked is True  # so stock can be written
        assert item.unit_cost is None  # cost is not synced this way
        assert w.shopify_sim.find_by_sku("frakt") is None  # the shipping product is never published
        assert w.metrics.value("products", "created_shopify") == 1


async def test_s14_round_trip_then_a_hundred_quiet_cycles(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.rackbeat.add_product("P-1", "Plate", sales_price="100.00")
        await cycles(w)
        assert shopify_variant(w, "P-1")[1].price == Decimal("125.00")
        w.shopify_sim.reset_requests()
        w.rackbeat.reset_counts()
        assert await cycles(w, 100) == 0
        assert shopify_writes(w) == 0
        assert rackbeat_writes(w) == 0
        assert shopify_variant(w, "P-1")[1].price == Decimal("125.00")


async def test_a_change_in_rackbeat_updates_shopify_once(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.rackbeat.add_product("P-1", "Plate", sales_price="80.00")
        await cycles(w)
        w.rackbeat.update_product("P-1", name="Plate, blue", sales_price="96.00")
        assert await cycles(w) == 1
        product, variant = shopify_variant(w, "P-1")
        assert (product.title, variant.price) == ("Plate, blue", Decimal("120.00"))
        assert await cycles(w, 3) == 0
        assert shopify_products_with(w, "P-1") == 1


async def test_a_barred_product_is_archived(tmp_path: Path, shopify_schema: GraphQLSchema) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.rackbeat.add_product("OLD-1", "Old", sales_price="10")
        await cycles(w)
        w.rackbeat.update_product("OLD-1", is_barred=True)
        await cycles(w)
        assert shopify_variant(w, "OLD-1")[0].status == "ARCHIVED"


async def test_shopify_products_reach_rackbeat_with_every_field(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(
        tmp_path, validate_schema=shopify_schema, settings={"sync_product_priority": "shopify"}
    ) as w:
        w.shopify_sim.add_product(
            "Tröja Åre",
            [
                {
                    "sku": "TROJA-S",
                    "title": "S",
                    "price": "499.00",
                    "barcode": "111",
                    "cost": "120.50",
                    "weight": ("KILOGRAMS", 0.3),
                },
                {"sku": "TROJA-M", "title": "M", "price": "499.00"},
                {"sku": None, "title": "L", "price": "499.00"},
            ],
            description_html="<p>Warm <b>wool</b> &amp; soft.</p><p>Line one<br>line two</p><script>x()</script>",
        )
        written = await cycles(w)
        assert written == 2
        small = w.rackbeat.products["TROJA-S"]
        assert small.name == "Tröja Åre – S"
        assert small.description == "Warm wool & soft.\n\nLine one\nline two"
        assert small.sales_price == Decimal("499.00")  # copied as is: S14 only applies the other way
        assert small.cost_price == Decimal("120.50")
        assert small.weight == Decimal("0.3")
        assert small.weight_unit == "kg"
        assert small.group == "1"  # S11
        assert small.barcode in (None, "")  # barcode is not synced this way
        [parked] = await w.store.parked("products")
        assert parked.reason == "NO_SKU"
        assert await cycles(w, 5) == 0  # no echo, nothing new
        assert w.metrics.value("products", "created_rackbeat") == 2


async def test_switching_s13_does_not_duplicate_on_either_side(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.rackbeat.add_product("BOTH-1", "Both", sales_price="100")
        w.shopify_sim.add_product("Shopify only", [{"sku": "SHOP-1", "price": "50.00"}])
        await cycles(w)
        for priority in ("shopify", "disabled", "rackbeat", "shopify"):
            w.settings = w.settings.model_copy(update={"sync_product_priority": ProductPriority(priority)})
            await cycles(w, 2)
        assert shopify_products_with(w, "BOTH-1") == 1
        assert shopify_products_with(w, "SHOP-1") == 1
        assert sorted(w.rackbeat.products) == ["BOTH-1", "SHOP-1"]


async def test_disabled_writes_nothing(tmp_path: Path, shopify_schema: GraphQLSchema) -> None:
    async with make_world(
        tmp_path, validate_schema=shopify_schema, settings={"sync_product_priority": "disabled"}
    ) as w:
        w.rackbeat.add_product("R-1", "R", sales_price="1")
        w.shopify_sim.add_product("S", [{"sku": "S-1"}])
        await cycles(w, 3)
        assert w.shopify_sim.find_by_sku("R-1") is None
        assert "S-1" not in w.rackbeat.products
        assert "S-1" in await w.index.by_sku()  # the index is still kept current


class Crash(BaseException):
    """The process dies here."""


async def test_a_crash_after_product_create_does_not_make_a_twin(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.rackbeat.add_product("NEW-1", "Brand new", sales_price="10")

        def crash(request: httpx.Request, phase: str) -> None:
            if phase == "after" and b"ProductCreate" in request.content:
                raise Crash  # Shopify made the product; we never heard

        w.hook = crash
        with pytest.raises(Crash):
            await cycles(w)
        w.hook = None
        await w.restart()
        await cycles(w)
        await cycles(w)
        titles = [p.title for p in w.shopify_sim.products.values()]
        assert titles.count("Brand new") == 1
        assert shopify_variant(w, "NEW-1")[1].price == Decimal("12.50")


async def test_a_refused_product_is_parked_and_the_next_goes_on(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(
        tmp_path, validate_schema=shopify_schema, settings={"sync_product_priority": "shopify"}
    ) as w:
        w.shopify_sim.add_product("   ", [{"sku": "BAD-1", "price": "5.00"}])  # Rackbeat needs a name
        w.shopify_sim.add_product("Good", [{"sku": "GOOD-1", "price": "5.00"}])
        await cycles(w)
        assert "GOOD-1" in w.rackbeat.products
        parked = {p.key: p.reason for p in await w.store.parked("products")}
        assert parked == {"BAD-1": "REJECTED"}


@given(
    net=st.decimals(min_value=0, max_value=100_000, places=2), rate=st.sampled_from(["25", "12", "6", "0"])
)
def test_shop_price_adds_vat_and_rounds_half_up(net: Decimal, rate: str) -> None:
    price = shop_price(net, exclude_vat=True, vat_rate=Decimal(rate))
    exact = net * (1 + Decimal(rate) / 100)
    assert abs(price - exact) <= Decimal("0.005")
    assert price == price.quantize(Decimal("0.01"))
    assert shop_price(net, exclude_vat=False, vat_rate=Decimal(rate)) == net


@given(
    st.lists(
        st.text(alphabet="abc åäö<>&\"'", min_size=1, max_size=12).map(str.strip).filter(bool),
        min_size=1,
        max_size=4,
    )
)
def test_plain_text_survives_the_html_round_trip(paragraphs: list[Any]) -> None:
    text = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    assert html_to_text(text_to_html(text)) == text
