"""Several Shopify shops on one Rackbeat account, served by one process (issue 12).

The flows of two shops on one simulated Rackbeat, wired as ``build_account_flows`` wires
them (one stock scan shared, one customer lock, each stock flow subtracting the demand of
every shop whose S10 locations meet its own), on one fake clock; then the shared pieces
on their own (:class:`StockReads`, :class:`KeyedLocks`, :class:`OrderDemand`). The
daemon itself serving two shops is in ``test_shops_daemon.py``; killed with SIGKILL in
``test_process.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLSchema

from daemon.demand import OrderDemand
from tests.harness import (
    ShopWorld,
    World,
    account_flows,
    add_shop,
    book_for,
    first_shop,
    make_world,
)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def two_shops(
    tmp_path: Path,
    schema: GraphQLSchema | None,
    *,
    skus: Mapping[str, int],
    a: Mapping[str, Any] | None = None,
    b: Mapping[str, Any] | None = None,
    search_lag: float = 0.0,
    **settings: Any,
) -> AsyncIterator[tuple[World, ShopWorld, ShopWorld]]:
    """Shops ``a`` and ``b`` (their own settings ``a`` and ``b``, the rest shared) selling
    the same ``skus`` (SKU → Rackbeat stock at the default location)."""
    async with make_world(
        tmp_path,
        validate_schema=schema,
        settings={**settings, **(a or {})},
        shopify_options={"search_lag": search_lag},
    ) as w:
        shop_a, shop_b = first_shop(w, "a"), add_shop(w, "b", **(b or {}))
        for sku, stock in skus.items():
            for shop in (shop_a, shop_b):
                shop.sim.add_product(f"Product {sku}", [{"sku": sku, "price": "100.00"}])
            w.rackbeat.add_product(sku, stock=stock)
        w.rackbeat.add_product("frakt", name="Frakt")
        yield w, shop_a, shop_b


# --- the flows of two shops --------------------------------------------------------------------------


async def test_a_sale_in_one_shop_lowers_the_other_shops_figure_in_its_next_cycle(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with two_shops(tmp_path, shopify_schema, skus={"LAST-3": 3}, sync_order_status="draft") as (
        w,
        a,
        b,
    ):
        flows = account_flows(w, [a, b])
        for alias in "ab":
            await flows.orders[alias].run_once()
        for alias in "ab":
            await flows.stock[alias].run_once()
        assert (a.sim.available("LAST-3"), b.sim.available("LAST-3")) == (3, 3)
        w.tick(60)
        a.sim.sell("LAST-3", 3)
        # nothing else runs: shop B's next stock cycle reads shop A's new order itself
        await flows.stock["b"].run_once()
        assert b.sim.available("LAST-3") == 0
        assert w.rackbeat.available_quantity("LAST-3") == 3  # a draft: Rackbeat does not reserve it


async def test_a_scan_begun_before_a_cycle_read_its_demand_is_not_the_cycles(tmp_path: Path) -> None:
    async with two_shops(tmp_path, None, skus={"MUG-1": 5}, sync_order_status="draft") as (w, a, b):
        flows = account_flows(w, [a, b])
        for alias in "ab":
            await flows.orders[alias].run_once()
        w.tick(60)
        a.sim.sell("MUG-1", 3)
        w.tick(60)
        await flows.orders["a"].run_once()  # a draft: its 3 units are demand Rackbeat does not reserve
        for alias in "ab":
            await flows.stock[alias].run_once()
        assert b.sim.available("MUG-1") == 2
        [draft] = w.rackbeat.orders

        class BookedMeanwhile(OrderDemand):
            """While shop B's cycle reads its demand, shop A's cycle scans Rackbeat, and then
            the draft is booked (Rackbeat reserves it; the ledger says so)."""

            booked = False

            async def unreserved(self) -> dict[str, int]:
                if not self.booked:
                    self.booked = True
                    async for _ in flows.reads.totals(flows.reads.clock()):
                        pass
                    await book_for(w, [a, b], draft.number)
                return await super().unreserved()

        stock_b = flows.stock["b"]
        stock_b.demand = BookedMeanwhile(b.store, stock_b.demand.shops)
        w.tick(60)
        await stock_b.run_once()
        assert w.rackbeat.available_quantity("MUG-1") == 2
        assert b.sim.available("MUG-1") == 2  # not the 5 of the scan before the booking
