"""Stock Rackbeat → Shopify against both simulators: never oversell, converge, stay cheap."""

from __future__ import annotations

import io
import json
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from graphql import GraphQLSchema
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from daemon import app
from daemon.demand import OrderDemand
from daemon.flows.stock import HOLD_LIMIT, StockFlow, effective_demand, target_quantity
from daemon.index import SkuIndex
from daemon.mapping import shopify_heading
from daemon.metrics import PREFIX
from daemon.runner import CycleRequests, InlineCycles, Runner
from daemon.sim.shopify import Order as ShopifyOrder
from daemon.store import Transaction
from tests.harness import (
    ShopWorld,
    World,
    account_flows,
    add_shop,
    book_for,
    first_shop,
    make_world,
    orders_flow,
)

pytestmark = pytest.mark.anyio

CatchUp = Callable[[], Awaitable[object]]


def stock_flow(
    w: World, catch_up: CatchUp | None = None, *, cycles: CycleRequests | None = None
) -> StockFlow:
    """The stock flow on ``w``; an orders catch-up runs ``catch_up`` inline, or asks ``cycles``."""
    return StockFlow(
        w.settings,
        w.store,
        w.shopify,
        w.rackbeat_client,
        index=SkuIndex(w.store, w.shopify, clock=w.clock.now),
        metrics=w.metrics,
        shutdown=w.shutdown,
        demand=OrderDemand(w.store),
        cycles=cycles if catch_up is None else InlineCycles({"orders": catch_up}),
        clock=w.clock.now,
        monotonic=w.clock.monotonic,
    )


@asynccontextmanager
async def catalogue(
    tmp_path: Path,
    schema: GraphQLSchema | None,
    n: int,
    *,
    stock: int = 10,
    shopify_options: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[World]:
    """``n`` products with the same SKU on both sides, Shopify at 0, Rackbeat at ``stock``."""
    async with make_world(
        tmp_path, validate_schema=schema, settings=settings, shopify_options=shopify_options
    ) as w:
        for i in range(n):
            sku = f"SKU-{i:04}"
            w.shopify_sim.add_product(f"Product {i}", [{"sku": sku, "price": "100.00"}])
            w.rackbeat.add_product(sku, stock=stock)
        w.rackbeat.add_product("frakt", name="Frakt")
        w.tick(60)
        yield w


@asynccontextmanager
async def six_at_location_1_on_a_small_budget(tmp_path: Path, schema: GraphQLSchema) -> AsyncIterator[World]:
    """6 products with 5 units each at the listed location 1 (S10 = "1"), at 8 Rackbeat
    requests a minute and 60 s polls: a quarter of a cycle's budget is 2 products."""
    async with catalogue(
        tmp_path,
        schema,
        6,
        stock=0,
        sync_locations="1",
        sync_orders=False,
        rackbeat_requests_per_minute=8,
        sync_poll_seconds=60,
    ) as w:
        for i in range(6):
            w.rackbeat.goods_receipt(f"SKU-{i:04}", 5, "1")
        yield w


def shopify_writes(w: World) -> int:
    return w.shopify_sim.requests["SetStock"]


def applications_per_item(w: World, since: int = 0) -> dict[str, int]:
    """How often Shopify applied a quantity to each inventory item (replays not counted)."""
    counts: dict[str, int] = {}
    for application in w.shopify_sim.inventory_applications[since:]:
        for item, _location, _quantity, _delta in application.quantities:
            counts[item] = counts.get(item, 0) + 1
    return counts


def unreserved_truth(w: World) -> dict[str, int]:
    """SKU → units of Shopify orders Rackbeat does not reserve: not in Rackbeat, or a draft there."""
    rackbeat = {o.your_reference: o for o in w.rackbeat.orders}
    demand: dict[str, int] = {}
    for order in w.shopify_sim.orders.values():
        twin = rackbeat.get(order.name)
        if twin is not None and (twin.is_booked or twin.is_cancelled):
            continue  # reserved (or shipped: the stock has left Rackbeat)
        for sku, units in w.shopify_sim.order_demand(order.id).items():
            demand[sku] = demand.get(sku, 0) + units
    return demand


def bound(w: World, sku: str, demand: dict[str, int]) -> int:
    """What Shopify may show at most: Rackbeat's available minus the unreserved demand."""
    return max(math.floor(w.rackbeat.available_quantity(sku) - demand.get(sku, 0)), 0)


# --- the decision itself --------------------------------------------------------------------------


def test_target_is_whole_units_and_never_negative_unless_allowed() -> None:
    assert target_quantity(Decimal("7.9"), 2, allow_negative=False) == 5
    assert target_quantity(Decimal("1"), 3, allow_negative=False) == 0
    assert target_quantity(Decimal("1"), 3, allow_negative=True) == -2
    assert target_quantity(Decimal("-0.5"), 0, allow_negative=True) == -1  # rounds towards less


def test_effective_demand_keeps_orders_that_may_have_become_reserved_after_the_scan() -> None:
    # before the scan: a draft of 2 A; during the catch-up it was booked and a new order of 3 A
    # arrived and was booked too; a draft of 1 B was imported: none of them in the scan's figure
    assert effective_demand({"B": 1}, {"A": 2}, {"A": 3, "B": 1}) == {"A": 5, "B": 1}
    assert effective_demand({"A": 2}, {"A": 2}, {}) == {"A": 2}  # nothing moved: exact


# --- end to end ------------------------------------------------------------------------------------


async def test_500_skus_200_changed_converge_within_two_cycles_with_one_write(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 500, sync_orders=False) as w:
        flow = stock_flow(w)
        assert await flow.run_once() == 500
        assert all(w.shopify_sim.available(f"SKU-{i:04}") == 10 for i in range(500))

        for i in range(0, 400, 2):  # 200 changes
            w.rackbeat.goods_receipt(f"SKU-{i:04}", i % 7 + 1)
        w.shopify_sim.reset_requests()
        w.rackbeat.reset_counts()
        w.tick(60)
        assert await flow.run_once() == 200
        w.tick(60)
        assert await flow.run_once() == 0
        for i in range(500):
            expected = 10 + (i % 7 + 1 if i < 400 and i % 2 == 0 else 0)
            assert w.shopify_sim.available(f"SKU-{i:04}") == expected, i
        assert shopify_writes(w) == 1  # 200 quantities in one call, no read before it
        assert w.shopify_sim.requests["InventoryLevels"] == 0
        assert w.rackbeat.request_total() == 2 * 6  # two cycles of the narrow scan (501 products)
        assert w.metrics.value("stock", "quantities_pushed") == 700
        assert w.metrics.value("stock", "batches") == 3
        lag = w.metrics.registry.get_sample_value(f"{PREFIX}_stock_lag_seconds", {"shop": ""})
        assert lag == 0.0  # the last cycle found Shopify as decided


async def test_a_quiet_cycle_reads_rackbeat_once_and_does_not_catch_up(tmp_path: Path) -> None:
    async with catalogue(tmp_path, None, 250, sync_orders=False) as w:
        caught_up = 0

        async def count() -> None:
            nonlocal caught_up
            caught_up += 1

        flow = stock_flow(w, count)
        await flow.run_once()
        assert caught_up == 1  # the first cycle wrote, so it caught the orders up first
        w.tick(600)
        await flow.run_once()  # the SKU index reads the catalogue once more (its overlap)
        w.tick(60)
        w.shopify_sim.reset_requests()
        w.rackbeat.reset_counts()
        assert await flow.run_once() == 0
        assert caught_up == 1
        assert shopify_writes(w) == 0
        assert sum(w.shopify_sim.requests.values()) == 1  # the SKU index's refresh only
        assert w.rackbeat.request_total() == 3  # 251 products, 100 a page: the narrow scan only


async def test_orders_rackbeat_does_not_reserve_are_held_back(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 3, sync_order_status="draft") as w:
        orders = orders_flow(w)
        await orders.run_once()  # the orders cursor starts now
        flow = stock_flow(w, orders.run_once)
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0000") == 10
        w.shopify_sim.sell("SKU-0000", 4)
        assert w.shopify_sim.available("SKU-0000") == 6
        # a goods receipt makes the stock flow push before the orders flow ran on its own:
        # it catches the orders up first, so the order's 4 units stay held
        w.rackbeat.goods_receipt("SKU-0000", 1)
        w.tick(60)
        await flow.run_once()
        assert await OrderDemand(w.store).unreserved() == {"SKU-0000": 4}  # imported as a draft: not reserved
        assert w.shopify_sim.available("SKU-0000") == 7  # 11 in Rackbeat − 4 in a draft


@pytest.mark.parametrize(("figure", "expected"), [("available", 8), ("in_stock", 10)])
async def test_stock_figure_chooses_available_or_in_stock(
    tmp_path: Path, shopify_schema: GraphQLSchema, figure: str, expected: int
) -> None:
    async with catalogue(tmp_path, shopify_schema, 1, sync_stock_figure=figure, sync_orders=False) as w:
        customer = w.rackbeat.add_customer("B2B", "b2b@example.com")
        w.rackbeat.place_order(customer, [("SKU-0000", 2)], book=True)  # another sales channel
        await stock_flow(w).run_once()
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
        flow = stock_flow(w)
        await flow.run_once()
        assert [w.shopify_sim.available(f"SKU-{i:04}") for i in range(3)] == [6, 6, 6]
        w.rackbeat.reset_counts()
        w.rackbeat.goods_receipt("SKU-0001", 2, "3")
        w.rackbeat.goods_receipt("SKU-0002", 9, "2")  # not listed: totals change, the sum does not
        w.tick(60)
        await flow.run_once()
        assert [w.shopify_sim.available(f"SKU-{i:04}") for i in range(3)] == [6, 8, 6]
        per_location = sum(n for route, n in w.rackbeat.requests.items() if "locations" in route)
        assert per_location == 2  # only the changed products were read per location


async def test_negative_figures_are_sent_as_zero_unless_allowed(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    for allow, expected in ((False, 0), (True, -3)):
        root = tmp_path / str(allow)
        root.mkdir()
        async with catalogue(
            root, shopify_schema, 1, stock=0, sync_allow_negative_stock=allow, sync_orders=False
        ) as w:
            w.rackbeat.adjust_stock("SKU-0000", -3)
            await stock_flow(w).run_once()
            assert w.shopify_sim.available("SKU-0000") == expected


async def test_a_duplicate_sku_is_parked_not_written_and_released_when_fixed(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 2, sync_orders=False) as w:
        twin = w.shopify_sim.add_product("Twin", [{"sku": "SKU-0001"}])
        w.tick(60)
        flow = stock_flow(w)
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0000") == 10
        [parked] = await w.store.parked("stock")
        assert (parked.key, parked.reason) == ("SKU-0001", "DUPLICATE_SKU")
        assert all(w.shopify_sim.item_available(item) == 0 for item in twin.inventory_item_ids)
        assert w.shopify_sim.item_available(w.shopify_sim.find_by_sku("SKU-0000").inventory_item_id) == 10  # type: ignore[union-attr]

        w.shopify_sim.update_variant(twin.variant_ids[0], sku="SKU-0001-B")  # made unique by hand
        w.tick(600)
        await flow.run_once()
        assert await w.store.parked("stock") == []
        assert w.shopify_sim.item_available(w.shopify_sim.find_by_sku("SKU-0001").inventory_item_id) == 10  # type: ignore[union-attr]


async def test_s12_off_does_nothing(tmp_path: Path) -> None:
    async with catalogue(tmp_path, None, 2, sync_stock=False, sync_orders=False) as w:
        assert await stock_flow(w).run_once() == 0
        assert w.rackbeat.request_total() == 0
        assert sum(w.shopify_sim.requests.values()) == 0
        assert w.shopify_sim.available("SKU-0000") == 0


async def test_a_refused_quantity_parks_its_sku_and_the_rest_is_written(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 2, sync_orders=False) as w:
        w.shopify_sim.add_product("Untracked", [{"sku": "LOOSE", "tracked": False}])
        w.rackbeat.add_product("LOOSE", stock=4)
        w.tick(60)
        flow = stock_flow(w)
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0000") == w.shopify_sim.available("SKU-0001") == 10
        [parked] = await w.store.parked("stock")
        assert (parked.key, parked.reason) == ("LOOSE", "REJECTED")
        w.shopify_sim.reset_requests()
        w.tick(60)
        await flow.run_once()
        assert shopify_writes(w) == 0  # not tried again before its retry is due


# --- never oversell ---------------------------------------------------------------------------------


async def test_a_sale_during_the_push_is_re_read_not_overwritten(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 1) as w:
        orders = orders_flow(w)
        await orders.run_once()
        flow = stock_flow(w, orders.run_once)
        await flow.run_once()
        w.rackbeat.goods_receipt("SKU-0000", 5)
        sold = False

        def sell_first(request: httpx.Request, phase: str) -> None:
            nonlocal sold
            if phase == "before" and b"SetStock" in request.content and not sold:
                sold = True
                w.shopify_sim.sell("SKU-0000", 2)  # lands between the decision and the write

        w.hook = sell_first
        await flow.run_once()
        w.hook = None
        assert w.metrics.value("stock", "stale_retries") == 1
        # 15 in Rackbeat, 2 sold in Shopify: 13, not 15
        assert w.shopify_sim.available("SKU-0000") == 13
        w.tick(60)
        await orders.run_once()
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0000") == 13


async def test_an_order_booked_between_the_scan_and_the_write_is_still_held(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 1, sync_order_status="draft") as w:
        orders = orders_flow(w)
        await orders.run_once()
        flow = stock_flow(w, orders.run_once)
        await flow.run_once()
        w.shopify_sim.sell("SKU-0000", 3)
        w.tick(60)
        await orders.run_once()  # a draft in Rackbeat: the stock flow holds its 3 units
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0000") == 7

        async def book_during_catch_up() -> None:
            # the orders flow books the draft after the stock flow scanned Rackbeat: the
            # scanned figure lacks the reservation and the ledger no longer holds the units
            [draft] = w.rackbeat.orders
            w.rackbeat.book(draft.number)
            async with w.store.transaction() as tx:
                await tx.execute("UPDATE order_ledger SET rackbeat_state = 'booked'")

        w.rackbeat.goods_receipt("SKU-0000", 1)
        w.tick(60)
        await stock_flow(w, book_during_catch_up).run_once()
        assert w.shopify_sim.available("SKU-0000") == 8  # 11 − 3, not 11


async def test_a_sale_shopify_search_does_not_show_yet_is_not_overwritten(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 1, shopify_options={"search_lag": 30.0}) as w:
        orders = orders_flow(w)
        await orders.run_once()
        flow = stock_flow(w, orders.run_once)
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0000") == 10
        w.tick(60)
        w.shopify_sim.sell("SKU-0000", 3)  # invisible to the orders search for 30 s
        w.rackbeat.goods_receipt("SKU-0000", 2)
        w.tick(5)
        await flow.run_once()
        # the write failed as stale and the catch-up could not see the order yet: the 3
        # units Shopify sold without the ledger knowing stay held back (12 − 3, not 12)
        assert w.shopify_sim.available("SKU-0000") == 9
        assert w.shopify_sim.available("SKU-0000") <= bound(w, "SKU-0000", unreserved_truth(w))
        assert w.metrics.value("stock", "held_back") == 1
        writes = shopify_writes(w)
        w.tick(60)
        await flow.run_once()  # the order is visible now: caught up and booked, still 12 − 3
        assert w.rackbeat.order_count_by_reference("#1001") == 1
        assert w.shopify_sim.available("SKU-0000") == 9
        assert shopify_writes(w) == writes  # the held units were the order's: nothing to write
        assert w.metrics.registry.get_sample_value(f"{PREFIX}_stock_lag_seconds", {"shop": ""}) == 0.0


async def test_hand_made_drift_is_corrected_by_the_periodic_reconcile(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 2, sync_orders=False, sync_reconcile_seconds=600) as w:
        flow = stock_flow(w)
        await flow.run_once()
        w.shopify_sim.set_available("SKU-0000", 50)  # typed in by hand in Shopify's admin
        w.shopify_sim.set_available("SKU-0001", 4)
        w.tick(60)
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0000") == 50  # quiet cycles read no Shopify levels
        w.tick(600)
        await flow.run_once()  # the reconcile: too high is fixed at once
        assert w.shopify_sim.available("SKU-0000") == 10
        assert w.shopify_sim.available("SKU-0001") == 4  # too low may be a sale whose order lags
        w.tick(60)
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0001") == 4  # still no order: still held
        w.tick(HOLD_LIMIT.total_seconds())
        await flow.run_once()  # no order explained the drop in time: a hand-made change, undone
        assert w.shopify_sim.available("SKU-0001") == 10


async def test_reconcile_reports_differences_and_fixes_them_unless_dry_run(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 3, sync_orders=False) as w:
        flow = stock_flow(w)
        await flow.run_once()
        w.shopify_sim.set_available("SKU-0001", 2)
        w.rackbeat.goods_receipt("SKU-0002", 5)
        w.shopify_sim.reset_requests()
        report = await flow.reconcile(dry_run=True, extra_demand={"SKU-0002": 1})
        assert {(d.sku, d.shopify, d.target) for d in report} == {("SKU-0001", 2, 10), ("SKU-0002", 10, 14)}
        assert shopify_writes(w) == 0
        fixed = await flow.reconcile(dry_run=False)
        assert {(d.sku, d.target) for d in fixed} == {("SKU-0001", 10), ("SKU-0002", 15)}
        assert [w.shopify_sim.available(f"SKU-{i:04}") for i in range(3)] == [10, 10, 15]
        assert await flow.reconcile(dry_run=True) == []


@pytest.mark.parametrize("in_memory", [5_000, 0], ids=["few unmarked", "first sync: marked in SQL"])
async def test_a_new_rackbeat_product_wakes_orders_parked_for_its_sku(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_memory: int
) -> None:
    monkeypatch.setattr("daemon.flows.stock.UNMARKED_IN_MEMORY", in_memory)
    async with catalogue(tmp_path, None, 1) as w:
        orders = orders_flow(w)
        await orders.run_once()
        w.shopify_sim.add_product("Newcomer", [{"sku": "NEW-1", "price": "10.00"}])
        w.tick(60)
        w.shopify_sim.sell("NEW-1", 1)
        w.tick(600)
        await orders.run_once()
        [parked] = await w.store.parked("orders")
        assert parked.reason == "UNKNOWN_SKU"
        assert await w.store.due_parked("orders", w.clock.now()) == []
        flow = stock_flow(w)
        await flow.run_once()
        w.rackbeat.add_product("NEW-1", stock=5)
        w.tick(60)
        await flow.run_once()
        assert [p.key for p in await w.store.due_parked("orders", w.clock.now())] == [parked.key]
        assert set(await w.index.unmarked() or ()) == set()  # every row Rackbeat has is marked
        await orders.run_once()  # long before the parked order's own retry time
        assert await w.store.parked("orders") == []
        assert w.rackbeat.order_count_by_reference(parked.key) == 1


async def test_the_shipping_product_appearing_wakes_orders_parked_for_it(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.shopify_sim.add_product("Mug", [{"sku": "MUG-1", "price": "100.00"}])
        w.rackbeat.add_product("MUG-1", stock=5)  # no S15 shipping product in Rackbeat yet
        orders = orders_flow(w)
        await orders.run_once()
        w.tick(60)
        w.shopify_sim.create_order([("MUG-1", 1)], shipping_price="49.00")
        w.tick(600)
        await orders.run_once()
        [parked] = await w.store.parked("orders")
        assert parked.reason == "NO_SHIPPING_PRODUCT"
        flow = stock_flow(w)
        await flow.run_once()
        assert await w.store.due_parked("orders", w.clock.now()) == []
        w.rackbeat.add_product("frakt", name="Frakt")
        w.tick(60)
        await flow.run_once()
        assert [p.key for p in await w.store.due_parked("orders", w.clock.now())] == [parked.key]
        assert set(await w.index.unmarked() or ()) == set()  # every row Rackbeat has is marked
        await orders.run_once()  # long before the parked order's own retry time
        assert await w.store.parked("orders") == []
        assert w.rackbeat.order_count_by_reference(parked.key) == 1


# --- crash safety --------------------------------------------------------------------------------------


class Crash(BaseException):
    """The process dies here."""


# --- S10 as a list: goods moved between locations ------------------------------------------------


async def test_a_move_to_an_unlisted_location_is_caught_by_the_full_reconcile(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(
        tmp_path,
        shopify_schema,
        1,
        stock=0,
        sync_locations="1",
        sync_orders=False,
        sync_reconcile_seconds=600,
    ) as w:
        w.rackbeat.goods_receipt("SKU-0000", 5, "1")
        flow = stock_flow(w)
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0000") == 5
        # 4 units moved from the listed location 1 to location 2: Rackbeat's totals stay 5/5
        w.rackbeat.adjust_stock("SKU-0000", -4, "1")
        w.rackbeat.goods_receipt("SKU-0000", 4, "2")
        w.tick(60)
        await flow.run_once()
        # a normal cycle cannot see it (documented): totals and updated_at are as recorded
        assert w.shopify_sim.available("SKU-0000") == 5
        w.tick(600)
        await flow.run_once()  # the full reconcile reads every product per location
        assert w.shopify_sim.available("SKU-0000") == 1


async def test_the_full_reconcile_spends_a_bounded_share_of_the_rackbeat_budget_per_cycle(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with six_at_location_1_on_a_small_budget(tmp_path, shopify_schema) as w:
        flow = stock_flow(w)
        await flow.run_once()  # first cycle: every product is new, so each is read per location
        for i in range(6):  # 4 units of each moved to the unlisted location 2: totals stay 5/5
            w.rackbeat.adjust_stock(f"SKU-{i:04}", -4, "1")
            w.rackbeat.goods_receipt(f"SKU-{i:04}", 4, "2")
        w.tick(3600)  # the next full reconcile is due
        shown: list[list[int]] = []
        for _ in range(3):
            w.rackbeat.reset_counts()
            await flow.run_once()
            per_location = sum(n for route, n in w.rackbeat.requests.items() if "locations" in route)
            assert per_location <= 2 * 2  # two products, one or two requests each
            shown.append([w.shopify_sim.available(f"SKU-{i:04}") for i in range(6)])
            w.tick(60)
        # the pass goes on over the next cycles until every product was read again
        assert shown == [[1, 1, 5, 5, 5, 5], [1, 1, 1, 1, 5, 5], [1, 1, 1, 1, 1, 1]]


async def test_the_reconcile_command_reads_listed_locations_again(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 1, stock=0, sync_locations="1", sync_orders=False) as w:
        w.rackbeat.goods_receipt("SKU-0000", 5, "1")
        flow = stock_flow(w)
        await flow.run_once()
        w.rackbeat.adjust_stock("SKU-0000", -4, "1")
        w.rackbeat.goods_receipt("SKU-0000", 4, "2")
        report = await flow.reconcile(dry_run=True)
        assert [(d.sku, d.shopify, d.target) for d in report] == [("SKU-0000", 5, 1)]
        await flow.reconcile(dry_run=False)
        assert w.shopify_sim.available("SKU-0000") == 1


async def test_a_move_that_bumps_updated_at_is_caught_by_the_next_cycle(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(
        tmp_path,
        validate_schema=shopify_schema,
        settings={"sync_locations": "1", "sync_orders": False},
        rackbeat_options={"stock_touches_updated_at": True},
    ) as w:
        w.shopify_sim.add_product("Product", [{"sku": "SKU-0000", "price": "100.00"}])
        w.rackbeat.add_product("SKU-0000", stock=0)
        w.rackbeat.add_product("frakt", name="Frakt")
        w.rackbeat.goods_receipt("SKU-0000", 5, "1")
        w.tick(60)
        flow = stock_flow(w)
        await flow.run_once()
        w.tick(60)
        w.rackbeat.adjust_stock("SKU-0000", -4, "1")
        w.rackbeat.goods_receipt("SKU-0000", 4, "2")
        w.tick(60)
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0000") == 1
        # once recorded, the product is not read per location again while nothing changes
        w.rackbeat.reset_counts()
        w.tick(60)
        await flow.run_once()
        assert sum(n for route, n in w.rackbeat.requests.items() if "locations" in route) == 0


# --- held-back units --------------------------------------------------------------------------------


async def test_units_held_for_a_lagging_order_stay_held_until_it_reaches_the_ledger(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    # Shopify's order search lags 150 s, the stock flow runs every 60 s
    async with catalogue(tmp_path, shopify_schema, 1, shopify_options={"search_lag": 150.0}) as w:
        orders = orders_flow(w)
        await orders.run_once()
        flow = stock_flow(w, orders.run_once)
        await flow.run_once()
        w.tick(60)
        w.shopify_sim.sell("SKU-0000", 3)  # invisible to the orders search for 150 s
        w.rackbeat.goods_receipt("SKU-0000", 2)
        w.tick(5)
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0000") == 9  # 12 − the 3 units Shopify sold
        for _ in range(2):  # 65 s and 125 s after the sale: the order is still not searchable
            w.tick(60)
            await flow.run_once()
            assert w.rackbeat.order_count_by_reference("#1001") == 0
            assert w.shopify_sim.available("SKU-0000") == 9, "released before the order arrived"
            assert w.shopify_sim.available("SKU-0000") <= bound(w, "SKU-0000", unreserved_truth(w))
        writes = shopify_writes(w)
        w.tick(60)
        await flow.run_once()  # searchable now: imported and booked; still 12 − 3, nothing to write
        assert w.rackbeat.order_count_by_reference("#1001") == 1
        assert w.shopify_sim.available("SKU-0000") == 9
        assert shopify_writes(w) == writes
        w.tick(HOLD_LIMIT.total_seconds())
        await flow.run_once()  # the hold ended with the order, not with the time limit
        assert w.shopify_sim.available("SKU-0000") == 9
        assert w.metrics.registry.get_sample_value(f"{PREFIX}_stock_lag_seconds", {"shop": ""}) == 0.0


# --- SKUs on one side only, the location, re-sent batches ---------------------------------------------


async def test_status_lists_skus_that_exist_only_in_rackbeat(tmp_path: Path) -> None:
    async with catalogue(tmp_path, None, 2, sync_orders=False) as w:
        for n in range(25):
            w.rackbeat.add_product(f"RB-ONLY-{n:02}", stock=1)
        await stock_flow(w).run_once()
        out = io.StringIO()
        assert await app.status(w.settings, as_json=False, out=out) == 0
        text = out.getvalue()
        assert "SKUs only in Rackbeat (25):" in text
        assert "RB-ONLY-00, RB-ONLY-01" in text
        assert "SKU-0000" not in text.split("SKUs only in Rackbeat")[1]
        out = io.StringIO()
        assert await app.status(w.settings, as_json=True, out=out) == 0
        only = json.loads(out.getvalue())["skus_only_in_rackbeat"]
        assert only["count"] == 25
        assert only["examples"][:2] == ["RB-ONLY-00", "RB-ONLY-01"]
        assert "frakt" not in only["examples"]  # the shipping product (S15) is no SKU


async def test_without_shopify_location_id_the_primary_location_is_written(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 1, sync_orders=False) as w:
        assert w.settings.shopify_location_id is None
        other = w.shopify_sim.add_location("Outlet")
        await stock_flow(w).run_once()
        assert w.shopify_sim.available("SKU-0000", w.location_id) == 10
        assert w.shopify_sim.available("SKU-0000", other) == 0
    root = tmp_path / "configured"
    root.mkdir()
    async with make_world(root, validate_schema=shopify_schema, settings={"sync_orders": False}) as w:
        w.shopify_sim.add_product("Product", [{"sku": "SKU-0000", "price": "100.00"}])
        outlet = w.shopify_sim.add_location("Outlet")  # stocks the existing item there with 0
        w.rackbeat.add_product("SKU-0000", stock=7)
        w.tick(60)
        w.settings = w.settings.model_copy(update={"shopify_location_id": outlet})
        await stock_flow(w).run_once()
        assert w.shopify_sim.available("SKU-0000", outlet) == 7
        assert w.shopify_sim.available("SKU-0000", w.location_id) == 0


async def test_a_re_sent_batch_that_comes_back_stale_is_decided_again(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 2, sync_orders=False) as w:
        flow = stock_flow(w)
        await flow.run_once()
        w.rackbeat.goods_receipt("SKU-0000", 3)
        w.rackbeat.goods_receipt("SKU-0001", 3)

        def fail_before_sending(request: httpx.Request, phase: str) -> None:
            if phase == "before" and b"SetStock" in request.content:
                raise Crash

        # the push fails after its batch was stored; the runner goes on with the next cycle
        w.hook = fail_before_sending
        w.tick(60)
        with pytest.raises(Crash):
            await flow.run_once()
        w.hook = None
        # meanwhile SKU-0000 was counted by hand in Shopify: the stored batch's
        # compare-and-swap fails for it
        w.shopify_sim.set_available("SKU-0000", 20)
        w.tick(60)
        w.shopify_sim.reset_requests()
        assert await flow.run_once() == 2
        assert w.shopify_sim.available("SKU-0000") == 13  # decided again in the same cycle
        assert w.shopify_sim.available("SKU-0001") == 13
        # the stored batch, SKU-0001 alone with a new key, then SKU-0000 after reading it:
        # no write is sent on a quantity already known to be out of date
        assert shopify_writes(w) == 3
        assert w.shopify_sim.requests["InventoryLevels"] == 1
        assert w.metrics.value("stock", "stale_retries") == 0
        assert await w.store.fetchval("SELECT COUNT(*) FROM stock_batches") == 0
        w.tick(60)
        w.shopify_sim.reset_requests()
        assert await flow.run_once() == 0
        assert shopify_writes(w) == 0


@pytest.mark.parametrize(
    "moment", ["after the key is stored", "after Shopify applied it", "before the ledger commit"]
)
async def test_a_crash_during_a_push_converges_without_applying_twice(
    tmp_path: Path, shopify_schema: GraphQLSchema, moment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with catalogue(tmp_path, shopify_schema, 300, sync_orders=False) as w:
        await stock_flow(w).run_once()
        for i in range(300):
            w.rackbeat.goods_receipt(f"SKU-{i:04}", 3)
        armed = True
        before = len(w.shopify_sim.inventory_applications)

        def crash_on_write(request: httpx.Request, phase: str) -> None:
            nonlocal armed
            wanted = "before" if moment == "after the key is stored" else "after"
            if armed and b"SetStock" in request.content and phase == wanted:
                armed = False
                raise Crash

        real_execute = Transaction.execute

        async def crash_on_commit(self: Transaction, sql: str, params: Any = ()) -> None:
            nonlocal armed
            if armed and sql.startswith("DELETE FROM stock_batches"):
                armed = False
                raise Crash  # the transaction with the ledger rows dies before its COMMIT
            await real_execute(self, sql, params)

        if moment == "before the ledger commit":
            monkeypatch.setattr(Transaction, "execute", crash_on_commit)
        else:
            w.hook = crash_on_write
        w.tick(60)
        with pytest.raises(Crash):
            await stock_flow(w).run_once()
        monkeypatch.undo()
        w.hook = None
        assert await w.store.fetchval("SELECT COUNT(*) FROM stock_batches") == 1  # the key survived
        ledger = await w.store.fetchall("SELECT quantity FROM stock_ledger")
        assert {q for (q,) in ledger} == {10}  # nothing recorded that Shopify did not confirm

        await w.restart()
        w.tick(60)
        await stock_flow(w).run_once()
        assert all(w.shopify_sim.available(f"SKU-{i:04}") == 13 for i in range(300))
        assert await w.store.fetchval("SELECT COUNT(*) FROM stock_batches") == 0
        assert {q for (q,) in await w.store.fetchall("SELECT quantity FROM stock_ledger")} == {13}
        applied = applications_per_item(w, since=before)
        assert len(applied) == 300
        assert set(applied.values()) == {1}  # every SKU set exactly once
        expected_replays = 0 if moment == "after the key is stored" else 1
        assert w.shopify_sim.idempotent_replays == expected_replays


# --- the property ---------------------------------------------------------------------------------------

#: "mid" makes the next stock cycle's catch-up (between its Rackbeat scan and its write) sell,
#: import or book orders; the other steps happen between cycles
STEPS = [
    "sale",
    "sale",
    "import",
    "book",
    "receipt",
    "adjust",
    "ship",
    "mid",
    "stock_cycle",
    "stock_cycle",
    "stock_cycle",
]


#: what happens in Rackbeat alone in the property tests' histories
RACKBEAT_STEPS = ("receipt", "adjust", "ship")


def rackbeat_step(w: World, step: str, sku: str, rnd: random.Random) -> None:
    """A goods receipt, a stock adjustment (breakage, a count) or a shipment in Rackbeat."""
    if step == "receipt":
        w.rackbeat.goods_receipt(sku, rnd.randint(1, 3))
    elif step == "adjust":
        w.rackbeat.adjust_stock(sku, -rnd.randint(1, 2))
    elif step == "ship":
        booked = [o for o in w.rackbeat.orders if o.reserves_stock]
        if booked:
            w.rackbeat.ship(rnd.choice(booked).number)


async def book_as_the_orders_flow_does(w: World, number: str) -> None:
    """Book a draft in Rackbeat and let the ledger know, as the orders flow does when it
    books a draft it made (a draft booked by hand stays counted: see OrderDemand.unreserved)."""
    w.rackbeat.book(number)
    reference = w.rackbeat.order(number).your_reference
    async with w.store.transaction() as tx:
        await tx.execute(
            "UPDATE order_ledger SET rackbeat_state = 'booked' WHERE order_name = ?", (reference,)
        )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.sampled_from(STEPS), min_size=5, max_size=25),
    status=st.sampled_from(["draft", "booked", "ready_to_ship"]),
    search_lag=st.sampled_from([0.0, 20.0, 45.0, 100.0]),
    seed=st.integers(0, 10_000),
)
# A draft booked in one cycle's catch-up left the demand while a receipt kept the available
# figure, and a Shopify sale reached the ledger in the next cycle's catch-up: figure and
# demand looked as recorded, so the ledger's quantity (no longer Shopify's) was settled with
# the new order's rowid, and the next reading held its units back as a hidden sale.
@example(
    steps=[
        "adjust",
        "import",
        "mid",
        "sale",
        "sale",
        "receipt",
        "import",
        "receipt",
        "import",
        "stock_cycle",
        "receipt",
        "receipt",
        "sale",
        "stock_cycle",
    ],
    status="draft",
    search_lag=0.0,
    seed=1,
)
async def test_shopify_never_shows_more_than_rackbeat_minus_unreserved_demand(
    tmp_path_factory: pytest.TempPathFactory, steps: list[str], status: str, search_lag: float, seed: int
) -> None:
    rnd = random.Random(seed)
    skus = ["A", "B"]
    async with make_world(
        tmp_path_factory.mktemp("w"),
        settings={"sync_order_status": status},
        shopify_options={"search_lag": search_lag},
    ) as w:
        for sku in skus:
            w.shopify_sim.add_product(sku, [{"sku": sku, "price": "10.00"}])
            w.rackbeat.add_product(sku, stock=6)
        w.rackbeat.add_product("frakt")
        orders = orders_flow(w)
        mid: list[str] = []  # what the next catch-up does first

        async def catch_up() -> None:
            while mid:
                action = mid.pop()
                sku = rnd.choice(skus)
                if action == "sell" and w.shopify_sim.available(sku) > 0:
                    w.shopify_sim.sell(sku, rnd.randint(1, w.shopify_sim.available(sku)))
                elif action == "book":
                    drafts = [o for o in w.rackbeat.orders if not o.is_booked and not o.is_cancelled]
                    if drafts:
                        await book_as_the_orders_flow_does(w, rnd.choice(drafts).number)
                elif action == "import":
                    await orders.run_once()
            await orders.run_once()

        stock = stock_flow(w, catch_up)
        await orders.run_once()
        await stock.run_once()

        def check(when: str) -> None:
            demand = unreserved_truth(w)
            for sku in skus:
                assert w.shopify_sim.available(sku) <= bound(w, sku, demand), (when, sku, status, steps)

        for step in steps:
            sku = rnd.choice(skus)
            w.tick(30)
            if step == "sale" and w.shopify_sim.available(sku) > 0:
                w.shopify_sim.sell(sku, rnd.randint(1, w.shopify_sim.available(sku)))
            elif step == "import":
                await orders.run_once()
            elif step == "book":
                drafts = [o for o in w.rackbeat.orders if not o.is_booked and not o.is_cancelled]
                if drafts:
                    await book_as_the_orders_flow_does(w, rnd.choice(drafts).number)
            elif step in RACKBEAT_STEPS:
                rackbeat_step(w, step, sku, rnd)
            elif step == "mid":
                mid.extend(rnd.sample(["sell", "book", "import"], rnd.randint(1, 3)))
            elif step == "stock_cycle":
                await stock.run_once()
                check(step)
        # activity stops: cycles of each until Shopify's search shows every order, then
        # Shopify shows exactly what the world allows (not what the daemon believes)
        mid.clear()
        for _ in range(2 + int(search_lag // 60)):
            w.tick(60)
            await orders.run_once()
            await stock.run_once()
            check("settling")
        demand = unreserved_truth(w)
        for sku in skus:
            assert w.shopify_sim.available(sku) == bound(w, sku, demand), (sku, status, search_lag, steps)


# --- memory between cycles lives in the state DB: a restart changes nothing ----------------------


def levels_read(w: World) -> list[list[str]]:
    """Record the inventory item ids of every InventoryLevels request from now on."""
    reads: list[list[str]] = []

    def note(request: httpx.Request, phase: str) -> None:
        if phase == "before" and b"InventoryLevels" in request.content:
            reads.append(list(json.loads(request.content)["variables"]["ids"]))

    w.hook = note
    return reads


def item_of(w: World, sku: str) -> str:
    variant = w.shopify_sim.find_by_sku(sku)
    assert variant is not None
    return str(variant.inventory_item_id)


async def test_held_back_units_stay_held_across_a_restart_without_a_full_reread(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    # Shopify's order search lags 150 s: the 3 sold units are held while the order is missing
    async with catalogue(tmp_path, shopify_schema, 3, shopify_options={"search_lag": 150.0}) as w:
        orders = orders_flow(w)
        await orders.run_once()
        await stock_flow(w, orders.run_once).run_once()
        w.tick(60)
        w.shopify_sim.sell("SKU-0000", 3)
        w.rackbeat.goods_receipt("SKU-0000", 2)
        w.tick(5)
        await stock_flow(w, orders.run_once).run_once()
        assert w.shopify_sim.available("SKU-0000") == 9  # 12 − the 3 units held

        await w.restart()
        orders = orders_flow(w)
        reads = levels_read(w)
        w.tick(60)  # 65 s after the sale: the order is still not searchable
        await stock_flow(w, orders.run_once).run_once()
        assert w.rackbeat.order_count_by_reference("#1001") == 0
        assert w.shopify_sim.available("SKU-0000") == 9, "the restart released the held units"
        assert w.shopify_sim.available("SKU-0000") <= bound(w, "SKU-0000", unreserved_truth(w))
        # the hold came from the DB, and the restart did not start a full reconcile early
        assert reads == []
        w.tick(120)
        await stock_flow(w, orders.run_once).run_once()  # the order arrived: it explains the hold
        assert w.rackbeat.order_count_by_reference("#1001") == 1
        assert w.shopify_sim.available("SKU-0000") == 9


async def test_a_sku_whose_write_went_stale_is_read_first_after_a_restart(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 3, sync_orders=False) as w:
        await stock_flow(w).run_once()
        for i in range(3):
            w.rackbeat.goods_receipt(f"SKU-{i:04}", 3)

        def sell_before_each_write(request: httpx.Request, phase: str) -> None:
            if phase == "before" and b"SetStock" in request.content:
                w.shopify_sim.sell("SKU-0000", 1)  # Shopify keeps changing under every push

        w.hook = sell_before_each_write
        w.tick(60)
        await stock_flow(w).run_once()
        assert w.metrics.value("stock", "stale_retries") == 3  # every round, then given up
        assert [w.shopify_sim.available(f"SKU-{i:04}") for i in (1, 2)] == [13, 13]

        await w.restart()
        reads = levels_read(w)
        w.tick(60)
        await stock_flow(w).run_once()
        assert reads == [[item_of(w, "SKU-0000")]]  # read first; the others are not read again
        assert w.metrics.value("stock", "stale_retries") == 0  # no write on a stale belief
        # 13 in Rackbeat, 4 units sold that no imported order explains: held back
        assert w.shopify_sim.available("SKU-0000") == 9 == bound(w, "SKU-0000", unreserved_truth(w))


async def test_the_full_reconciles_location_pass_goes_on_after_a_restart(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with six_at_location_1_on_a_small_budget(tmp_path, shopify_schema) as w:
        await stock_flow(w).run_once()
        for i in range(6):  # 4 units of each moved to the unlisted location 2: totals stay 5/5
            w.rackbeat.adjust_stock(f"SKU-{i:04}", -4, "1")
            w.rackbeat.goods_receipt(f"SKU-{i:04}", 4, "2")
        w.tick(3600)
        shown: list[list[int]] = []
        for _ in range(3):
            await stock_flow(w).run_once()
            shown.append([w.shopify_sim.available(f"SKU-{i:04}") for i in range(6)])
            await w.restart()  # the pass's progress is in the DB, not in the flow object
            w.tick(60)
        assert shown == [[1, 1, 5, 5, 5, 5], [1, 1, 1, 1, 5, 5], [1, 1, 1, 1, 1, 1]]


async def test_an_order_imported_before_a_restart_still_makes_its_sku_checked_after_it(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 2) as w:
        orders = orders_flow(w)
        await orders.run_once()
        await stock_flow(w, orders.run_once).run_once()
        w.shopify_sim.sell("SKU-0000", 2)
        w.tick(60)
        await orders.run_once()  # imported and booked: Rackbeat's available is 8, Shopify shows 8
        w.rackbeat.goods_receipt("SKU-0000", 2)  # available back at 10: the figure looks unchanged

        await w.restart()
        orders = orders_flow(w)
        reads = levels_read(w)
        w.tick(60)
        await stock_flow(w, orders.run_once).run_once()
        # the order reached the ledger after the last cycle before the restart: its SKU is read
        # and set to what Rackbeat has now, without a full reconcile
        assert reads == [[item_of(w, "SKU-0000")]]
        assert w.shopify_sim.available("SKU-0000") == 10 == bound(w, "SKU-0000", unreserved_truth(w))


async def test_each_cycle_logs_one_line_under_a_stable_key_with_its_counts(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    """The runner's one ``flow.cycle`` line carries the stock flow's own figures."""
    async with catalogue(tmp_path, shopify_schema, 3, sync_orders=False) as w:
        flow = stock_flow(w)
        cycles_left = 2

        async def one_poll_later(seconds: float) -> None:
            w.tick(60)
            await anyio.lowlevel.checkpoint()

        class TwoCycles:
            name = flow.name

            async def run_once(self) -> int:
                nonlocal cycles_left
                cycles_left -= 1
                if not cycles_left:
                    w.shutdown.request()
                return await flow.run_once()

        runner = Runner(
            [TwoCycles()],
            store=w.store,
            metrics=w.metrics,
            poll_seconds=60,
            shutdown=w.shutdown,
            sleep_until_stop=one_poll_later,
        )
        with capture_logs() as logs, anyio.fail_after(20):
            await runner.run()
        cycles = [
            (e["log_level"], e["pushed"], e["waiting"], e["full"]) for e in logs if e["event"] == "flow.cycle"
        ]
        assert cycles == [("info", 3, 0, True), ("debug", 0, 0, False)]  # a quiet cycle logs at debug
        events = {str(e["event"]) for e in logs if e.get("flow") == "stock"}
        assert "flow.cycle" in events
        assert all(event.startswith(("stock.", "flow.")) for event in events), events


async def test_a_restart_with_other_locations_reads_every_product_again(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 1, stock=0, sync_locations="1", sync_orders=False) as w:
        w.rackbeat.goods_receipt("SKU-0000", 5, "1")
        w.rackbeat.goods_receipt("SKU-0000", 4, "2")
        await stock_flow(w).run_once()
        assert w.shopify_sim.available("SKU-0000") == 5

        await w.restart()
        w.settings = w.settings.model_copy(update={"sync_locations": "1,2"})  # S10 changed
        w.tick(60)
        await stock_flow(w).run_once()
        # Rackbeat's totals are as recorded, but the stored sum was of location 1 only
        assert w.shopify_sim.available("SKU-0000") == 9


# --- the property with two shops on one Rackbeat account -----------------------------------------


def twin_of(w: World, shop: ShopWorld, order: ShopifyOrder) -> Any:
    """The Rackbeat order of ``shop``'s ``order`` (another shop's order of the same name has
    another heading), or None."""
    heading = shopify_heading(order.name, shop.settings.shop)
    found = [o for o in w.rackbeat.orders if o.your_reference == order.name and o.heading == heading]
    assert len(found) <= 1, f"{order.name} of {shop.alias}: {len(found)} Rackbeat orders"
    return found[0] if found else None


def unreserved_of(w: World, shop: ShopWorld, orders: Iterable[ShopifyOrder]) -> dict[str, int]:
    """SKU → units of ``orders`` (of ``shop``) that Rackbeat does not reserve: not in
    Rackbeat, or a draft there."""
    demand: dict[str, int] = {}
    for order in orders:
        twin = twin_of(w, shop, order)
        if twin is not None and (twin.is_booked or twin.is_cancelled):
            continue
        for sku, units in shop.sim.order_demand(order.id).items():
            demand[sku] = demand.get(sku, 0) + units
    return demand


#: as :data:`STEPS`, for two shops: sales and imports in either, stock cycles of either or
#: of both at once (they then share one Rackbeat scan)
TWO_SHOP_STEPS = [
    "sale_a",
    "sale_b",
    "import_a",
    "import_b",
    "book",
    "receipt",
    "adjust",
    "ship",
    "mid",
    "stock_a",
    "stock_b",
    "stock_both",
    "stock_both",
]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.sampled_from(TWO_SHOP_STEPS), min_size=5, max_size=25),
    status=st.sampled_from(["draft", "booked", "ready_to_ship"]),
    search_lag=st.sampled_from([0.0, 20.0, 45.0, 100.0]),
    seed=st.integers(0, 10_000),
)
async def test_no_shop_shows_more_than_rackbeat_minus_the_unreserved_demand_of_both(
    tmp_path_factory: pytest.TempPathFactory, steps: list[str], status: str, search_lag: float, seed: int
) -> None:
    """Two shops sell the same SKUs from the same Rackbeat stock. After a stock cycle of a
    shop, it shows at most Rackbeat's available minus the unreserved demand of its own
    orders and of the other shop's orders that Shopify's search showed when the cycle
    began (one it does not show yet, no process can know of)."""
    rnd = random.Random(seed)
    skus = ["A", "B"]
    async with make_world(
        tmp_path_factory.mktemp("w"),
        validate_schema=None,  # the documents are the one shop's, checked by the test above
        settings={"sync_order_status": status},
        shopify_options={"search_lag": search_lag},
    ) as w:
        shops = [first_shop(w, "a"), add_shop(w, "b")]
        by_alias = {shop.alias: shop for shop in shops}
        for sku in skus:
            for shop in shops:
                shop.sim.add_product(sku, [{"sku": sku, "price": "10.00"}])
            w.rackbeat.add_product(sku, stock=8)
        w.rackbeat.add_product("frakt")
        mid: list[str] = []  # what the next catch-up of a shop's own orders does first

        def sell(shop: ShopWorld, sku: str) -> None:
            if shop.sim.available(sku) > 0:
                shop.sim.sell(sku, rnd.randint(1, shop.sim.available(sku)))

        async def book_one() -> None:
            drafts = [o for o in w.rackbeat.orders if not o.is_booked and not o.is_cancelled]
            if drafts:
                await book_for(w, shops, rnd.choice(drafts).number)

        async def before_orders(alias: str) -> None:
            # a stock cycle asks for its own shop's orders after its scan: act then
            while mid and stock_running == alias:
                action = mid.pop()
                if action == "sell":
                    sell(rnd.choice(shops), rnd.choice(skus))
                elif action == "book":
                    await book_one()
                elif action == "import":
                    await flows.orders[rnd.choice(shops).alias].run_once()

        flows = account_flows(w, shops, before_orders=before_orders)
        stock_running = ""
        for shop in shops:
            await flows.orders[shop.alias].run_once()
        for shop in shops:
            await flows.stock[shop.alias].run_once()

        def visible(began: datetime) -> dict[str, set[str]]:
            """Each shop's orders that Shopify's search shows at ``began``."""
            return {
                s.alias: {
                    o.id
                    for o in s.sim.orders.values()
                    if (began - o.updated_at).total_seconds() >= search_lag
                }
                for s in shops
            }

        def check(when: str, shop: ShopWorld, seen: dict[str, set[str]], *, exact: bool = False) -> None:
            """``shop`` shows at most Rackbeat's available less the unreserved demand of its
            own orders and of the other shop's orders in ``seen`` (``exact``: all of them,
            and no less)."""
            other = next(s for s in shops if s is not shop)
            counted = [o for o in other.sim.orders.values() if o.id in seen[other.alias] or exact]
            demand = unreserved_of(w, shop, shop.sim.orders.values())
            for sku, units in unreserved_of(w, other, counted).items():
                demand[sku] = demand.get(sku, 0) + units
            for order in other.sim.orders.values():
                twin = twin_of(w, other, order)
                if (
                    order.id not in seen[other.alias]
                    and not exact
                    and twin is not None
                    and twin.reserves_stock
                ):
                    # sold there and reserved by Rackbeat after the cycle began: neither in
                    # the demand counted nor in the figure the cycle could have read
                    for sku, units in other.sim.order_demand(order.id).items():
                        demand[sku] = demand.get(sku, 0) - units
            for sku in skus:
                shown, most = shop.sim.available(sku), bound(w, sku, demand)
                assert shown <= most if not exact else shown == most, (when, shop.alias, sku, status, steps)

        async def stock_cycle(*cycling: ShopWorld) -> None:
            nonlocal stock_running
            seen = visible(w.clock.now())  # a sale during the cycle is the next cycle's
            if len(cycling) == 1:
                stock_running = cycling[0].alias
                await flows.stock[cycling[0].alias].run_once()
            else:
                stock_running = rnd.choice(cycling).alias
                scans = flows.reads.scans
                flows.reads.gather = 5.0  # both ask together: one scan serves them
                async with anyio.create_task_group() as tg:
                    for shop in cycling:
                        tg.start_soon(flows.stock[shop.alias].run_once)
                flows.reads.gather = 0.0
                assert flows.reads.scans == scans + 1
            stock_running = ""
            for shop in cycling:
                check("stock_cycle", shop, seen)

        for step in steps:
            sku = rnd.choice(skus)
            w.tick(30)
            if step.startswith("sale_"):
                sell(by_alias[step[-1]], sku)
            elif step.startswith("import_"):
                await flows.orders[step[-1]].run_once()
            elif step == "book":
                await book_one()
            elif step in RACKBEAT_STEPS:
                rackbeat_step(w, step, sku, rnd)
            elif step == "mid":
                mid.extend(rnd.sample(["sell", "book", "import"], rnd.randint(1, 3)))
            elif step == "stock_both":
                await stock_cycle(*shops)
            else:
                await stock_cycle(by_alias[step[-1]])
        # activity stops: cycles of each until Shopify's search shows every order, then
        # every shop shows exactly what the world allows
        mid.clear()
        for _ in range(2 + int(search_lag // 60)):
            w.tick(60)
            for shop in shops:
                await flows.orders[shop.alias].run_once()
            for shop in shops:
                await stock_cycle(shop)
        for shop in shops:
            check("settled", shop, visible(w.clock.now()), exact=True)


async def test_a_first_sync_goes_in_rounds_each_catching_the_orders_up_before_it_decides(
    tmp_path: Path, shopify_schema: GraphQLSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a large catalogue is never decided and pushed whole: rounds of CANDIDATES_PER_ROUND
    monkeypatch.setattr("daemon.flows.stock.CANDIDATES_PER_ROUND", 3)
    async with catalogue(tmp_path, shopify_schema, 7) as w:
        orders = orders_flow(w)
        await orders.run_once()
        catch_ups = 0

        async def catch_up() -> object:
            nonlocal catch_ups
            catch_ups += 1
            return await orders.run_once()

        sold = False

        def sell_during_the_first_round(request: httpx.Request, phase: str) -> None:
            nonlocal sold
            if phase == "before" and b"SetStock" in request.content and not sold:
                sold = True
                w.shopify_sim.sell("SKU-0006", 2)  # the last round's SKU, sold meanwhile
                w.tick(w.shopify_sim.search_lag + 1)

        w.hook = sell_during_the_first_round
        flow = stock_flow(w, catch_up)
        await flow.run_once()
        w.hook = None
        assert w.shopify_sim.requests["SetStock"] == 3  # one push per round: 3 + 3 + 1
        assert catch_ups == 3
        # the last round's catch-up imported the sale: 10 less the 2 sold, never 10
        assert w.shopify_sim.available("SKU-0006") == 8
        assert all(w.shopify_sim.available(f"SKU-{i:04}") == 10 for i in range(6))

        # rising targets read nothing: the later rounds decide on the first one's catch-up
        for i in range(7):
            w.rackbeat.goods_receipt(f"SKU-{i:04}", 1)
        w.tick(60)
        catch_ups = 0
        await flow.run_once()
        assert catch_ups == 1
        assert w.shopify_sim.requests["SetStock"] == 6
        assert w.shopify_sim.available("SKU-0000") == 11
