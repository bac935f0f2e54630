"""Stock Rackbeat → Shopify against both simulators: never oversell, converge, stay cheap."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLSchema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.flows.orders import OrdersFlow, unreserved_demand
from daemon.flows.stock import StockFlow
from tests.harness import World, make_world

pytestmark = pytest.mark.anyio


def orders_flow(w: World) -> OrdersFlow:
    return OrdersFlow(
        w.settings,
        w.store,
        w.shopify,
        w.rackbeat_client,
        metrics=w.metrics,
        shutdown=w.shutdown,
        clock=w.clock.now,
    )


def stock_flow(w: World, *, catch_up: bool = True) -> StockFlow:
    return StockFlow(
        w.settings,
        w.store,
        w.shopify,
        w.rackbeat_client,
        index=w.index,
        metrics=w.metrics,
        shutdown=w.shutdown,
        orders=orders_flow(w) if catch_up else None,
        clock=w.clock.now,
        monotonic=w.clock.monotonic,
    )


@asynccontextmanager
async def catalogue(
    tmp_path: Path, schema: GraphQLSchema | None, n: int, *, stock: int = 10, **settings: Any
) -> AsyncIterator[World]:
    """``n`` products with the same SKU on both sides, Shopify at 0, Rackbeat at ``stock``."""
    async with make_world(tmp_path, validate_schema=schema, settings=settings) as w:
        for i in range(n):
            sku = f"SKU-{i:04}"
            w.shopify_sim.add_product(f"Product {i}", [{"sku": sku, "price": "100.00"}])
            w.rackbeat.add_product(sku, stock=stock)
        w.rackbeat.add_product("frakt", name="Frakt")
        w.tick(60)
        yield w


def shopify_writes(w: World) -> int:
    return sum(n for op, n in w.shopify_sim.requests.items() if "SetStock" in op)


async def test_500_skus_200_changed_converge_within_two_cycles(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 500, sync_orders=False) as w:
        flow = stock_flow(w, catch_up=False)
        await flow.run_once()
        assert all(w.shopify_sim.available(f"SKU-{i:04}") == 10 for i in range(500))

        for i in range(0, 400, 2):  # 200 changes: receipts and adjustments
            w.rackbeat.goods_receipt(f"SKU-{i:04}", i % 7 + 1)
        writes = shopify_writes(w)
        w.tick(60)
        await flow.run_once()
        w.tick(60)
        await flow.run_once()
        for i in range(500):
            expected = 10 + (i % 7 + 1 if i < 400 and i % 2 == 0 else 0)
            assert w.shopify_sim.available(f"SKU-{i:04}") == expected, i
        assert shopify_writes(w) - writes == 1  # 200 quantities: one call
        assert w.metrics.value("stock", "quantities_pushed") == 700


async def test_a_quiet_cycle_writes_nothing_and_reads_rackbeat_once(tmp_path: Path) -> None:
    async with catalogue(tmp_path, None, 250, sync_orders=False) as w:
        flow = stock_flow(w, catch_up=False)
        await flow.run_once()
        w.shopify_sim.reset_requests()
        w.rackbeat.reset_counts()
        w.tick(60)
        assert await flow.run_once() == 0
        assert shopify_writes(w) == 0
        assert w.rackbeat.request_total() == 3  # 250 products, 100 a page: the narrow scan only


async def test_unimported_and_draft_orders_are_held_back(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 3, sync_order_status="draft") as w:
        await orders_flow(w).run_once()  # cursor: now
        flow = stock_flow(w)
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0000") == 10
        w.shopify_sim.sell("SKU-0000", 4)
        assert w.shopify_sim.available("SKU-0000") == 6
        # a goods receipt makes the stock flow push before the orders flow has run:
        # it catches the orders up first, so the order's 4 units stay held
        w.rackbeat.goods_receipt("SKU-0000", 1)
        w.tick(60)
        await flow.run_once()
        assert await unreserved_demand(w.store) == {"SKU-0000": 4}  # imported as a draft: not reserved
        assert w.shopify_sim.available("SKU-0000") == 7  # 11 in Rackbeat − 4 in a draft


@pytest.mark.parametrize(("figure", "expected"), [("available", 8), ("in_stock", 10)])
async def test_stock_figure_chooses_available_or_in_stock(
    tmp_path: Path, shopify_schema: GraphQLSchema, figure: str, expected: int
) -> None:
    async with catalogue(tmp_path, shopify_schema, 1, sync_stock_figure=figure, sync_orders=False) as w:
        customer = w.rackbeat.add_customer("B2B", "b2b@example.com")
        w.rackbeat.place_order(customer, [("SKU-0000", 2)], book=True)
        await stock_flow(w, catch_up=False).run_once()
        assert w.shopify_sim.available("SKU-0000") == expected


async def test_listed_locations_are_summed_and_read_only_when_totals_change(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 3, stock=0, sync_locations="1,3", sync_orders=False) as w:
        w.rackbeat.add_location("3", "Outlet")
        for i in range(3):
            w.rackbeat.goods_receipt(f"SKU-{i:04}", 5, "1")
            w.rackbeat.goods_receipt(f"SKU-{i:04}", 7, "2")  # not listed
            w.rackbeat.goods_receipt(f"SKU-{i:04}", 1, "3")
        flow = stock_flow(w, catch_up=False)
        await flow.run_once()
        assert [w.shopify_sim.available(f"SKU-{i:04}") for i in range(3)] == [6, 6, 6]
        w.rackbeat.reset_counts()
        w.rackbeat.goods_receipt("SKU-0001", 2, "3")
        w.tick(60)
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0001") == 8
        per_location = sum(n for route, n in w.rackbeat.requests.items() if "locations" in route)
        assert per_location == 1  # only the changed product was read per location


async def test_negative_figures_are_sent_as_zero_unless_allowed(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    for allow, expected in ((False, 0), (True, -3)):
        root = tmp_path / str(allow)
        root.mkdir()
        async with catalogue(root, shopify_schema, 1, stock=0, sync_allow_negative_stock=allow) as w:
            await orders_flow(w).run_once()
            w.rackbeat.adjust_stock("SKU-0000", -3)
            await stock_flow(w).run_once()
            assert w.shopify_sim.available("SKU-0000") == expected


async def test_a_duplicate_sku_is_parked_and_not_written(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 2, sync_orders=False) as w:
        w.shopify_sim.add_product("Twin", [{"sku": "SKU-0001"}])
        w.tick(60)
        await stock_flow(w, catch_up=False).run_once()
        assert w.shopify_sim.available("SKU-0000") == 10
        [parked] = await w.store.parked("stock")
        assert (parked.key, parked.reason) == ("SKU-0001", "DUPLICATE_SKU")
        assert all(
            v.inventory_item_id is None or w.shopify_sim.item_available(v.inventory_item_id) == 0
            for v in (await w.index.by_sku())["SKU-0001"]
        )


async def test_s12_off_does_nothing(tmp_path: Path) -> None:
    async with catalogue(tmp_path, None, 2, sync_stock=False, sync_orders=False) as w:
        assert await stock_flow(w, catch_up=False).run_once() == 0
        assert w.rackbeat.request_total() == 0
        assert w.shopify_sim.available("SKU-0000") == 0


async def test_a_sale_during_the_push_is_re_read_not_overwritten(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 1) as w:
        await orders_flow(w).run_once()
        flow = stock_flow(w)
        await flow.run_once()
        w.rackbeat.goods_receipt("SKU-0000", 5)
        sold = False

        def sell_first(request: httpx.Request, phase: str) -> None:
            nonlocal sold
            if phase == "before" and b"SetStock" in request.content and not sold:
                sold = True
                w.shopify_sim.sell("SKU-0000", 2)  # lands between our decision and our write

        w.hook = sell_first
        await flow.run_once()
        w.hook = None
        assert w.metrics.value("stock", "stale_retries") >= 1
        # 15 in Rackbeat, 2 sold in Shopify and not yet imported: 13, not 15
        assert w.shopify_sim.available("SKU-0000") == 13


class Crash(BaseException):
    """The process dies here."""


@pytest.mark.parametrize(
    "moment", ["after the key is stored", "after Shopify applied it", "before the ledger commit"]
)
async def test_a_crash_during_a_push_converges_without_applying_twice(
    tmp_path: Path, shopify_schema: GraphQLSchema, moment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with catalogue(tmp_path, shopify_schema, 300, sync_orders=False) as w:
        await stock_flow(w, catch_up=False).run_once()
        for i in range(300):
            w.rackbeat.goods_receipt(f"SKU-{i:04}", 3)
        armed = True

        def crash(request: httpx.Request, phase: str) -> None:
            nonlocal armed
            is_write = b"SetStock" in request.content
            if armed and is_write and phase == ("before" if moment == "after the key is stored" else "after"):
                armed = False
                raise Crash

        w.hook = crash
        flow = stock_flow(w, catch_up=False)
        if moment == "before the ledger commit":

            async def fail(*args: Any) -> None:
                raise Crash

            monkeypatch.setattr(flow, "_record", fail)  # the commit after Shopify's answer dies
            w.hook = None
        with pytest.raises(Crash):
            await flow.run_once()
        assert await w.store.fetchval("SELECT COUNT(*) FROM stock_batches") == 1  # the key survived
        w.hook = None
        await w.restart()
        applied_before = w.shopify_sim.adjustment_groups
        await stock_flow(w, catch_up=False).run_once()
        assert all(w.shopify_sim.available(f"SKU-{i:04}") == 13 for i in range(300))
        assert await w.store.fetchval("SELECT COUNT(*) FROM stock_batches") == 0
        if moment != "after the key is stored":
            # Shopify had applied the first batch: the re-send was an idempotent replay
            assert w.shopify_sim.adjustment_groups == applied_before + 1  # only the second batch of 250+50
            assert w.shopify_sim.idempotent_replays == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.sampled_from(["sale", "import", "book", "receipt", "ship", "stock_cycle", "orders_cycle"]),
        min_size=5,
        max_size=25,
    ),
    seed=st.integers(0, 10_000),
)
async def test_shopify_never_shows_more_than_rackbeat_minus_unreserved_demand(
    tmp_path_factory: pytest.TempPathFactory, steps: list[str], seed: int
) -> None:
    rnd = random.Random(seed)
    skus = ["A", "B"]
    async with make_world(tmp_path_factory.mktemp("w"), settings={"sync_order_status": "draft"}) as w:
        for sku in skus:
            w.shopify_sim.add_product(sku, [{"sku": sku, "price": "10.00"}])
            w.rackbeat.add_product(sku, stock=6)
        w.rackbeat.add_product("frakt")
        orders = orders_flow(w)
        stock = stock_flow(w)
        await orders.run_once()
        await stock.run_once()
        sold: list[str] = []  # Shopify order ids not yet in Rackbeat

        async def check() -> None:
            demand = await unreserved_demand(w.store)
            # orders Shopify has that the ledger has not seen yet are demand too
            seen = {r[0] for r in await w.store.fetchall("SELECT order_id FROM order_ledger")}
            for order_id in sold:
                if order_id not in seen:
                    for sku, qty in w.shopify_sim.order_demand(order_id).items():
                        demand[sku] = demand.get(sku, 0) + qty
            for sku in skus:
                bound = max(int(w.rackbeat.available_quantity(sku)) - demand.get(sku, 0), 0)
                assert w.shopify_sim.available(sku) <= bound, (sku, steps)

        for step in steps:
            sku = rnd.choice(skus)
            w.tick(30)
            if step == "sale" and w.shopify_sim.available(sku) > 0:
                sold.append(w.shopify_sim.sell(sku, 1))
            elif step in ("import", "orders_cycle"):
                await orders.run_once()
            elif step == "book":
                drafts = [o for o in w.rackbeat.orders if not o.is_booked]
                if drafts:
                    w.rackbeat.book(rnd.choice(drafts).number)
            elif step == "receipt":
                w.rackbeat.goods_receipt(sku, rnd.randint(1, 3))
            elif step == "ship":
                booked = [o for o in w.rackbeat.orders if o.is_booked and not o.is_shipped]
                if booked:
                    w.rackbeat.ship(rnd.choice(booked).number)
            elif step == "stock_cycle":
                await stock.run_once()
                await check()
        # activity stops: two cycles of each, then Shopify equals the bound exactly
        for _ in range(2):
            w.tick(60)
            await orders.run_once()
            await stock.run_once()
        await check()
        demand = await unreserved_demand(w.store)
        for sku in skus:
            expected = max(int(w.rackbeat.available_quantity(sku)) - demand.get(sku, 0), 0)
            assert w.shopify_sim.available(sku) == expected
