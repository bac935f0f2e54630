"""The products flow (S13 = rackbeat) finds Rackbeat's changes on the stock flow's scan:
no request of its own while nothing changed, and never a change skipped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from graphql import GraphQLSchema

from daemon import app
from daemon.demand import OrderDemand
from daemon.flows.products import LOOKED, RACKBEAT_CURSOR, SCAN_WAIT, ProductsFlow
from daemon.flows.stock import StockFlow
from daemon.index import SkuIndex
from daemon.runner import InlineCycles
from daemon.services import Services
from daemon.shared import StockReads
from daemon.shutdown import Shutdown
from tests.harness import World, make_world

pytestmark = pytest.mark.anyio

SKUS = ("MUG-1", "TEE-2", "CAP-3")


@dataclass
class Flows:
    """One shop's stock and products flows sharing one :class:`StockReads`, on the world's clock."""

    w: World
    reads: StockReads
    stock: StockFlow
    products: ProductsFlow

    async def products_cycle(self) -> int:
        """One products cycle; the Rackbeat requests it made."""
        before = self.w.rackbeat.request_total()
        await self.products.run_once()
        return self.w.rackbeat.request_total() - before

    async def cycle(self, seconds: float = 60.0) -> int:
        """A poll later: the stock cycle (its scan), then the products cycle; the products
        cycle's Rackbeat requests."""
        self.w.tick(seconds)
        await self.stock.run_once()
        return await self.products_cycle()


def wire(w: World) -> Flows:
    """The stock and products flows as :func:`daemon.app.build_flows` wires them (a process
    start: nothing in memory but what the DB holds)."""
    reads = StockReads(w.rackbeat_client, now=w.clock.now)
    common = (w.settings, w.store, w.shopify, w.rackbeat_client)
    index = SkuIndex(w.store, w.shopify, clock=w.clock.now)
    stock = StockFlow(
        *common,
        index=index,
        metrics=w.metrics,
        shutdown=w.shutdown,
        demand=OrderDemand(w.store),
        cycles=InlineCycles({}),
        reads=reads,
        clock=w.clock.now,
        monotonic=w.clock.monotonic,
    )
    products = ProductsFlow(
        *common, index=index, metrics=w.metrics, shutdown=w.shutdown, scans=reads, clock=w.clock.now
    )
    return Flows(w, reads, stock, products)


@asynccontextmanager
async def synced(tmp_path: Path, schema: GraphQLSchema | None) -> AsyncIterator[Flows]:
    """Three products alike on both sides, past the first cycles (both cursors set, the
    first look at Rackbeat's changes made)."""
    async with make_world(tmp_path, validate_schema=schema, settings={"sync_orders": False}) as w:
        for sku in SKUS:
            w.rackbeat.add_product(sku, f"Product {sku}", sales_price="80", stock=5)
            w.shopify_sim.add_product(f"Product {sku}", [{"sku": sku, "price": "100.00"}])
        w.rackbeat.add_product("frakt", "Frakt")
        w.tick(3600)
        flows = wire(w)
        assert await flows.cycle() == 1  # the first look: a read (nothing to compare a scan with)
        yield flows


def title(w: World, sku: str) -> str:
    variant = w.shopify_sim.find_by_sku(sku)
    assert variant is not None
    product = w.shopify_sim.node(variant.product_id)
    return str(getattr(product, "title", ""))


async def cursor(flows: Flows) -> str | None:
    return await flows.w.store.get_cursor(RACKBEAT_CURSOR)


async def test_quiet_cycles_read_nothing_and_a_change_is_read_once_a_scan_shows_it(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with synced(tmp_path, shopify_schema) as flows:
        w = flows.w
        moved = await cursor(flows)
        assert [await flows.cycle(120) for _ in range(5)] == [0] * 5
        assert await cursor(flows) != moved  # the cursor moves with the scans, as after a read
        w.rackbeat.update_product("TEE-2", name="Tee, organic")
        assert await flows.cycle() == 1  # the scan shows the change: the details are read
        assert title(w, "TEE-2") == "Tee, organic"
        assert title(w, "MUG-1") == "Product MUG-1"
        # the change stays inside the overlap for a while (read again, written no more);
        # then quiet cycles cost nothing again
        await flows.cycle(600)
        assert await flows.cycle(600) == 0
        assert w.metrics.value("products", "updated_shopify") == 1


async def test_a_change_made_after_the_scan_started_is_read_after_the_next_scan(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with synced(tmp_path, shopify_schema) as flows:
        w = flows.w
        w.tick(60)
        await flows.stock.run_once()  # the scan: nothing changed
        w.tick(1)
        w.rackbeat.update_product("CAP-3", name="Cap, wool")  # after the scan had started
        w.tick(timedelta(minutes=15).total_seconds())  # a slow scan, or a late products cycle
        assert await flows.products_cycle() == 0  # the scan shows nothing: no read …
        assert title(w, "CAP-3") == "Product CAP-3"
        # … and the cursor stopped short of the change (at the scan's start, less the
        # overlap; not at this cycle's): the next scan shows it
        assert await flows.cycle() == 1
        assert title(w, "CAP-3") == "Cap, wool"


async def waited_for_a_read(flows: Flows) -> float:
    """Seconds of products cycles, a minute apart and without a stock cycle, until one reads."""
    w = flows.w
    looked = await w.store.get_cursor(LOOKED)
    waited = 0.0
    while True:
        w.tick(60)
        waited += 60
        if await flows.products_cycle():
            return waited
        assert await w.store.get_cursor(LOOKED) == looked  # no look: the cursor stays
        assert waited < 2 * SCAN_WAIT.total_seconds()


async def test_without_a_new_scan_the_flow_waits_a_while_then_reads_itself(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with synced(tmp_path, shopify_schema) as flows:
        w = flows.w
        assert await flows.cycle() == 0
        # the stock flow fails from now on (or its scan takes long): the latest scan is old
        w.rackbeat.update_product("MUG-1", name="Mug, blue")
        assert await waited_for_a_read(flows) == SCAN_WAIT.total_seconds()
        assert title(w, "MUG-1") == "Mug, blue"
        # the stock flow is back: its scans serve again
        assert await flows.cycle() == 1  # the change is still inside the overlap
        await flows.cycle(timedelta(minutes=15).total_seconds())  # and this look moves past it
        assert await flows.cycle() == 0

        # a restart: no scan in memory; the last look is in the DB
        restarted = wire(w)
        w.rackbeat.update_product("TEE-2", name="Tee, blue")
        assert await waited_for_a_read(restarted) == SCAN_WAIT.total_seconds()
        assert title(w, "TEE-2") == "Tee, blue"


async def test_with_stock_sync_off_the_products_flow_reads_as_before(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        for sync_stock in (True, False):
            settings = w.settings.model_copy(update={"sync_stock": sync_stock})
            services = Services(settings, w.store, w.http, w.shopify, w.rackbeat_client, w.metrics)  # type: ignore[arg-type]
            flows = {f.name: f for f in app.build_flows(services, Shutdown())}
            products = flows["products"]
            assert isinstance(products, ProductsFlow)
            if sync_stock:
                stock = flows["stock"]
                assert isinstance(stock, StockFlow)
                assert products.scans is stock.reads  # the stock flow's scans tell what changed
            else:
                assert "stock" not in flows
                assert products.scans is None  # no scans to wait for: it reads every cycle
