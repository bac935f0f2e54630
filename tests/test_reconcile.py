"""reconcile: both sides compared in full; --dry-run writes nothing; a fix leaves nothing to fix."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from graphql import GraphQLSchema

from daemon.reconcile import print_report, reconcile
from daemon.services import Services
from tests.harness import World, make_world, orders_flow

pytestmark = pytest.mark.anyio


def services(w: World) -> Services:
    assert w.http is not None
    return Services(w.settings, w.store, w.http, w.shopify, w.rackbeat_client, w.metrics)


def writes(w: World) -> int:
    shopify = sum(
        n
        for op, n in w.shopify_sim.requests.items()
        if op in ("SetStock", "ProductCreate", "ProductUpdate", "VariantsBulkUpdate")
    )
    rackbeat = sum(n for route, n in w.rackbeat.requests.items() if not route.startswith("GET"))
    return shopify + rackbeat


async def test_reconcile_reports_then_fixes_what_the_daemon_owns(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.rackbeat.add_product("frakt", "Frakt")
        for sku in ("BOTH-1", "BOTH-2"):
            w.rackbeat.add_product(sku, f"Name {sku}", sales_price="80", stock=10)
            w.shopify_sim.add_product(f"Name {sku}", [{"sku": sku, "price": "100.00", "stock": 3}])
        w.shopify_sim.update_product(w.shopify_sim.find_by_sku("BOTH-2").product_id, title="Renamed by hand")  # type: ignore[union-attr]
        w.shopify_sim.add_product("Only here", [{"sku": "SHOP-ONLY"}])
        w.shopify_sim.add_product("Twin A", [{"sku": "TWIN"}])
        w.shopify_sim.add_product("Twin B", [{"sku": "TWIN"}])
        w.rackbeat.add_product("RB-ONLY", "Only in Rackbeat")
        w.rackbeat.add_product("TWIN", "Twin")
        w.tick(60)
        missing = w.shopify_sim.sell("BOTH-1", 1)
        w.tick(600)

        report = await reconcile(services(w), dry_run=True, now=w.clock.now(), window=timedelta(days=1))
        assert writes(w) == 0  # a dry run writes nothing to either API
        assert report.only_in_shopify == ["SHOP-ONLY"]
        assert report.only_in_rackbeat == ["RB-ONLY"]
        assert report.duplicate_skus == {"TWIN": 2}
        stock = {(d.sku, d.shopify, d.target) for d in report.stock}
        assert ("BOTH-2", 3, 10) in stock
        assert ("BOTH-1", 2, 9) in stock  # 10 in Rackbeat, minus the order not imported yet
        assert any(d.sku == "BOTH-2" and d.field == "title" for d in report.products)
        assert report.missing_orders == [f"#{getattr(w.shopify_sim.node(missing), 'number', None)}"]
        out = io.StringIO()
        print_report(report, out, as_json=False)
        assert "SKUs only in Rackbeat: 1" in out.getvalue()
        doc = io.StringIO()
        print_report(report, doc, as_json=True)
        assert json.loads(doc.getvalue())["duplicate_skus"] == {"TWIN": 2}

        fixed = await reconcile(services(w), dry_run=False, now=w.clock.now(), window=timedelta(days=1))
        assert fixed.fixed["orders"] == 1
        assert w.rackbeat.order_count_by_reference(report.missing_orders[0]) == 1
        w.tick(600)
        again = await reconcile(services(w), dry_run=True, now=w.clock.now(), window=timedelta(days=1))
        assert again.stock == []
        assert [d for d in again.products if d.sku.startswith("BOTH")] == []
        assert again.missing_orders == []
        assert w.shopify_sim.available("BOTH-2") == 10


async def test_a_parked_orders_demand_is_counted_once_in_a_dry_run(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.rackbeat.add_product("frakt", "Frakt")
        w.rackbeat.add_product("MUG", "Mug", sales_price="80", stock=10)
        w.shopify_sim.add_product("Mug", [{"sku": "MUG", "price": "100.00", "stock": 10}])
        w.shopify_sim.add_product("Gift card", [{"sku": "GIFT", "price": "250.00", "tracked": False}])
        await orders_flow(w).run_once()  # first start: the order cursor is "now"
        w.tick(60)
        blocked = w.shopify_sim.create_order([("MUG", 1), ("GIFT", 1)])
        w.tick(600)
        await orders_flow(w).run_once()
        [parked] = await w.store.parked("orders")
        assert parked.reason == "UNKNOWN_SKU"  # in the ledger, its mug counted as demand
        assert w.shopify_sim.available("MUG") == 9

        report = await reconcile(services(w), dry_run=True, now=w.clock.now(), window=timedelta(days=1))
        name = getattr(w.shopify_sim.node(blocked), "name", None)
        assert report.missing_orders == [name]
        # Rackbeat 10 less the parked order's 1 is what Shopify shows: no difference
        assert report.stock == []


async def test_a_product_reconcile_creates_gets_its_stock_in_the_same_run(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.rackbeat.add_product("frakt", "Frakt")
        w.rackbeat.add_product("NEW-1", "New in Rackbeat", sales_price="80", stock=7)
        w.tick(60)
        report = await reconcile(services(w), dry_run=False, now=w.clock.now(), window=timedelta(days=1))
        assert report.fixed["products"] == 1
        assert w.shopify_sim.find_by_sku("NEW-1") is not None
        assert w.shopify_sim.available("NEW-1") == 7  # not 0 until the next run
        w.tick(600)
        again = await reconcile(services(w), dry_run=True, now=w.clock.now(), window=timedelta(days=1))
        assert again.stock == []


async def test_stock_rows_show_each_listed_rackbeat_location(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema, settings={"sync_locations": "1,2"}) as w:
        w.rackbeat.add_product("frakt", "Frakt")
        w.rackbeat.add_product("SPLIT", "Split", sales_price="80", stock={"1": 6, "2": 4})
        w.shopify_sim.add_product("Split", [{"sku": "SPLIT", "price": "100.00", "stock": 3}])
        w.tick(60)
        report = await reconcile(services(w), dry_run=True, now=w.clock.now(), window=timedelta(days=1))
        [row] = report.stock
        assert (row.sku, row.shopify, row.target) == ("SPLIT", 3, 10)
        assert row.rackbeat == {"1": "6", "2": "4"}
        table = io.StringIO()
        print_report(report, table, as_json=False)
        assert "sku=SPLIT" in table.getvalue()
        assert "rackbeat@1=6  rackbeat@2=4" in table.getvalue()
        doc = io.StringIO()
        print_report(report, doc, as_json=True)
        assert json.loads(doc.getvalue())["stock"][0]["rackbeat"] == {"1": "6", "2": "4"}


async def test_missing_orders_leave_out_old_ones_and_count_another_shops_namesake(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.rackbeat.add_product("frakt", "Frakt")
        w.rackbeat.add_product("MUG", "Mug", sales_price="80", stock=10)
        w.shopify_sim.add_product("Mug", [{"sku": "MUG", "price": "100.00", "stock": 10}])
        before_start = w.shopify_sim.create_order([("MUG", 1)])
        w.tick(60)
        await orders_flow(w).run_once()  # first start: orders created from now on are imported
        w.tick(60)
        new = w.shopify_sim.create_order([("MUG", 1)])
        name = str(getattr(w.shopify_sim.node(new), "name", None))
        # another shop feeding the same Rackbeat has an order of the same name
        other = w.rackbeat.order(
            w.rackbeat.place_order(w.rackbeat.add_customer("Other", "o@example.com"), [])
        )
        other.your_reference, other.heading = name, f"Shopify {name} (other-shop.myshopify.com)"
        w.tick(600)

        report = await reconcile(services(w), dry_run=True, now=w.clock.now(), window=timedelta(days=1))
        old_name = getattr(w.shopify_sim.node(before_start), "name", None)
        assert old_name not in report.missing_orders  # created before the import start
        assert report.missing_orders == [name]  # the namesake is not ours
        await reconcile(services(w), dry_run=False, now=w.clock.now(), window=timedelta(days=1))
        assert w.rackbeat.order_count_by_reference(name) == 2  # ours and the other shop's
        assert w.rackbeat.order_count_by_reference(str(old_name)) == 0


async def test_fixed_stock_counts_only_quantities_shopify_confirmed(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema, settings={"sync_orders": False}) as w:
        w.rackbeat.add_product("frakt", "Frakt")
        for sku in ("GOOD", "BUSY"):
            w.rackbeat.add_product(sku, sku, sales_price="80", stock=10)
            w.shopify_sim.add_product(sku, [{"sku": sku, "price": "100.00", "stock": 3}])
        w.rackbeat.add_product("LOOSE", "Loose", sales_price="80", stock=4)
        w.shopify_sim.add_product("Loose", [{"sku": "LOOSE", "price": "100.00", "tracked": False}])
        w.tick(60)

        def sell_busy_before_each_write(request: httpx.Request, phase: str) -> None:
            if phase == "before" and b"SetStock" in request.content:
                w.shopify_sim.sell("BUSY", 1)  # Shopify changes under every push of it

        w.hook = sell_busy_before_each_write
        report = await reconcile(services(w), dry_run=False, now=w.clock.now(), window=timedelta(days=1))
        w.hook = None
        assert {d.sku for d in report.stock} == {"GOOD", "BUSY", "LOOSE"}
        assert w.shopify_sim.available("GOOD") == 10
        assert w.shopify_sim.available("BUSY") < 10  # stale every round: not written
        assert [p.key for p in await w.store.parked("stock")] == ["LOOSE"]  # refused by Shopify
        assert report.fixed["stock"] == 1  # GOOD only
        out = io.StringIO()
        print_report(report, out, as_json=False)
        [fixed_line] = [line for line in out.getvalue().splitlines() if line.startswith("fixed:")]
        assert "stock 1" in fixed_line
