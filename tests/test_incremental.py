"""Incremental reads pay for a change once (issue 16): counts of full reads, asserted.

The overlap every read goes over again (Shopify's search index lags) is listed by id and
time; a record is read in full only when it changed since it was applied. Time is the
simulated clock; every count is the simulator's (:attr:`ShopifySimulator.served`).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from daemon import shopify_documents as docs
from daemon.flows.stock import INDEX_REFRESH_BUDGET
from daemon.incremental import OVERLAP, WHOLE_EVERY
from daemon.index import SkuIndex
from tests.harness import World, make_world, orders_flow
from tests.test_flow_stock import catalogue, stock_flow

pytestmark = pytest.mark.anyio

#: the poll interval issue 16 measured with
POLL = 5.0
#: documents that read whole records
FULL = ("ProductsByIds", "ProductsUpdatedSince", "OrdersByIds", "OrdersUpdatedSince")


def full_reads(w: World, kind: str) -> Counter[str]:
    """Times each record of ``kind`` (``Product``, ``Order``) was served in full."""
    counts: Counter[str] = Counter()
    for (operation, gid), n in w.shopify_sim.served.items():
        if operation in FULL and f"/{kind}/" in gid:
            counts[gid] += n
    return counts


def requests(w: World) -> int:
    return sum(w.shopify_sim.requests.values())


def index_of(w: World) -> SkuIndex:
    return SkuIndex(w.store, w.shopify, clock=w.clock.now, monotonic=w.clock.monotonic)


async def test_a_bulk_edit_is_read_in_full_once_and_then_costs_one_request(tmp_path: Path) -> None:
    products = 400
    async with make_world(tmp_path, validate_schema=None) as w:
        ids = [
            w.shopify_sim.add_product(f"P{n}", [{"sku": f"SKU-{n:04}"}]).product_id for n in range(products)
        ]
        index = index_of(w)
        await index.build()
        w.tick(OVERLAP.total_seconds() * 2)
        await index.refresh()
        w.shopify_sim.served.clear()

        w.tick(60)
        for product_id in ids:  # a bulk edit: every product at once
            w.shopify_sim.update_product(product_id, title="Renamed")
        before = requests(w)
        refreshes = 0
        started = w.clock.monotonic()
        while w.clock.monotonic() - started <= OVERLAP.total_seconds() + POLL:  # the next 5 minutes
            w.tick(POLL)
            await index.refresh()
            refreshes += 1
        reads = full_reads(w, "Product")
        assert set(reads) == set(ids)  # every changed product was read …
        assert max(reads.values()) <= 2  # … in full at most twice
        # before: every refresh read all 400 in full (50 requests each, 61 refreshes); now
        # each lists the last half minute by id and time (one request), once a minute the
        # whole overlap (two requests), and one or two read the changed ones in full
        wholes = math.ceil(refreshes * POLL / WHOLE_EVERY.total_seconds()) + 1
        listing = refreshes + wholes * math.ceil(products / docs.STAMPS_PAGE_SIZE)
        assert requests(w) - before <= listing + 2 * math.ceil(products / docs.PRODUCTS_PAGE_SIZE)

        before = requests(w)
        w.tick(POLL)
        await index.refresh()  # idle
        assert requests(w) - before <= 2


async def test_a_product_the_search_shows_late_is_still_read(tmp_path: Path) -> None:
    async with make_world(tmp_path, validate_schema=None, shopify_options={"search_lag": 120}) as w:
        w.shopify_sim.add_product("Old", [{"sku": "OLD"}])
        index = index_of(w)
        await index.build()
        w.tick(OVERLAP.total_seconds() * 2)
        await index.refresh()
        w.shopify_sim.add_product("Early", [{"sku": "EARLY"}])
        w.tick(60)
        w.shopify_sim.add_product("Late", [{"sku": "LATE"}])
        w.tick(70)  # "Early" is searchable, "Late" is not yet
        assert await index.refresh() == {"EARLY"}
        found: set[str] = set()
        for _ in range(int(OVERLAP.total_seconds() / POLL)):
            w.tick(POLL)
            found |= await index.refresh()
        assert found == {"LATE"}
        assert max(full_reads(w, "Product").values()) == 1


async def test_an_order_burst_is_fetched_in_full_at_most_twice(tmp_path: Path) -> None:
    orders = 1000
    async with make_world(
        tmp_path, validate_schema=None, settings={"rackbeat_requests_per_minute": 10_000}
    ) as w:
        for n in range(10):
            w.shopify_sim.add_product(f"P{n}", [{"sku": f"SKU-{n}", "price": "10.00"}])
            w.rackbeat.add_product(f"SKU-{n}", stock=100_000)
        w.rackbeat.add_product("frakt", name="Frakt")
        flow = orders_flow(w)
        await flow.run_once()  # the first start: orders are imported from now on
        placed = 0
        started = w.clock.monotonic()
        while w.clock.monotonic() - started <= 2 * OVERLAP.total_seconds():
            elapsed = w.clock.monotonic() - started
            due = min(orders, round(orders * elapsed / OVERLAP.total_seconds()))
            for n in range(placed, due):  # 1,000 orders over five minutes
                w.shopify_sim.create_order([(f"SKU-{n % 10}", 1)], email=f"c{n % 20}@example.com")
            placed = due
            w.tick(POLL)
            await flow.run_once()
        reads = full_reads(w, "Order")
        assert placed == orders == len(reads)
        assert max(reads.values()) <= 2
        assert len({o.your_reference for o in w.rackbeat.orders}) == len(w.rackbeat.orders) == orders


async def test_the_stock_push_does_not_wait_for_a_long_index_refresh(tmp_path: Path) -> None:
    products = 600
    async with catalogue(tmp_path, None, products) as w:
        flow = stock_flow(w)
        assert await flow.run_once() == products  # the first push; the index is built
        w.tick(OVERLAP.total_seconds() * 2)
        await flow.run_once()
        for product_id in list(w.shopify_sim.products):  # a bulk edit
            w.shopify_sim.update_product(product_id, title="Renamed")
        w.rackbeat.goods_receipt("SKU-0007", 5)
        w.tick(60)
        w.shopify_sim.served.clear()
        assert await flow.run_once() == 1  # pushed while the index has products to go
        assert w.shopify_sim.available("SKU-0007") == 15
        read = sum(full_reads(w, "Product").values())
        assert INDEX_REFRESH_BUDGET <= read < INDEX_REFRESH_BUDGET + docs.STAMPS_PAGE_SIZE
        for _ in range(products // INDEX_REFRESH_BUDGET + 1):  # the next cycles read the rest
            w.tick(POLL)
            await flow.run_once()
        assert len(full_reads(w, "Product")) == products
